//! The energy layer end to end: spans -> sections -> attributed energy in a real database.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::KnownPower;
use tracing::info_span;
use tracing_energy::power::SampleBuffer;
use tracing_energy::store::{RunStatus, Store};
use tracing_energy::{EnergyLayer, SyncPoint};
use tracing_subscriber::prelude::*;

/// Registers the synthetic source under the name `known` for the builder.
fn layer_with(db: &std::path::Path, mw: Vec<f64>) -> (EnergyLayer, tracing_energy::EnergyGuard) {
    let buffer = Arc::new(SampleBuffer::new());
    EnergyLayer::builder()
        .db(db)
        .buffer(buffer)
        .custom_source(Box::new(KnownPower {
            window: Duration::from_millis(10),
            mw,
        }))
        .interval(Duration::from_millis(10))
        .model("synthetic")
        .build()
        .unwrap()
}

fn busy(ms: u64) {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(ms) {
        std::hint::black_box(0);
    }
}

/// The integral of the stored power timeline over [s, e], computed here independently.
fn integrate(power: &[tracing_energy::store::PowerRow], s: u64, e: u64) -> f64 {
    power
        .iter()
        .map(|p| {
            let a = p.start_ns.max(s);
            let b = p.end_ns.min(e);
            if b > a {
                p.total_mj * (b - a) as f64 / (p.end_ns - p.start_ns) as f64
            } else {
                0.0
            }
        })
        .sum()
}

#[test]
fn constant_power_gives_power_times_duration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = layer_with(&db, vec![2000.0]);
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        let outer = info_span!("work", phase = "compute");
        let _o = outer.enter();
        for i in 0..3u64 {
            let s = info_span!("step", i);
            let _e = s.enter();
            busy(15);
        }
    });
    let report = guard.finish().unwrap();
    let store = Store::open_existing(&db).unwrap();
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Complete);
    assert_eq!(run.power_source.as_deref(), Some("known"));
    let sections = store.get_pipeline_sections(report.run_id).unwrap();
    assert_eq!(sections.len(), 4, "{sections:?}");
    for s in &sections {
        let m = &s.record.measured;
        // 2000 mW = 2e-6 mJ per ns, over the time the span was entered (a span instance's
        // row runs from its first enter to its close).
        let busy_ns = s.record.busy_ms.unwrap() * 1e6;
        assert!(busy_ns <= (m.end_ns - m.start_ns) as f64 + 1.0);
        assert_eq!(s.record.polls, Some(1));
        let expected = 2e-6 * busy_ns;
        assert!(
            (m.energy_mj.unwrap() - expected).abs() < 1e-9 * expected.max(1.0),
            "{} vs {expected}",
            m.energy_mj.unwrap()
        );
        assert_eq!(m.energy_method.as_deref(), Some("overlap"));
        assert!((m.cpu_energy_mj.unwrap() - expected / 2.0).abs() < 1e-9);
        assert_eq!(m.ane_energy_mj, None);
    }
    let phase = sections.iter().find(|s| s.record.kind == "phase").unwrap();
    assert_eq!(phase.record.phase.as_deref(), Some("compute"));
    let steps: f64 = sections
        .iter()
        .filter(|s| s.record.name == "step")
        .map(|s| s.record.measured.energy_mj.unwrap())
        .sum();
    let excl = phase.record.measured.exclusive_energy_mj.unwrap();
    assert!((phase.record.measured.energy_mj.unwrap() - steps - excl).abs() < 1e-9);
    assert_eq!(
        sections
            .iter()
            .filter(|s| s.record.name == "step")
            .map(|s| s.record.parent_index)
            .collect::<Vec<_>>(),
        vec![Some(phase.record.section_index); 3]
    );
}

#[test]
fn varying_power_is_integrated_exactly_and_conserved() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = layer_with(&db, vec![1000.0, 5000.0, 3000.0]);
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        busy(5);
        for _ in 0..4 {
            let s = info_span!("outer");
            let _e = s.enter();
            busy(7);
            {
                let inner = info_span!("inner");
                let _i = inner.enter();
                busy(13);
            }
            busy(3);
        }
        busy(5);
    });
    let report = guard.finish().unwrap();
    let store = Store::open_existing(&db).unwrap();
    let power = store.get_power_timeline(report.run_id).unwrap();
    for w in power.windows(2) {
        assert!(
            w[1].start_ns >= w[0].end_ns,
            "overlapping power rows {:?} {:?}",
            (w[0].start_ns, w[0].end_ns),
            (w[1].start_ns, w[1].end_ns)
        );
    }
    assert!(power.len() >= 8);
    let sections = store.get_pipeline_sections(report.run_id).unwrap();
    assert_eq!(sections.len(), 8);
    let mut exclusive_sum = 0.0;
    for s in &sections {
        let m = &s.record.measured;
        // One poll each: entered from the row's start for busy_ms.
        assert_eq!(s.record.polls, Some(1));
        let busy_end = m.start_ns + (s.record.busy_ms.unwrap() * 1e6).round() as u64;
        let want = integrate(&power, m.start_ns, busy_end);
        assert!(
            (m.energy_mj.unwrap() - want).abs() < 1e-9 * want.max(1.0),
            "{}: {} vs {want}",
            s.record.name,
            m.energy_mj.unwrap()
        );
        assert!(m.sample_windows.unwrap() >= 1);
        exclusive_sum += m.exclusive_energy_mj.unwrap();
    }
    let run = store.get_run(report.run_id).unwrap().unwrap();
    let total = run.total_energy_mj.unwrap();
    let unattributed = run.unattributed_energy_mj.unwrap();
    assert!(
        (exclusive_sum + unattributed - total).abs() < 1e-9 * total,
        "{exclusive_sum} + {unattributed} != {total}"
    );
    assert!(
        unattributed > 0.0,
        "the busy time outside spans is unattributed"
    );
    assert!((run.attributed_energy_mj.unwrap() - exclusive_sum).abs() < 1e-9 * total);
}

#[test]
fn sections_on_two_threads_share_power_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = layer_with(&db, vec![4000.0]);
    let sub = Arc::new(tracing_subscriber::registry().with(layer));
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let sub = Arc::clone(&sub);
            std::thread::spawn(move || {
                tracing::subscriber::with_default(sub, || {
                    let s = info_span!("thread_work", k);
                    let _e = s.enter();
                    busy(40);
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(sub);
    let report = guard.finish().unwrap();
    let store = Store::open_existing(&db).unwrap();
    let sections = store.get_pipeline_sections(report.run_id).unwrap();
    assert_eq!(sections.len(), 2);
    let run = store.get_run(report.run_id).unwrap().unwrap();
    let sum: f64 = sections
        .iter()
        .map(|s| s.record.measured.energy_mj.unwrap())
        .sum();
    // Both sections overlap in time: together they cannot get more than was measured while
    // either ran.
    let (s0, e0) = common::extent(sections.iter().map(|s| &s.record.measured));
    let power = store.get_power_timeline(report.run_id).unwrap();
    let union = integrate(&power, s0, e0);
    assert!(sum <= union * (1.0 + 1e-9), "{sum} > {union}");
    assert!(
        (sum + run.unattributed_energy_mj.unwrap() - run.total_energy_mj.unwrap()).abs()
            < 1e-9 * run.total_energy_mj.unwrap()
    );
}

#[test]
fn user_convention_fields_make_tokens_layers_components_and_ops() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c2 = Arc::clone(&calls);
    let buffer = Arc::new(SampleBuffer::new());
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .buffer(buffer)
        .custom_source(Box::new(KnownPower {
            window: Duration::from_millis(10),
            mw: vec![1000.0],
        }))
        .interval(Duration::from_millis(10))
        .synchronize(
            Arc::new(move || {
                c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
            SyncPoint::PerToken,
        )
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        let decode = info_span!("decode");
        let _d = decode.enter();
        for t in 0..3u64 {
            let tok = info_span!("token", index = t, text = tracing::field::Empty);
            let _t = tok.enter();
            let fwd = info_span!("fwd", forward = true);
            let _f = fwd.enter();
            for l in 0..2u64 {
                let layer = info_span!("block", layer = l);
                let _l = layer.enter();
                for comp in ["attention", "mlp"] {
                    let c = info_span!("part", component = comp);
                    let _c = c.enter();
                    let op = info_span!("mm", op = "matmul");
                    let _o = op.enter();
                    busy(1);
                }
            }
            drop(_f);
            tok.record("text", format!("t{t}").as_str());
        }
    });
    let report = guard.finish().unwrap();
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "synchronized once per token"
    );
    let store = Store::open_existing(&db).unwrap();
    let tokens = store.get_tokens(report.run_id).unwrap();
    assert_eq!(tokens.len(), 3);
    assert_eq!(tokens[2].record.text.as_deref(), Some("t2"));
    assert_eq!(tokens[1].record.phase, "decode");
    for t in &tokens {
        let layers = store
            .get_layer_metrics(report.run_id, t.record.token_index)
            .unwrap();
        assert_eq!(layers.len(), 2);
        let comps = store.get_component_metrics(layers[1].id).unwrap();
        assert_eq!(
            comps
                .iter()
                .map(|c| c.record.component.as_str())
                .collect::<Vec<_>>(),
            ["attention", "mlp"]
        );
        let ops = store.get_operation_metrics(comps[0].id).unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].record.operation, "matmul");
        // Inclusive = exclusive + children, at every level.
        let l = &layers[1].record.measured;
        let csum: f64 = comps
            .iter()
            .map(|c| c.record.measured.energy_mj.unwrap())
            .sum();
        assert!((l.energy_mj.unwrap() - csum - l.exclusive_energy_mj.unwrap()).abs() < 1e-9);
    }
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Complete);
    assert_eq!(run.dropped_records, 0);
}

#[test]
fn a_panic_still_flushes_through_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db2 = db.clone();
    let result = std::thread::spawn(move || {
        let (layer, _guard) = layer_with(&db2, vec![1000.0]);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            let s = info_span!("before_panic");
            let _e = s.enter();
            busy(5);
        });
        panic!("user code fails");
    })
    .join();
    assert!(result.is_err());
    let store = Store::open_existing(&db).unwrap();
    let run = store.latest_run().unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().contains("panicked"));
    assert_eq!(store.get_pipeline_sections(run.run_id).unwrap().len(), 1);
}

#[test]
fn without_a_power_source_energy_is_unknown_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = EnergyLayer::builder().db(&db).power(None).build().unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        let s = info_span!("timed");
        let _e = s.enter();
        busy(2);
    });
    let report = guard.finish().unwrap();
    let store = Store::open_existing(&db).unwrap();
    let s = &store.get_pipeline_sections(report.run_id).unwrap()[0];
    assert_eq!(s.record.measured.energy_mj, None);
    assert_eq!(s.record.measured.energy_method, None);
    assert!(s.duration_ms >= 2.0);
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!((run.total_energy_mj, run.power_source), (None, None));
}

#[test]
fn a_full_queue_drops_records_and_counts_them_on_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .power(None)
        .queue_capacity(1024)
        .overflow(tracing_energy::Overflow::Drop)
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    let pairs = 200_000u64;
    tracing::subscriber::with_default(sub, || {
        let root = info_span!("root");
        let _r = root.enter();
        let child = info_span!("child");
        for _ in 0..pairs {
            child.in_scope(|| ());
        }
    });
    let report = guard.finish().unwrap();
    assert!(
        report.dropped_sections > 0,
        "a 1,024-record ring with the drop policy must overflow"
    );
    assert_eq!(
        report.sections + report.dropped_sections,
        pairs + 1,
        "every record is either processed or counted"
    );
    let store = Store::open_existing(&db).unwrap();
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.dropped_records, report.dropped_records);
    assert_eq!(run.status, RunStatus::Complete);
}

#[test]
fn candle_llama_blocks_inside_a_token_are_numbered_in_order() {
    // candle-transformers' `llama` model has no forward span: its `block` spans sit directly
    // in the token, and carry no index.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = EnergyLayer::builder().db(&db).power(None).build().unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    const LLAMA: &str = "candle_transformers::models::llama";
    tracing::subscriber::with_default(sub, || {
        let blocks: Vec<_> = (0..3)
            .map(|_| tracing::span!(target: LLAMA, tracing::Level::TRACE, "block"))
            .collect();
        let attn = tracing::span!(target: LLAMA, tracing::Level::TRACE, "attn");
        let mlp = tracing::span!(target: LLAMA, tracing::Level::TRACE, "mlp");
        for t in 0..2u64 {
            let tok = info_span!("token", index = t);
            let _t = tok.enter();
            for b in &blocks {
                let _b = b.enter();
                attn.in_scope(|| busy(1));
                mlp.in_scope(|| busy(1));
            }
        }
    });
    let report = guard.finish().unwrap();
    let store = Store::open_existing(&db).unwrap();
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.dropped_records, 0);
    for t in 0..2 {
        let layers = store.get_layer_metrics(report.run_id, t).unwrap();
        assert_eq!(
            layers
                .iter()
                .map(|l| l.record.layer_index)
                .collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let comps = store.get_component_metrics(layers[2].id).unwrap();
        assert_eq!(
            comps
                .iter()
                .map(|c| c.record.component.as_str())
                .collect::<Vec<_>>(),
            ["attention", "mlp"]
        );
    }
}
