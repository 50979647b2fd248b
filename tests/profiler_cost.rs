//! The profiler's own cost, stored on every run: a source whose sampler thread burns a known
//! amount of CPU per window, a run without a source, a rotated run, and what `summary`
//! shows.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cli_ok;
use tracing::info_span;
use tracing_energy::cpu_time::thread_cpu_ns;
use tracing_energy::power::{
    Availability, DomainEnergy, PowerSample, PowerSource, SampleBuffer, SourceContext, SourceEnd,
};
use tracing_energy::store::{NewRun, ProfilerCost, Store};
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

/// CPU time the source burns on its own thread per window.
const BURN_NS: u64 = 50_000_000;

/// 1 W in 100 ms windows, each after burning `BURN_NS` of the sampler thread's own CPU time
/// (by its CPU clock, so a loaded machine makes it take longer, never less).
struct Burner {
    burns: Arc<AtomicU64>,
}

impl PowerSource for Burner {
    fn name(&self) -> String {
        "burner".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn is_available(&self) -> Availability {
        Availability::Available("synthetic".into())
    }
    fn run(&mut self, ctx: &mut SourceContext) -> tracing_energy::Result<SourceEnd> {
        let mut start = tracing_energy::clock::now_ns();
        loop {
            if ctx.wait(Duration::from_millis(100)) {
                return Ok(SourceEnd::Stopped);
            }
            let from = thread_cpu_ns().unwrap();
            let mut x = 0u64;
            while thread_cpu_ns().unwrap() - from < BURN_NS {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            self.burns.fetch_add(1, Ordering::Relaxed);
            let end = tracing_energy::clock::now_ns();
            let energy = DomainEnergy {
                cpu: Some((end - start) as f64 / 1e6),
                ..DomainEnergy::default()
            };
            ctx.emit(PowerSample::new(start, end, energy, ctx.source_name(), false).unwrap());
            start = end;
        }
    }
}

/// Enters a span in a parent `n` times on the calling thread.
fn spans(n: usize) {
    let parent = info_span!("work", phase = "compute");
    let child = info_span!("step");
    let _p = parent.enter();
    for _ in 0..n {
        let _c = child.enter();
    }
}

fn assert_consistent(cost: &ProfilerCost, sections: u64) {
    let ns = cost.hot_path_ns_per_pair.expect("calibrated");
    assert!(ns > 0.0, "{cost:?}");
    assert_eq!(
        cost.hot_path_ms,
        Some(sections as f64 * ns / 1e6),
        "{cost:?}"
    );
    let processor = cost.processor_cpu_ms.expect("processor measured");
    let writer = cost.writer_cpu_ms.expect("writer measured");
    assert!(processor >= 0.0 && writer >= 0.0, "{cost:?}");
    let process = cost.process_cpu_ms.expect("process measured");
    assert!(process >= cost.threads_cpu_ms().unwrap(), "{cost:?}");
}

#[test]
fn a_burning_sampler_thread_is_counted_and_stored() {
    if !tracing_energy::cpu_time::supported() {
        eprintln!("skipped: no per-thread CPU clocks here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let burns = Arc::new(AtomicU64::new(0));
    let wall = Instant::now();
    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .buffer(Arc::new(SampleBuffer::new()))
        .custom_source(Box::new(Burner {
            burns: Arc::clone(&burns),
        }))
        .interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || {
        let until = Instant::now() + Duration::from_millis(700);
        while Instant::now() < until {
            spans(1000);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let report = guard.finish().unwrap();
    let wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    let cost = report.profiler.expect("measured");
    assert_consistent(&cost, report.sections);
    assert!(report.sections >= 1000, "{}", report.sections);
    let burned = burns.load(Ordering::Relaxed);
    assert!(burned >= 3, "{burned} windows");
    let sampler = cost
        .sampler_cpu_ms
        .expect("a source: the sampler is measured");
    // Every burn after the run's start is in; one may have begun before it.
    let at_least = (burned - 1) as f64 * BURN_NS as f64 / 1e6;
    assert!(sampler >= at_least, "sampler {sampler} ms < {at_least} ms");
    assert!(sampler < wall_ms, "sampler {sampler} ms, wall {wall_ms} ms");
    assert!(cost.share_of_process().unwrap() > 0.0);

    let store = Store::open_existing(&db).unwrap();
    let run = store.get_run(report.run_id).unwrap().unwrap();
    assert_eq!(run.profiler, Some(cost), "stored as reported");

    let text = cli_ok(&db, &["summary", "latest"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("profiler: "))
        .unwrap_or_else(|| panic!("no profiler line in:\n{text}"));
    assert!(
        line.contains("s CPU (sampler ")
            && line.contains("hot path ~")
            && line.contains("% of the process's"),
        "{line}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli_ok(&db, &["summary", "latest", "--format", "json"])).unwrap();
    let stored = &json["run"]["profiler"];
    assert_eq!(stored["sampler_cpu_ms"].as_f64(), Some(sampler), "{stored}");
    assert_eq!(
        stored["hot_path_ns_per_pair"].as_f64(),
        cost.hot_path_ns_per_pair
    );
}

#[test]
fn without_a_source_processor_and_writer_are_still_measured() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, guard) = EnergyLayer::builder().db(&db).power(None).build().unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(sub, || spans(5000));
    let report = guard.finish().unwrap();
    let cost = report.profiler.expect("measured");
    if !tracing_energy::cpu_time::supported() {
        return;
    }
    assert_eq!(cost.sampler_cpu_ms, None, "no sampler: none, not 0");
    assert_consistent(&cost, report.sections);
    let store = Store::open_existing(&db).unwrap();
    assert_eq!(
        store.get_run(report.run_id).unwrap().unwrap().profiler,
        Some(cost)
    );
    let text = cli_ok(&db, &["summary", "latest"]);
    assert!(
        text.contains("profiler: ") && text.contains("(sampler none, processor "),
        "{text}"
    );
}

#[test]
fn each_rotated_run_stores_its_own_share() {
    if !tracing_energy::cpu_time::supported() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (layer, mut guard) = EnergyLayer::builder().db(&db).power(None).build().unwrap();
    let sub = tracing_subscriber::registry().with(layer);
    let (first, second) = tracing::subscriber::with_default(sub, || {
        spans(3000);
        let first = guard.rotate(NewRun::new()).unwrap();
        spans(1000);
        (first, guard.finish().unwrap())
    });
    for r in [&first, &second] {
        assert_consistent(r.profiler.as_ref().expect("measured"), r.sections);
    }
    assert_ne!(first.run_id, second.run_id);
    assert!(first.sections > second.sections);
    let store = Store::open_existing(&db).unwrap();
    for r in [&first, &second] {
        assert_eq!(
            store.get_run(r.run_id).unwrap().unwrap().profiler,
            r.profiler
        );
    }
}
