//! Energy profiling of any traced program: `#[instrument]` on your own functions, sync and
//! async (tokio), two runs in one process, then energy per span path.
//!
//! ```text
//! cargo run --release --example instrumented
//! tracing-energy spans latest --db instrumented.db
//! tracing-energy export latest --format folded --db instrumented.db > energy.folded
//! tracing-energy report latest --db instrumented.db -o report.html   # with a flame graph
//! ```

use std::time::{Duration, Instant};

use tracing::{info_span, instrument, Instrument};
use tracing_energy::store::{NewRun, Store};
use tracing_energy::{EnergyLayer, RunReport};
use tracing_subscriber::prelude::*;

/// Stands in for real work: keeps a core busy for `d`.
fn burn(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[instrument]
fn load(batch: u32) -> Vec<u64> {
    burn(Duration::from_millis(2));
    (0..1000).map(|i| i * batch as u64).collect()
}

#[instrument(skip(data))]
fn checksum(data: &[u64]) -> u64 {
    burn(Duration::from_millis(1));
    data.iter()
        .fold(0, |a, x| a.wrapping_mul(31).wrapping_add(*x))
}

#[instrument(skip(data))]
fn transform(data: Vec<u64>) -> u64 {
    burn(Duration::from_millis(4));
    checksum(&data)
}

#[instrument]
fn compute(x: u64) -> u64 {
    burn(Duration::from_micros(400));
    x.wrapping_mul(2_654_435_761)
}

/// An async handler: each `.await` ends one poll of its span; the row sums the polls.
#[instrument]
async fn handle_request(id: u64) -> u64 {
    let mut x = id;
    for _ in 0..3 {
        x = compute(x);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    x
}

fn print_run(store: &Store, report: &RunReport) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "run {}: {:.1} J measured ({}), {} sections, {} dropped",
        report.run_id,
        report.total_energy_mj.unwrap_or(f64::NAN) / 1e3,
        match (&report.power_source, report.estimated) {
            (Some(s), true) => format!("{s}, ESTIMATED"),
            (Some(s), false) => s.clone(),
            (None, _) => "no power source".into(),
        },
        report.sections,
        report.dropped_records
    );
    println!("  {:<40} {:>7} {:>12}", "span path", "calls", "exclusive J");
    for r in store.get_span_rollup(report.run_id)?.iter().take(5) {
        println!(
            "  {:<40} {:>7} {:>12.3}",
            r.path,
            r.calls,
            r.exclusive_energy_mj.unwrap_or(f64::NAN) / 1e3
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = "instrumented.db";
    let (layer, mut guard) = EnergyLayer::builder()
        .db(db)
        .experiment("instrumented-example")
        .build()?;
    tracing_subscriber::registry().with(layer).init();

    // Run 1: a synchronous pipeline.
    for batch in 0..50 {
        let _pipeline = info_span!("pipeline", batch).entered();
        let data = load(batch);
        transform(data);
    }
    // Close run 1 and start run 2 without touching the subscriber.
    let mut next = NewRun::new();
    next.experiment = Some("instrumented-example".into());
    next.tags = vec!["async".into()];
    let first = guard.rotate(next)?;

    // Run 2: async request handlers on a 2-thread tokio runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    rt.block_on(async {
        let tasks: Vec<_> = (0..300)
            .map(|id| tokio::spawn(handle_request(id).instrument(info_span!("request", id))))
            .collect();
        for t in tasks {
            t.await.expect("request task");
        }
    });
    let second = guard.finish()?;

    let store = Store::open_existing(db)?;
    print_run(&store, &first)?;
    print_run(&store, &second)?;
    println!(
        "\nnext: tracing-energy spans {id} --db {db}\n      tracing-energy export {id} --format folded --db {db} > energy.folded\n      tracing-energy report {id} --db {db} -o report.html",
        id = second.run_id
    );
    Ok(())
}
