//! The Chrome trace of a real run (`tracing-energy profile` with the real SmolLM2-135M
//! model, see `common::profiled`): well formed, complete (every token, layer, component,
//! operation and phase, power counters per sample) and in time order from 0; nested for a
//! viewer that sums `ts + dur` in floating point after rebasing (as speedscope does); each
//! `--detail` level holding exactly its rows (trace, JSON and CSV); gzip output the plain output compressed; the default trace
//! small enough for a 1,000-token run.
#![cfg(feature = "candle")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::process::Output;

mod common;

use common::profiled::{artifacts, profiled};
use common::trace::with_plain_times;
use common::{cli_ok_bytes, cli_on};
use serde_json::Value;
use tracing_energy::report::{chrome_trace, chrome_trace_string};
use tracing_energy::store::Store;

/// The CLI on the shared run's database.
fn cli(args: &[&str]) -> Output {
    cli_on(&profiled().db, args)
}

/// The CLI's standard output; panics with its error when it fails.
fn ok(args: &[&str]) -> Vec<u8> {
    cli_ok_bytes(&profiled().db, args)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip stream");
    out
}

/// The X events of a trace that end after the event enclosing them, as speedscope nests
/// them: per (pid, tid), `ts` rebased to the thread's first `ts` and the end as the rebased
/// `ts + dur` (both in `f64`), by `ts` then by end descending, an event that starts before
/// the innermost open event ends is its child, and must not end after it (speedscope then
/// nests every later event one level deeper). Returns (X events, children past their
/// parent, the worst excess in µs).
fn nesting_violations(trace: &Value) -> (usize, usize, f64) {
    let mut threads: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for e in trace["traceEvents"].as_array().unwrap() {
        if e["ph"] == "X" {
            let ts = e["ts"].as_f64().unwrap();
            let dur = e["dur"].as_f64().unwrap();
            let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            threads.entry(key).or_default().push((ts, dur));
        }
    }
    let (mut events, mut past, mut worst) = (0, 0, 0.0f64);
    for spans in threads.values_mut() {
        let base = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        for s in spans.iter_mut() {
            s.0 -= base;
            s.1 += s.0;
        }
        spans.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut open: Vec<(f64, f64)> = Vec::new();
        for &(ts, end) in spans.iter() {
            events += 1;
            while open.last().is_some_and(|&(_, parent_end)| parent_end <= ts) {
                open.pop();
            }
            if let Some(&(parent_ts, parent_end)) = open.last() {
                assert!(ts >= parent_ts);
                if end > parent_end {
                    past += 1;
                    worst = worst.max(end - parent_end);
                }
            }
            open.push((ts, end));
        }
    }
    (events, past, worst)
}

#[test]
fn chrome_trace_is_complete_and_well_formed() {
    let p = profiled();
    let store = Store::open_existing(&p.db).unwrap();
    let text = chrome_trace_string(&store, p.run).unwrap();
    std::fs::write(artifacts().join("trace.json"), &text).unwrap();
    let trace: Value = serde_json::from_str(&text).unwrap();
    // The string is the value, serialized (floats may differ in their last bit on parsing).
    let value = chrome_trace(&store, p.run).unwrap();
    assert_eq!(
        trace["traceEvents"].as_array().unwrap().len(),
        value["traceEvents"].as_array().unwrap().len()
    );
    assert_eq!(trace["displayTimeUnit"], "ms");
    assert_eq!(trace["metadata"]["run_id"].as_i64(), Some(p.run));
    assert_eq!(trace["metadata"]["estimated"], true);
    let events = trace["traceEvents"].as_array().unwrap();

    let mut thread_names = BTreeSet::new();
    let mut x_tids = BTreeSet::new();
    let mut by_cat: HashMap<String, usize> = HashMap::new();
    let mut counters = 0;
    for e in events {
        let ph = e["ph"].as_str().unwrap();
        assert_eq!(e["pid"], 1, "{e}");
        match ph {
            "X" => {
                let ts = e["ts"].as_f64().unwrap();
                let dur = e["dur"].as_f64().unwrap();
                assert!(ts >= 0.0 && dur >= 0.0, "{e}");
                assert!(e["name"].as_str().is_some_and(|n| !n.is_empty()));
                let args = e["args"].as_object().unwrap();
                assert!(
                    args.values().all(|v| !v.is_null()),
                    "nulls are left out: {e}"
                );
                assert!(args["energy_mj"].as_f64().is_some(), "{e}");
                assert!(args.contains_key("exclusive_energy_mj"), "{e}");
                assert!(args["cpu_energy_mj"].as_f64().is_some(), "{e}");
                assert!(args.contains_key("energy_uncertainty_mj"), "{e}");
                assert!(args["sample_windows"].as_u64().is_some(), "{e}");
                x_tids.insert(e["tid"].as_u64().unwrap());
                *by_cat
                    .entry(e["cat"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            "C" => {
                assert!(e["ts"].as_f64().unwrap() >= 0.0);
                let args = e["args"].as_object().unwrap();
                assert!(
                    !args.is_empty() && args.values().all(|v| v.as_f64().is_some_and(|v| v >= 0.0))
                );
                assert!(e["name"].as_str().unwrap().contains("(mW)"));
                counters += 1;
            }
            "M" => {
                if e["name"] == "thread_name" {
                    assert!(e["args"]["name"].as_str().is_some());
                    thread_names.insert(e["tid"].as_u64().unwrap());
                }
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    assert!(!x_tids.is_empty());
    assert!(
        x_tids.is_subset(&thread_names),
        "{x_tids:?} {thread_names:?}"
    );

    let tokens = store.get_tokens(p.run).unwrap();
    let token_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"].as_str().unwrap().starts_with("token "))
        .collect();
    assert_eq!(token_events.len(), tokens.len());
    assert_eq!(by_cat["token"], tokens.len());
    assert!(token_events
        .iter()
        .any(|e| e["name"] == "token 0 (prefill)"));
    assert!(token_events.iter().any(|e| e["name"] == "token 1 (decode)"));
    assert_eq!(by_cat["layer"], 30 * tokens.len());
    assert_eq!(by_cat["component"], (30 * 3 + 2) * tokens.len());
    assert!(by_cat["operation"] >= 30 * 10 * tokens.len());
    assert_eq!(by_cat["phase"], 3, "tokenize, prefill, decode");
    for name in [
        "layer 12",
        "attention",
        "mlp",
        "q_proj",
        "down_proj",
        "lm_head",
        "output",
    ] {
        assert!(events.iter().any(|e| e["name"] == name), "{name}");
    }
    // Power counters: one per sample and kind (domains, total), plus the last end.
    let samples = store.get_power_timeline(p.run).unwrap();
    assert_eq!(counters, 2 * (samples.len() + 1));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["args"]["cpu"].as_f64().is_some()));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["args"]["total"].as_f64().is_some()));
    // The trace starts at 0 and its timed events are in time order.
    let ts: Vec<f64> = events
        .iter()
        .filter(|e| e["ph"] != "M")
        .map(|e| e["ts"].as_f64().unwrap())
        .collect();
    assert_eq!(ts.iter().cloned().fold(f64::INFINITY, f64::min), 0.0);
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn nesting_survives_float_arithmetic() {
    let p = profiled();
    let store = Store::open_existing(&p.db).unwrap();
    let trace: Value = serde_json::from_str(&chrome_trace_string(&store, p.run).unwrap()).unwrap();
    let (events, past, worst) = nesting_violations(&trace);
    assert!(events > 1000, "{events}");
    assert_eq!(
        past, 0,
        "{past} of {events} X events end after their parent (by up to {worst} µs)"
    );
    // The check catches times written as they were: µs with nanosecond decimals, `dur` the
    // plain (end - start) / 1000 (35 of the 2,547 X events of such a run ended after their
    // parent before any rebasing).
    let (_, plain_past, _) = nesting_violations(&with_plain_times(&trace));
    assert!(plain_past > 0, "the plain durations pass no parent's end");
    // The CLI's default (layers) and gzip trace too.
    let plain: Value =
        serde_json::from_slice(&ok(&["export", &p.run.to_string(), "--format", "chrome"])).unwrap();
    let (events, past, _) = nesting_violations(&plain);
    assert!(events > 100 && past == 0, "{past} of {events}");
}

/// The X events of a trace per category (`phase` counted as `section`).
fn categories(trace: &Value) -> BTreeMap<String, usize> {
    let mut by_cat = BTreeMap::new();
    for e in trace["traceEvents"].as_array().unwrap() {
        if e["ph"] == "X" {
            let cat = match e["cat"].as_str().unwrap() {
                "phase" => "section",
                other => other,
            };
            *by_cat.entry(cat.to_string()).or_default() += 1;
        }
    }
    by_cat
}

#[test]
fn each_detail_level_holds_exactly_its_rows() {
    let p = profiled();
    let store = Store::open_existing(&p.db).unwrap();
    let run = p.run;
    let rows = [
        ("section", store.get_pipeline_sections(run).unwrap().len()),
        ("token", store.get_tokens(run).unwrap().len()),
        ("layer", store.get_run_layers(run).unwrap().len()),
        ("component", store.get_run_components(run).unwrap().len()),
        ("operation", store.get_run_operations(run).unwrap().len()),
    ];
    assert!(rows.iter().all(|(_, n)| *n > 0), "{rows:?}");
    let samples = store.get_power_timeline(run).unwrap().len();
    let id = run.to_string();
    let export =
        |format: &str, level: &str| ok(&["export", &id, "--format", format, "--detail", level]);
    let json_members = ["sections", "tokens", "layers", "components", "operations"];
    let csv_levels = ["section", "token", "layer", "component", "operation"];
    for (depth, level) in ["phases", "tokens", "layers", "components", "ops"]
        .into_iter()
        .enumerate()
    {
        // The trace: the levels down to this one, each complete; the power counters at
        // every level.
        let trace: Value = serde_json::from_slice(&export("chrome", level)).unwrap();
        let expected: BTreeMap<String, usize> = rows[..=depth]
            .iter()
            .map(|(cat, n)| (cat.to_string(), *n))
            .collect();
        assert_eq!(categories(&trace), expected, "{level}");
        let counters = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "C")
            .count();
        assert_eq!(counters, 2 * (samples + 1), "{level}");
        assert_eq!(trace["metadata"]["detail"], level);
        assert_eq!(nesting_violations(&trace).1, 0, "{level}");

        // JSON: the members down to this level, the others left out.
        let json: Value = serde_json::from_slice(&export("json", level)).unwrap();
        assert_eq!(json["detail"], level);
        assert_eq!(json["power"].as_array().unwrap().len(), samples);
        for (i, member) in json_members.iter().enumerate() {
            let got = json.get(member).map(|v| v.as_array().unwrap().len());
            let want = (i <= depth).then_some(rows[i].1);
            assert_eq!(got, want, "{level}: {member}");
        }

        // CSV: a line per row of the levels down to this one.
        let csv = String::from_utf8(export("csv", level)).unwrap();
        for (i, prefix) in csv_levels.iter().enumerate() {
            let got = csv
                .lines()
                .filter(|l| l.starts_with(&format!("{prefix},")))
                .count();
            let want = if i <= depth { rows[i].1 } else { 0 };
            assert_eq!(got, want, "{level}: {prefix}");
        }
    }
    // The default is layers.
    for format in ["chrome", "json", "csv"] {
        assert_eq!(
            ok(&["export", &id, "--format", format]),
            export(format, "layers"),
            "{format}"
        );
    }
}

#[test]
fn a_bad_detail_level_is_a_usage_error() {
    let id = profiled().run.to_string();
    let out = cli(&[
        "export",
        &id,
        "--format",
        "chrome",
        "--detail",
        "everything",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("everything"), "{err}");
    assert!(
        err.contains("phases, tokens, layers, components, ops"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // Folded stacks have no levels.
    let out = cli(&["export", &id, "--format", "folded", "--detail", "ops"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--detail ops") && err.contains("Fix:"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The help says what each level holds.
    let help = String::from_utf8(
        common::cli()
            .args(["export", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for level in [
        "phases:",
        "tokens:",
        "layers:",
        "components:",
        "ops:",
        "--gzip",
    ] {
        assert!(help.contains(level), "{level}: {help}");
    }
}

#[test]
fn gzip_output_is_the_plain_output_compressed() {
    let id = profiled().run.to_string();
    let dir = tempfile::tempdir().unwrap();
    for format in ["chrome", "json", "csv"] {
        let plain = ok(&["export", &id, "--format", format]);
        assert!(!plain.is_empty());
        // To standard output with --gzip.
        let gz = ok(&["export", &id, "--format", format, "--gzip"]);
        assert_eq!(&gz[..2], [0x1f, 0x8b], "{format}: a gzip stream");
        assert!(gz.len() < plain.len(), "{format}");
        assert_eq!(gunzip(&gz), plain, "{format}");
        // To a file named .gz, with or without --gzip.
        for (name, flag) in [
            ("a.gz", None),
            ("b.GZ", Some("--gzip")),
            ("c.out", Some("--gzip")),
        ] {
            let path = dir.path().join(format!("{format}-{name}"));
            let mut args = vec![
                "export",
                &id,
                "--format",
                format,
                "-o",
                path.to_str().unwrap(),
            ];
            args.extend(flag);
            let said = String::from_utf8(ok(&args)).unwrap();
            assert!(said.contains("gzip-compressed"), "{said}");
            assert_eq!(
                gunzip(&std::fs::read(&path).unwrap()),
                plain,
                "{format} {name}"
            );
        }
        // A plain file stays plain.
        let path = dir.path().join(format!("{format}.plain"));
        ok(&[
            "export",
            &id,
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert_eq!(std::fs::read(&path).unwrap(), plain, "{format}");
    }
}

#[test]
fn the_default_trace_of_1000_tokens_stays_under_20_mb() {
    // Size grows with the rows, a fixed number per token at each level: the bytes per
    // token of this run bound those of a 1,000-token run (BENCHMARKS.md has the measured
    // file).
    let p = profiled();
    let store = Store::open_existing(&p.db).unwrap();
    let tokens = store.get_tokens(p.run).unwrap().len();
    let trace = ok(&["export", &p.run.to_string(), "--format", "chrome"]);
    let per_token = trace.len() / tokens;
    assert!(
        per_token * 1000 < 20_000_000,
        "{} bytes for {tokens} tokens: {per_token} per token",
        trace.len()
    );
    // ... where every operation would not fit.
    let ops = ok(&[
        "export",
        &p.run.to_string(),
        "--format",
        "chrome",
        "--detail",
        "ops",
    ]);
    assert!(ops.len() / tokens * 1000 > 20_000_000, "{}", ops.len());
}
