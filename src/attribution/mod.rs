//! Attribution: joining timed sections with power samples.
//!
//! # The model
//!
//! A power sample says how much energy the machine (per domain) used in one window. Within
//! a window, power is taken as constant (piecewise-constant power). At every instant the
//! power is shared equally between the threads that have a section open at that instant;
//! a thread's share goes to its innermost open section. So:
//!
//! - the **inclusive** energy of a section is the integral, over the section's interval, of
//!   `P(t) / n(t)`, where `n(t)` is the number of threads with an open section at `t`;
//! - its **exclusive** energy is the inclusive energy minus its children's inclusive energy;
//! - the **unattributed** energy is the integral of `P(t)` over the instants when no thread
//!   has a section open.
//!
//! Hence conservation is exact: the sum of all exclusive energies plus the unattributed
//! energy equals the energy measured over the run's window (up to floating-point rounding),
//! and no instant is counted twice, however many threads run sections at once.
//!
//! # Uncertainty
//!
//! A sensor that reports energy per window cannot say how the power varied *inside* the
//! window. For a section that covers whole windows, the attributed energy is exact up to the
//! sensor's own accuracy. For the part of a section that covers only a fraction `f` of a
//! window, the attribution relies on constant power inside that window. The
//! `energy_uncertainty_mj` of a section is the energy attributed from partially covered
//! windows, each weighted by `1 - f`: the energy that could move to or from neighbouring
//! sections if power varied inside the window. For a section much shorter than a window it
//! approaches the section's whole energy (100 %): such a section's energy is its share of the
//! window's mean power, nothing more. Time a section spends where no sample exists adds its
//! length times the section's mean attributed power. It is a bound on this one error
//! source, not a standard deviation.
//!
//! # What a sample interval lets you conclude
//!
//! With windows of length `w`, sections much longer than `w` (a whole generation, the
//! prefill of a long prompt, many decode tokens together) have small uncertainty. Sections
//! shorter than `w` (a single matmul, one layer, often one decode token) get their time share
//! of the window's energy: their *sum* over many repetitions is meaningful (e.g. attention vs
//! MLP over a whole run), their individual values are not. Average many tokens, or use a
//! shorter interval where the sensor really updates that often (some chips update their
//! energy counters only every ~2 s).

pub mod by_fit;
mod linalg;
pub mod regression;
mod stream;

pub use stream::{EnergyStream, Totals, DEFAULT_MAX_POINTS};

use crate::power::PowerSample;

/// The method name stored with every attributed section.
pub const METHOD: &str = "overlap";

/// How a run's measured energy is shared between its sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribution {
    /// Time shares: at every instant the power is shared equally between the threads with a
    /// section open (see the module docs). Rows stream to the store as the run goes.
    #[default]
    Overlap,
    /// Component power by regression: at the run's end, each component kind's power is
    /// fitted over the run's windows ([`regression`]) and every window's energy is shared
    /// in proportion to it ([`by_fit`]). Rows are written at the run's end (or rotation);
    /// a run the fit cannot tell apart, or that outgrows the memory budget first, falls
    /// back to `Overlap` and says why in its warnings.
    Regression,
}

impl Attribution {
    /// The name used on the command line and stored with rows: `overlap` or `regression`.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::Overlap => METHOD,
            Attribution::Regression => regression::METHOD,
        }
    }
}

impl std::fmt::Display for Attribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Attribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overlap" => Ok(Attribution::Overlap),
            "regression" => Ok(Attribution::Regression),
            other => Err(format!(
                "unknown attribution method `{other}`: use `overlap` (time shares, the default) or `regression` (component power fitted over the run's windows)"
            )),
        }
    }
}

/// Energy of a section: inclusive, per domain, with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SectionEnergy {
    /// Inclusive energy of all measured domains (mJ); `None` when no sample covers any of
    /// the section.
    pub total_mj: Option<f64>,
    /// Inclusive energy per domain (mJ), in [`crate::power::Domain::ALL`] order; `None` where not measured.
    pub domains: [Option<f64>; 4],
    /// See the module docs.
    pub uncertainty_mj: Option<f64>,
    /// Sample windows the section touched.
    pub sample_windows: u32,
}

/// A thread's activity: the intervals in which it had a section open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns); `u64::MAX` while still open.
    pub end_ns: u64,
}

/// Energy channels: the four domains, then all measured domains together.
pub(crate) const CHANNELS: usize = 5;

/// Per-thread cumulative energy over a fixed time range, built at once from all samples
/// and activity intervals: `F(t)`, the energy one active thread receives from the start of
/// the range to `t`. A section's inclusive energy is `F(end) - F(start)`. The profiler
/// itself uses the streaming form, [`EnergyStream`]; this is that stream fed everything
/// and advanced to the end of the range.
#[derive(Debug, Clone)]
pub struct EnergyIntegral {
    stream: EnergyStream,
}

impl EnergyIntegral {
    /// Builds `F` over `[t0, t1]` from the samples (non-overlapping windows, any order) and
    /// each thread's activity intervals (non-overlapping within a thread).
    pub fn new(
        samples: &[PowerSample],
        threads: &[Vec<Activity>],
        t0: u64,
        t1: u64,
    ) -> EnergyIntegral {
        let t1 = t1.max(t0);
        let mut stream = EnergyStream::new(t0);
        for a in threads.iter().flatten() {
            if a.end_ns > t0 && a.start_ns < t1 && a.end_ns > a.start_ns {
                stream.activity(a.start_ns.max(t0), 1);
                if a.end_ns < t1 {
                    stream.activity(a.end_ns, -1);
                }
            }
        }
        let mut samples: Vec<&PowerSample> = samples
            .iter()
            .filter(|s| s.end_ns > t0 && s.start_ns < t1)
            .collect();
        samples.sort_by_key(|s| s.start_ns);
        for s in samples {
            stream.push_sample(s);
        }
        stream.advance(t1);
        EnergyIntegral { stream }
    }

    /// The inclusive energy of a section `[s, e]` on a thread that is active throughout it.
    pub fn section(&self, s: u64, e: u64) -> SectionEnergy {
        self.stream.section(s, e)
    }

    /// Energy measured over the range (mJ): all measured domains.
    pub fn measured_mj(&self) -> f64 {
        self.stream.totals().measured[4]
    }

    /// Energy over instants with at least one active thread (mJ).
    pub fn attributed_mj(&self) -> f64 {
        self.stream.totals().attributed[4]
    }

    /// Energy over instants with no active thread (mJ).
    pub fn unattributed_mj(&self) -> f64 {
        self.stream.totals().unattributed[4]
    }

    /// True when at least one sample overlaps the range.
    pub fn has_samples(&self) -> bool {
        self.stream.has_samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::DomainEnergy;
    use std::sync::Arc;

    fn s(start: u64, end: u64, cpu: f64, gpu: f64) -> PowerSample {
        PowerSample::new(
            start,
            end,
            DomainEnergy {
                cpu: Some(cpu),
                gpu: Some(gpu),
                ane: None,
                dram: None,
            },
            Arc::from("t"),
            false,
        )
        .unwrap()
    }

    fn act(a: u64, b: u64) -> Activity {
        Activity {
            start_ns: a,
            end_ns: b,
        }
    }

    #[test]
    fn known_piecewise_power_gives_exact_energies() {
        // 0-100: 10 mJ cpu (0.1 mJ/ns), 100-200: 40 mJ cpu + 20 gpu.
        let samples = [s(0, 100, 10.0, 0.0), s(100, 200, 40.0, 20.0)];
        let threads = vec![vec![act(20, 180)]];
        let f = EnergyIntegral::new(&samples, &threads, 0, 200);
        let sec = f.section(50, 150);
        // 50 ns at 0.1 + 50 ns at 0.6 = 5 + 30.
        assert!((sec.total_mj.unwrap() - 35.0).abs() < 1e-9);
        assert!((sec.domains[0].unwrap() - 25.0).abs() < 1e-9);
        assert!((sec.domains[1].unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(sec.domains[2], None, "ANE is not measured");
        assert_eq!(sec.sample_windows, 2);
        // Half of each window: uncertainty = 5*0.5 + 30*0.5.
        assert!((sec.uncertainty_mj.unwrap() - 17.5).abs() < 1e-9);
        // Unattributed: 0-20 (2 mJ) and 180-200 (12 mJ).
        assert!((f.unattributed_mj() - 14.0).abs() < 1e-9);
        assert!((f.measured_mj() - 70.0).abs() < 1e-9);
    }

    #[test]
    fn concurrent_threads_share_power() {
        let samples = [s(0, 100, 100.0, 0.0)];
        let threads = vec![vec![act(0, 100)], vec![act(50, 100)]];
        let f = EnergyIntegral::new(&samples, &threads, 0, 100);
        let a = f.section(0, 100).total_mj.unwrap();
        let b = f.section(50, 100).total_mj.unwrap();
        assert!((a - 75.0).abs() < 1e-9, "{a}");
        assert!((b - 25.0).abs() < 1e-9, "{b}");
        assert!((a + b - f.measured_mj()).abs() < 1e-9);
    }

    #[test]
    fn section_inside_one_window_is_nearly_all_uncertain() {
        let f = EnergyIntegral::new(&[s(0, 1000, 100.0, 0.0)], &[vec![act(0, 1000)]], 0, 1000);
        let sec = f.section(100, 110);
        assert!((sec.total_mj.unwrap() - 1.0).abs() < 1e-9);
        assert!((sec.uncertainty_mj.unwrap() - 0.99).abs() < 1e-9);
        assert_eq!(sec.sample_windows, 1);
    }

    #[test]
    fn uncovered_sections_have_unknown_energy() {
        let f = EnergyIntegral::new(&[s(0, 100, 10.0, 0.0)], &[vec![act(0, 300)]], 0, 300);
        let none = f.section(150, 250);
        assert_eq!(none.total_mj, None);
        assert_eq!(none.sample_windows, 0);
        let half = f.section(50, 150);
        assert!((half.total_mj.unwrap() - 5.0).abs() < 1e-9);
        // Covered half: 5 mJ in 50 ns; the 50 uncovered ns add 5 mJ of uncertainty, the
        // half-covered window 2.5.
        assert!((half.uncertainty_mj.unwrap() - 7.5).abs() < 1e-9);
    }
}
