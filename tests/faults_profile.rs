//! The fault table, run-time rows: the real `tracing-energy profile` on the real model, with
//! bad settings, signals and broken power sources (the fake powermetrics, a real
//! subprocess). Row numbers are those of the fault table (see `tests/faults_cli.rs` for the
//! database and command-line rows).
#![cfg(feature = "candle")]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use common::model::default_model;
use common::{cli, fake_with_env, local_fixture, shared_fixture, M1PRO_29};

fn model() -> PathBuf {
    default_model()
}

/// `tracing-energy profile` on `db`, fast settings, quiet.
fn profile_cmd(db: &Path, args: &[&str]) -> Command {
    let model = model();
    let mut c = cli();
    c.args(["profile", "--db", db.to_str().unwrap(), "--requant", "q8_0"])
        .args(["--model", model.to_str().unwrap()])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("TRACING_ENERGY_POWERMETRICS");
    c
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "rc {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn read_only(db: &Path) -> Connection {
    Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn count(db: &Path, sql: &str) -> i64 {
    read_only(db).query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

fn warnings(summary: &Value) -> String {
    summary["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A fake powermetrics in `dir` behaving as `mode`, streaming `capture`.
fn fake(dir: &Path, mode: &str, capture: &Path) -> PathBuf {
    fake_with_env(
        dir,
        &[
            ("FAKE_POWERMETRICS_MODE", mode),
            ("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap()),
        ],
    )
}

/// Row 2: a huge interval no longer holds the end of the run for the whole interval; the
/// tail is recorded as unmeasured. (Before: 3 intervals + 1 s, 61 s here.)
#[test]
fn row02_long_interval_ends_in_bounded_time_with_tail_unmeasured() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    model();
    let started = Instant::now();
    let out = profile_cmd(
        &db,
        &[
            "--power",
            "estimate",
            "--interval-ms",
            "20000",
            "--max-tokens",
            "2",
            "--json",
        ],
    )
    .output()
    .unwrap();
    let took = started.elapsed();
    let s = json_of(&out);
    assert!(took < Duration::from_secs(40), "the profile took {took:?}");
    let (measured, duration) = (
        s["measured_ms"].as_f64().unwrap(),
        s["duration_ms"].as_f64().unwrap(),
    );
    assert!(measured < duration, "{measured} of {duration} ms");
    assert!(warnings(&s).contains("no sample"), "{s}");
    // Absurd intervals are refused as usage errors, like `sample`'s.
    for bad in ["999999999", "0"] {
        let out = profile_cmd(&db, &["--interval-ms", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "--interval-ms {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("interval-ms"));
    }
}

/// Starts a long generation, waits until `min_tokens` token rows are on disk.
fn start_long_profile(db: &Path, min_tokens: i64) -> Child {
    let mut child = profile_cmd(
        db,
        &[
            "--power",
            "estimate",
            "--max-tokens",
            "400",
            "--quiet",
            "--prompt",
            "Write a long story about a dragon who learns to count, with many chapters.",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if db.exists() && count(db, "SELECT COUNT(*) FROM tokens") >= min_tokens {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the profile ended before {min_tokens} tokens were stored: {status}: {err}");
        }
        assert!(Instant::now() < deadline, "no token rows after 180 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Row 3, Ctrl-C and SIGTERM: the run ends `interrupted`, with every token generated so far
/// stored and attributed (before: 0 tokens, sections or layers stored), and the exit code
/// says which signal.
#[test]
fn row03_sigint_and_sigterm_finish_the_run_as_interrupted() {
    model();
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let child = start_long_profile(&db, 2);
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "signal {sig}: {stdout}");
        assert!(stdout.contains("INTERRUPTED"), "{stdout}");
        let c = read_only(&db);
        let (status, error, total): (String, Option<String>, Option<f64>) = c
            .query_row(
                "SELECT status, error, total_energy_mj FROM profiling_runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(status, "interrupted");
        assert!(error.unwrap().contains("signal"));
        assert!(total.unwrap() > 0.0);
        let tokens = count(&db, "SELECT COUNT(*) FROM tokens");
        assert!((2..400).contains(&tokens), "{tokens} tokens");
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM layer_metrics"),
            tokens * 30,
            "every stored token has its 30 layers"
        );
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM tokens WHERE energy_mj IS NULL AND token_index > 0"
            ),
            0,
            "the tokens were attributed"
        );
    }
}

/// Row 3, SIGKILL: nothing can run at the kill, so the rows of finished tokens must already
/// be on disk, each token with all its layer rows (a token and the rows under it are
/// committed together); the run reads `incomplete`. Killed at three different moments.
#[test]
fn row03_after_sigkill_finished_tokens_are_already_on_disk() {
    model();
    for min_tokens in [2, 3, 5] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let mut child = start_long_profile(&db, min_tokens);
        let before = count(&db, "SELECT COUNT(*) FROM tokens");
        child.kill().unwrap();
        child.wait().unwrap();
        let after = count(&db, "SELECT COUNT(*) FROM tokens");
        assert!(
            after >= before && after >= min_tokens,
            "{before} then {after}"
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM layer_metrics"),
            after * 30,
            "killed after {min_tokens} tokens: every token row has its 30 layer rows"
        );
        let c = read_only(&db);
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let out = cli()
            .args(["show", "1", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("incomplete"));
    }
}

/// Row 5: a powermetrics that hangs, exits 0 without output, or prints text that is not
/// plist: the run records that the source delivered nothing (before: `complete`, energy
/// unknown, no warning).
#[test]
fn row05_silent_or_hung_or_garbage_source_is_recorded_as_such() {
    let capture = local_fixture("m4pro_mac16-8_macos15.5_24F74_battery_3samples.plist");
    for mode in ["hang", "silent", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let fake = fake(dir.path(), mode, &capture);
        let out = profile_cmd(
            &db,
            // No idle baseline: the run itself must meet the fault.
            &[
                "--power",
                "powermetrics",
                "--max-tokens",
                "3",
                "--json",
                "--baseline-s",
                "0",
            ],
        )
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .output()
        .unwrap();
        let s = json_of(&out);
        assert_eq!(s["measured_ms"].as_f64(), Some(0.0), "{mode}: {s}");
        assert!(s["total_energy_mj"].is_null(), "{mode}");
        let w = warnings(&s);
        assert!(w.contains("no sample"), "{mode}: {w}");
        if mode == "silent" {
            assert!(w.contains("exited with status 0 after 0 samples"), "{w}");
        }
        let stored: String = read_only(&db)
            .query_row("SELECT warnings FROM profiling_runs", [], |r| r.get(0))
            .unwrap();
        assert!(stored.contains("no sample"), "{stored}");
        let summary = cli()
            .args(["summary", "1", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&summary.stdout);
        assert!(text.contains("energy measured for 0.0 s"), "{mode}: {text}");
    }
}

/// Row 6: a powermetrics that answers "must be invoked as the superuser": `doctor` runs it
/// and says it is broken, and `auto` falls back to the estimate, saying why (before:
/// "available", and `auto` recorded no energy).
#[test]
fn row06_auto_and_doctor_run_the_source_before_trusting_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let fake = fake(dir.path(), "superuser", &local_fixture(""));
    let doctor = cli()
        .arg("doctor")
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success());
    assert!(text.contains("powermetrics   broken"), "{text}");
    assert!(text.contains("superuser"), "{text}");
    assert!(text.contains("auto picks: estimate"), "{text}");
    let out = profile_cmd(&db, &["--power", "auto", "--max-tokens", "2", "--json"])
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .output()
        .unwrap();
    let s = json_of(&out);
    assert_eq!(s["power_source"], "estimate");
    assert_eq!(s["estimated"], true);
    assert!(s["total_energy_mj"].as_f64().unwrap() > 0.0);
    assert!(warnings(&s).contains("superuser"), "{s}");
}

/// Row 8: `--max-tokens 0` is a usage error (before: a summary claiming a prefill at
/// 16,000,000,000 tokens/s).
#[test]
fn row08_max_tokens_zero_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = profile_cmd(&dir.path().join("p.db"), &["--max-tokens", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 1"), "{err}");
    assert!(!dir.path().join("p.db").exists(), "nothing was recorded");
}

/// Row 13: with `RUST_BACKTRACE=1`, a file that is not GGUF gives a one-line error, on the
/// terminal and in the run's stored error (before: a 912-character candle backtrace).
#[test]
fn row13_no_backtrace_for_a_user_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let bad = dir.path().join("notes.gguf");
    std::fs::write(&bad, "these are notes, not a model\n".repeat(100)).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/profile");
    let mut commands = vec![cli()];
    commands[0].arg("profile");
    if example.exists() {
        commands.push(Command::new(example));
    }
    for mut c in commands {
        let out = c
            .args(["--db", db.to_str().unwrap(), "--power", "estimate"])
            .args(["--model", bad.to_str().unwrap(), "--quiet"])
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot load model"), "{err}");
        assert!(!err.to_lowercase().contains("backtrace"), "{err}");
        assert!(!err.contains("   0: "), "{err}");
    }
    let c = read_only(&db);
    let mut st = c
        .prepare("SELECT status, error FROM profiling_runs")
        .unwrap();
    let rows: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!rows.is_empty());
    for (status, error) in rows {
        assert_eq!(status, "failed");
        assert!(!error.to_lowercase().contains("backtrace"), "{error}");
        assert!(error.len() < 400, "{} characters: {error}", error.len());
    }
}

/// Row 14: a stream that turns corrupt after 2 windows: the run says how little of it was
/// measured, in the summary and the report, and why (before: `complete`, and shares "of
/// the run" computed from 2 windows as if they covered it all).
#[test]
fn row14_partial_coverage_is_shown_as_such() {
    let Some(capture) = shared_fixture(M1PRO_29) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let fake = fake(dir.path(), "corrupt-after:2", &capture);
    let out = profile_cmd(
        &db,
        // No idle baseline: the first windows go to the run.
        &[
            "--power",
            "powermetrics",
            "--max-tokens",
            "12",
            "--json",
            "--baseline-s",
            "0",
        ],
    )
    .env("TRACING_ENERGY_POWERMETRICS", &fake)
    .output()
    .unwrap();
    let s = json_of(&out);
    let (measured, duration) = (
        s["measured_ms"].as_f64().unwrap(),
        s["duration_ms"].as_f64().unwrap(),
    );
    assert!(
        measured > 0.0 && measured < 0.5 * duration,
        "{measured} of {duration} ms"
    );
    let w = warnings(&s);
    assert!(w.contains("could not be used (malformed)"), "{w}");
    let summary = cli()
        .args(["summary", "1", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(text.contains("energy measured for"), "{text}");
    let html = dir.path().join("r.html");
    let out = cli()
        .args(["report", "1", "--db", db.to_str().unwrap(), "-o"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("energy measured for"), "the report says so");
}
