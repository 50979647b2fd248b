//! Section energy under a component power fit: the `regression` method.
//!
//! With a [`PowerFit`], each window's measured energy `E_w`
//! (per domain) is split in proportion to the fitted model, `D_w = P_idle t_w + sum_k P_k
//! t_kw`:
//!
//! - the **background** part, `E_w P_idle t_w / D_w`, is spread over the window like the
//!   `overlap` method spreads a whole window (shared equally between the threads with a
//!   section open; unattributed when none is);
//! - the **kind** part of kind `k`, `E_w P_k t_kw / D_w`, goes to the threads running `k`,
//!   in proportion to the time each ran it in the window (a constant density
//!   `E_w P_k / D_w` per running thread).
//!
//! A section's inclusive energy is its thread's background share over the section plus the
//! kind density over the component intervals of its thread inside it. Every window's parts
//! sum to `E_w`, so conservation stays exact. A window whose model energy is zero (no fitted
//! power at all) is all background.
//!
//! The uncertainty adds, to the background's, the fit's: for each kind, the section's time
//! in that kind times the kind's standard error, scaled like the energy, summed in
//! quadrature over kinds.

use std::sync::Arc;

use super::regression::{PowerFit, Window};
use super::{Activity, EnergyIntegral, SectionEnergy};
use crate::power::{Domain, DomainEnergy, PowerSample};

/// A component interval: a thread ran kind `kind` (an index into the fit's kinds) from
/// `start_ns` to `end_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInterval {
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// The kind, as its position in [`PowerFit::kinds`].
    pub kind: usize,
}

/// The component kinds of `rows` (`(kind, start_ns, end_ns)`), in order of first
/// appearance, and each row as a [`KindInterval`] of its kind, in the order given.
pub fn kind_intervals<'a>(
    rows: impl IntoIterator<Item = (&'a str, u64, u64)>,
) -> (Vec<String>, Vec<KindInterval>) {
    let mut kinds: Vec<String> = Vec::new();
    let intervals = rows
        .into_iter()
        .map(|(name, start_ns, end_ns)| {
            let kind = match kinds.iter().position(|k| k == name) {
                Some(k) => k,
                None => {
                    kinds.push(name.to_string());
                    kinds.len() - 1
                }
            };
            KindInterval {
                start_ns,
                end_ns,
                kind,
            }
        })
        .collect();
    (kinds, intervals)
}

/// The seconds each of `kinds` kinds ran in each window: `windows` are `(start_ns,
/// end_ns)`, in time order and not overlapping; an interval adds its overlap with every
/// window it touches to its kind (a kind index of `kinds` or more adds nothing). Each
/// interval finds its first window by binary search.
pub fn kind_seconds<'a>(
    windows: &[(u64, u64)],
    intervals: impl IntoIterator<Item = &'a KindInterval>,
    kinds: usize,
) -> Vec<Vec<f64>> {
    let mut out = vec![vec![0.0; kinds]; windows.len()];
    for c in intervals {
        if c.kind >= kinds {
            continue;
        }
        let from = windows.partition_point(|w| w.1 <= c.start_ns);
        for (seconds, w) in out[from..].iter_mut().zip(&windows[from..]) {
            if w.0 >= c.end_ns {
                break;
            }
            let ns = c.end_ns.min(w.1).saturating_sub(c.start_ns.max(w.0));
            seconds[c.kind] += ns as f64 / 1e9;
        }
    }
    out
}

/// The windows a fit is made over: of the power windows `(start_ns, end_ns, energy_mj)`,
/// those that overlap the span from the first interval's start to the last's end, in time
/// order, each with the seconds each of `kinds` kinds ran in it ([`kind_seconds`]). Windows
/// before the first component or after the last would only tell the background, and
/// those of a model load or a program's start-up would tell it wrong.
pub fn fit_windows<'a>(
    power: &[(u64, u64, f64)],
    intervals: impl IntoIterator<Item = &'a KindInterval> + Clone,
    kinds: usize,
) -> Vec<Window> {
    let first = intervals.clone().into_iter().map(|c| c.start_ns).min();
    let last = intervals.clone().into_iter().map(|c| c.end_ns).max();
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let mut power: Vec<&(u64, u64, f64)> =
        power.iter().filter(|p| p.1 > first && p.0 < last).collect();
    power.sort_by_key(|p| p.0);
    let spans: Vec<(u64, u64)> = power.iter().map(|p| (p.0, p.1)).collect();
    power
        .iter()
        .zip(kind_seconds(&spans, intervals, kinds))
        .map(|(p, kind_seconds)| Window {
            energy_mj: p.2,
            seconds: p.1.saturating_sub(p.0) as f64 / 1e9,
            kind_seconds,
        })
        .collect()
}

/// One window as shared by the fit.
#[derive(Debug, Clone)]
struct Shared {
    start: u64,
    end: u64,
    /// Energy per ns of running kind `k`, per domain then total: `E_w[d] P_k / D_w`.
    density: Vec<[Option<f64>; 5]>,
    /// `E_w / D_w` (total), for the uncertainty.
    scale: f64,
}

/// Section energies under a fit (see the module docs).
#[derive(Debug, Clone)]
pub struct FitAttribution {
    background: EnergyIntegral,
    windows: Vec<Shared>,
    /// Per thread (by position in the `threads` given), component intervals by start.
    intervals: Vec<Vec<KindInterval>>,
    stderr_mw: Vec<f64>,
}

impl FitAttribution {
    /// Shares the samples by the fit. `threads[i]` are thread `i`'s activity intervals
    /// (a section open), `components[i]` its component intervals; `[t0, t1]` the range.
    pub fn new(
        fit: &PowerFit,
        samples: &[PowerSample],
        threads: &[Vec<Activity>],
        components: &[Vec<KindInterval>],
        t0: u64,
        t1: u64,
    ) -> FitAttribution {
        let mut samples: Vec<&PowerSample> = samples.iter().collect();
        samples.sort_by_key(|s| s.start_ns);
        let mut intervals: Vec<Vec<KindInterval>> = components.to_vec();
        for list in &mut intervals {
            list.sort_by_key(|c| c.start_ns);
        }
        let spans: Vec<(u64, u64)> = samples.iter().map(|s| (s.start_ns, s.end_ns)).collect();
        let per_window = kind_seconds(&spans, intervals.iter().flatten(), fit.kinds.len());
        let mut background = Vec::with_capacity(samples.len());
        let mut windows = Vec::with_capacity(samples.len());
        for (s, kind_seconds) in samples.into_iter().zip(per_window) {
            let seconds = s.duration_ns() as f64 / 1e9;
            let model_mj = fit.idle_mw * seconds
                + fit
                    .kinds
                    .iter()
                    .zip(&kind_seconds)
                    .map(|(k, t)| k.power_mw * t)
                    .sum::<f64>();
            let idle_share = match fit.shares(seconds, &kind_seconds) {
                Some((idle, _)) => idle,
                None => 1.0,
            };
            let scaled = |v: Option<f64>| v.map(|e| e * idle_share);
            let energy = DomainEnergy {
                cpu: scaled(s.energy.cpu),
                gpu: scaled(s.energy.gpu),
                ane: scaled(s.energy.ane),
                dram: scaled(s.energy.dram),
            };
            if let Some(b) = PowerSample::new(
                s.start_ns,
                s.end_ns,
                energy,
                Arc::clone(&s.source),
                s.estimated,
            ) {
                background.push(b);
            }
            let per_ns = |e: Option<f64>, p_mw: f64| {
                e.map(|e| {
                    if model_mj > 0.0 {
                        e * p_mw / 1e9 / model_mj
                    } else {
                        0.0
                    }
                })
            };
            let density = fit
                .kinds
                .iter()
                .map(|k| {
                    let mut d = [None; 5];
                    for (i, domain) in Domain::ALL.iter().enumerate() {
                        d[i] = per_ns(s.energy.get(*domain), k.power_mw);
                    }
                    d[4] = per_ns(Some(s.total_mj), k.power_mw);
                    d
                })
                .collect();
            windows.push(Shared {
                start: s.start_ns,
                end: s.end_ns,
                density,
                scale: if model_mj > 0.0 {
                    s.total_mj / model_mj
                } else {
                    0.0
                },
            });
        }
        FitAttribution {
            background: EnergyIntegral::new(&background, threads, t0, t1),
            windows,
            intervals,
            stderr_mw: fit.kinds.iter().map(|k| k.stderr_mw).collect(),
        }
    }

    /// The inclusive energy of section `[s, e]` on thread `thread` (its position in the
    /// `threads` given), which has a section open throughout.
    pub fn section(&self, thread: usize, s: u64, e: u64) -> SectionEnergy {
        let mut out = self.background.section(s, e);
        let Some(list) = self.intervals.get(thread) else {
            return out;
        };
        let mut add = [0.0; 5];
        let mut known = [false; 5];
        let mut kind_spread = vec![0.0; self.stderr_mw.len()];
        let first = list.partition_point(|c| c.end_ns <= s);
        for c in list[first..].iter().take_while(|c| c.start_ns < e) {
            let (a, b) = (c.start_ns.max(s), c.end_ns.min(e));
            if b <= a {
                continue;
            }
            let w0 = self.windows.partition_point(|w| w.end <= a);
            for w in self.windows[w0..].iter().take_while(|w| w.start < b) {
                let ns = b.min(w.end).saturating_sub(a.max(w.start)) as f64;
                if ns == 0.0 {
                    continue;
                }
                for (i, d) in w.density[c.kind].iter().enumerate() {
                    if let Some(d) = d {
                        add[i] += d * ns;
                        known[i] = true;
                    }
                }
                kind_spread[c.kind] += w.scale * ns / 1e9;
            }
        }
        if known[4] {
            out.total_mj = Some(out.total_mj.unwrap_or(0.0) + add[4]);
            for i in 0..4 {
                if known[i] {
                    out.domains[i] = Some(out.domains[i].unwrap_or(0.0) + add[i]);
                }
            }
            let fit_error: f64 = kind_spread
                .iter()
                .zip(&self.stderr_mw)
                .map(|(t, se)| (t * se).powi(2))
                .sum::<f64>()
                .sqrt();
            out.uncertainty_mj = Some(out.uncertainty_mj.unwrap_or(0.0) + fit_error);
        }
        out
    }

    /// Energy measured over the range (mJ).
    pub fn measured_mj(&self) -> f64 {
        self.background.measured_mj()
            + self
                .intervals
                .iter()
                .flatten()
                .map(|c| self.kind_mj(c))
                .sum::<f64>()
    }

    /// Energy at instants with no section open (mJ): the background's alone, since a
    /// component runs only inside a section.
    pub fn unattributed_mj(&self) -> f64 {
        self.background.unattributed_mj()
    }

    fn kind_mj(&self, c: &KindInterval) -> f64 {
        let w0 = self.windows.partition_point(|w| w.end <= c.start_ns);
        self.windows[w0..]
            .iter()
            .take_while(|w| w.start < c.end_ns)
            .map(|w| {
                let ns = c.end_ns.min(w.end).saturating_sub(c.start_ns.max(w.start)) as f64;
                w.density[c.kind][4].unwrap_or(0.0) * ns
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::regression::KindPower;
    use super::*;

    use crate::power::cpu_sample as sample;

    fn fit(idle: f64, kinds: &[f64]) -> PowerFit {
        PowerFit {
            idle_mw: idle,
            idle_stderr_mw: 0.0,
            kinds: kinds
                .iter()
                .enumerate()
                .map(|(i, p)| KindPower {
                    kind: format!("k{i}"),
                    power_mw: *p,
                    stderr_mw: 10.0,
                })
                .collect(),
            windows: 2,
            condition: 1.0,
        }
    }

    fn iv(a: u64, b: u64, kind: usize) -> KindInterval {
        KindInterval {
            start_ns: a,
            end_ns: b,
            kind,
        }
    }

    fn act(a: u64, b: u64) -> Activity {
        Activity {
            start_ns: a,
            end_ns: b,
        }
    }

    #[test]
    fn a_window_is_shared_by_power_times_time_and_conserved() {
        // 1 s window, 10 000 mJ measured. Idle 1 W x 1 s = 1000; kind 0 at 4 W for 0.5 s
        // = 2000; kind 1 at 2 W for 0.5 s = 1000: D = 4000, scale 2.5.
        let ms = 1_000_000;
        let f = fit(1000.0, &[4000.0, 2000.0]);
        let samples = [sample(0, 1000 * ms, 10_000.0)];
        let threads = vec![vec![act(0, 1000 * ms)]];
        let comps = vec![vec![iv(0, 500 * ms, 0), iv(500 * ms, 1000 * ms, 1)]];
        let a = FitAttribution::new(&f, &samples, &threads, &comps, 0, 1000 * ms);
        let first = a.section(0, 0, 500 * ms).total_mj.unwrap();
        let second = a.section(0, 500 * ms, 1000 * ms).total_mj.unwrap();
        // Background 2500 mJ spread over the second: 1250 each; kind 0: 5000, kind 1: 2500.
        assert!((first - 6250.0).abs() < 1e-6, "{first}");
        assert!((second - 3750.0).abs() < 1e-6, "{second}");
        assert!((first + second - 10_000.0).abs() < 1e-6);
        assert!((a.measured_mj() - 10_000.0).abs() < 1e-6);
        assert!(a.unattributed_mj().abs() < 1e-9);
        let cpu = a.section(0, 0, 500 * ms).domains[0].unwrap();
        assert!((cpu - 6250.0).abs() < 1e-6, "cpu follows the total: {cpu}");
        let u = a.section(0, 0, 500 * ms).uncertainty_mj.unwrap();
        // Fit error: 0.5 s x 10 mW x 2.5 = 12.5 mJ, on top of the background's.
        assert!(u >= 12.5, "{u}");
    }

    #[test]
    fn background_goes_unattributed_when_no_section_is_open() {
        let ms = 1_000_000;
        let f = fit(1000.0, &[3000.0]);
        let samples = [sample(0, 1000 * ms, 4000.0)];
        // A section and its component in the first half only: D = 1000 + 1500 = 2500,
        // scale 1.6: kind 2400 mJ, background 1600 (800 in each half).
        let threads = vec![vec![act(0, 500 * ms)]];
        let comps = vec![vec![iv(0, 500 * ms, 0)]];
        let a = FitAttribution::new(&f, &samples, &threads, &comps, 0, 1000 * ms);
        let s = a.section(0, 0, 500 * ms).total_mj.unwrap();
        assert!((s - 3200.0).abs() < 1e-6, "{s}");
        assert!((a.unattributed_mj() - 800.0).abs() < 1e-6);
        assert!((s + a.unattributed_mj() - 4000.0).abs() < 1e-6);
    }

    #[test]
    fn two_threads_share_the_background_and_keep_their_kinds() {
        let ms = 1_000_000;
        let f = fit(2000.0, &[4000.0, 1000.0]);
        let samples = [sample(0, 100 * ms, 1000.0)];
        let threads = vec![vec![act(0, 100 * ms)], vec![act(0, 100 * ms)]];
        let comps = vec![vec![iv(0, 100 * ms, 0)], vec![iv(0, 100 * ms, 1)]];
        // D = 0.1 (2000 + 4000 + 1000) = 700 mJ, scale 1000/700.
        let a = FitAttribution::new(&f, &samples, &threads, &comps, 0, 100 * ms);
        let t0 = a.section(0, 0, 100 * ms).total_mj.unwrap();
        let t1 = a.section(1, 0, 100 * ms).total_mj.unwrap();
        let scale = 1000.0 / 700.0;
        assert!((t0 - scale * (100.0 + 400.0)).abs() < 1e-6, "{t0}");
        assert!((t1 - scale * (100.0 + 100.0)).abs() < 1e-6, "{t1}");
        assert!((t0 + t1 - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn kind_seconds_split_intervals_over_the_windows_they_touch() {
        let ms = 1_000_000;
        let windows = [(0, 10 * ms), (10 * ms, 20 * ms), (20 * ms, 30 * ms)];
        let intervals = [iv(5 * ms, 25 * ms, 0), iv(12 * ms, 14 * ms, 1), iv(0, 1, 7)];
        let got = kind_seconds(&windows, &intervals, 2);
        let want = [[0.005, 0.0], [0.010, 0.002], [0.005, 0.0]];
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g[0] - w[0]).abs() < 1e-12 && (g[1] - w[1]).abs() < 1e-12,
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_window_the_model_gives_nothing_is_all_background() {
        let ms = 1_000_000;
        let f = fit(0.0, &[0.0]);
        let samples = [sample(0, 10 * ms, 50.0)];
        let threads = vec![vec![act(0, 10 * ms)]];
        let comps = vec![vec![iv(0, 5 * ms, 0)]];
        let a = FitAttribution::new(&f, &samples, &threads, &comps, 0, 10 * ms);
        let s = a.section(0, 0, 10 * ms).total_mj.unwrap();
        assert!((s - 50.0).abs() < 1e-9, "{s}");
    }
}
