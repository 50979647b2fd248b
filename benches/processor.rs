//! How many section records per second the processor turns into rows, on one core: one
//! thread enters and exits a span N times as fast as it can (about 40 ns a pair), with no
//! power source, so the wall time from the first record to `guard.finish()` returning is
//! the processor's time to take, attribute and hand over every record (a lower bound on
//! its rate; the producer is 25x faster).
//!
//! ```text
//! cargo bench --bench processor            # 2,000,000 records, 3 runs
//! ```

use std::time::Instant;

use tracing::info_span;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    println!("| run | records | wall (s) | records/s | dropped |");
    println!("|---|---|---|---|---|");
    for run in 1..=3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let (layer, guard) = EnergyLayer::builder()
            .db(dir.path().join("bench.db"))
            .power(None)
            .build()
            .expect("layer");
        let sub = tracing_subscriber::registry().with(layer);
        let t0 = Instant::now();
        tracing::subscriber::with_default(sub, || {
            let root = info_span!("root");
            let _r = root.enter();
            let child = info_span!("child");
            for _ in 0..n {
                child.in_scope(|| ());
            }
        });
        let report = guard.finish().expect("finish");
        let wall = t0.elapsed().as_secs_f64();
        println!(
            "| {run} | {} | {wall:.2} | {:.0} | {} |",
            report.sections,
            report.sections as f64 / wall,
            report.dropped_records
        );
    }
}
