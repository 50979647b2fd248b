//! powermetrics' own power, end to end: a real subprocess (the fake `powermetrics`
//! streaming real captures with a task list, at their own pace) feeding a profiled run,
//! which stores the sampler process's CPU time and estimated energy with the profiler's own
//! cost and shows them in `summary` (text and JSON) and the HTML report. Without a task
//! list the figure is absent, never 0.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    cli_ok, expected, expected_powermetrics_task, fake_with_env, independent_docs, local_fixture,
    shared_fixture,
};
use tracing::info_span;
use tracing_energy::power::{PowermetricsSource, SampleBuffer};
use tracing_energy::store::{ProfilerCost, SamplerProcessCost, Store};
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

/// The single-document M4 Max capture with a flat task list (MIT, copied).
const M4MAX_TASKS: &str = "m4max_mac16-5_macos26.2_25C56_cpu_gpu_thermal_tasks_disk.plist";

/// A capture of `docs`, NUL-separated as powermetrics writes them, in `dir`.
fn capture_of(dir: &Path, docs: &[Vec<u8>]) -> PathBuf {
    let path = dir.join("capture.plist");
    std::fs::write(&path, docs.join(&b"\0"[..])).unwrap();
    path
}

/// Per document, computed here from its own numbers: (CPU-time share x CPU energy in mJ,
/// powermetrics' CPU ns, the window's elapsed ns).
fn expected_windows(docs: &[Vec<u8>]) -> Vec<(f64, u64, u64)> {
    docs.iter()
        .map(|d| {
            let (own, all) = expected_powermetrics_task(d).expect("a powermetrics task");
            let e = expected(d).unwrap();
            (
                e.cpu_mj.unwrap() * own as f64 / all as f64,
                own,
                e.elapsed_ns,
            )
        })
        .collect()
}

struct Profiled {
    db: PathBuf,
    cost: ProfilerCost,
    argv: String,
}

/// Profiles spans while the fake streams `docs` (all of them, then the run ends).
fn profile_while_streaming(dir: &Path, docs: &[Vec<u8>], tasks: bool) -> Profiled {
    let capture = capture_of(dir, docs);
    let argv_out = dir.join("argv");
    let fake = fake_with_env(
        dir,
        &[
            ("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap()),
            ("FAKE_POWERMETRICS_ARGV_OUT", argv_out.to_str().unwrap()),
        ],
    );
    let db = dir.join("p.db");
    let buffer = Arc::new(SampleBuffer::new());
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .buffer(Arc::clone(&buffer))
        .custom_source(Box::new(
            PowermetricsSource::with_program(&fake).tasks(tasks),
        ))
        .interval(Duration::from_millis(125))
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        // Until every window is in (a bound against a hang, not a timing assertion).
        let give_up = Instant::now() + Duration::from_secs(120);
        while buffer.overlapping(0, u64::MAX / 2).len() < docs.len() {
            assert!(Instant::now() < give_up, "the capture did not arrive");
            let _s = info_span!("work", phase = "compute").entered();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let report = guard.finish().unwrap();
    let cost = report.profiler.expect("the profiler's cost is measured");
    let stored = Store::open_existing(&db)
        .unwrap()
        .get_run(report.run_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.profiler, Some(cost), "stored as reported");
    let argv = std::fs::read_to_string(argv_out).unwrap();
    Profiled { db, cost, argv }
}

/// Checks the stored figure against the documents' own numbers: the windows that arrived
/// after the run's start (all of them, or all but the first when it came before the run's
/// start was marked), summed.
fn check_figure(p: &SamplerProcessCost, docs: &[Vec<u8>]) {
    let want = expected_windows(docs);
    assert_eq!(p.windows_unknown, 0, "{p:?}");
    let n = p.windows as usize;
    assert!(
        n == want.len() || n + 1 == want.len(),
        "{n} windows of {}",
        want.len()
    );
    let counted = &want[want.len() - n..];
    let energy: f64 = counted.iter().map(|w| w.0).sum();
    let cpu_ns: u64 = counted.iter().map(|w| w.1).sum();
    let elapsed_ms = counted.iter().map(|w| w.2).sum::<u64>() as f64 / 1e6;
    let got = p.energy_mj.unwrap();
    assert!(
        (got - energy).abs() < 1e-6 * energy,
        "{got} mJ, want {energy}"
    );
    assert_eq!(p.cpu_ms, Some(cpu_ns as f64 / 1e6));
    // Windows are placed back to back by elapsed_ns, shortened only when one arrives early.
    let window_ms = p.window_ms.unwrap();
    assert!(
        window_ms <= elapsed_ms * 1.0001 && window_ms >= elapsed_ms * 0.5,
        "{window_ms} ms of windows, {elapsed_ms} ms elapsed"
    );
    let share = p.share_of_cpu_energy().unwrap();
    assert!(share > 0.0 && share < 1.0, "{share}");
}

/// What `summary` (text, JSON) and the report show for the latest run.
fn shown(db: &Path) -> (String, serde_json::Value, String) {
    let text = cli_ok(db, &["summary", "latest"]);
    let json =
        serde_json::from_str(&cli_ok(db, &["summary", "latest", "--format", "json"])).unwrap();
    let html_path = db.with_extension("html");
    cli_ok(db, &["report", "latest", "-o", html_path.to_str().unwrap()]);
    (text, json, std::fs::read_to_string(html_path).unwrap())
}

fn check_shown(db: &Path, p: &SamplerProcessCost) {
    let (text, json, html) = shown(db);
    let line = text
        .lines()
        .find(|l| l.starts_with("powermetrics itself: "))
        .unwrap_or_else(|| panic!("no powermetrics line in:\n{text}"));
    eprintln!("{line}");
    let mw = p.mean_mw().unwrap();
    assert!(
        line.contains(&format!("{mw:.0} mW"))
            && line.contains("(its CPU-time share of measured CPU power: "),
        "{line}"
    );
    // Next to the profiler's line.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == line).unwrap();
    assert!(lines[at - 1].starts_with("profiler: "), "{text}");
    let stored = &json["run"]["profiler"]["sampler_process"];
    assert_eq!(stored["energy_mj"].as_f64(), p.energy_mj, "{stored}");
    assert_eq!(stored["windows"].as_u64(), Some(p.windows), "{stored}");
    assert!(
        html.contains(&format!(
            "<th scope=\"row\">powermetrics itself</th><td>{}",
            p.describe()
        )),
        "the report has no powermetrics row"
    );
}

#[test]
fn a_run_stores_powermetrics_own_power_and_shows_it() {
    // The M4 Max document (1 s window, flat task list), three times: always present.
    let one = independent_docs(&std::fs::read(local_fixture(M4MAX_TASKS)).unwrap()).remove(0);
    let docs = vec![one.clone(), one.clone(), one];
    let dir = tempfile::tempdir().unwrap();
    let run = profile_while_streaming(dir.path(), &docs, true);
    assert!(
        run.argv.contains("cpu_power,gpu_power,tasks"),
        "asked for the tasks sampler: {}",
        run.argv
    );
    let p = run.cost.sampler_process.expect("measured with a task list");
    check_figure(&p, &docs);
    check_shown(&run.db, &p);
}

#[test]
fn the_29_window_m1_pro_capture_with_coalitions() {
    let Some(capture) = shared_fixture(common::M1PRO_29) else {
        return;
    };
    let docs = independent_docs(&std::fs::read(capture).unwrap());
    assert_eq!(docs.len(), 29);
    let dir = tempfile::tempdir().unwrap();
    let run = profile_while_streaming(dir.path(), &docs, true);
    let p = run.cost.sampler_process.expect("measured with a task list");
    check_figure(&p, &docs);
    // ~287 mW over the whole capture, by an independent reading of its 29 documents.
    let mw = p.mean_mw().unwrap();
    assert!(mw > 200.0 && mw < 400.0, "{mw} mW");
    check_shown(&run.db, &p);
}

/// A rotation ends one run and starts the next at the same mark: each run stores the
/// windows that arrived in it, and together they are the whole stream's.
#[test]
fn rotated_runs_share_the_windows() {
    let one = independent_docs(&std::fs::read(local_fixture(M4MAX_TASKS)).unwrap()).remove(0);
    let docs = vec![one; 4];
    let dir = tempfile::tempdir().unwrap();
    let capture = capture_of(dir.path(), &docs);
    let fake = fake_with_env(
        dir.path(),
        &[("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap())],
    );
    let buffer = Arc::new(SampleBuffer::new());
    let (layer, mut guard) = EnergyLayer::builder()
        .db(dir.path().join("p.db"))
        .buffer(Arc::clone(&buffer))
        .custom_source(Box::new(
            PowermetricsSource::with_program(&fake).tasks(true),
        ))
        .interval(Duration::from_millis(125))
        .build()
        .unwrap();
    let arrived = || buffer.overlapping(0, u64::MAX / 2).len();
    let wait_for = |n: usize| {
        let give_up = Instant::now() + Duration::from_secs(120);
        while arrived() < n {
            assert!(Instant::now() < give_up, "the capture did not arrive");
            let _s = info_span!("work", phase = "compute").entered();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let sub = tracing_subscriber::registry().with(layer);
    let (first, second) = tracing::subscriber::with_default(sub, || {
        wait_for(2);
        let first = guard.rotate(tracing_energy::store::NewRun::new()).unwrap();
        wait_for(docs.len());
        (first, guard.finish().unwrap())
    });
    let a = first.profiler.unwrap().sampler_process.expect("first run");
    let b = second
        .profiler
        .unwrap()
        .sampler_process
        .expect("second run");
    assert!(a.windows >= 1 && b.windows >= 1, "{a:?} {b:?}");
    let n = a.windows + b.windows;
    assert!(n == 4 || n == 3, "{a:?} {b:?}");
    let (energy, cpu_ns, _) = expected_windows(&docs[..1])[0];
    for p in [&a, &b] {
        let want = energy * p.windows as f64;
        let got = p.energy_mj.unwrap();
        assert!((got - want).abs() < 1e-6 * want, "{got} mJ, want {want}");
        assert_eq!(p.cpu_ms, Some((cpu_ns * p.windows) as f64 / 1e6));
    }
}

#[test]
fn without_a_task_list_the_figure_is_absent() {
    let one = independent_docs(
        &std::fs::read(local_fixture(
            "m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_b.plist",
        ))
        .unwrap(),
    )
    .remove(0);
    let docs = vec![one.clone(), one];
    let dir = tempfile::tempdir().unwrap();
    let run = profile_while_streaming(dir.path(), &docs, false);
    assert!(run.argv.contains("\ncpu_power,gpu_power\n"), "{}", run.argv);
    assert_eq!(run.cost.sampler_process, None, "absent, not 0");
    assert!(run.cost.sampler_cpu_ms.is_some(), "the rest is measured");
    let (text, json, html) = shown(&run.db);
    assert!(!text.contains("powermetrics itself"), "{text}");
    assert!(json["run"]["profiler"]["sampler_process"].is_null());
    assert!(!html.contains("powermetrics itself"));
}

#[cfg(feature = "candle")]
#[test]
fn the_flag_goes_with_powermetrics_only() {
    for power in ["estimate", "none", "auto"] {
        let out = common::cli()
            .args(["profile", "--power", power, "--powermetrics-tasks"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--power {power}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("use --power powermetrics"), "{err}");
    }
}

/// `tracing-energy profile --power powermetrics --powermetrics-tasks` on the real model:
/// the flag reaches powermetrics, `profile` prints the figure under its profiler line, and
/// the run stores it.
#[cfg(feature = "candle")]
#[test]
fn profile_with_the_flag_prints_and_stores_it() {
    let one = independent_docs(&std::fs::read(local_fixture(M4MAX_TASKS)).unwrap()).remove(0);
    let docs = vec![one; 30];
    let dir = tempfile::tempdir().unwrap();
    let capture = capture_of(dir.path(), &docs);
    let argv_out = dir.path().join("argv");
    let fake = fake_with_env(
        dir.path(),
        &[
            ("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap()),
            ("FAKE_POWERMETRICS_ARGV_OUT", argv_out.to_str().unwrap()),
        ],
    );
    let db = dir.path().join("p.db");
    let model = common::model::default_model();
    let out = common::cli()
        .args(["profile", "--db", db.to_str().unwrap(), "--requant", "q8_0"])
        .args(["--model", model.to_str().unwrap()])
        .args(["--power", "powermetrics", "--powermetrics-tasks"])
        .args(["--baseline-s", "0", "--max-tokens", "8", "--quiet"])
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let argv = std::fs::read_to_string(argv_out).unwrap();
    assert!(argv.contains("\ncpu_power,gpu_power,tasks\n"), "{argv}");
    let json: serde_json::Value =
        serde_json::from_str(&cli_ok(&db, &["summary", "latest", "--format", "json"])).unwrap();
    let p: SamplerProcessCost =
        serde_json::from_value(json["run"]["profiler"]["sampler_process"].clone())
            .unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(p.windows >= 1 && p.windows_unknown == 0, "{p:?}");
    // Every window is the same document: its figure times the windows.
    let (energy, cpu_ns, _) = expected_windows(&docs[..1])[0];
    let got = p.energy_mj.unwrap();
    let want = energy * p.windows as f64;
    assert!((got - want).abs() < 1e-6 * want, "{got} mJ, want {want}");
    assert_eq!(p.cpu_ms, Some((cpu_ns * p.windows) as f64 / 1e6));
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  powermetrics itself: "))
        .unwrap_or_else(|| panic!("no powermetrics line in:\n{stdout}"));
    assert!(lines[at - 1].starts_with("profiler "), "{stdout}");
    assert!(lines[at].ends_with(&p.describe()), "{stdout}");
}
