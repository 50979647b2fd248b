//! A run read once ([`RunData`]) gives the same outputs as the entry points that read it
//! themselves, and the library's exports and comparison are what the CLI writes, byte for
//! byte: two real runs (`tracing-energy profile` with the real SmolLM2-135M model) in one
//! database.
#![cfg(feature = "candle")]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::profiled::profile_into;
use serde_json::Value;
use tracing_energy::report::{self, Detail, RunData};
use tracing_energy::store::Store;
use tracing_energy::Error;

const BIN: &str = env!("CARGO_BIN_EXE_tracing-energy");

/// Removed at the end of the test, whatever happens.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn profile(db: &Path, prompt: &str, max_tokens: &str) -> i64 {
    let args = ["--quiet", "--max-tokens", max_tokens, "--prompt", prompt];
    profile_into(db, &args)["run_id"].as_i64().expect("run_id")
}

/// The CLI's standard output for `args` on `db`.
fn cli(db: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn one_read_gives_every_output_and_the_cli_writes_the_same() {
    let dir = Dir(Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-run-data-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let db = dir.0.join("profile.db");
    let a = profile(&db, "Name a colour, with a comma, please", "3");
    let b = profile(&db, "Hello", "5");

    let store = Store::open_existing(&db).unwrap();
    let data = store
        .read_snapshot(|s| RunData::load(s, a, Detail::Operations))
        .unwrap();
    let rows = data.rows.as_ref().expect("rows at Detail::Operations");
    assert_eq!(data.run().run_id, a);
    assert!(!rows.layers.is_empty() && !rows.components.is_empty());
    assert!(!rows.operations.is_empty() && !data.power.is_empty());
    // The grouped sums are the report's: not read for an export.
    assert!(data.component_groups.is_empty() && data.layer_groups.is_empty());
    assert!(data.span_rollup.is_empty());

    // One origin: the earliest sample, section or token, and no row starts earlier.
    let starts = data.power.iter().map(|p| p.start_ns);
    let starts = starts.chain(data.sections.iter().map(|s| s.record.measured.start_ns));
    let starts = starts.chain(data.tokens.iter().map(|t| t.record.measured.start_ns));
    assert_eq!(Some(data.origin_ns), starts.min());
    let first_row = (rows.layers.iter().map(|l| l.record.measured.start_ns))
        .chain(rows.components.iter().map(|c| c.record.measured.start_ns))
        .chain(rows.operations.iter().map(|o| o.record.measured.start_ns))
        .min()
        .unwrap();
    assert!(
        first_row >= data.origin_ns,
        "{first_row} < {}",
        data.origin_ns
    );

    // The pure outputs are the entry points' outputs.
    let trace = report::chrome_trace_of(&data);
    assert_eq!(trace, report::chrome_trace(&store, a).unwrap());
    assert_eq!(
        trace["metadata"]["time_origin_ns"].as_u64(),
        Some(data.origin_ns)
    );
    // The report does not need the rows: it reads their grouped sums instead.
    let light = RunData::load(&store, a, Detail::Report).unwrap();
    assert!(light.rows.is_none());
    assert!(!light.component_groups.is_empty() && !light.layer_groups.is_empty());
    assert!(!light.span_rollup.is_empty());
    assert_eq!(light.origin_ns, data.origin_ns);
    let html = report::render_run(&light);
    assert_eq!(html, report::render(&store, a).unwrap());
    // Each export level reads its rows and no more, with the same origin.
    for level in Detail::LEVELS {
        let d = RunData::load(&store, a, level).unwrap();
        assert_eq!(d.origin_ns, data.origin_ns, "{level:?}");
        assert_eq!(d.tokens.len(), data.tokens.len(), "{level:?}");
        let got = d
            .rows
            .as_ref()
            .map(|r| (r.layers.len(), r.components.len(), r.operations.len()));
        let want = level.has_layers().then_some((
            rows.layers.len(),
            if level.has_components() {
                rows.components.len()
            } else {
                0
            },
            if level.has_operations() {
                rows.operations.len()
            } else {
                0
            },
        ));
        assert_eq!(got, want, "{level:?}");
    }
    // ... and a trace of it has no layer, component or operation events.
    let light_trace = report::chrome_trace_of(&light);
    let cats = |t: &Value, cat: &str| {
        t["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cat"] == cat)
            .count()
    };
    assert_eq!(cats(&light_trace, "token"), cats(&trace, "token"));
    assert_eq!(cats(&light_trace, "layer"), 0);
    assert_eq!(cats(&trace, "layer"), rows.layers.len());

    // The CLI's files are the library's, byte for byte.
    let id = a.to_string();
    let all = |format: &str| cli(&db, &["export", &id, "--format", format, "--detail", "ops"]);
    let json = report::export::json(&data).unwrap();
    assert_eq!(all("json"), json);
    let csv = report::export::csv(&data).unwrap();
    assert_eq!(all("csv").as_slice(), csv.as_bytes());
    let chrome = report::chrome_trace_string(&store, a).unwrap();
    assert_eq!(all("chrome").as_slice(), chrome.as_bytes());
    // The streamed trace is the value's text.
    assert_eq!(serde_json::from_str::<Value>(&chrome).unwrap(), trace);
    let out = dir.0.join("report.html");
    let out_arg = out.to_str().unwrap();
    cli(&db, &["report", &id, "-o", out_arg]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), html);

    // JSON: its members in order, the rows complete; CSV: a line per timed row.
    let value: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value.as_object().unwrap().len(), 8);
    assert_eq!(value["detail"], "ops");
    let text = String::from_utf8(json.clone()).unwrap();
    let order = [
        "run",
        "detail",
        "sections",
        "tokens",
        "layers",
        "components",
        "operations",
        "power",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| text.find(&format!("\n  \"{k}\":")).expect(k))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "members out of order");
    assert_eq!(
        value["operations"].as_array().unwrap().len(),
        rows.operations.len()
    );
    let timed = data.sections.len()
        + data.tokens.len()
        + rows.layers.len()
        + rows.components.len()
        + rows.operations.len();
    let levels = ["section,", "token,", "layer,", "component,", "operation,"];
    let records = csv
        .lines()
        .filter(|l| levels.iter().any(|p| l.starts_with(p)))
        .count();
    assert!(csv.starts_with("level,id,token_index,"));
    assert_eq!(records, timed);

    // The comparison is the CLI's, byte for byte; a run compared with itself has no delta.
    let (sa, sb) = store
        .read_snapshot(|s| Ok::<_, Error>((s.get_run_summary(a)?, s.get_run_summary(b)?)))
        .unwrap();
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    let cmp = report::compare(&sa, &sb);
    let mut expected = serde_json::to_vec_pretty(&cmp).unwrap();
    expected.push(b'\n');
    let idb = b.to_string();
    assert_eq!(
        cli(&db, &["compare", &id, &idb, "--format", "json"]),
        expected
    );
    assert_eq!((cmp.a.run_id, cmp.b.run_id), (a, b));
    assert!(cmp.phases.iter().any(|r| r.what == "decode"));
    let same = report::compare(&sb, &sb);
    for r in same
        .phases
        .iter()
        .chain(&same.layers)
        .chain(&same.components)
    {
        assert_eq!(r.delta_duration_ms, Some(0.0), "{}", r.what);
        assert!(r.delta_energy_mj.is_none_or(|d| d == 0.0), "{}", r.what);
    }

    // An unknown run is an error, not an empty run.
    match RunData::load(&store, 987_654, Detail::Report) {
        Err(Error::UnknownRun { run, .. }) => assert_eq!(run, "987654"),
        other => panic!("{other:?}"),
    }
}
