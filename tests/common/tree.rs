//! Records for the store's tests on real database files: a measured span, a power sample,
//! a synthetic run tree (tokens x layers x components x operations, with known energies),
//! run metadata, and a row count read straight from the file.

use std::path::Path;
use std::sync::Arc;

use tracing_energy::power::{DomainEnergy, PowerSample};
use tracing_energy::store::{
    ComponentRecord, LayerRecord, Measured, NewRun, OperationRecord, RunId, Store, TokenRecord,
};

pub fn measured(start: u64, end: u64, energy: Option<f64>) -> Measured {
    Measured {
        start_ns: start,
        end_ns: end,
        thread_id: Some(7),
        energy_mj: energy,
        exclusive_energy_mj: energy.map(|e| e / 2.0),
        cpu_energy_mj: energy.map(|e| e * 0.75),
        gpu_energy_mj: energy.map(|e| e * 0.25),
        ane_energy_mj: energy.map(|_| 0.0),
        dram_energy_mj: None,
        energy_method: energy.map(|_| "overlap".to_string()),
        energy_uncertainty_mj: energy.map(|e| e * 0.1),
        sample_windows: energy.map(|_| 2),
        span_id: None,
    }
}

pub fn sample(start: u64, end: u64, cpu: f64) -> PowerSample {
    PowerSample::new(
        start,
        end,
        DomainEnergy {
            cpu: Some(cpu),
            gpu: Some(1.0),
            ane: Some(0.0),
            dram: None,
        },
        Arc::from("powermetrics"),
        false,
    )
    .unwrap()
}

/// A run with `tokens` tokens x `layers` layers x 3 components x 2 operations.
pub struct Tree {
    pub tokens: Vec<TokenRecord>,
    pub layers: Vec<LayerRecord>,
    pub components: Vec<ComponentRecord>,
    pub ops: Vec<OperationRecord>,
}

pub fn tree(tokens: u64, layers: u32) -> Tree {
    let mut t = Tree {
        tokens: vec![],
        layers: vec![],
        components: vec![],
        ops: vec![],
    };
    for ti in 0..tokens {
        let base = ti * 1_000_000;
        t.tokens.push(TokenRecord {
            token_index: ti,
            phase: if ti == 0 {
                "prefill".into()
            } else {
                "decode".into()
            },
            n_tokens: if ti == 0 { 12 } else { 1 },
            token_id: Some(100 + ti as u32),
            text: Some(format!("tok{ti}")),
            measured: measured(base, base + 900_000, Some(90.0)),
        });
        for li in 0..layers {
            let lb = base + li as u64 * 10_000;
            t.layers.push(LayerRecord {
                token_index: ti,
                layer_index: li,
                measured: measured(lb, lb + 9_000, Some(3.0 + li as f64)),
            });
            for (ci, comp) in ["norm", "attention", "mlp"].iter().enumerate() {
                let cb = lb + ci as u64 * 3_000;
                // Energy grows with layer and component so the hottest list is known.
                let e = (li as f64 + 1.0) * (ci as f64 + 1.0);
                t.components.push(ComponentRecord {
                    token_index: ti,
                    layer_index: Some(li),
                    component_index: ci as u32,
                    component: comp.to_string(),
                    name: format!("span-{comp}"),
                    measured: measured(cb, cb + 2_000 + ci as u64 * 100, Some(e)),
                });
                for oi in 0..2u32 {
                    t.ops.push(OperationRecord {
                        token_index: ti,
                        layer_index: Some(li),
                        component_index: ci as u32,
                        op_index: oi,
                        operation: format!("op{oi}"),
                        name: "qmatmul".into(),
                        measured: measured(
                            cb + oi as u64 * 500,
                            cb + oi as u64 * 500 + 400,
                            Some(e / 4.0),
                        ),
                    });
                }
            }
        }
    }
    t
}

pub fn write_tree(store: &Store, run: RunId, t: &Tree) {
    assert!(store.add_tokens(run, t.tokens.clone()));
    assert!(store.add_layer_metrics(run, t.layers.clone()));
    assert!(store.add_component_metrics(run, t.components.clone()));
    assert!(store.add_deep_operation_metrics(run, t.ops.clone()));
}

pub fn new_run(model: &str, tags: &[&str]) -> NewRun {
    NewRun {
        model: Some(model.into()),
        prompt: Some(format!("prompt for {model}")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        experiment: Some("exp1".into()),
        power_source: Some("powermetrics".into()),
        estimated: false,
        sample_interval_ms: Some(100.0),
        ..NewRun::new()
    }
}

pub fn count(path: &Path, table: &str, run: RunId) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE run_id = ?1"),
        [run],
        |r| r.get(0),
    )
    .unwrap()
}
