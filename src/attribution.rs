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

use crate::power::{Domain, PowerSample};

/// The method name stored with every attributed section.
pub const METHOD: &str = "overlap";

/// Energy of a section: inclusive, per domain, with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SectionEnergy {
    /// Inclusive energy of all measured domains (mJ); `None` when no sample covers any of
    /// the section.
    pub total_mj: Option<f64>,
    /// Inclusive energy per domain (mJ), in [`Domain::ALL`] order; `None` where not measured.
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

const CHANNELS: usize = 5; // 4 domains + total

/// Per-thread cumulative energy over a time range: `F(t)`, the energy one active thread
/// receives from the start of the range to `t`. A section's inclusive energy is
/// `F(end) - F(start)`.
#[derive(Debug, Clone)]
pub struct EnergyIntegral {
    /// Breakpoints, ascending.
    times: Vec<u64>,
    /// `F` at each breakpoint, per channel.
    cum: Vec<[f64; CHANNELS]>,
    /// Per-thread rate on `[times[i], times[i+1])`, mJ per ns, per channel.
    rate: Vec<[f64; CHANNELS]>,
    /// Whether `[times[i], times[i+1])` is covered by a sample.
    covered: Vec<bool>,
    /// The sample windows, ascending: (start, end).
    windows: Vec<(u64, u64)>,
    /// Which domains every sample measures.
    known: [bool; 4],
    /// Energy over the range in instants with at least one active thread, and with none.
    attributed: [f64; CHANNELS],
    unattributed: [f64; CHANNELS],
    measured: [f64; CHANNELS],
}

fn channels(s: &PowerSample) -> [f64; CHANNELS] {
    let mut c = [0.0; CHANNELS];
    for (i, d) in Domain::ALL.iter().enumerate() {
        c[i] = s.energy.get(*d).unwrap_or(0.0);
    }
    c[4] = s.total_mj;
    c
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
        let mut samples: Vec<&PowerSample> = samples
            .iter()
            .filter(|s| s.end_ns > t0 && s.start_ns < t1)
            .collect();
        samples.sort_by_key(|s| s.start_ns);
        let mut known = [true; 4];
        for s in &samples {
            for (i, d) in Domain::ALL.iter().enumerate() {
                known[i] &= s.energy.get(*d).is_some();
            }
        }
        if samples.is_empty() {
            known = [false; 4];
        }
        // Activity changes: +1 at start, -1 at end.
        let mut changes: Vec<(u64, i32)> = Vec::new();
        for acts in threads {
            for a in acts {
                if a.end_ns > t0 && a.start_ns < t1 && a.end_ns > a.start_ns {
                    changes.push((a.start_ns.max(t0), 1));
                    if a.end_ns < t1 {
                        changes.push((a.end_ns, -1));
                    }
                }
            }
        }
        changes.sort();
        let mut times: Vec<u64> = vec![t0, t1];
        for s in &samples {
            times.push(s.start_ns.clamp(t0, t1));
            times.push(s.end_ns.clamp(t0, t1));
        }
        times.extend(changes.iter().map(|c| c.0));
        times.sort_unstable();
        times.dedup();

        let n_pieces = times.len().saturating_sub(1);
        let mut rate = Vec::with_capacity(n_pieces);
        let mut covered = Vec::with_capacity(n_pieces);
        let mut cum = Vec::with_capacity(times.len());
        cum.push([0.0; CHANNELS]);
        let (mut si, mut ci, mut active) = (0usize, 0usize, 0i32);
        let mut attributed = [0.0; CHANNELS];
        let mut unattributed = [0.0; CHANNELS];
        for i in 0..n_pieces {
            let (a, b) = (times[i], times[i + 1]);
            while ci < changes.len() && changes[ci].0 <= a {
                active += changes[ci].1;
                ci += 1;
            }
            while si < samples.len() && samples[si].end_ns <= a {
                si += 1;
            }
            let sample = samples.get(si).filter(|s| s.start_ns <= a && s.end_ns >= b);
            let dt = (b - a) as f64;
            let mut r = [0.0; CHANNELS];
            if let Some(s) = sample {
                let e = channels(s);
                let len = s.duration_ns() as f64;
                for k in 0..CHANNELS {
                    let piece = e[k] * dt / len;
                    if active > 0 {
                        r[k] = piece / dt / active as f64;
                        attributed[k] += piece;
                    } else {
                        unattributed[k] += piece;
                    }
                }
            }
            covered.push(sample.is_some());
            let prev = *cum.last().unwrap();
            let mut next = [0.0; CHANNELS];
            for k in 0..CHANNELS {
                next[k] = prev[k] + r[k] * dt;
            }
            cum.push(next);
            rate.push(r);
        }
        let mut measured = [0.0; CHANNELS];
        for k in 0..CHANNELS {
            measured[k] = attributed[k] + unattributed[k];
        }
        EnergyIntegral {
            windows: samples.iter().map(|s| (s.start_ns, s.end_ns)).collect(),
            times,
            cum,
            rate,
            covered,
            known,
            attributed,
            unattributed,
            measured,
        }
    }

    /// `F(t)` per channel, `t` clamped to the range.
    fn at(&self, t: u64) -> [f64; CHANNELS] {
        let t = t.clamp(self.times[0], *self.times.last().unwrap());
        let i = self.times.partition_point(|x| *x <= t).saturating_sub(1);
        if i >= self.rate.len() {
            return *self.cum.last().unwrap();
        }
        let dt = (t - self.times[i]) as f64;
        let mut v = self.cum[i];
        for (k, val) in v.iter_mut().enumerate() {
            *val += self.rate[i][k] * dt;
        }
        v
    }

    fn between(&self, s: u64, e: u64) -> [f64; CHANNELS] {
        let (a, b) = (self.at(s), self.at(e.max(s)));
        let mut d = [0.0; CHANNELS];
        for k in 0..CHANNELS {
            d[k] = b[k] - a[k];
        }
        d
    }

    /// Nanoseconds of `[s, e]` not covered by any sample.
    fn uncovered_ns(&self, s: u64, e: u64) -> u64 {
        let mut gap = 0;
        let i0 = self.times.partition_point(|x| *x <= s).saturating_sub(1);
        for i in i0..self.rate.len() {
            let (a, b) = (self.times[i].max(s), self.times[i + 1].min(e));
            if a >= e {
                break;
            }
            if b > a && !self.covered[i] {
                gap += b - a;
            }
        }
        // Parts outside the integral's range are uncovered too.
        gap + self.times[0].saturating_sub(s).min(e.saturating_sub(s))
            + e.saturating_sub(*self.times.last().unwrap())
                .min(e.saturating_sub(s))
    }

    /// The inclusive energy of a section `[s, e]` on a thread that is active throughout it.
    pub fn section(&self, s: u64, e: u64) -> SectionEnergy {
        let e = e.max(s);
        let total = self.between(s, e);
        let w0 = self.windows.partition_point(|w| w.1 <= s);
        let w1 = self.windows.partition_point(|w| w.0 < e.max(s + 1));
        let touched = w1.saturating_sub(w0) as u32;
        if touched == 0 {
            return SectionEnergy {
                total_mj: None,
                domains: [None; 4],
                uncertainty_mj: None,
                sample_windows: 0,
            };
        }
        // Partially covered windows: the first and the last touched.
        let mut uncertainty = 0.0;
        let mut partial = |w: (u64, u64)| {
            let (a, b) = (w.0.max(s), w.1.min(e));
            if b <= a {
                return;
            }
            let f = (b - a) as f64 / (w.1 - w.0) as f64;
            uncertainty += self.between(a, b)[4] * (1.0 - f);
        };
        partial(self.windows[w0]);
        if w1 - 1 > w0 {
            partial(self.windows[w1 - 1]);
        }
        let gap = self.uncovered_ns(s, e);
        let covered = (e - s).saturating_sub(gap);
        if gap > 0 && covered > 0 {
            uncertainty += total[4] / covered as f64 * gap as f64;
        }
        let mut domains = [None; 4];
        for (i, d) in domains.iter_mut().enumerate() {
            if self.known[i] {
                *d = Some(total[i]);
            }
        }
        SectionEnergy {
            total_mj: Some(total[4]),
            domains,
            uncertainty_mj: Some(uncertainty),
            sample_windows: touched,
        }
    }

    /// Energy measured over the range (mJ): all measured domains.
    pub fn measured_mj(&self) -> f64 {
        self.measured[4]
    }

    /// Energy over instants with at least one active thread (mJ).
    pub fn attributed_mj(&self) -> f64 {
        self.attributed[4]
    }

    /// Energy over instants with no active thread (mJ).
    pub fn unattributed_mj(&self) -> f64 {
        self.unattributed[4]
    }

    /// True when at least one sample overlaps the range.
    pub fn has_samples(&self) -> bool {
        !self.windows.is_empty()
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
