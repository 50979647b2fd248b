//! The rows of a user's fault table, each on the real `tracing-energy` binary and real
//! SQLite files in temporary folders (databases written with the store API: no model).
//!
//! Every bad input must get a clear error that names the problem and the fix, the
//! documented exit code (0 success, 1 error, 2 bad usage, 3 not found), and lose no data
//! already recorded.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cli, cli_ok, cli_on};
use tracing_energy::power::{DomainEnergy, PowerSample};
use tracing_energy::store::{
    ComponentRecord, LayerRecord, Measured, NewRun, RunEnd, RunId, SpanRollup, Store, TokenRecord,
};

fn measured(start: u64, end: u64, energy: f64) -> Measured {
    Measured {
        start_ns: start,
        end_ns: end,
        thread_id: Some(1),
        energy_mj: Some(energy),
        exclusive_energy_mj: Some(energy / 2.0),
        cpu_energy_mj: Some(energy),
        energy_method: Some("overlap".into()),
        sample_windows: Some(1),
        ..Measured::default()
    }
}

/// Records one complete run with power samples, tokens, layers, components and span
/// paths; `text` goes into every user-supplied field.
fn record(store: &Store, text: &str, tokens: u64) -> RunId {
    let run = store
        .create_run(&NewRun {
            model: Some(format!("model {text}")),
            prompt: Some(format!("prompt {text}")),
            tags: vec![format!("tag{text}"), "plain".into()],
            experiment: Some(format!("exp {text}")),
            power_source: Some("powermetrics".into()),
            sample_interval_ms: Some(1.0),
            ..NewRun::default()
        })
        .unwrap();
    let samples: Vec<PowerSample> = (0..tokens * 4)
        .map(|k| {
            let energy = DomainEnergy {
                cpu: Some(1.0 + k as f64),
                gpu: Some(0.5),
                ane: None,
                dram: None,
            };
            PowerSample::new(
                k * 250_000,
                (k + 1) * 250_000,
                energy,
                Arc::from("powermetrics"),
                false,
            )
            .unwrap()
        })
        .collect();
    assert!(store.add_power_samples(run, samples));
    let mut toks = Vec::new();
    let mut layers = Vec::new();
    let mut comps = Vec::new();
    for t in 0..tokens {
        let base = t * 1_000_000;
        toks.push(TokenRecord {
            token_index: t,
            phase: if t == 0 { "prefill" } else { "decode" }.into(),
            n_tokens: 1,
            token_id: Some(t as u32),
            text: Some(format!("tok {text}")),
            measured: measured(base, base + 900_000, 9.0),
        });
        for l in 0..4u32 {
            let lb = base + l as u64 * 200_000;
            layers.push(LayerRecord {
                token_index: t,
                layer_index: l,
                measured: measured(lb, lb + 150_000, 2.0),
            });
            for (c, kind) in ["attention", "mlp"].iter().enumerate() {
                let cb = lb + c as u64 * 70_000;
                comps.push(ComponentRecord {
                    token_index: t,
                    layer_index: Some(l),
                    component_index: c as u32,
                    component: format!("{kind}{text}"),
                    name: format!("span {text}"),
                    measured: measured(cb, cb + 60_000, 1.0),
                });
            }
        }
    }
    assert!(store.add_tokens(run, toks));
    assert!(store.add_layer_metrics(run, layers));
    assert!(store.add_component_metrics(run, comps));
    assert!(store.add_span_rollup(
        run,
        vec![SpanRollup {
            path: format!("request;handle {text}"),
            calls: 2,
            busy_ms: 3.0,
            energy_mj: Some(5.0),
            exclusive_energy_mj: Some(4.0),
        }],
    ));
    store
        .finish_run(
            run,
            &RunEnd {
                response: Some(format!("response {text}")),
                total_energy_mj: Some(100.0),
                attributed_energy_mj: Some(90.0),
                unattributed_energy_mj: Some(10.0),
                error: Some(format!("error {text}")),
                ..RunEnd::complete()
            },
        )
        .unwrap();
    run
}

/// A database at `path` with `runs` complete runs of `tokens` tokens each, closed (no
/// `-wal` or `-shm` file left).
fn make_db(path: &Path, runs: usize, tokens: u64) {
    let store = Store::open(path).unwrap();
    for _ in 0..runs {
        record(&store, "", tokens);
    }
    store.close().unwrap();
}

/// The run ids the binary lists (`runs --format json`).
fn run_ids(db: &Path) -> Vec<i64> {
    let v: serde_json::Value = serde_json::from_str(&cli_ok(db, &["runs", "--format", "json"]))
        .expect("runs --format json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_i64().unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_code(out: &Output, code: i32, what: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{what}: stderr: {err}");
    err
}

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
// Row 9: a read-only database (or folder).

/// The user `nobody`, who runs the binary when the tests run as root (root may write a
/// 0444 file).
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn unprivileged(mut c: Command) -> Command {
    use std::os::unix::process::CommandExt;
    if is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    c
}

/// Gives `paths` to the user the binary runs as (see [`unprivileged`]), as a user's own
/// files are theirs.
fn own(paths: &[&Path]) {
    if is_root() {
        for p in paths {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
}

fn run_as_user(db: &Path, args: &[&str]) -> Output {
    let mut c = cli();
    c.args(args).args(["--db", db.to_str().unwrap()]);
    unprivileged(c).output().unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn check_read_only(dir: &Path, db: &Path) {
    let before = names_in(dir);
    let bytes = std::fs::read(db).unwrap();
    let out = run_as_user(db, &["runs", "--format", "json"]);
    assert_code(&out, 0, "runs on a read-only database");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_code(&run_as_user(db, &["show", "1"]), 0, "show");
    let out = run_as_user(db, &["delete", "1"]);
    let err = assert_code(&out, 1, "delete on a read-only database");
    assert_eq!(err.matches("read-only").count(), 1, "{err}");
    assert!(err.contains("Fix:") && err.contains("chmod u+w"), "{err}");
    assert!(!err.contains("stopped before replying"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(names_in(dir), before, "no -wal/-shm left behind");
    assert_eq!(std::fs::read(db).unwrap(), bytes);
}

#[test]
fn a_read_only_database_is_read_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("rw");
    std::fs::create_dir(&folder).unwrap();
    let db = folder.join("ro.db");
    make_db(&db, 2, 2);
    set_mode(dir.path(), 0o755);
    own(&[&folder, &db]);
    set_mode(&folder, 0o755);
    set_mode(&db, 0o444);
    check_read_only(&folder, &db);
    set_mode(&db, 0o644);
    assert_eq!(run_ids(&db), vec![2, 1], "the runs are intact");
}

#[test]
fn a_database_in_a_read_only_folder_is_read_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("ro");
    std::fs::create_dir(&folder).unwrap();
    let db = folder.join("p.db");
    make_db(&db, 2, 2);
    set_mode(dir.path(), 0o755);
    own(&[&folder, &db]);
    set_mode(&db, 0o644);
    set_mode(&folder, 0o555);
    check_read_only(&folder, &db);
    set_mode(&folder, 0o755);
    assert_eq!(run_ids(&db), vec![2, 1], "the runs are intact");
}

/// Names the database a child process records into (see [`child_records_a_run`]).
const CHILD_DB: &str = "FAULTS_CLI_RECORD_INTO";

/// Not a test on its own: the child process of
/// `recording_into_a_read_only_database_says_why`, which records a run into the database
/// `CHILD_DB` names and prints the error.
#[test]
fn child_records_a_run() {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let store = Store::open(&db).expect("a read-only database opens for reading");
    let e = store
        .create_run(&NewRun::default())
        .expect_err("a read-only database takes no run");
    println!("ERROR: {e}");
}

#[test]
fn recording_into_a_read_only_database_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("rw");
    std::fs::create_dir(&folder).unwrap();
    let db = folder.join("ro.db");
    make_db(&db, 1, 1);
    set_mode(dir.path(), 0o755);
    own(&[&folder, &db]);
    set_mode(&db, 0o444);
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_records_a_run",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_DB, &db);
    let out = unprivileged(c).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", stderr(&out));
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("read-only") && line.contains("Fix:") && !line.contains("stopped"),
        "{line}"
    );
    assert_eq!(names_in(&folder), vec!["ro.db".to_string()]);
}

// ---------------------------------------------------------------------------------------
// Row 10: a damaged (truncated) database.

#[test]
fn a_truncated_database_gets_one_message_with_the_fix_and_is_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cut.db");
    make_db(&db, 6, 40);
    let full = std::fs::metadata(&db).unwrap().len();
    assert!(full > 200_000, "{full} bytes");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(full / 2).unwrap();
    drop(f);
    let bytes = std::fs::read(&db).unwrap();
    let mut failed = 0;
    for args in [
        vec!["runs"],
        vec!["show", "1"],
        vec!["summary", "1"],
        vec!["summary", "6"],
        vec!["export", "6", "--format", "json"],
    ] {
        let out = cli_on(&db, &args);
        if out.status.success() {
            continue;
        }
        failed += 1;
        let err = assert_code(&out, 1, &format!("{args:?}"));
        assert_eq!(err.matches("malformed").count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches("Fix:").count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(db.to_str().unwrap())
                && err.contains("restore it from a backup")
                && err.contains(".recover")
                && err.contains("has not changed it"),
            "{args:?}: {err}"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "{args:?} changed the file"
        );
    }
    assert!(failed >= 2, "the truncation was not noticed");
    assert_eq!(names_in(dir.path()), vec!["cut.db".to_string()]);
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
