//! `Attribution::Regression` beyond one thread and one run, with the oracle source: two
//! threads sharing the windows, a run rotated every few hundred milliseconds, and a run
//! whose kept records outgrow the memory budget. In each, every row of a run carries one
//! method, the fit (where there is one) is stored, and the rows' exclusive energy plus the
//! unattributed energy equals the measured energy to 1e-9.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::oracle::Oracle;
use rusqlite::Connection;
use tracing::info_span;
use tracing_energy::power::SampleBuffer;
use tracing_energy::{Attribution, EnergyLayerBuilder, RunReport};
use tracing_subscriber::prelude::*;

const IDLE_MW: f64 = 2_000.0;
const KINDS: [(&str, f64); 3] = [
    ("attention", 20_000.0),
    ("mlp", 10_000.0),
    ("norm", 5_000.0),
];

fn busy(us: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::black_box(0);
    }
}

/// Decode-like steps whose mix of kinds varies from step to step; `scale` stretches every
/// busy stretch.
fn steps(from: u64, tokens: u64, scale: u64) {
    let phase = info_span!("generate", phase = "decode");
    let _p = phase.enter();
    for t in from..from + tokens {
        let token = info_span!("step", token = t);
        let _t = token.enter();
        for l in 0..2u64 {
            let layer = info_span!("layer", layer = l);
            let _l = layer.enter();
            for (name, kind, us) in [
                ("norm", "norm", 50 + 40 * ((t * 7 + l) % 5)),
                ("attn", "attention", 100 + 4 * (t % 50)),
                ("mlp", "mlp", 300 - 40 * ((t * 3 + l) % 4)),
            ] {
                let s = info_span!("c", name, component = kind);
                let _s = s.enter();
                busy(us * scale);
            }
        }
        busy((100 + 120 * (t % 3)) * scale);
    }
}

/// Runs `work` under the energy layer (`configure`d, regression) and the oracle; returns
/// the database, its directory and the final report.
fn profiled(
    configure: impl FnOnce(EnergyLayerBuilder) -> EnergyLayerBuilder,
    work: impl FnOnce(),
) -> (tempfile::TempDir, std::path::PathBuf, RunReport) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("modes.db");
    let oracle = Oracle::new(IDLE_MW, &KINDS);
    let builder = tracing_energy::EnergyLayer::builder()
        .db(&db)
        .buffer(Arc::new(SampleBuffer::new()))
        .custom_source(Box::new(oracle.source()))
        .interval(Duration::from_millis(10))
        .model("oracle")
        .attribution(Attribution::Regression);
    let (layer, guard) = configure(builder).build().unwrap();
    let sub = tracing_subscriber::registry()
        .with(layer)
        .with(oracle.layer());
    tracing::subscriber::with_default(sub, work);
    let report = guard.finish().unwrap();
    (dir, db, report)
}

fn q<T: rusqlite::types::FromSql>(c: &Connection, sql: &str, run: i64) -> T {
    c.query_row(sql, [run], |r| r.get(0)).unwrap()
}

const TABLES: [&str; 5] = [
    "pipeline_sections",
    "tokens",
    "layer_metrics",
    "component_metrics",
    "deep_operation_metrics",
];

/// Checks a run's conservation and that its rows carry one method, matching whether a fit
/// is stored. Returns that method.
fn check_run(c: &Connection, run: i64) -> String {
    let total: f64 = q(
        c,
        "SELECT total_energy_mj FROM profiling_runs WHERE run_id = ?1",
        run,
    );
    let unattributed: f64 = q(
        c,
        "SELECT unattributed_energy_mj FROM profiling_runs WHERE run_id = ?1",
        run,
    );
    let mut exclusive = 0.0;
    let mut methods = Vec::new();
    for t in TABLES {
        let sum: Option<f64> = q(
            c,
            &format!("SELECT SUM(exclusive_energy_mj) FROM {t} WHERE run_id = ?1"),
            run,
        );
        exclusive += sum.unwrap_or(0.0);
        let mut st = c
            .prepare(&format!(
                "SELECT DISTINCT energy_method FROM {t} WHERE run_id = ?1 AND energy_method IS NOT NULL"
            ))
            .unwrap();
        for m in st.query_map([run], |r| r.get::<_, String>(0)).unwrap() {
            let m = m.unwrap();
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
    }
    assert!(total > 0.0, "run {run}");
    assert!(
        (exclusive + unattributed - total).abs() <= 1e-9 * total,
        "run {run}: exclusive {exclusive} + unattributed {unattributed} != measured {total}"
    );
    assert_eq!(methods.len(), 1, "run {run}: {methods:?}");
    let fitted: i64 = q(
        c,
        "SELECT COUNT(*) FROM component_power WHERE run_id = ?1",
        run,
    );
    match methods[0].as_str() {
        "regression" => assert_eq!(fitted, 4, "run {run}: background and 3 kinds"),
        "overlap" => assert_eq!(fitted, 0, "run {run}"),
        other => panic!("run {run}: method {other}"),
    }
    methods.pop().unwrap()
}

fn fitted_powers(c: &Connection, run: i64) -> Vec<(String, f64)> {
    let mut st = c
        .prepare("SELECT component, power_mw FROM component_power WHERE run_id = ?1")
        .unwrap();
    let rows = st.query_map([run], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn two_threads_share_the_windows_and_the_fit_holds() {
    let (_dir, db, report) = profiled(
        |b| b,
        || {
            let other = std::thread::spawn(|| steps(1000, 120, 1));
            steps(0, 120, 1);
            other.join().unwrap();
        },
    );
    let c = Connection::open(&db).unwrap();
    let method = check_run(&c, report.run_id);
    eprintln!(
        "two threads: {method}; fit {:?}; warnings {:?}",
        fitted_powers(&c, report.run_id),
        report.warnings
    );
    if method == "regression" {
        // Summed over threads, each kind's time still tells its power.
        for (kind, truth) in KINDS {
            let got = fitted_powers(&c, report.run_id)
                .into_iter()
                .find(|(k, _)| k == kind)
                .unwrap()
                .1;
            assert!(
                (got - truth).abs() < 0.15 * truth,
                "{kind}: fitted {got:.0} mW, truth {truth:.0}"
            );
        }
    } else {
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with("regression attribution refused")),
            "{:?}",
            report.warnings
        );
    }
}

#[test]
fn rotated_runs_are_each_fitted_on_their_own() {
    let (_dir, db, report) = profiled(
        |b| b.rotate_every(Duration::from_millis(150)),
        || steps(0, 300, 1),
    );
    let c = Connection::open(&db).unwrap();
    let runs: Vec<i64> = {
        let mut st = c
            .prepare("SELECT run_id FROM profiling_runs ORDER BY run_id")
            .unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert!(runs.len() >= 2, "{runs:?}");
    assert_eq!(*runs.last().unwrap(), report.run_id);
    let tokens: i64 = c
        .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tokens, 300, "every token in one of the runs");
    let mut fitted = 0;
    for run in runs {
        let method = check_run(&c, run);
        let warnings: Option<String> = q(
            &c,
            "SELECT warnings FROM profiling_runs WHERE run_id = ?1",
            run,
        );
        eprintln!(
            "run {run}: {method} {:?} {warnings:?}",
            fitted_powers(&c, run)
        );
        fitted += usize::from(method == "regression");
    }
    assert!(fitted >= 1, "no rotated run was fitted");
}

#[test]
fn a_run_that_outgrows_the_memory_budget_falls_back_and_says_so() {
    // 1 MiB: the processor gets half, the kept records half of that (about 4,000).
    let (_dir, db, report) = profiled(|b| b.memory_budget(1 << 20), || steps(0, 800, 0));
    let c = Connection::open(&db).unwrap();
    assert_eq!(check_run(&c, report.run_id), "overlap");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("outgrew half the memory budget")),
        "{:?}",
        report.warnings
    );
    let tokens: i64 = c
        .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tokens, 800);
}
