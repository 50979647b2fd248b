//! The profiler's own cost, stored on every run: the CPU time of its threads over the run
//! and the traced threads' time in the hot path, beside the whole process's CPU time.
//!
//! Wall-clock comparisons of profiled and unprofiled runs cannot resolve a 1 % overhead on a
//! shared machine (identical runs vary by tens of percent), so the cost is measured from
//! inside: each thread of the profiler reads its own CPU clock ([`crate::cpu_time`]), and
//! the hot path's cost is the sections recorded times a per-process calibration of one
//! enter + exit pair. Every figure is `None` where it was not measured, never 0.
//!
//! A source's child process (powermetrics) is outside those figures; where the source can
//! tell (powermetrics with its `tasks` sampler), the run also stores that process's own CPU
//! time and its estimated energy ([`SamplerProcessCost`]).

use serde::{Deserialize, Serialize};

/// What profiling cost the process during one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilerCost {
    /// CPU time of the sampler thread and the helper threads its source runs (ms); `None`
    /// without a power source. A source's child process (powermetrics) is not counted here
    /// (see [`sampler_process`](Self::sampler_process)).
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
    /// The sampler's own process (powermetrics) over the run, where the source can tell;
    /// `None` otherwise (no `tasks` sampler, another source, a run stored before this).
    pub sampler_process: Option<SamplerProcessCost>,
}

/// The sampler's own process (powermetrics, a child of the profiled process) over a run,
/// from its `tasks` sampler: its CPU time, and its power estimated as its share of all
/// tasks' CPU time times the measured CPU energy, window by window. Figures cover the
/// windows in which its task was found (`windows`); they are `None` when there was none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerProcessCost {
    /// Windows with a figure.
    pub windows: u64,
    /// Windows whose task list did not tell the sampler's task (not listed, or several
    /// tasks named `powermetrics`), or that had no CPU energy.
    pub windows_unknown: u64,
    /// Its CPU time over those windows (ms), as powermetrics measured it.
    pub cpu_ms: Option<f64>,
    /// Its estimated energy over them (mJ): its CPU-time share of the measured CPU
    /// energy, window by window.
    pub energy_mj: Option<f64>,
    /// The measured CPU energy of the same windows (mJ).
    pub cpu_energy_mj: Option<f64>,
    /// Their total length (ms).
    pub window_ms: Option<f64>,
}

impl SamplerProcessCost {
    /// The label a person reads before [`describe`](Self::describe).
    pub const LABEL: &'static str = "powermetrics itself";

    /// Its mean estimated power over the windows with a figure (mW).
    pub fn mean_mw(&self) -> Option<f64> {
        match (self.energy_mj, self.window_ms) {
            (Some(mj), Some(ms)) if ms > 0.0 => Some(mj / ms * 1e3),
            _ => None,
        }
    }

    /// Its share of the measured CPU energy of those windows (0 to 1).
    pub fn share_of_cpu_energy(&self) -> Option<f64> {
        match (self.energy_mj, self.cpu_energy_mj) {
            (Some(mj), Some(cpu)) if cpu > 0.0 => Some(mj / cpu),
            _ => None,
        }
    }

    /// "287 mW, 1.158 J over 29 windows (its CPU-time share of measured CPU power:
    /// 11.9 %), 1.086 s CPU", or why it is not measured, for a person.
    pub fn describe(&self) -> String {
        let mut out = match (self.mean_mw(), self.energy_mj) {
            (Some(mw), Some(mj)) => format!(
                "{mw:.0} mW, {:.3} J over {} windows (its CPU-time share of measured CPU power{})",
                mj / 1e3,
                self.windows,
                self.share_of_cpu_energy()
                    .map_or(String::new(), |s| format!(": {:.1} %", s * 100.0))
            ),
            _ => "not measured".to_string(),
        };
        if let Some(ms) = self.cpu_ms {
            out.push_str(&format!(", {:.3} s CPU", ms / 1e3));
        }
        if self.windows_unknown > 0 {
            out.push_str(&format!(
                "; its task was not found in {} window{}",
                self.windows_unknown,
                if self.windows_unknown == 1 { "" } else { "s" }
            ));
        }
        out
    }
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

    /// The per-thread figures as stored in `profiler_threads` (a JSON object), with the
    /// sampler's own process where measured.
    pub(crate) fn threads_json(&self) -> Option<String> {
        if self.threads_cpu_ms().is_none() && self.sampler_process.is_none() {
            return None;
        }
        let t = Threads {
            sampler: self.sampler_cpu_ms,
            processor: self.processor_cpu_ms,
            writer: self.writer_cpu_ms,
            sampler_process: self.sampler_process,
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
            sampler_process: t.sampler_process,
        };
        (cost != ProfilerCost::default()).then_some(cost)
    }
}

/// The JSON of `profiler_threads`: CPU ms per thread, `null` where not measured, and the
/// sampler's own process (absent where not measured, and in runs stored before it was).
#[derive(Default, Serialize, Deserialize)]
struct Threads {
    sampler: Option<f64>,
    processor: Option<f64>,
    writer: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sampler_process: Option<SamplerProcessCost>,
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
            sampler_process: None,
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
        assert!(
            !json.contains("sampler_process"),
            "absent, as in older runs: {json}"
        );
    }

    #[test]
    fn sampler_process_reads_back_and_old_runs_read_none() {
        let p = SamplerProcessCost {
            windows: 29,
            windows_unknown: 1,
            cpu_ms: Some(1_086.0),
            energy_mj: Some(1_158.0),
            cpu_energy_mj: Some(9_800.0),
            window_ms: Some(4_000.0),
        };
        assert_eq!(p.mean_mw(), Some(289.5));
        let d = p.describe();
        assert!(
            d.starts_with("290 mW, 1.158 J over 29 windows (its CPU-time share of measured CPU power: 11.8 %), 1.086 s CPU"),
            "{d}"
        );
        assert!(d.ends_with("; its task was not found in 1 window"), "{d}");
        let c = ProfilerCost {
            sampler_process: Some(p),
            ..ProfilerCost::default()
        };
        let back = ProfilerCost::from_columns(c.threads_json().as_deref(), None, None, None);
        assert_eq!(back, Some(c), "stored without any thread figure");
        // A run stored before the figure existed.
        let old = r#"{"sampler":1.0,"processor":2.0,"writer":3.0}"#;
        let back = ProfilerCost::from_columns(Some(old), None, None, None).unwrap();
        assert_eq!(back.sampler_process, None);
        let none = SamplerProcessCost {
            windows: 0,
            windows_unknown: 5,
            cpu_ms: None,
            energy_mj: None,
            cpu_energy_mj: None,
            window_ms: None,
        };
        assert_eq!(
            none.describe(),
            "not measured; its task was not found in 5 windows"
        );
    }
}
