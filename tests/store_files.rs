//! The SQLite store and the files it is given: a missing or unwritable folder, a missing
//! file, a file that is not SQLite, another program's database and a newer schema are
//! refused by name and left untouched; an empty file is initialised; an unknown run is named.

use std::path::Path;

mod common;

use common::tree::new_run;
use tracing_energy::store::*;

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/p.db");
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("no/such/folder") && e.contains("does not exist") && e.contains("Fix"),
        "{e}"
    );
    assert!(!path.exists());
}

#[test]
fn unwritable_folder_is_named() {
    // /proc refuses new files even to root.
    let e = Store::open("/proc/tracing-energy-test.db")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/proc/tracing-energy-test.db") && e.contains("Fix"),
        "{e}"
    );
}

#[test]
fn missing_file_is_an_error_for_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let e = Store::open_existing(&path).err().unwrap().to_string();
    assert!(e.contains("no such file"), "{e}");
    assert!(!path.exists(), "a reader must not create the file");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let before = file_bytes(&path);
    for e in [
        Store::open(&path).err().unwrap(),
        Store::open_existing(&path).err().unwrap(),
    ] {
        let e = e.to_string();
        assert!(
            e.contains("notes.txt") && e.contains("not an SQLite database"),
            "{e}"
        );
    }
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);").unwrap();
    }
    let before = file_bytes(&path);
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("another program") && e.contains("invoices"),
        "{e}"
    );
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    {
        let s = Store::open(&path).unwrap();
        s.create_run(&new_run("m", &[])).unwrap();
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let before = file_bytes(&path);
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("newer tracing-energy")
            && e.contains(&format!("version {}", SCHEMA_VERSION + 1)),
        "{e}"
    );
    assert_eq!(file_bytes(&path), before);
    assert!(!dir.path().join("p.db-wal").exists());
}

#[test]
fn an_empty_database_file_is_initialised_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    std::fs::write(&path, b"").unwrap();
    let s = Store::open(&path).unwrap();
    assert!(s.get_runs(&RunFilter::default()).unwrap().is_empty());
    assert!(s.latest_run().unwrap().is_none());
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn finishing_an_unknown_run_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let e = store
        .finish_run(424242, &RunEnd::complete())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("424242"), "{e}");
}
