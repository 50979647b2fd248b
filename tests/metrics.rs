//! Live metrics (`EnergyLayerBuilder::metrics_addr`, `profile --metrics-addr`): scraped
//! over HTTP while a traced program runs, with a source of known power so that every
//! figure can be checked by hand; and an address in use refused before anything starts.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::busy;
use common::{http, KnownPower};
use tracing::info_span;
use tracing_energy::power::SampleBuffer;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

/// The value of the one series whose line starts with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    let mut found = text.lines().filter(|l| l.starts_with(prefix));
    let v = found.next()?.rsplit(' ').next()?.parse().ok();
    assert!(found.next().is_none(), "one series {prefix}: {text}");
    v
}

/// The sum of every series of metric `name`.
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http::get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_traced_program_is_scraped_live_with_known_power() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    // 20 ms windows of 10 W, half CPU and half GPU: 0.1 J per domain per window.
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .buffer(Arc::new(SampleBuffer::new()))
        .custom_source(Box::new(KnownPower {
            window: Duration::from_millis(20),
            mw: vec![10_000.0],
        }))
        .interval(Duration::from_millis(20))
        .metrics_addr("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let addr = guard.metrics_addr().expect("served");
    assert_ne!(addr.port(), 0, "the chosen port is reported");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut scrapes = Vec::new();
    tracing::dispatcher::with_default(&dispatch, || {
        for round in 0..4 {
            let _request = info_span!("request").entered();
            for _ in 0..20 {
                let _compute = info_span!("compute").entered();
                busy(Duration::from_millis(10));
            }
            drop(_request);
            // Let the windows cover the round and the processor write its rows.
            std::thread::sleep(Duration::from_millis(400));
            scrapes.push((round, scrape(addr)));
        }
    });

    let mut last_energy = 0.0;
    for (round, text) in &scrapes {
        let cpu_w = value(
            text,
            "tracing_energy_power_watts{domain=\"cpu\",source=\"known\"}",
        );
        let gpu_w = value(
            text,
            "tracing_energy_power_watts{domain=\"gpu\",source=\"known\"}",
        );
        assert_eq!(cpu_w.map(|w| (w * 1e9).round()), Some(5e9), "{text}");
        assert_eq!(gpu_w.map(|w| (w * 1e9).round()), Some(5e9), "{text}");
        let energy = value(text, "tracing_energy_energy_joules_total{domain=\"cpu\"}")
            .expect("energy counter");
        // Whole windows only: a multiple of 0.1 J.
        let windows = energy / 0.1;
        assert!((windows - windows.round()).abs() < 1e-6, "{energy} J");
        assert!(
            energy > last_energy,
            "round {round}: {energy} J after {last_energy} J"
        );
        last_energy = energy;
        // Nothing is estimated, no tokens in a program without the model's vocabulary.
        assert!(!text.contains("estimated="), "{text}");
        assert_eq!(value(text, "tracing_energy_tokens_total "), Some(0.0));
        assert_eq!(
            value(text, "tracing_energy_dropped_records_total "),
            Some(0.0)
        );
        // Attributed energy never exceeds what was measured.
        let attributed = sum(text, "tracing_energy_span_energy_joules_total");
        let measured = sum(text, "tracing_energy_energy_joules_total");
        assert!(attributed <= measured + 1e-9, "{attributed} > {measured}");
    }
    let last = &scrapes.last().unwrap().1;
    let compute = value(
        last,
        "tracing_energy_span_energy_joules_total{span=\"request;compute\"}",
    )
    .expect("the nested span's path");
    let request = value(
        last,
        "tracing_energy_span_energy_joules_total{span=\"request\"}",
    )
    .expect("the outer span's path");
    // The busy inner spans hold nearly all of the outer span's time.
    assert!(
        compute > 0.0 && compute > 5.0 * request,
        "{compute} J vs {request} J"
    );
    let first = value(
        &scrapes[0].1,
        "tracing_energy_span_energy_joules_total{span=\"request;compute\"}",
    )
    .unwrap_or(0.0);
    assert!(
        compute > first,
        "the span counter grows: {first} J then {compute} J"
    );

    guard.finish().unwrap();
    assert!(
        http::try_get(addr, "/metrics").is_err(),
        "the server stops with the run"
    );
}

#[test]
fn an_address_in_use_is_refused_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");

    let err = EnergyLayer::builder()
        .db(&db)
        .power(None)
        .metrics_addr(addr)
        .build()
        .err()
        .expect("the address is taken");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot serve metrics on {addr}")) && text.contains("Fix:"),
        "{text}"
    );
    assert!(!db.exists(), "no database was created");
}

#[cfg(feature = "candle")]
#[test]
fn profile_refuses_an_address_in_use_before_the_model_loads() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let model = common::model::default_model();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["profile", "--power", "estimate", "--metrics-addr"])
        .arg(addr.to_string())
        .arg("--db")
        .arg(&db)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}"))
            && stderr.contains("choose another port"),
        "{stderr}"
    );
    assert!(!db.exists(), "no database was created");

    // A bad address is a usage error naming the form.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["profile", "--metrics-addr", "localhost"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9464"), "{stderr}");
}
