//! `tracing-energy spans` and `export --format folded`, run as the real binary on a
//! database written with the store API (known numbers, no model needed); the folded export
//! goes through inferno's flame graph writer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use tracing_energy::store::{NewRun, RunEnd, SpanRollup, Store};

fn bin() -> Command {
    common::cli()
}

fn row(path: &str, calls: u64, busy_ms: f64, energy: Option<(f64, f64)>) -> SpanRollup {
    SpanRollup {
        path: path.into(),
        calls,
        busy_ms,
        energy_mj: energy.map(|e| e.0),
        exclusive_energy_mj: energy.map(|e| e.1),
    }
}

/// Run 1 has energy (200 mJ measured); `request` has no row of its own, `flush` is added in
/// two parts, `tiny` rounds to 0 µJ. Run 2 has span paths without energy, run 3 none.
fn db() -> &'static Path {
    static DB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spans.db");
        let store = Store::open(&path).unwrap();
        let run = store
            .create_run(&NewRun {
                model: Some("spans-test".into()),
                power_source: Some("estimate".into()),
                estimated: true,
                ..NewRun::default()
            })
            .unwrap();
        assert_eq!(run, 1);
        assert!(store.add_span_rollup(
            run,
            vec![
                row(
                    "request;handle_request;compute",
                    4,
                    40.0,
                    Some((60.0, 60.0))
                ),
                row("request;handle_request", 2, 50.0, Some((70.0, 10.0))),
                row("request;parse", 2, 5.0, Some((20.0, 20.0))),
                row("flush", 1, 1.0, Some((4.0, 4.0))),
                row("tiny", 1, 0.25, Some((0.0004, 0.0004))),
            ],
        ));
        assert!(store.add_span_rollup(run, vec![row("flush", 1, 1.0, Some((6.0, 6.0)))]));
        store
            .finish_run(
                run,
                &RunEnd {
                    total_energy_mj: Some(200.0),
                    attributed_energy_mj: Some(100.0004),
                    unattributed_energy_mj: Some(99.9996),
                    ..RunEnd::complete()
                },
            )
            .unwrap();
        let run = store.create_run(&NewRun::default()).unwrap();
        assert_eq!(run, 2);
        assert!(store.add_span_rollup(
            run,
            vec![
                row("request;compute", 3, 30.0, None),
                row("request", 1, 35.0, None)
            ],
        ));
        store.finish_run(run, &RunEnd::complete()).unwrap();
        let run = store.create_run(&NewRun::default()).unwrap();
        store.finish_run(run, &RunEnd::complete()).unwrap();
        store.flush().unwrap();
        (dir, path)
    });
    path
}

fn run(args: &[&str]) -> Output {
    common::cli_on(db(), args)
}

fn ok(args: &[&str]) -> String {
    common::cli_ok(db(), args)
}

fn fails(args: &[&str], code: i32) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

const FOLDED: &str = "flush 10000\n\
                      request;handle_request 10000\n\
                      request;handle_request;compute 60000\n\
                      request;parse 20000\n";

#[test]
fn spans_json_has_the_stored_numbers() {
    let v: Value = serde_json::from_str(&ok(&["spans", "1", "--format", "json"])).unwrap();
    let rows = v.as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    // Most exclusive energy first (ties: most busy time first).
    assert_eq!(
        paths,
        [
            "request;handle_request;compute",
            "request;parse",
            "request;handle_request",
            "flush",
            "tiny"
        ]
    );
    let compute = &rows[0];
    assert_eq!(compute["calls"], 4);
    assert_eq!(compute["busy_ms"], 40.0);
    assert_eq!(compute["energy_mj"], 60.0);
    assert_eq!(compute["exclusive_energy_mj"], 60.0);
    assert_eq!(compute["share_of_run"], 0.3);
    let flush = &rows[3];
    assert_eq!(flush["calls"], 2);
    assert_eq!(flush["busy_ms"], 2.0);
    assert_eq!(flush["energy_mj"], 10.0);
    assert_eq!(flush["exclusive_energy_mj"], 10.0);
    assert_eq!(flush["share_of_run"], 0.05);
    assert_eq!(rows[2]["energy_mj"], 70.0);

    let limited: Value =
        serde_json::from_str(&ok(&["spans", "1", "--format", "json", "--limit", "2"])).unwrap();
    assert_eq!(limited.as_array().unwrap().len(), 2);
    assert_eq!(limited[1]["path"], "request;parse");
}

#[test]
fn spans_table_shows_shares_and_unknowns() {
    let table = ok(&["spans", "1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    for col in [
        "path",
        "calls",
        "busy_ms",
        "energy_mJ",
        "exclusive_mJ",
        "share",
    ] {
        assert!(lines[0].contains(col), "{col}: {}", lines[0]);
    }
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "request;handle_request;compute",
            "4",
            "40.000",
            "60.000",
            "60.000",
            "30.0%"
        ]
    );
    let cells: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(cells, ["flush", "2", "2.000", "10.000", "10.000", "5.0%"]);
    assert_eq!(ok(&["spans", "1", "--limit", "1"]).lines().count(), 2);

    // No power source: energies and shares are unknown, never 0.
    let out = run(&["spans", "2"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells, ["request", "1", "35.000", "-", "-", "-"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no energy figures"));
    let v: Value = serde_json::from_str(&ok(&["spans", "2", "--format", "json"])).unwrap();
    assert!(v[0]["energy_mj"].is_null() && v[0]["exclusive_energy_mj"].is_null());
    assert!(v[0]["share_of_run"].is_null());

    // A run without paths: an empty table and a note.
    let out = run(&["spans", "3"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no span paths"));
}

#[test]
fn export_folded_to_a_file_and_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.folded");
    let said = ok(&[
        "export",
        "1",
        "--format",
        "folded",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(said.contains("wrote run 1"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), FOLDED);
    assert_eq!(ok(&["export", "1", "--format", "folded"]), FOLDED);
}

#[test]
fn export_folded_without_energy_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.folded");
    let err = fails(
        &[
            "export",
            "2",
            "--format",
            "folded",
            "-o",
            file.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("run 2 has no energy figures") && err.contains("without a power source"),
        "{err}"
    );
    assert!(err.contains("--power estimate"), "{err}");
    assert!(!file.exists());
    let err = fails(&["export", "3", "--format", "folded"], 1);
    assert!(err.contains("run 3 has no energy per span path"), "{err}");
}

#[test]
fn unknown_runs_and_databases_are_not_found() {
    let err = fails(&["spans", "99"], 3);
    assert!(err.contains("no run 99"), "{err}");
    fails(&["export", "99", "--format", "folded"], 3);
    fails(&["spans", "nope"], 2);
    let out = bin()
        .args(["spans", "1", "--db", "/nonexistent/profiles.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let out = bin().args(["spans"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a missing RUN is bad usage");
}

#[test]
fn inferno_draws_the_folded_export() {
    let folded = ok(&["export", "1", "--format", "folded"]);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "Energy by span path".into();
    opts.count_name = "µJ".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "not an SVG"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in ["request", "handle_request", "compute", "parse", "flush"] {
        assert!(svg.contains(&format!("<title>{name} (")), "{name}");
    }
    // inferno adds the children to the parents: `request` is 90,000 µJ of 100,000.
    assert!(
        svg.contains("<title>request (90,000 µJ, 90.00%)</title>"),
        "{svg}"
    );
    assert!(
        svg.contains("<title>all (100,000 µJ, 100%)</title>"),
        "{svg}"
    );
}
