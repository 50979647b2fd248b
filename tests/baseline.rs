//! The idle baseline: a synthetic source with known idle power, stored and subtracted
//! (library), and `tracing-energy profile`'s default, its `--baseline-s` and the figures the
//! CLI prints (on the real model).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::model::default_model;
use common::{cli, local_fixture};
use tracing::info_span;
use tracing_energy::power::{
    Availability, DomainEnergy, PowerSample, PowerSource, SampleBuffer, SourceContext, SourceEnd,
};
use tracing_energy::store::Store;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

const IDLE_MW: f64 = 3000.0;
const WORK_MW: f64 = 5000.0;

/// `IDLE_MW` (CPU 2/3, DRAM 1/3), plus `WORK_MW` on the CPU for windows ending while
/// `busy` is set, in 10 ms windows.
struct Step {
    busy: Arc<AtomicBool>,
}

impl PowerSource for Step {
    fn name(&self) -> String {
        "step".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn is_available(&self) -> Availability {
        Availability::Available("synthetic".into())
    }
    fn run(&mut self, ctx: &mut SourceContext) -> tracing_energy::Result<SourceEnd> {
        let len = 10_000_000u64;
        let mut start = tracing_energy::clock::now_ns();
        loop {
            let end = start + len;
            let now = tracing_energy::clock::now_ns();
            if ctx.wait(Duration::from_nanos(end.saturating_sub(now))) {
                return Ok(SourceEnd::Stopped);
            }
            let extra = if self.busy.load(Ordering::Relaxed) {
                WORK_MW
            } else {
                0.0
            };
            let mj = |mw: f64| mw * len as f64 / 1e9;
            let energy = DomainEnergy {
                cpu: Some(mj(IDLE_MW * 2.0 / 3.0 + extra)),
                dram: Some(mj(IDLE_MW / 3.0)),
                ..DomainEnergy::default()
            };
            ctx.emit(PowerSample::new(start, end, energy, ctx.source_name(), false).unwrap());
            start = end;
        }
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn known_idle_power_is_stored_and_subtracted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let busy = Arc::new(AtomicBool::new(false));
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .buffer(Arc::new(SampleBuffer::new()))
        .custom_source(Box::new(Step {
            busy: Arc::clone(&busy),
        }))
        .interval(Duration::from_millis(10))
        .baseline(Duration::from_millis(500))
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        let s = info_span!("work", phase = "compute");
        let _e = s.enter();
        busy.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(400));
        busy.store(false, Ordering::Relaxed);
    });
    std::thread::sleep(Duration::from_millis(100));
    let report = guard.finish().unwrap();
    let b = report.baseline.expect("a baseline");
    assert!(close(b.total_mw, IDLE_MW, 0.01), "{b:?}");
    assert!(close(b.cpu_mw.unwrap(), IDLE_MW * 2.0 / 3.0, 0.01), "{b:?}");
    assert!(close(b.dram_mw.unwrap(), IDLE_MW / 3.0, 0.01), "{b:?}");
    assert_eq!((b.gpu_mw, b.ane_mw), (None, None), "unmeasured is None");
    assert!(b.duration_ms >= 450.0, "{b:?}");

    let store = Store::open_existing(&db).unwrap();
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.baseline, Some(b), "stored as measured");
    let gross = run.total_energy_mj.unwrap();
    let over = run.measured_ms.unwrap();
    let dynamic = run.dynamic_total_energy_mj.unwrap();
    assert!(
        (dynamic - (gross - IDLE_MW * over / 1000.0)).abs() < 1e-6,
        "{dynamic} {gross} {over}"
    );
    // What the work added: WORK_MW for ~400 ms (a window of slack at each edge).
    assert!(close(dynamic, WORK_MW * 0.4, 0.15), "dynamic {dynamic} mJ");
    let summary = store.get_run_summary(report.run_id).unwrap().unwrap();
    let phase = &summary.phases[0];
    let expected = phase.energy_mj.unwrap() - IDLE_MW * phase.duration_ms / 1000.0;
    assert!((phase.dynamic_energy_mj.unwrap() - expected).abs() < 1e-6);
}

#[test]
fn measure_alone_and_a_source_too_slow_for_the_baseline() {
    let busy = Arc::new(AtomicBool::new(false));
    let b = tracing_energy::baseline::measure(
        Box::new(Step { busy }),
        Duration::from_millis(10),
        Duration::from_millis(300),
    )
    .unwrap();
    assert!(close(b.total_mw, IDLE_MW, 0.01), "{b:?}");
    // A capture of 5 s windows delivers none in 0.3 s.
    let slow = tracing_energy::power::ReplaySource::new(local_fixture(
        "m4pro_mac16-8_macos15.5_24F74_gpu_power.plist",
    ));
    let err = tracing_energy::baseline::measure(
        Box::new(slow),
        Duration::from_millis(100),
        Duration::from_millis(300),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no power window") && err.contains("--baseline-s 0"),
        "{err}"
    );
}

/// `profile` on the real model, quiet, with `args`.
fn profile(db: &Path, args: &[&str]) -> std::process::Output {
    let model = default_model();
    cli()
        .args(["profile", "--db", db.to_str().unwrap(), "--requant", "q8_0"])
        .args([
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "3",
            "--quiet",
        ])
        .args(args)
        .env_remove("TRACING_ENERGY_POWERMETRICS")
        .output()
        .unwrap()
}

fn q(db: &Path, sql: &str) -> Option<f64> {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn profile_with_the_estimate_has_no_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let out = profile(&db, &["--power", "estimate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no idle baseline"), "{text}");
    assert!(!text.contains("above idle"), "{text}");
    assert_eq!(q(&db, "SELECT baseline_total_mw FROM profiling_runs"), None);
    assert_eq!(q(&db, "SELECT baseline_ms FROM profiling_runs"), None);
    let summary = cli()
        .args(["summary", "latest", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(text.contains("no idle baseline"), "{text}");
    // Where the estimate's watts come from.
    assert!(
        text.contains("power method: ") && text.contains("W per busy"),
        "{text}"
    );
}

#[test]
fn profile_with_a_replayed_capture_stores_a_baseline_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let capture = local_fixture("m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_b.plist");
    let power = format!("replay:{}", capture.display());
    let out = profile(&db, &["--power", &power]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("idle baseline     "), "{text}");
    assert!(text.contains("above idle"), "{text}");
    println!("{text}");
    let total = q(&db, "SELECT baseline_total_mw FROM profiling_runs").unwrap();
    assert!(total > 0.0);
    // Whole 0.5 s windows that ended within the default 2 s.
    let ms = q(&db, "SELECT baseline_ms FROM profiling_runs").unwrap();
    assert!((1000.0..=2600.0).contains(&ms), "{ms}");
    let out = cli()
        .args([
            "summary",
            "latest",
            "--format",
            "json",
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &s["run"];
    let gross = run["total_energy_mj"].as_f64().unwrap();
    let dynamic = run["dynamic_total_energy_mj"].as_f64().unwrap();
    let over = run["measured_ms"].as_f64().unwrap();
    assert!((dynamic - (gross - total * over / 1000.0)).abs() < 1e-6 * gross.abs().max(1.0));
    assert_eq!(run["baseline"]["total_mw"].as_f64(), Some(total));
    for p in s["phases"].as_array().unwrap() {
        assert!(p["dynamic_energy_mj"].is_f64(), "{p}");
    }
    let text = cli()
        .args(["summary", "latest", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("idle baseline: ") && text.contains("dynamic_mJ"),
        "{text}"
    );
    println!("{text}");
    // The report's key figures give both: the run total, per token and per prompt token.
    let html = dir.path().join("r.html");
    let out = cli()
        .args(["report", "latest", "--db", db.to_str().unwrap(), "-o"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    let kpis = &page[page.find("class=\"kpis\"").unwrap()..];
    let kpis = &kpis[..kpis.find("</div>\n</div>").map_or(kpis.len(), |i| i)];
    assert!(
        kpis.matches("mJ above idle").count() >= 3,
        "total, per token and per prompt token: {kpis}"
    );
    // Turned off: nothing stored, and the report says so.
    let out = profile(&db, &["--power", &power, "--baseline-s", "0"]);
    assert!(out.status.success());
    let out = cli()
        .args(["report", "latest", "--db", db.to_str().unwrap(), "-o"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("; no idle baseline"),
        "the key figures say so"
    );
    assert_eq!(
        q(
            &db,
            "SELECT baseline_total_mw FROM profiling_runs ORDER BY run_id DESC LIMIT 1"
        ),
        None
    );
}

#[test]
fn a_source_with_no_window_in_the_baseline_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let capture = local_fixture("m4pro_mac16-8_macos15.5_24F74_gpu_power.plist");
    let power = format!("replay:{}", capture.display());
    let out = profile(&db, &["--power", &power, "--baseline-s", "0.5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("delivered no power window") && err.contains("--baseline-s 0"),
        "{err}"
    );
}
