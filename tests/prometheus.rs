//! A real Prometheus server (see `common::prometheus`) scrapes a live `profile` of the real
//! model and a `serve` instance over its database every second, and the series are read
//! back through Prometheus' own query API: the power gauge is present and labelled as
//! estimated, the energy counter increases between scrapes, the tokens counter counts; and
//! once the profile ends, `serve` reports the runs' stored energy.
#![cfg(all(feature = "candle", unix))]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::http;
use common::model::default_model;
use common::prometheus::{binary, Prometheus};
use common::serve::Server;

/// Strictly increasing over at least three scrapes.
fn increases(values: &[f64]) -> bool {
    values.len() >= 3 && values.windows(2).all(|w| w[1] > w[0])
}

#[test]
fn prometheus_scrapes_a_live_profile_and_serve() {
    let Some(prometheus_bin) = binary("prometheus_scrapes_a_live_profile_and_serve") else {
        return;
    };
    let model = default_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    let metrics: SocketAddr = format!("127.0.0.1:{}", http::free_port()).parse().unwrap();

    let mut profile = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args([
            "profile",
            "--power",
            "estimate",
            "--quiet",
            "--max-tokens",
            "200",
        ])
        // Repetitions until SIGTERM (one generation may end within seconds): the profile
        // is ended once Prometheus saw enough.
        .args(["--repeat", "1000"])
        .args(["--prompt", "Count from 1 to 1000, one number per line."])
        .arg("--model")
        .arg(&model)
        .arg("--db")
        .arg(&db)
        .arg("--metrics-addr")
        .arg(metrics.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracing-energy profile");
    let stderr = profile.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let announced = lines
        .next()
        .expect("a line on stderr")
        .expect("utf-8 stderr");
    assert_eq!(announced, format!("metrics: http://{metrics}/metrics"));
    // Keep draining stderr so that the profile never blocks on it.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    // The database exists once the metrics are served: serve it too, while it is written.
    let serve = Server::start(&db);
    let serve_addr: SocketAddr = serve.url.strip_prefix("http://").unwrap().parse().unwrap();
    let prometheus = Prometheus::start(
        &prometheus_bin,
        &[("profile", metrics), ("serve", serve_addr)],
    );

    let energy = prometheus.wait_for(
        Duration::from_secs(240),
        "the energy counter increasing over 3 scrapes",
        |p| {
            p.series("tracing_energy_energy_joules_total{job=\"profile\",domain=\"cpu\"}[5m]")
                .into_iter()
                .find(|(_, v)| increases(v))
        },
    );
    assert_eq!(energy.0["estimated"], "true", "{:?}", energy.0);

    let power = prometheus.query("tracing_energy_power_watts{job=\"profile\"}");
    assert_eq!(
        power.len(),
        1,
        "one domain (cpu) from the estimate: {power:?}"
    );
    let m = &power[0]["metric"];
    assert_eq!(
        (&m["domain"], &m["source"], &m["estimated"]),
        (&"cpu".into(), &"estimate".into(), &"true".into()),
        "{m:?}"
    );
    let watts: f64 = power[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(watts > 0.0 && watts < 1000.0, "{watts} W");

    // Decode tokens are finalized as the power windows cover them.
    prometheus.wait_for(Duration::from_secs(120), "tokens counted", |p| {
        p.query("tracing_energy_tokens_total{job=\"profile\"} > 2")
            .first()
            .cloned()
    });
    let spans = prometheus.query("count(tracing_energy_span_energy_joules_total{job=\"profile\"})");
    let n: f64 = spans[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(n >= 10.0, "span paths seen: {n}");
    let dropped = prometheus.query("tracing_energy_dropped_records_total{job=\"profile\"}");
    assert_eq!(dropped.len(), 1, "{dropped:?}");

    // Ending the profile by SIGTERM keeps its run (interrupted, everything attributed).
    unsafe {
        libc::kill(profile.id() as i32, libc::SIGTERM);
    }
    let status = profile.wait().unwrap();
    let rest = rest.join().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "stderr: {rest:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["show", "latest", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("interrupted"), "{shown}");

    // `serve` counted the run while it was recorded, and gives its stored energy now.
    // (the model load's run and the repetitions: at least 2).
    prometheus.wait_for(Duration::from_secs(30), "serve's run count", |p| {
        p.query("tracing_energy_runs{job=\"serve\"} >= 2")
            .first()
            .cloned()
    });
    let ended = prometheus.wait_for(Duration::from_secs(30), "the interrupted run", |p| {
        p.query("tracing_energy_run_energy_joules{job=\"serve\",status=\"interrupted\"}")
            .first()
            .cloned()
    });
    assert_eq!(ended["metric"]["estimated"], "true", "{ended:?}");
    let stored = prometheus.query("sum(tracing_energy_run_energy_joules{job=\"serve\"})");
    let joules: f64 = stored[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(joules > 0.0, "{stored:?}");
    // The runs together stored at least what the live counter had seen (it counts every
    // window of every run).
    let live =
        prometheus.query("max_over_time(tracing_energy_energy_joules_total{job=\"profile\"}[5m])");
    let live_j: f64 = live[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        live_j <= joules + 1e-6,
        "live {live_j} J, stored {joules} J"
    );
    drop(serve);
}
