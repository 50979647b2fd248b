//! Store throughput: batched insert rate of component rows, and the run summary over a run
//! with 1,000,000 component rows.
//!
//! `cargo bench --bench store`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tracing_energy::store::*;

const LAYERS: u32 = 30;

fn measured(start: u64, energy: f64) -> Measured {
    Measured {
        start_ns: start,
        end_ns: start + 20_000,
        thread_id: Some(1),
        energy_mj: Some(energy),
        exclusive_energy_mj: Some(energy * 0.8),
        cpu_energy_mj: Some(energy),
        gpu_energy_mj: Some(0.0),
        ane_energy_mj: Some(0.0),
        dram_energy_mj: None,
        energy_method: Some("overlap".into()),
        energy_uncertainty_mj: Some(energy * 0.1),
        sample_windows: Some(1),
        span_id: None,
    }
}

/// Queues records, waiting while the queue is full (a bulk load, not a profiled run).
fn queue_all(mut add: impl FnMut() -> bool) {
    while !add() {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Token and layer rows for `tokens` tokens, so that component rows have their parents.
fn parents(store: &Store, run: RunId, tokens: u64) {
    for t in 0..tokens {
        let token = TokenRecord {
            token_index: t,
            phase: "decode".into(),
            n_tokens: 1,
            token_id: Some(1),
            text: None,
            measured: measured(t * 1_000_000, 1.0),
        };
        queue_all(|| store.add_token(run, token.clone()));
        let layers: Vec<LayerRecord> = (0..LAYERS)
            .map(|l| LayerRecord {
                token_index: t,
                layer_index: l,
                measured: measured(t * 1_000_000, 1.0),
            })
            .collect();
        queue_all(|| store.add_layer_metrics(run, layers.clone()));
    }
    store.flush().unwrap();
}

/// Component rows: `per_layer` per (token, layer).
fn components(tokens: u64, per_layer: u32) -> Vec<ComponentRecord> {
    let names = ["norm", "attention", "mlp"];
    let mut v = Vec::with_capacity((tokens * LAYERS as u64 * per_layer as u64) as usize);
    for t in 0..tokens {
        for l in 0..LAYERS {
            for c in 0..per_layer {
                let k = names[(c % 3) as usize];
                v.push(ComponentRecord {
                    token_index: t,
                    layer_index: Some(l),
                    component_index: c,
                    component: k.into(),
                    name: k.into(),
                    measured: measured(
                        t * 1_000_000 + l as u64 * 30_000,
                        0.01 * (c % 3 + 1) as f64,
                    ),
                });
            }
        }
    }
    v
}

fn insert_rate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench.db")).unwrap();
    const ROWS: u64 = 99_000; // 1 token x 30 layers x 3,300 components
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);
    group.bench_function("insert_component_rows_batched", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let run = store.create_run(&NewRun::default()).unwrap();
                parents(&store, run, 1);
                let rows = components(1, (ROWS / LAYERS as u64) as u32);
                let batches: Vec<Vec<ComponentRecord>> =
                    rows.chunks(1000).map(|c| c.to_vec()).collect();
                let t = Instant::now();
                for batch in batches {
                    assert!(store.add_component_metrics(run, batch));
                }
                store.flush().unwrap();
                total += t.elapsed();
                assert_eq!(store.pending_dropped(run), 0);
            }
            total
        })
    });
    group.finish();
}

fn summary_1m(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("bench.db")).unwrap();
    let run = store.create_run(&NewRun::default()).unwrap();
    let tokens = 11_112u64; // x 30 layers x 3 components = 1,000,080 rows
    parents(&store, run, tokens);
    for chunk in components(tokens, 3).chunks(10_000) {
        queue_all(|| store.add_component_metrics(run, chunk.to_vec()));
    }
    store.finish_run(run, &RunEnd::complete()).unwrap();
    let s = store.get_run_summary(run).unwrap().unwrap();
    assert_eq!(
        s.components.iter().map(|c| c.count).sum::<u64>(),
        tokens * 90
    );
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.bench_function("get_run_summary_1m_component_rows", |b| {
        b.iter(|| store.get_run_summary(run).unwrap().unwrap())
    });
    group.finish();
}

criterion_group!(benches, insert_rate, summary_1m);
criterion_main!(benches);
