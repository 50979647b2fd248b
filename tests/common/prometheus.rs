//! A real Prometheus server for tests (Debian package `prometheus`, which
//! `scripts/test.sh` installs where it can): started on a free local port with a 1 s
//! scrape interval over the given targets, queried through its own HTTP API, stopped when
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;

/// Where the Debian package puts the server.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The Prometheus binary, or `None` (after saying loudly that `test` is skipped).
pub fn binary(test: &str) -> Option<PathBuf> {
    let path = Path::new(PROMETHEUS);
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    eprintln!(
        "\n*** SKIPPED {test}: Prometheus is not installed ({PROMETHEUS} is missing). \
         Install it (Debian: `apt-get install prometheus`; scripts/test.sh does so as root) \
         for the full suite. ***\n"
    );
    None
}

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `targets` (job name, address) every second, and waits until
    /// it is ready.
    pub fn start(binary: &Path, targets: &[(&str, SocketAddr)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", http::free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if matches!(http::try_get(addr, "/-/ready"), Ok((200, _))) {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}): {}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through `/api/v1/query`: the result vector (or matrix) as JSON.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = http::get(self.addr, &path);
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered {status} with non-JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "query {promql}: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The scraped values of a range query `promql` (e.g. `metric[1m]`), per series: its
    /// labels and its values in time order.
    pub fn series(&self, promql: &str) -> Vec<(Value, Vec<f64>)> {
        self.query(promql)
            .into_iter()
            .map(|r| {
                let values = r["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                (r["metric"].clone(), values)
            })
            .collect()
    }

    /// Polls `check` every 500 ms until it gives `Some`, or panics after `within` with
    /// `what` and the server's log.
    pub fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(t) = check(self) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never saw {what} within {within:?}; targets: {}\nlog: {}",
                http::get(self.addr, "/api/v1/targets").1,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
