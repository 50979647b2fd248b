//! The fault table's rows 9 and 10: read-only and damaged database files, on the real
//! `tracing-energy` binary. Whatever the command, the file is read where it can be and never
//! changed, nothing is created beside it, and the error names the problem and the fix.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::records::{assert_code, make_db, run_ids, stderr};
use common::{cli, cli_on};
use tracing_energy::store::{NewRun, Store};

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
