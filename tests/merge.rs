//! `tracing-energy merge`, run as the real binary on databases recorded by the real energy
//! layer (the CPU-time estimate as the power source) on a small traced program: two
//! "machines" merged twice give both runs with every row; `runs` and `compare` then work
//! across them; bad sources are refused untouched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use common::busy;

use rusqlite::Connection;
use serde_json::Value;
use tracing::info_span;
use tracing_energy::power::{SampleBuffer, SourceSpec};
use tracing_energy::store::{is_run_uuid, ComponentPower, Store};
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

/// A small model-shaped program: a generic load span, a prefill and decode phase, tokens
/// of layers of components of operations.
fn traced_program(tokens: u64) {
    {
        let _load = info_span!("load_weights", bytes = 1024).entered();
        busy(Duration::from_millis(5));
    }
    for t in 0..tokens {
        let _p = if t == 0 {
            info_span!("prefill").entered()
        } else {
            info_span!("decode").entered()
        };
        let _t = info_span!("forward", token = t).entered();
        for l in 0..2u32 {
            let _l = info_span!("block", layer = l).entered();
            for (kind, ops) in [("attention", ["q_proj", "k_proj"]), ("mlp", ["up", "down"])] {
                let _c = info_span!("component", component = kind).entered();
                for op in ops {
                    let _o = info_span!("matmul", op = op).entered();
                    busy(Duration::from_millis(2));
                }
            }
        }
    }
}

/// Records one run into a new database at `path` as machine `host`, with a tag, an idle
/// baseline and a component power fit, and returns its run id.
fn record(path: &Path, host: &str, tokens: u64) -> i64 {
    let (layer, guard) = EnergyLayer::builder()
        .db(path)
        .buffer(std::sync::Arc::new(SampleBuffer::new()))
        .power(Some(SourceSpec::Estimate))
        .interval(Duration::from_millis(10))
        .baseline(Duration::from_millis(100))
        .model("merge-test")
        .prompt(format!("from {host}"))
        .tags([host, "merge"])
        .experiment("merge")
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || traced_program(tokens));
    let report = guard.finish().unwrap();
    let store = Store::open_existing(path).unwrap();
    let fit = |component: &str, power_mw| ComponentPower {
        component: component.into(),
        power_mw,
        stderr_mw: 1.0,
        windows: 9,
        method: "test".into(),
    };
    store
        .put_component_power(
            report.run_id,
            &[fit("(background)", 100.0), fit("mlp", 900.0)],
        )
        .unwrap();
    drop(store);
    // The recording machine: this test's "other" host.
    Connection::open(path)
        .unwrap()
        .execute("UPDATE profiling_runs SET host_name = ?1", [host])
        .unwrap();
    report.run_id
}

/// Two databases of one run each, "machine-a" and "machine-b", recorded once.
fn sources() -> &'static (PathBuf, PathBuf) {
    static DBS: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf))> = OnceLock::new();
    let (_, paths) = DBS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        assert_eq!(record(&a, "machine-a", 3), 1);
        assert_eq!(record(&b, "machine-b", 4), 1);
        (dir, (a, b))
    });
    paths
}

/// Every table of a database as SQLite lists them (its own `sqlite_` tables left out): the
/// schema's tables, a table added later included.
fn tables(db: &Path) -> Vec<String> {
    let c = Connection::open(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .unwrap();
    let names = st.query_map([], |r| r.get(0)).unwrap();
    names.map(Result::unwrap).collect()
}

fn count(db: &Path, table: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn merge(args: &[&Path], out: &Path) -> Output {
    let mut c = common::cli();
    c.arg("merge").args(args).arg("-o").arg(out);
    c.output().unwrap()
}

fn merged_ok(args: &[&Path], out: &Path) -> String {
    let o = merge(args, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A table's columns other than its keys (`id`, `run_id`).
fn data_columns(c: &Connection, table: &str) -> String {
    let mut st = c.prepare(&format!("PRAGMA table_info({table})")).unwrap();
    let names: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .map(|n| n.unwrap())
        .filter(|n| n != "id" && n != "run_id")
        .collect();
    names.join(", ")
}

/// Every row of `source`'s run `old` is in the merged database under run `new`, equal in
/// every column but its keys, for every table.
fn assert_same_rows(merged: &Path, source: &Path, old: i64, new: i64) {
    let c = Connection::open(merged).unwrap();
    c.execute("ATTACH DATABASE ?1 AS src", [source.to_str().unwrap()])
        .unwrap();
    for t in &tables(source) {
        let cols = data_columns(&c, t);
        let differ = |x: &str, xr: i64, y: &str, yr: i64| -> i64 {
            c.query_row(
                &format!(
                    "SELECT COUNT(*) FROM (SELECT {cols} FROM {x}.{t} WHERE run_id = ?1
                     EXCEPT SELECT {cols} FROM {y}.{t} WHERE run_id = ?2)"
                ),
                [xr, yr],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(differ("src", old, "main", new), 0, "{t}: a row not copied");
        assert_eq!(
            differ("main", new, "src", old),
            0,
            "{t}: a row not the source's"
        );
        let n = |db: &str, run: i64| -> i64 {
            c.query_row(
                &format!("SELECT COUNT(*) FROM {db}.{t} WHERE run_id = ?1"),
                [run],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(n("src", old), n("main", new), "{t}");
    }
}

#[test]
fn two_machines_merged_twice_give_two_runs_with_every_row() {
    let (a, b) = sources();
    let tables = tables(a);
    // The schema's 11 tables (schema::TABLES, checked against the migrations in the store's
    // own tests), each filled below.
    assert_eq!(tables.len(), 11, "{tables:?}");
    assert!(tables.contains(&"profiling_runs".to_string()));
    assert_eq!(tables, self::tables(b));
    for t in &tables {
        assert!(
            count(a, t) > 0 && count(b, t) > 0,
            "{t}: the sources fill every table"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.db");
    let (a_bytes, b_bytes) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());

    let first = merged_ok(&[a, b], &out);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    assert!(
        lines[0].contains("a.db: 1 run copied (")
            && lines[0].ends_with(", 0 skipped (already there)"),
        "{first}"
    );
    assert!(lines[1].contains("b.db: 1 run copied ("), "{first}");
    assert!(
        lines[2].starts_with("total into ") && lines[2].contains("2 runs copied"),
        "{first}"
    );
    assert_eq!(
        self::tables(&out),
        tables,
        "the merged database has the same tables"
    );
    let total_rows: i64 = tables.iter().map(|t| count(&out, t)).sum();
    assert!(
        lines[2].contains(&format!("({total_rows} rows)")),
        "{first}"
    );
    let counts: Vec<i64> = tables.iter().map(|t| count(&out, t)).collect();
    for (t, n) in tables.iter().zip(&counts) {
        assert_eq!(*n, count(a, t) + count(b, t), "{t}: every row of both");
    }

    // Again, in the other order: nothing new.
    let second = merged_ok(&[b, a], &out);
    assert!(
        second.contains("b.db: 0 runs copied (0 rows), 1 skipped"),
        "{second}"
    );
    assert!(
        second.contains("total into") && second.contains("0 runs copied (0 rows), 2 skipped"),
        "{second}"
    );
    let again: Vec<i64> = tables.iter().map(|t| count(&out, t)).collect();
    assert_eq!(again, counts, "merging twice changes nothing");
    assert_eq!(
        std::fs::read(a).unwrap(),
        a_bytes,
        "a source is never changed"
    );
    assert_eq!(std::fs::read(b).unwrap(), b_bytes);

    // Each run whole, under a new id, its uuid and host kept.
    let c = Connection::open(&out).unwrap();
    let runs: Vec<(i64, String, String)> = c
        .prepare("SELECT run_id, run_uuid, host_name FROM profiling_runs ORDER BY run_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].0, runs[1].0), (1, 2));
    assert_eq!(
        (runs[0].2.as_str(), runs[1].2.as_str()),
        ("machine-a", "machine-b")
    );
    for (db, (new, uuid, _)) in [(a, &runs[0]), (b, &runs[1])] {
        let source_uuid: String = Connection::open(db)
            .unwrap()
            .query_row("SELECT run_uuid FROM profiling_runs", [], |r| r.get(0))
            .unwrap();
        assert!(is_run_uuid(&source_uuid), "{source_uuid}");
        assert_eq!(&source_uuid, uuid);
        assert_same_rows(&out, db, 1, *new);
    }
    // A run recorded into the merged database after the merge gets the next id.
    let store = Store::open_existing(&out).unwrap();
    let later = store.create_run(&Default::default()).unwrap();
    assert_eq!(later, 3);
    assert!(store.delete_run(later).unwrap());
}

#[test]
fn runs_and_compare_work_across_machines() {
    let (a, b) = sources();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.db");
    merged_ok(&[a, b], &out);
    let runs: Value =
        serde_json::from_str(&common::cli_ok(&out, &["runs", "--format", "json"])).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let mut hosts: Vec<&str> = runs
        .iter()
        .map(|r| r["host"]["name"].as_str().unwrap())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["machine-a", "machine-b"]);
    assert!(runs
        .iter()
        .all(|r| r["status"] == "complete" && r["estimated"] == true));
    assert!(runs
        .iter()
        .all(|r| is_run_uuid(r["run_uuid"].as_str().unwrap())));
    let table = common::cli_ok(&out, &["runs", "--tag", "machine-b"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("from machine-b"), "{table}");

    let cmp: Value = serde_json::from_str(&common::cli_ok(
        &out,
        &["compare", "1", "2", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(
        (cmp["a"]["run_id"].as_i64(), cmp["b"]["run_id"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(cmp["layers"].as_array().unwrap().len(), 2, "{cmp}");
    let phases: Vec<&str> = cmp["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["what"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"prefill") && phases.contains(&"decode"),
        "{phases:?}"
    );
    let text = common::cli_ok(&out, &["compare", "1", "2"]);
    assert!(
        text.contains("A = run 1") && text.contains("B = run 2"),
        "{text}"
    );
}

/// Runs `merge`, expecting it to fail with `code`; returns its standard error.
fn refused(args: &[&Path], out: &Path, code: i32) -> String {
    let o = merge(args, out);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
    err
}

/// `path` is as it was (`bytes`), with nothing created beside it.
fn untouched(path: &Path, bytes: &[u8]) {
    assert_eq!(
        std::fs::read(path).unwrap(),
        bytes,
        "{} changed",
        path.display()
    );
    for side in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(side);
        assert!(
            !Path::new(&p).exists(),
            "{side} created beside {}",
            path.display()
        );
    }
}

#[test]
fn files_that_are_not_ours_are_refused_untouched() {
    let (a, _) = sources();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.db");

    let text = dir.path().join("notes.db");
    std::fs::write(&text, b"these are notes, not a database\n".repeat(200)).unwrap();
    let text_bytes = bytes_of(&text);
    let err = refused(&[&text], &out, 1);
    assert!(
        err.contains("notes.db") && err.contains("not an SQLite database"),
        "{err}"
    );
    assert!(err.contains("nothing was merged"), "{err}");
    untouched(&text, &text_bytes);

    let other = dir.path().join("shop.db");
    let c = Connection::open(&other).unwrap();
    c.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers (name) VALUES ('Ada'), ('Grace');",
    )
    .unwrap();
    drop(c);
    let bytes = std::fs::read(&other).unwrap();
    let err = refused(&[&other], &out, 1);
    assert!(
        err.contains("shop.db") && err.contains("another program"),
        "{err}"
    );
    untouched(&other, &bytes);

    // Another program's database that uses the schema version too: its tables tell.
    let versioned = dir.path().join("versioned.db");
    let c = Connection::open(&versioned).unwrap();
    c.execute_batch("CREATE TABLE profiling_runs (x); PRAGMA user_version = 7;")
        .unwrap();
    drop(c);
    let bytes = std::fs::read(&versioned).unwrap();
    let err = refused(&[&versioned], &out, 1);
    assert!(err.contains("not a tracing-energy database"), "{err}");
    untouched(&versioned, &bytes);

    // A good source before a bad one stays merged, and the message says so.
    let err = refused(&[a, &text], &out, 1);
    assert!(
        err.contains("merge stopped at") && err.contains("a.db stays merged"),
        "{err}"
    );
    assert_eq!(count(&out, "profiling_runs"), 1);
    assert_eq!(count(&out, "tokens"), count(a, "tokens"));
    untouched(&text, &text_bytes);
}

fn bytes_of(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn an_older_or_newer_schema_and_the_output_as_input_are_refused() {
    let (a, b) = sources();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.db");

    // A database of the previous schema (no run uuids): upgraded by opening it once.
    let old = dir.path().join("old.db");
    Connection::open(a)
        .unwrap()
        .execute("VACUUM INTO ?1", [old.to_str().unwrap()])
        .unwrap();
    let c = Connection::open(&old).unwrap();
    c.execute_batch(
        "DROP INDEX idx_run_uuid; ALTER TABLE profiling_runs DROP COLUMN run_uuid;
         PRAGMA user_version = 6;",
    )
    .unwrap();
    drop(c);
    let bytes = bytes_of(&old);
    let err = refused(&[&old], &out, 1);
    assert!(
        err.contains("older") && err.contains("open it once"),
        "{err}"
    );
    untouched(&old, &bytes);
    common::cli_ok(&old, &["runs"]);
    let merged = merged_ok(&[&old], &out);
    assert!(merged.contains("old.db: 1 run copied"), "{merged}");

    // Newer than this build.
    let newer = dir.path().join("newer.db");
    std::fs::copy(&old, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 99;")
        .unwrap();
    let bytes = bytes_of(&newer);
    let err = refused(&[&newer], &out, 1);
    assert!(err.contains("newer tracing-energy"), "{err}");
    untouched(&newer, &bytes);

    // The output as one of the inputs: bad usage, before anything is opened.
    let (a_bytes, b_bytes) = (bytes_of(a), bytes_of(b));
    let err = refused(&[b, a], a, 2);
    assert!(
        err.contains("refusing to write the merged database"),
        "{err}"
    );
    assert_eq!((bytes_of(a), bytes_of(b)), (a_bytes, b_bytes));
    // Also through another path to the same file.
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(b, &link).unwrap();
    refused(&[a, b], &link, 2);
}
