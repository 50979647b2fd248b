//! A `tracing-energy serve` process for the tests: started on a free port (`--addr
//! 127.0.0.1:0`, the port read back from its `serving http://...` line), killed when
//! dropped; and plain GET requests to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    agent: ureq::Agent,
}

impl Server {
    /// Serves `db`; panics with the server's error when it does not start within 60 s.
    pub fn start(db: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
            .args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tracing-energy serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("serving ").map(str::to_string) else {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve did not start (stdout {line:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server { url, child, agent }
    }

    /// GET `path`: (status, content type, body).
    pub fn get(&self, path: &str) -> (u16, String, String) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = r
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        (status, ctype, body)
    }

    /// GET `path`, which must answer JSON: (status, the JSON).
    pub fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, ctype, body) = self.get(path);
        assert!(
            ctype.starts_with("application/json"),
            "GET {path}: {status} {ctype}: {body}"
        );
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
        (status, v)
    }

    /// The process id, e.g. to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end (after a signal): its exit status.
    pub fn wait(mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not end within 30 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
