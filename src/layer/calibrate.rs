//! The hot path's cost per span enter + exit pair, calibrated once per process, for the
//! run's `hot_path_ms` (sections recorded x this cost).
//!
//! Method: on a thread of its own (so that no traced thread's per-thread state is touched),
//! a throwaway `tracing_subscriber::registry()` with an [`EnergyLayer`] of its own (no
//! processor, no store, no sampler: its ring, big enough for every record, is dropped after)
//! becomes that thread's default subscriber. A span is entered and exited inside a parent
//! that is re-entered every 1,000 pairs, as `benches/overhead.rs` does: 500 pairs to warm
//! up (the thread's ring, the span cache), then batches of 1,000 timed pairs, at most 8 and
//! stopping after 3 once 4 ms have passed (a debug build is much slower). The figure is the
//! median batch's time per pair. It is the cost of a pair *with the profiler installed*
//! (the registry's share included: without the profiler, candle's spans are disabled and
//! cost ~1 ns), as the traced threads pay it while nothing else competes for the core; a
//! busy machine or a cold cache makes real pairs dearer, so the hot-path time is an
//! estimate, labelled as one. It takes about 1 ms in a release build.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::prelude::*;

use super::builder::Overflow;
use super::hot::{EnergyLayer, Shared};
use super::Vocabulary;

const WARM_UP: u32 = 500;
const BATCH: u32 = 1000;
const MAX_BATCHES: usize = 8;
const MIN_BATCHES: usize = 3;
const TIME_BUDGET: Duration = Duration::from_millis(4);

static NS_PER_PAIR: OnceLock<Option<f64>> = OnceLock::new();

/// The calibrated cost of one enter + exit pair (ns), measured at the first call in the
/// process; `None` if the calibration could not run.
pub(crate) fn ns_per_pair() -> Option<f64> {
    *NS_PER_PAIR.get_or_init(|| {
        std::thread::Builder::new()
            .name("tracing-energy-calibration".into())
            .spawn(measure)
            .ok()?
            .join()
            .ok()
    })
}

fn measure() -> f64 {
    let records = (WARM_UP + BATCH * MAX_BATCHES as u32) as usize * 2;
    let shared = Arc::new(Shared::new(
        Vocabulary::new(),
        None,
        records,
        records * 64,
        Overflow::Drop,
    ));
    let subscriber = tracing_subscriber::registry().with(EnergyLayer { shared });
    tracing::subscriber::with_default(subscriber, || {
        let parent = tracing::info_span!("tracing-energy-calibration-outer");
        let child = tracing::info_span!("tracing-energy-calibration-inner");
        let pairs = |n: u32| {
            let _outer = parent.enter();
            for _ in 0..n {
                let _inner = child.enter();
                std::hint::black_box(());
            }
        };
        pairs(WARM_UP);
        let started = Instant::now();
        let mut per_pair = Vec::with_capacity(MAX_BATCHES);
        while per_pair.len() < MAX_BATCHES
            && (per_pair.len() < MIN_BATCHES || started.elapsed() < TIME_BUDGET)
        {
            let t = Instant::now();
            pairs(BATCH);
            // The parent's own enter and exit ride along: one pair per batch, amortized.
            per_pair.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        }
        per_pair.sort_by(f64::total_cmp);
        per_pair[per_pair.len() / 2]
    })
}

#[cfg(test)]
mod tests {
    /// The calibration gives a plausible figure, the same every time, quickly.
    #[test]
    fn calibrates_once_to_a_plausible_cost() {
        let t = std::time::Instant::now();
        let ns = super::ns_per_pair().expect("calibrated");
        let first = t.elapsed();
        assert!(ns > 1.0 && ns < 100_000.0, "{ns} ns per pair");
        assert_eq!(super::ns_per_pair(), Some(ns), "measured once per process");
        // Release builds take ~1 ms; allow a slow debug build on a loaded machine.
        assert!(first < std::time::Duration::from_secs(2), "{first:?}");
    }
}
