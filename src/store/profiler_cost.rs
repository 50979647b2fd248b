//! The profiler's own cost, stored on every run: the CPU time of its threads over the run
//! and the traced threads' time in the hot path, beside the whole process's CPU time.
//!
//! Wall-clock comparisons of profiled and unprofiled runs cannot resolve a 1 % overhead on a
//! shared machine (identical runs vary by tens of percent), so the cost is measured from
//! inside: each thread of the profiler reads its own CPU clock ([`crate::cpu_time`]), and
//! the hot path's cost is the sections recorded times a per-process calibration of one
//! enter + exit pair. Every figure is `None` where it was not measured, never 0.

use serde::{Deserialize, Serialize};

/// What profiling cost the process during one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilerCost {
    /// CPU time of the sampler thread and the helper threads its source runs (ms); `None`
    /// without a power source. A source's child process (powermetrics) is not counted.
    pub sampler_cpu_ms: Option<f64>,
    /// CPU time of the processor thread (attribution, rows) over the run (ms).
    pub processor_cpu_ms: Option<f64>,
    /// CPU time of the store's writer thread over the run (ms). The writer serves every run
    /// of its store: a run written while another one of the same store was, shares it.
    pub writer_cpu_ms: Option<f64>,
    /// Time the traced threads spent in the hot path (ms): the sections recorded times
    /// `hot_path_ns_per_pair`. An estimate, not a clock reading.
    pub hot_path_ms: Option<f64>,
    /// The calibrated cost of one span enter + exit pair with the profiler installed (ns).
    pub hot_path_ns_per_pair: Option<f64>,
    /// CPU time of the whole process over the run (ms; child processes not included).
    pub process_cpu_ms: Option<f64>,
}

impl ProfilerCost {
    /// The profiler's threads together (ms), `None` when none was measured.
    pub fn threads_cpu_ms(&self) -> Option<f64> {
        sum([
            self.sampler_cpu_ms,
            self.processor_cpu_ms,
            self.writer_cpu_ms,
        ])
    }

    /// The profiler's threads and the hot path together (ms), `None` when nothing was
    /// measured.
    pub fn total_ms(&self) -> Option<f64> {
        sum([self.threads_cpu_ms(), self.hot_path_ms])
    }

    /// [`total_ms`](Self::total_ms) as a share of the process's CPU time (0 to 1), when
    /// both are known.
    pub fn share_of_process(&self) -> Option<f64> {
        match (self.total_ms(), self.process_cpu_ms) {
            (Some(t), Some(p)) if p > 0.0 => Some(t / p),
            _ => None,
        }
    }

    /// "0.210 s CPU (sampler 0.050, processor 0.120, writer 0.040), hot path ~0.010 s
    /// (61 ns per enter/exit); 0.4 % of the process's 52.0 s CPU", for a person.
    pub fn describe(&self) -> String {
        let s =
            |v: Option<f64>| v.map_or_else(|| "none".to_string(), |v| format!("{:.3}", v / 1e3));
        let mut out = match self.threads_cpu_ms() {
            Some(t) => format!(
                "{:.3} s CPU (sampler {}, processor {}, writer {})",
                t / 1e3,
                s(self.sampler_cpu_ms),
                s(self.processor_cpu_ms),
                s(self.writer_cpu_ms)
            ),
            None => "threads' CPU not measured".to_string(),
        };
        match (self.hot_path_ms, self.hot_path_ns_per_pair) {
            (Some(ms), Some(ns)) => out.push_str(&format!(
                ", hot path ~{:.3} s ({ns:.0} ns per enter/exit)",
                ms / 1e3
            )),
            _ => out.push_str(", hot path not measured"),
        }
        if let (Some(share), Some(p)) = (self.share_of_process(), self.process_cpu_ms) {
            out.push_str(&format!(
                "; {:.1} % of the process's {:.1} s CPU",
                share * 100.0,
                p / 1e3
            ));
        }
        out
    }

    /// The per-thread figures as stored in `profiler_threads` (a JSON object).
    pub(crate) fn threads_json(&self) -> Option<String> {
        self.threads_cpu_ms()?;
        let t = Threads {
            sampler: self.sampler_cpu_ms,
            processor: self.processor_cpu_ms,
            writer: self.writer_cpu_ms,
        };
        serde_json::to_string(&t).ok()
    }

    /// The cost as read back from a run's columns; `None` when none was stored.
    pub(crate) fn from_columns(
        threads: Option<&str>,
        hot_path_ms: Option<f64>,
        hot_path_ns_per_pair: Option<f64>,
        process_cpu_ms: Option<f64>,
    ) -> Option<ProfilerCost> {
        let t: Threads = threads
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let cost = ProfilerCost {
            sampler_cpu_ms: t.sampler,
            processor_cpu_ms: t.processor,
            writer_cpu_ms: t.writer,
            hot_path_ms,
            hot_path_ns_per_pair,
            process_cpu_ms,
        };
        (cost != ProfilerCost::default()).then_some(cost)
    }
}

/// The JSON of `profiler_threads`: CPU ms per thread, `null` where not measured.
#[derive(Default, Serialize, Deserialize)]
struct Threads {
    sampler: Option<f64>,
    processor: Option<f64>,
    writer: Option<f64>,
}

fn sum<const N: usize>(parts: [Option<f64>; N]) -> Option<f64> {
    parts.iter().flatten().copied().reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_shares_and_reads_back() {
        let c = ProfilerCost {
            sampler_cpu_ms: None,
            processor_cpu_ms: Some(120.0),
            writer_cpu_ms: Some(40.0),
            hot_path_ms: Some(10.0),
            hot_path_ns_per_pair: Some(61.0),
            process_cpu_ms: Some(17_000.0),
        };
        assert_eq!(c.threads_cpu_ms(), Some(160.0));
        assert_eq!(c.total_ms(), Some(170.0));
        assert!((c.share_of_process().unwrap() - 0.01).abs() < 1e-12);
        let d = c.describe();
        assert!(
            d.starts_with("0.160 s CPU (sampler none, processor 0.120, writer 0.040)"),
            "{d}"
        );
        assert!(
            d.contains(
                "hot path ~0.010 s (61 ns per enter/exit); 1.0 % of the process's 17.0 s CPU"
            ),
            "{d}"
        );
        let json = c.threads_json().unwrap();
        let back = ProfilerCost::from_columns(Some(&json), Some(10.0), Some(61.0), Some(17_000.0));
        assert_eq!(back, Some(c));
        assert_eq!(ProfilerCost::from_columns(None, None, None, None), None);
        assert_eq!(ProfilerCost::default().threads_json(), None);
    }
}
