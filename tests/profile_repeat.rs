//! `profile --repeat N --warmup M` on the real SmolLM2-135M model: N runs in one experiment
//! (plus the model load's run, tagged `warmup`), the statistics table, and `stats` /
//! `compare-experiments` reading the same numbers back from the database.
#![cfg(feature = "candle")]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn profile_repeat(db: &Path, experiment: &str, json: bool) -> Output {
    let mut args = vec![
        "profile",
        "--db",
        db.to_str().unwrap(),
        "--power",
        "estimate",
        "--max-tokens",
        "4",
        "--requant",
        "q8_0",
        "--repeat",
        "3",
        "--warmup",
        "1",
        "--experiment",
        experiment,
    ];
    if json {
        args.push("--json");
    }
    run(&args)
}

fn close(a: &Value, b: &Value) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{a} != {b}"),
        _ => assert_eq!(a, b),
    }
}

#[test]
fn repeated_profile_stores_one_experiment_and_stats_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let dbs = db.to_str().unwrap();

    // Text: one line per repetition, then the table.
    let text = ok(&profile_repeat(&db, "first", false));
    for i in 1..=3 {
        assert!(text.contains(&format!("repetition {i}/3  run ")), "{text}");
    }
    assert!(text.contains("--- warm-up 1/1 ---"), "{text}");
    for needle in [
        "experiment first",
        "3 complete runs",
        "ESTIMATED",
        "± 95%",
        "decode mJ/token ",
        "prefill mJ/prompt token",
        "decode tokens/s",
        "unknown (no idle baseline)",
        "tagged warmup, left out",
        "tracing-energy stats --experiment first",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }

    // Exactly 3 measured runs and the load's run, all in the experiment.
    let runs: Value =
        serde_json::from_str(&ok(&run(&["runs", "--db", dbs, "--format", "json"]))).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    let tagged = |tag: &str| {
        runs.iter()
            .filter(|r| r["tags"].as_array().unwrap().iter().any(|t| t == tag))
            .count()
    };
    assert_eq!((tagged("repeat"), tagged("warmup")), (3, 1));
    assert!(runs.iter().all(|r| r["experiment"] == "first"));

    // JSON: the runs' outcomes and the statistics; `stats` gives the same numbers.
    let out: Value = serde_json::from_str(&ok(&profile_repeat(&db, "second", true))).unwrap();
    assert_eq!(out["experiment"], "second");
    assert_eq!(out["runs"].as_array().unwrap().len(), 3);
    let printed = &out["statistics"];
    let stored: Value = serde_json::from_str(&ok(&run(&[
        "stats",
        "--db",
        dbs,
        "--experiment",
        "second",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(stored["runs"], printed["runs"]);
    assert_eq!(stored["left_out"].as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored["left_out"][0]["reason"], "warm-up");
    for (p, s) in printed["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .zip(stored["metrics"].as_array().unwrap())
    {
        assert_eq!(p["metric"], s["metric"]);
        for key in ["n", "unknown", "mean", "sd", "half_width", "low", "high"] {
            close(&p["estimate"][key], &s["estimate"][key]);
        }
    }
    let decode = &stored["metrics"][0]["estimate"];
    assert_eq!(decode["n"], 3, "{stored}");
    assert!(decode["mean"].as_f64().unwrap() > 0.0);
    assert!(decode["half_width"].as_f64().unwrap() > 0.0);
    // No baseline with the estimate: the dynamic figure is unknown, never 0.
    assert_eq!(stored["metrics"][1]["estimate"]["n"], 0);
    assert!(stored["metrics"][1]["estimate"]["mean"].is_null());

    let table = ok(&run(&["stats", "--db", dbs, "--experiment", "second"]));
    assert!(
        table.contains("3 complete runs") && table.contains("(warm-up)"),
        "{table}"
    );

    // Two experiments compared.
    let cmp = ok(&run(&[
        "compare-experiments",
        "--db",
        dbs,
        "first",
        "second",
    ]));
    assert!(cmp.contains("A = experiment first"), "{cmp}");
    assert!(cmp.contains("B - A = "), "{cmp}");
    assert!(
        cmp.contains("within the noise") || cmp.contains("differ beyond their intervals"),
        "{cmp}"
    );
    let cmp: Value = serde_json::from_str(&ok(&run(&[
        "compare-experiments",
        "--db",
        dbs,
        "first",
        "second",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(cmp["metrics"].as_array().unwrap().len(), 4);

    // An unknown experiment: not found (3), naming the fix.
    let nosuch = run(&["stats", "--db", dbs, "--experiment", "nosuch"]);
    assert_eq!(nosuch.status.code(), Some(3));
    let err = String::from_utf8_lossy(&nosuch.stderr);
    assert!(
        err.contains("experiment `nosuch`") && err.contains("tracing-energy runs"),
        "{err}"
    );
}

#[test]
fn repeat_flags_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    for args in [
        &["profile", "--repeat", "0"][..],
        &["profile", "--repeat", "x"][..],
        &["profile", "--warmup", "2"][..],
    ] {
        let out = bin()
            .args(args)
            .args(["--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!db.exists(), "{args:?} touched the database");
    }
    let err = String::from_utf8_lossy(&run(&["profile", "--repeat", "0"]).stderr).into_owned();
    assert!(err.contains("at least 1"), "{err}");
}
