//! The layer on programs other than a model: a tokio multi-thread runtime with
//! instrumented async handlers, nested sync spans, and run rotation.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::busy;
use common::KnownPower;
use tracing::{info_span, instrument, Instrument};
use tracing_energy::power::SampleBuffer;
use tracing_energy::store::{NewRun, RunStatus, Store};
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

#[instrument]
fn compute(n: u64) -> u64 {
    busy(Duration::from_micros(150));
    n * 2
}

#[instrument(skip_all, fields(id))]
async fn handle_request(id: u64) -> u64 {
    let mut acc = 0;
    for step in 0..3 {
        acc += compute(id + step);
        tokio::task::yield_now().await;
    }
    acc
}

fn layer(
    db: &std::path::Path,
    buffer: Arc<SampleBuffer>,
) -> (EnergyLayer, tracing_energy::EnergyGuard) {
    EnergyLayer::builder()
        .db(db)
        .buffer(buffer)
        .custom_source(Box::new(KnownPower {
            window: Duration::from_millis(20),
            mw: vec![10_000.0],
        }))
        .interval(Duration::from_millis(20))
        .build()
        .unwrap()
}

#[test]
fn async_span_instances_group_their_polls_and_conserve_energy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = layer(&db, Arc::new(SampleBuffer::new()));
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let requests = 400u64;
    let for_workers = dispatch.clone();
    tracing::dispatcher::with_default(&dispatch, || {
        // The workers get the subscriber too (as a global default would give them).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&for_workers));
            })
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for id in 0..requests {
                tasks.push(tokio::spawn(
                    handle_request(id).instrument(info_span!("request", id)),
                ));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    let report = guard.finish().unwrap();
    assert_eq!(report.dropped_records, 0);
    let store = Store::open_existing(&db).unwrap();
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Complete);
    let sections = store.get_pipeline_sections(report.run_id).unwrap();
    let by_name = |n: &str| sections.iter().filter(|s| s.record.name == n).count() as u64;
    // One row per span instance, whatever the number of polls.
    assert_eq!(by_name("request"), requests);
    assert_eq!(by_name("handle_request"), requests);
    assert_eq!(by_name("compute"), 3 * requests);
    let ids: std::collections::HashSet<_> =
        sections.iter().map(|s| s.record.section_index).collect();
    assert_eq!(ids.len(), sections.len(), "span ids are unique per row");
    let index: HashMap<u64, &_> = sections
        .iter()
        .map(|s| (s.record.section_index, s))
        .collect();
    let power = store.get_power_timeline(report.run_id).unwrap();
    let sampled = (power[0].start_ns, power.last().unwrap().end_ns);
    for s in &sections {
        let r = &s.record;
        assert_eq!(r.measured.span_id, Some(r.section_index));
        match r.name.as_str() {
            "request" => {
                assert_eq!((r.depth, r.parent_index), (0, None));
                assert_eq!(r.path.as_deref(), Some("request"));
            }
            "handle_request" => {
                // Entered once per poll: the 3 awaits give at least 4 polls.
                assert!(r.polls.unwrap() >= 4, "{:?}", r.polls);
                assert_eq!(r.depth, 1);
                let parent = index[&r.parent_index.unwrap()];
                assert_eq!(parent.record.name, "request");
                assert_eq!(r.path.as_deref(), Some("request;handle_request"));
            }
            "compute" => {
                assert_eq!((r.depth, r.polls), (2, Some(1)));
                assert_eq!(
                    index[&r.parent_index.unwrap()].record.name,
                    "handle_request"
                );
                assert_eq!(r.path.as_deref(), Some("request;handle_request;compute"));
            }
            other => panic!("unexpected section {other}"),
        }
        let busy = r.busy_ms.unwrap();
        assert!(
            busy <= s.duration_ms + 1e-6,
            "busy {busy} > duration {}",
            s.duration_ms
        );
        // Energy is known wherever a sample covers the row; a row outside the sampled
        // period (the sampler's first window can start after the first spans on a loaded
        // machine) stays unknown, never 0.
        if r.measured.energy_mj.is_none() {
            assert!(
                r.measured.start_ns < sampled.0 || r.measured.end_ns > sampled.1,
                "{} has no energy inside the sampled period",
                r.name
            );
            assert_eq!(r.measured.exclusive_energy_mj, None);
        }
    }
    let known = sections
        .iter()
        .filter(|s| s.record.measured.energy_mj.is_some())
        .count();
    assert!(
        known * 10 >= sections.len() * 9,
        "{known} of {} rows",
        sections.len()
    );
    // Conservation: every row's exclusive energy plus the unattributed = measured.
    let exclusive: f64 = sections
        .iter()
        .filter_map(|s| s.record.measured.exclusive_energy_mj)
        .sum();
    let total = run.total_energy_mj.unwrap();
    let unattributed = run.unattributed_energy_mj.unwrap();
    assert!(
        (exclusive + unattributed - total).abs() < 1e-9 * total.max(1.0),
        "{exclusive} + {unattributed} != {total}"
    );
    // The roll-up by path holds the same exclusive energy.
    let rollup = store.get_span_rollup(report.run_id).unwrap();
    let paths: HashMap<&str, _> = rollup.iter().map(|r| (r.path.as_str(), r)).collect();
    assert_eq!(paths["request;handle_request;compute"].calls, 3 * requests);
    let rolled: f64 = rollup.iter().filter_map(|r| r.exclusive_energy_mj).sum();
    assert!((rolled - exclusive).abs() < 1e-6 * exclusive.max(1.0));
    // compute runs 150 µs of busy time each: its energy is its time at 10 W shared by at
    // most two busy threads, so at least half of P x busy.
    let c = paths["request;handle_request;compute"];
    let floor = 10_000.0 * c.busy_ms / 1e3 / 1e3 / 2.0 * 0.9;
    assert!(c.energy_mj.unwrap() >= floor, "{:?} < {floor}", c.energy_mj);
}

#[test]
fn rotation_splits_runs_without_losing_or_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let buffer = Arc::new(SampleBuffer::new());
    let (layer, mut guard) = layer(&db, Arc::clone(&buffer));
    let sub = tracing_subscriber::registry().with(layer);
    let mut reports = Vec::new();
    tracing::subscriber::with_default(sub, || {
        for r in 0..3 {
            for i in 0..40u64 {
                let s = info_span!("job", i);
                let _e = s.enter();
                busy(Duration::from_millis(2));
                compute(i);
            }
            busy(Duration::from_millis(5));
            if r < 2 {
                reports.push(guard.rotate(NewRun::new()).unwrap());
            }
        }
    });
    reports.push(guard.finish().unwrap());
    let store = Store::open_existing(&db).unwrap();
    assert_eq!(reports.len(), 3);
    let ids: Vec<_> = reports.iter().map(|r| r.run_id).collect();
    assert_eq!(store.get_runs(&Default::default()).unwrap().len(), 3);
    // Back to back, no gap and no overlap.
    for w in reports.windows(2) {
        assert_eq!(w[0].end_ns, w[1].start_ns);
    }
    let mut measured_sum = 0.0;
    let mut jobs = 0;
    for id in &ids {
        let run = store.get_run(*id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Complete);
        measured_sum += run.total_energy_mj.unwrap();
        let sections = store.get_pipeline_sections(*id).unwrap();
        jobs += sections.iter().filter(|s| s.record.name == "job").count();
        let exclusive: f64 = sections
            .iter()
            .filter_map(|s| s.record.measured.exclusive_energy_mj)
            .sum();
        let (t, u) = (
            run.total_energy_mj.unwrap(),
            run.unattributed_energy_mj.unwrap(),
        );
        assert!((exclusive + u - t).abs() < 1e-9 * t.max(1.0));
    }
    assert_eq!(jobs, 120, "every job in exactly one run");
    // The runs' measured energies add up to the whole period's: the samples' energy
    // between the first run's start and the last run's end, with partial windows cut.
    let (t0, t1) = (reports[0].start_ns, reports[2].end_ns);
    let whole: f64 = buffer
        .overlapping(t0, t1)
        .iter()
        .map(|s| {
            let a = s.start_ns.max(t0);
            let b = s.end_ns.min(t1);
            s.total_mj * (b - a) as f64 / s.duration_ns() as f64
        })
        .sum();
    assert!(
        (measured_sum - whole).abs() < 1e-6 * whole,
        "{measured_sum} vs {whole}"
    );
}

#[test]
fn periodic_rotation_starts_runs_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .buffer(Arc::new(SampleBuffer::new()))
        .custom_source(Box::new(KnownPower {
            window: Duration::from_millis(20),
            mw: vec![10_000.0],
        }))
        .interval(Duration::from_millis(20))
        .rotate_every(Duration::from_millis(300))
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    let started = Instant::now();
    let mut jobs = 0;
    tracing::subscriber::with_default(sub, || {
        while started.elapsed() < Duration::from_millis(1000) {
            let s = info_span!("job");
            let _e = s.enter();
            busy(Duration::from_millis(3));
            jobs += 1;
        }
    });
    let last = guard.finish().unwrap();
    let store = Store::open_existing(&db).unwrap();
    let runs = store.get_runs(&Default::default()).unwrap();
    assert!(runs.len() >= 3, "{} runs in 1 s at 300 ms", runs.len());
    assert!(runs.iter().all(|r| r.status == RunStatus::Complete));
    assert_eq!(last.run_id, runs.iter().map(|r| r.run_id).max().unwrap());
    let stored: usize = runs
        .iter()
        .map(|r| {
            store
                .get_pipeline_sections(r.run_id)
                .unwrap()
                .iter()
                .filter(|s| s.record.name == "job")
                .count()
        })
        .sum();
    assert_eq!(stored, jobs, "every job in exactly one run");
}

#[test]
fn finishing_inside_a_span_records_the_open_sections() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = layer(&db, Arc::new(SampleBuffer::new()));
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let report = tracing::dispatcher::with_default(&dispatch, || {
        let _main = info_span!("main").entered();
        for i in 0..20 {
            compute(i);
            busy(Duration::from_millis(2));
        }
        // The run ends while `main` is still entered.
        guard.finish().unwrap()
    });
    let store = Store::open_existing(&db).unwrap();
    let sections = store.get_pipeline_sections(report.run_id).unwrap();
    let main = sections
        .iter()
        .find(|s| s.record.name == "main")
        .expect("a row for the span open at the end");
    assert_eq!(main.record.depth, 0);
    let computes: Vec<_> = sections
        .iter()
        .filter(|s| s.record.name == "compute")
        .collect();
    assert_eq!(computes.len(), 20);
    assert!(computes
        .iter()
        .all(|c| c.record.parent_index == Some(main.record.section_index)));
    // main's exclusive energy is what its children did not use: all of it is attributed.
    let run = store.get_run(report.run_id).unwrap().unwrap();
    let exclusive: f64 = sections
        .iter()
        .filter_map(|s| s.record.measured.exclusive_energy_mj)
        .sum();
    let total = run.total_energy_mj.unwrap();
    assert!((exclusive + run.unattributed_energy_mj.unwrap() - total).abs() < 1e-9 * total);
    assert!(main.record.measured.exclusive_energy_mj.unwrap() > 0.0);
}

#[test]
fn tracing_after_the_run_ended_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .power(None)
        .queue_capacity(1024)
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let s = info_span!("before");
        s.in_scope(|| ());
        guard.finish().unwrap();
        // The layer is still installed; 10,000 sections overflow the 1,024-record ring.
        let t = Instant::now();
        let after = info_span!("after");
        for _ in 0..10_000 {
            after.in_scope(|| ());
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "tracing after finish waited on a ring nobody empties: {:?}",
            t.elapsed()
        );
    });
}
