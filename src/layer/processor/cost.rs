//! The profiler's own cost over a run: the CPU clocks of its threads read at the run's
//! start and at its end (see [`crate::cpu_time`]), the hot path's share, and the sampler's
//! own process where its source tells (the windows it reported between the two marks).

use super::Processor;
use crate::cpu_time::{self, CpuTally};
use crate::power::{Sampler, SamplerProcessTally, SamplerProcessTotals};
use crate::store::{ProfilerCost, SamplerProcessCost, Store};

/// What the sampler counts for the profiler's cost, kept by the processor (readable after
/// the sampler stops): its threads' CPU-time slots and its source's own process.
#[derive(Debug, Clone)]
pub(super) struct SamplerTallies {
    cpu: CpuTally,
    process: SamplerProcessTally,
}

impl SamplerTallies {
    pub(super) fn of(sampler: &Sampler) -> SamplerTallies {
        SamplerTallies {
            cpu: sampler.cpu_tally(),
            process: sampler.process_tally(),
        }
    }
}

/// The clocks at a run's start (ns), subtracted from those at its end.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuMark {
    sampler: Option<u64>,
    processor: Option<u64>,
    writer: Option<u64>,
    process: Option<u64>,
    sampler_process: Option<SamplerProcessTotals>,
}

impl CpuMark {
    /// The clocks now. Call it on the processor thread (it reads its own clock).
    pub(super) fn now(sampler: Option<&SamplerTallies>, store: &Store) -> CpuMark {
        CpuMark {
            sampler: sampler.and_then(|s| s.cpu.total_ns()),
            processor: cpu_time::thread_cpu_ns(),
            writer: store.writer_cpu_ns(),
            process: cpu_time::process_cpu_ns(),
            sampler_process: sampler.and_then(|s| s.process.totals()),
        }
    }
}

/// The windows between two marks, as stored: `None` when the source never reported.
fn sampler_process(start: &CpuMark, end: &CpuMark) -> Option<SamplerProcessCost> {
    let d =
        SamplerProcessTally::between(start.sampler_process.as_ref(), end.sampler_process.as_ref())?;
    let known = |v: f64| (d.windows > 0).then_some(v);
    Some(SamplerProcessCost {
        windows: d.windows,
        windows_unknown: d.windows_unknown,
        cpu_ms: known(d.cpu_ns as f64 / 1e6),
        energy_mj: known(d.energy_mj),
        cpu_energy_mj: known(d.cpu_energy_mj),
        window_ms: known(d.window_ns as f64 / 1e6),
    })
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
        let end = CpuMark::now(self.sampler_tallies.as_ref(), &self.store);
        let start = &self.run.cpu;
        let ns = self.hot_ns_per_pair;
        ProfilerCost {
            sampler_cpu_ms: ms(start.sampler, end.sampler),
            processor_cpu_ms: ms(start.processor, end.processor),
            writer_cpu_ms: ms(start.writer, end.writer),
            hot_path_ms: ns.map(|ns| self.run.sections as f64 * ns / 1e6),
            hot_path_ns_per_pair: ns,
            process_cpu_ms: ms(start.process, end.process),
            sampler_process: sampler_process(start, &end),
        }
    }
}
