//! The rows of a user's fault table, each on the real `tracing-energy` binary and real
//! SQLite files in temporary folders (databases written with the store API: no model).
//!
//! Every bad input must get a clear error that names the problem and the fix, the
//! documented exit code (0 success, 1 error, 2 bad usage, 3 not found), and lose no data
//! already recorded.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::records::{assert_code, make_db, record, run_ids, stderr};
use common::{cli, cli_ok, cli_on};
use tracing_energy::store::{NewRun, Store};

// ---------------------------------------------------------------------------------------
// Row 1: report/export -o onto the database itself.

#[test]
fn report_and_export_refuse_to_overwrite_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_db(&d.join("same.db"), 2, 3);
    make_db(&d.join("profiles.db"), 2, 3);
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(d.join("same.db"), d.join("link.html")).unwrap();
    std::os::unix::fs::symlink("same.db", d.join("rel-link.json")).unwrap();
    std::fs::hard_link(d.join("same.db"), d.join("hard.html")).unwrap();
    let same = std::fs::read(d.join("same.db")).unwrap();
    let default = std::fs::read(d.join("profiles.db")).unwrap();

    let in_dir = |args: &[&str]| -> Output { cli().current_dir(d).args(args).output().unwrap() };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["report", "1", "-o", "same.db", "--db", "same.db"],
            "same.db",
        ),
        (
            vec![
                "export", "1", "--format", "json", "-o", "same.db", "--db", "same.db",
            ],
            "same.db",
        ),
        (
            vec![
                "export",
                "1",
                "--format",
                "csv",
                "--output",
                "./same.db",
                "--db",
                "same.db",
            ],
            "same.db",
        ),
        (
            vec!["report", "1", "-o", "link.html", "--db", "same.db"],
            "same.db",
        ),
        (
            vec![
                "export",
                "1",
                "--format",
                "chrome",
                "-o",
                "rel-link.json",
                "--db",
                "same.db",
            ],
            "same.db",
        ),
        (
            vec!["report", "1", "-o", "hard.html", "--db", "same.db"],
            "same.db",
        ),
        (
            vec!["report", "1", "-o", "sub/../same.db", "--db", "same.db"],
            "same.db",
        ),
        (
            vec![
                "export",
                "1",
                "--format",
                "folded",
                "-o",
                "same.db",
                "--db",
                "sub/../same.db",
            ],
            "same.db",
        ),
        (vec!["report", "1", "-o", "profiles.db"], "profiles.db"),
        (
            vec!["report", "1", "-o", "same.db-wal", "--db", "same.db"],
            "same.db",
        ),
        (
            vec![
                "export",
                "1",
                "--format",
                "json",
                "-o",
                "same.db-shm",
                "--db",
                "same.db",
            ],
            "same.db",
        ),
        (
            vec!["report", "1", "-o", "profiles.db-journal"],
            "profiles.db",
        ),
    ];
    for (args, db) in &cases {
        let out = in_dir(args);
        let err = assert_code(&out, 2, &format!("{args:?}"));
        assert!(
            err.contains("refusing to write")
                && err.contains("it is the database")
                && err.contains("Fix:"),
            "{args:?}: {err}"
        );
        assert!(err.contains(db), "{args:?} names the database: {err}");
    }
    for name in ["same.db-wal", "same.db-shm", "profiles.db-journal"] {
        assert!(!d.join(name).exists(), "{name} was written");
    }
    assert_eq!(
        std::fs::read(d.join("same.db")).unwrap(),
        same,
        "same.db changed"
    );
    assert_eq!(std::fs::read(d.join("profiles.db")).unwrap(), default);
    assert_eq!(run_ids(&d.join("same.db")), vec![2, 1]);
    assert_eq!(run_ids(&d.join("profiles.db")), vec![2, 1]);
    // Another file is written as before.
    let out = in_dir(&["report", "1", "-o", "sub/run-1.html", "--db", "same.db"]);
    assert_code(&out, 0, "report to another file");
    assert!(std::fs::read_to_string(d.join("sub/run-1.html"))
        .unwrap()
        .contains("<html"));
}

// ---------------------------------------------------------------------------------------
// Row 4: exports read one consistent snapshot.

#[test]
fn a_read_snapshot_keeps_seeing_a_run_deleted_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    make_db(&path, 1, 3);
    let reader = Store::open_existing(&path).unwrap();
    let deleter = Store::open_existing(&path).unwrap();
    let (power, tokens, layers, run) = reader
        .read_snapshot(|s| -> tracing_energy::Result<_> {
            let power = s.get_power_timeline(1)?;
            assert!(deleter.delete_run(1)?, "the run was there to delete");
            assert!(deleter.get_run(1)?.is_none(), "deleted for everyone else");
            Ok((power, s.get_tokens(1)?, s.get_run_layers(1)?, s.get_run(1)?))
        })
        .unwrap();
    assert_eq!(power.len(), 12);
    assert_eq!(tokens.len(), 3, "the snapshot still holds the tokens");
    assert_eq!(layers.len(), 12);
    assert!(run.is_some());
    // After the snapshot, the reader sees the deletion.
    assert!(reader.get_run(1).unwrap().is_none());
    assert!(reader.get_tokens(1).unwrap().is_empty());
    // An error inside ends the snapshot too: the next one sees new data.
    let e = reader.read_snapshot(|_| -> tracing_energy::Result<()> {
        Err(tracing_energy::Error::WriterFailed("x".into()))
    });
    assert!(e.is_err());
    let id = record(&deleter, "", 1);
    assert!(reader.read_snapshot(|s| s.get_run(id)).unwrap().is_some());
}

#[test]
fn exporting_a_deleted_run_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    make_db(&db, 2, 2);
    cli_ok(&db, &["delete", "1"]);
    for format in ["json", "csv", "chrome", "folded"] {
        let out = cli_on(&db, &["export", "1", "--format", format]);
        let err = assert_code(&out, 3, format);
        assert!(err.contains("no run 1"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = cli_on(
        &db,
        &[
            "report",
            "1",
            "-o",
            dir.path().join("r.html").to_str().unwrap(),
        ],
    );
    assert_code(&out, 3, "report");
    assert!(!dir.path().join("r.html").exists());
    let full: serde_json::Value =
        serde_json::from_str(&cli_ok(&db, &["export", "2", "--format", "json"])).unwrap();
    assert_eq!(full["power"].as_array().unwrap().len(), 8);
    assert_eq!(full["tokens"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Row 7: control characters in user text are shown escaped, never sent raw.

#[test]
fn terminal_escapes_in_user_text_are_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let evil = "\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{202e}rev\u{2066}\x7f\tz\nline";
    {
        let store = Store::open(&db).unwrap();
        record(&store, evil, 2);
        record(&store, "plain", 2);
        store.close().unwrap();
    }
    for args in [
        vec!["runs"],
        vec!["show", "1"],
        vec!["search", "pwned"],
        vec!["summary", "1"],
        vec!["tokens", "1"],
        vec!["layers", "1"],
        vec!["hot", "1"],
        vec!["spans", "1"],
        vec!["compare", "1", "2"],
        vec!["runs", "--experiment", evil],
        vec!["search", evil],
    ] {
        let out = cli_on(&db, &args);
        assert_code(&out, 0, &format!("{args:?}"));
        for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            for bad in ['\x1b', '\x07', '\x7f', '\u{9b}', '\u{202e}', '\u{2066}'] {
                assert!(
                    !text.contains(bad),
                    "{args:?}: {name} holds {bad:?}: {text:?}"
                );
            }
        }
    }
    let shown = cli_ok(&db, &["show", "1"]);
    assert!(shown.contains(r"\x1b]0;pwned\x07\x1b[2J"), "{shown}");
    assert!(shown.contains(r"\u{202e}rev"), "{shown}");
    assert!(shown.contains(r"\tz\nline"), "{shown}");
    // One line per run: a newline in a prompt does not break the table.
    assert_eq!(cli_ok(&db, &["runs"]).lines().count(), 3);
    assert!(cli_ok(&db, &["runs"]).contains(r"\x1b"));
    assert!(cli_ok(&db, &["search", "pwned"]).contains(r"\x1b"));
    // JSON keeps the exact text (escaped by JSON itself).
    let v: serde_json::Value =
        serde_json::from_str(&cli_ok(&db, &["show", "1", "--format", "json"])).unwrap();
    assert_eq!(v["prompt"], format!("prompt {evil}"));
}

// ---------------------------------------------------------------------------------------
// Row 11: deleting a run that is being recorded.

#[test]
fn delete_refuses_a_run_being_recorded_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    make_db(&db, 1, 1);
    // This process records run 2, and is alive: the run stays `running`.
    let store = Store::open(&db).unwrap();
    let live = store.create_run(&NewRun::new()).unwrap();
    store.flush().unwrap();
    assert_eq!(live, 2);
    let out = cli_on(&db, &["delete", "2"]);
    let err = assert_code(&out, 1, "delete of a running run");
    let pid = std::process::id().to_string();
    assert!(
        err.contains("run 2 is being recorded")
            && err.contains(&pid)
            && err.contains("Fix:")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(run_ids(&db), vec![2, 1]);
    let out = cli_on(&db, &["delete", "latest", "--force"]);
    assert_code(&out, 0, "delete --force");
    assert_eq!(run_ids(&db), vec![1]);
    // A finished run is deleted without --force.
    cli_ok(&db, &["delete", "1"]);
    assert!(run_ids(&db).is_empty());
    drop(store);
}

// ---------------------------------------------------------------------------------------
// Row 12: bad values are bad usage (exit 2), and a silent source does not hang `sample`.

#[test]
fn bad_run_ids_and_sample_settings_are_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    make_db(&db, 2, 1);
    for bad in [
        "abc",
        "1.5",
        "9223372036854775808",
        "0",
        "-1",
        "",
        " 1",
        "latest1",
    ] {
        for cmd in [
            vec!["show", bad],
            vec!["summary", bad],
            vec!["tokens", bad],
            vec!["layers", bad],
            vec!["hot", bad],
            vec!["spans", bad],
            vec!["delete", bad],
            vec!["compare", "1", bad],
            vec!["compare", bad, "1"],
            vec!["report", bad, "-o", "/dev/null"],
            vec!["export", bad, "--format", "json"],
        ] {
            let out = cli_on(&db, &cmd);
            let err = assert_code(&out, 2, &format!("{cmd:?}"));
            if !bad.starts_with('-') {
                assert!(
                    err.contains("latest") && err.contains("run id"),
                    "{cmd:?}: {err}"
                );
            }
        }
    }
    assert_eq!(run_ids(&db), vec![2, 1]);
    for latest in ["latest", "LATEST", "Latest"] {
        let v: serde_json::Value =
            serde_json::from_str(&cli_ok(&db, &["show", latest, "--format", "json"])).unwrap();
        assert_eq!(v["run_id"], 2);
    }
    for (args, needle) in [
        (vec!["sample", "--count", "0"], "--count"),
        (vec!["sample", "--count", "-3"], "'-3'"),
        (vec!["sample", "--interval-ms", "0"], "600000"),
        (vec!["sample", "--interval-ms", "600001"], "600000"),
        (vec!["sample", "--interval-ms", "x"], "600000"),
    ] {
        let out = cli().args(&args).output().unwrap();
        let err = assert_code(&out, 2, &format!("{args:?}"));
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Waits at most `limit` for the child; kills it and fails the test after that.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), t0.elapsed());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sample_stops_when_the_source_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let fake = common::fake_with_env(
        dir.path(),
        &[
            ("FAKE_POWERMETRICS_MODE", "hang"),
            ("FAKE_POWERMETRICS_PID_OUT", pid_file.to_str().unwrap()),
        ],
    );
    let child = cli()
        .args([
            "sample",
            "--source",
            "powermetrics",
            "--interval-ms",
            "100",
            "--count",
            "3",
        ])
        .env("TRACING_ENERGY_POWERMETRICS", &fake)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, took) = wait_at_most(child, Duration::from_secs(40));
    let err = assert_code(&out, 1, "a hung source");
    assert!(
        err.contains("power source `powermetrics` delivered no sample in 5 s")
            && err.contains("hung")
            && err.contains("Fix:")
            && err.contains("tracing-energy doctor"),
        "{err}"
    );
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The hung process was stopped.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the fake powermetrics (pid {pid}) is still running");
}

// ---------------------------------------------------------------------------------------
// Row 13: no stack backtraces on user errors, whatever RUST_BACKTRACE says.

fn assert_no_backtrace(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what} should fail");
    assert!(err.starts_with("error: "), "{what}: {err}");
    assert!(
        !err.contains("stack backtrace")
            && !err.contains("Stack backtrace")
            && !err
                .lines()
                .any(|l| l.starts_with("   0: ") || l.trim_start().starts_with("at /")),
        "{what}: {err}"
    );
}

#[test]
fn user_errors_print_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    make_db(&db, 1, 1);
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let bad_model = dir.path().join("bad.gguf");
    std::fs::write(&bad_model, [7u8; 4096]).unwrap();
    let missing = dir.path().join("missing.db");
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["runs".into(), "--db".into(), missing.display().to_string()],
            "missing database",
        ),
        (
            vec![
                "show".into(),
                "7".into(),
                "--db".into(),
                db.display().to_string(),
            ],
            "unknown run",
        ),
        (
            vec!["runs".into(), "--db".into(), junk.display().to_string()],
            "not a database",
        ),
        (
            vec![
                "sample".into(),
                "--source".into(),
                "replay:/nonexistent".into(),
            ],
            "missing capture",
        ),
    ];
    if cfg!(feature = "candle") {
        cases.push((
            vec![
                "profile".into(),
                "--model".into(),
                bad_model.display().to_string(),
                "--db".into(),
                dir.path().join("new.db").display().to_string(),
                "--power".into(),
                "estimate".into(),
                "--quiet".into(),
            ],
            "bad model file",
        ));
    }
    for (args, what) in &cases {
        let out = cli()
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        assert_no_backtrace(&out, what);
    }
    // Standard output closed before the first line (`tracing-energy runs | head -0`): the
    // listing ends quietly, without a panic.
    for args in [
        vec!["runs"],
        vec!["show", "1"],
        vec!["export", "1", "--format", "json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = cli()
            .args(&args)
            .args(["--db", db.to_str().unwrap()])
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && !err.contains("backtrace") && !err.contains("   0: "),
            "{args:?}: {err}"
        );
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}
