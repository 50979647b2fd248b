//! Every database subcommand of `tracing-energy`, on a real database produced by real
//! profile runs of SmolLM2.
#![cfg(feature = "candle")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn bin() -> Command {
    common::cli()
}

/// One database with two runs (different prompts, tags and requantization), made once.
fn db() -> &'static Path {
    static DB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profiles.db");
        for (prompt, tags, requant) in [
            ("What is the capital of France?", "q8,cpu", "q8_0"),
            ("Name a colour.", "q4,cpu", "none"),
        ] {
            let out = bin()
                .args([
                    "profile",
                    "--db",
                    path.to_str().unwrap(),
                    "--power",
                    "estimate",
                    "--max-tokens",
                    "5",
                    "--quiet",
                ])
                .args([
                    "--prompt",
                    prompt,
                    "--tags",
                    tags,
                    "--requant",
                    requant,
                    "--experiment",
                    "cli-test",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
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

fn ok_json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    serde_json::from_str(&ok(&a)).unwrap()
}

#[test]
fn runs_lists_newest_first_with_filters() {
    let all = ok_json(&["runs"]);
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![2, 1]);
    let q8 = ok_json(&["runs", "--tag", "q8"]);
    assert_eq!(q8.as_array().unwrap().len(), 1);
    assert_eq!(q8[0]["prompt"], "What is the capital of France?");
    assert_eq!(
        ok_json(&["runs", "--limit", "1", "--offset", "1"])[0]["run_id"],
        1
    );
    assert_eq!(
        ok_json(&["runs", "--experiment", "nope"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        ok_json(&["runs", "--since", "2000-01-01"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ok_json(&["runs", "--until", "2000-01-01"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let table = ok(&["runs"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("run") && lines[0].contains("energy_mJ"));
    assert!(lines[1].contains("estimate (est.)"));
    let bad = run(&["runs", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM-DD"));
}

#[test]
fn show_and_summary() {
    let show = ok_json(&["show", "latest"]);
    assert_eq!(show["run_id"], 2);
    assert_eq!(show["estimated"], true);
    assert!(ok(&["show", "1"]).contains("ESTIMATED"));
    let s = ok_json(&["summary", "1"]);
    for key in ["phases", "layers", "components", "hottest"] {
        assert!(
            s[key].as_array().is_some_and(|a| !a.is_empty()),
            "{key}: {s}"
        );
    }
    assert_eq!(s["layers"].as_array().unwrap().len(), 30);
    let phases: Vec<&str> = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"prefill") && phases.contains(&"decode"),
        "{phases:?}"
    );
    let text = ok(&["summary", "latest"]);
    assert!(text.contains("phases") && text.contains("hottest") && text.contains("ESTIMATED"));
}

#[test]
fn tokens_layers_hot() {
    let tokens = ok_json(&["tokens", "1"]);
    assert_eq!(tokens.as_array().unwrap().len(), 5);
    assert_eq!(tokens[0]["phase"], "prefill");
    let table = ok(&["tokens", "1"]);
    assert_eq!(table.lines().count(), 6);
    let layers = ok_json(&["layers", "1", "--token", "2"]);
    assert_eq!(layers.as_array().unwrap().len(), 30);
    assert_eq!(layers[29]["layer_index"], 29);
    let mean = ok_json(&["layers", "1"]);
    assert_eq!(mean[0]["tokens"], 5);
    let missing = run(&["layers", "1", "--token", "99"]);
    assert_eq!(missing.status.code(), Some(3));
    let hot = ok_json(&["hot", "1", "--limit", "3"]);
    assert_eq!(hot.as_array().unwrap().len(), 3);
    assert!(hot[0]["energy_mj"].as_f64().unwrap() >= hot[1]["energy_mj"].as_f64().unwrap());
}

#[test]
fn search_and_compare() {
    let found = ok_json(&["search", "colour"]);
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["run_id"], 2);
    assert!(ok_json(&["search", "zebra"]).as_array().unwrap().is_empty());
    let cmp = ok_json(&["compare", "1", "2"]);
    assert_eq!(cmp["a"]["run_id"], 1);
    assert_eq!(cmp["layers"].as_array().unwrap().len(), 30);
    let decode = cmp["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["what"] == "decode")
        .unwrap();
    let (a, b) = (
        decode["a"]["energy_mj"].as_f64().unwrap(),
        decode["b"]["energy_mj"].as_f64().unwrap(),
    );
    assert!((decode["delta_energy_mj"].as_f64().unwrap() - (b - a)).abs() < 1e-9);
    let text = ok(&["compare", "1", "latest"]);
    assert!(text.contains("Δ%") && text.contains("layer 29"));
}

#[test]
fn report_and_exports_write_files() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("r.html");
    ok(&["report", "1", "-o", html.to_str().unwrap()]);
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("<svg"));
    let trace = dir.path().join("t.json");
    ok(&[
        "export",
        "1",
        "--format",
        "chrome",
        "-o",
        trace.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert!(v["traceEvents"].as_array().unwrap().len() > 100);
    let csv = dir.path().join("t.csv");
    ok(&[
        "export",
        "1",
        "--format",
        "csv",
        "-o",
        csv.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("level,id,token_index"));
    assert_eq!(csv.lines().filter(|l| l.starts_with("token,")).count(), 5);
    assert_eq!(csv.lines().filter(|l| l.starts_with("layer,")).count(), 150);
    let json = dir.path().join("t.json2");
    ok(&[
        "export",
        "1",
        "--format",
        "json",
        "--detail",
        "ops",
        "-o",
        json.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(v["operations"].as_array().unwrap().len(), 5 * (30 * 10 + 1));
    let bad = run(&[
        "export",
        "1",
        "--format",
        "csv",
        "-o",
        "/nonexistent/dir/x.csv",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/dir/x.csv"));
}

#[test]
fn errors_have_clear_messages_and_exit_codes() {
    let unknown = run(&["show", "999"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no run 999"));
    let not_a_run = run(&["show", "abc"]);
    assert_eq!(not_a_run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_a_run.stderr).contains("`abc` is not a run"));
    let dir = tempfile::tempdir().unwrap();
    let missing = bin()
        .args(["runs", "--db", dir.path().join("none.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    assert!(
        !dir.path().join("none.db").exists(),
        "reading must not create a database"
    );
    // An empty database: `latest` says there is no run yet.
    let empty = dir.path().join("empty.db");
    tracing_energy::store::Store::open(&empty).unwrap();
    let out = bin()
        .args(["summary", "latest", "--db", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runs yet"));
    // TRACING_ENERGY_DB names the database.
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["runs", "--format", "json"])
        .env("TRACING_ENERGY_DB", db())
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn delete_removes_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    // Work on a copy (with its WAL checkpointed into it) so the other tests keep both runs.
    let src = rusqlite::Connection::open(db()).unwrap();
    src.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let out = bin()
        .args(["delete", "1", "--db", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = rusqlite::Connection::open(&copy).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM tokens WHERE run_id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 0);
    let again = bin()
        .args(["delete", "1", "--db", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3));
}
