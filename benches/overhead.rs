//! Cost of one span enter + exit pair, the way candle uses spans (created once, entered on
//! every forward, nested in a parent), with: no subscriber, the registry alone, the registry
//! with the energy layer, and the registry with tracing-chrome.
//!
//! `cargo bench --bench overhead`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{info_span, Dispatch};
use tracing_energy::store::Store;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

/// Enters `child` inside `parent`; the parent is re-entered every 1,000 pairs, as a token
/// span would be, so that the layer's processor can finish its sections.
fn pairs(c: &mut Criterion, name: &str, dispatch: Dispatch) {
    tracing::dispatcher::with_default(&dispatch, || {
        let parent = info_span!("token");
        let child = info_span!("qmatmul");
        let mut entered = Some(parent.enter());
        let mut n = 0u32;
        c.bench_function(name, |b| {
            b.iter(|| {
                child.in_scope(|| black_box(()));
                n += 1;
                if n == 1000 {
                    n = 0;
                    drop(entered.take());
                    entered = Some(parent.enter());
                }
            })
        });
        drop(entered);
    });
}

fn overhead(c: &mut Criterion) {
    let group_name = |s: &str| format!("span_pair/{s}");
    pairs(c, &group_name("no_subscriber"), Dispatch::none());
    pairs(
        c,
        &group_name("registry"),
        Dispatch::new(tracing_subscriber::registry()),
    );

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("bench.db")).unwrap());
    // This loop makes ~25 M records a second, far more than any processor takes: with the
    // default policy the thread would wait for the processor, and the figure would be the
    // processor's rate. Dropping when the ring is full measures the hot path itself (a
    // failed push costs the same as a successful one).
    let (layer, guard) = EnergyLayer::builder()
        .store(Arc::clone(&store))
        .power(None)
        .overflow(tracing_energy::Overflow::Drop)
        .build()
        .unwrap();
    pairs(
        c,
        &group_name("energy_layer"),
        Dispatch::new(tracing_subscriber::registry().with(layer)),
    );
    let report = guard.finish().unwrap();
    eprintln!(
        "energy layer: {} sections recorded, {} dropped by the full queue (the processor runs on the other core)",
        report.sections, report.dropped_records
    );

    let (chrome, chrome_guard) = tracing_chrome::ChromeLayerBuilder::new()
        .file(dir.path().join("trace.json"))
        .include_args(false)
        .build();
    pairs(
        c,
        &group_name("tracing_chrome"),
        Dispatch::new(tracing_subscriber::registry().with(chrome)),
    );
    drop(chrome_guard);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
