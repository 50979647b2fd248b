//! The profiler's own cost over a run: the CPU clocks of its threads read at the run's
//! start and at its end (see [`crate::cpu_time`]), and the hot path's share.

use super::Processor;
use crate::cpu_time::{self, CpuTally};
use crate::store::{ProfilerCost, Store};

/// The clocks at a run's start (ns), subtracted from those at its end.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuMark {
    sampler: Option<u64>,
    processor: Option<u64>,
    writer: Option<u64>,
    process: Option<u64>,
}

impl CpuMark {
    /// The clocks now. Call it on the processor thread (it reads its own clock).
    pub(super) fn now(sampler: Option<&CpuTally>, store: &Store) -> CpuMark {
        CpuMark {
            sampler: sampler.and_then(CpuTally::total_ns),
            processor: cpu_time::thread_cpu_ns(),
            writer: store.writer_cpu_ns(),
            process: cpu_time::process_cpu_ns(),
        }
    }
}

/// `end - start` in ms, when both are known.
fn ms(start: Option<u64>, end: Option<u64>) -> Option<f64> {
    Some(end?.saturating_sub(start?) as f64 / 1e6)
}

impl Processor {
    /// The cost of the run now ending: each clock's advance since the run's start mark, and
    /// the hot path's estimate (sections recorded x the calibrated ns per pair). Reads the
    /// end mark, so call it on the processor thread once the rows are written and flushed
    /// (the writer publishes its clock after each batch).
    pub(super) fn run_cost(&self) -> ProfilerCost {
        let end = CpuMark::now(self.sampler_cpu.as_ref(), &self.store);
        let start = &self.run.cpu;
        let ns = self.hot_ns_per_pair;
        ProfilerCost {
            sampler_cpu_ms: ms(start.sampler, end.sampler),
            processor_cpu_ms: ms(start.processor, end.processor),
            writer_cpu_ms: ms(start.writer, end.writer),
            hot_path_ms: ns.map(|ns| self.run.sections as f64 * ns / 1e6),
            hot_path_ns_per_pair: ns,
            process_cpu_ms: ms(start.process, end.process),
        }
    }
}
