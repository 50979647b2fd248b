//! Runs recorded through the store API for the CLI's fault tests (no model needed), and
//! small helpers to check the binary's answers.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use tracing_energy::power::{DomainEnergy, PowerSample};
use tracing_energy::store::{
    ComponentRecord, LayerRecord, Measured, NewRun, RunEnd, RunId, SpanRollup, Store, TokenRecord,
};

use super::cli_ok;

pub fn measured(start: u64, end: u64, energy: f64) -> Measured {
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
pub fn record(store: &Store, text: &str, tokens: u64) -> RunId {
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
pub fn make_db(path: &Path, runs: usize, tokens: u64) {
    let store = Store::open(path).unwrap();
    for _ in 0..runs {
        record(&store, "", tokens);
    }
    store.close().unwrap();
}

/// The run ids the binary lists (`runs --format json`).
pub fn run_ids(db: &Path) -> Vec<i64> {
    let v: serde_json::Value = serde_json::from_str(&cli_ok(db, &["runs", "--format", "json"]))
        .expect("runs --format json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_i64().unwrap())
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_code(out: &Output, code: i32, what: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{what}: stderr: {err}");
    err
}
