//! Component power by regression: what each kind of component draws, fitted over a run's
//! power windows.
//!
//! # The model
//!
//! A window `w` of length `t_w` measured `E_w`. In it, component kind `k` (attention, MLP,
//! norm, ...) ran for `t_kw` (summed over threads). The fit is
//!
//! ```text
//! E_w = P_idle * t_w + sum_k P_k * t_kw + e_w
//! ```
//!
//! with every `P >= 0` (non-negative least squares, Lawson and Hanson's active-set method on
//! the normal equations; C. L. Lawson, R. J. Hanson, *Solving Least Squares Problems*, 1974,
//! ch. 23). `P_k` is the power kind `k` adds above the background while it runs. Standard
//! errors are the ordinary least-squares ones, `s^2 (X'X)^-1` with `s^2` the residual
//! variance over `n - p` degrees of freedom.
//!
//! # When the fit is refused
//!
//! The powers can be told apart only when the mix of kinds varies between windows: if
//! attention always takes 40 % of every window and MLP 50 %, any split of the window's
//! energy between them fits equally well. [`fit`] refuses with a [`FitRefused`] that says
//! why: too few windows for the unknowns, a kind that never ran, or a mix that does not vary
//! enough (the scaled normal matrix's condition number, with the kinds that move together).
//! What makes the mix vary: prefill and decode windows in one run (prefill is matmul-heavy,
//! decode's attention grows with the KV cache), long generations, several prompts, and
//! windows short enough that each holds a different mix.
//!
//! # Sharing a window
//!
//! With a fit, [`PowerFit::shares`] splits one window's *measured* energy in proportion to
//! `P_idle * t_w` and each `P_k * t_kw`; the shares sum to 1, so conservation per window
//! stays exact whatever the fit's error.

use std::fmt;

use super::linalg::{nnls, symmetric_eigen};

/// The method name stored with rows attributed by the fit.
pub const METHOD: &str = "regression";

/// Condition number of the scaled normal matrix above which the fit is refused: the
/// unknowns are then not determined by the data to better than about 1e-8 relative.
pub const MAX_CONDITION: f64 = 1e8;

/// Share of the windows' energy the fit may leave undetermined between the kinds (the
/// sum over kinds of standard error times time run) before it is refused: 10 %. Past it,
/// the split between components says more about the noise than about them.
pub const MAX_UNDETERMINED: f64 = 0.10;

/// One power window: its measured energy and how long each kind ran in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Measured energy (mJ).
    pub energy_mj: f64,
    /// The window's length (s).
    pub seconds: f64,
    /// Seconds each kind ran in the window (summed over threads), in the order of the
    /// `kinds` given to [`fit`].
    pub kind_seconds: Vec<f64>,
}

/// One kind's fitted power.
#[derive(Debug, Clone, PartialEq)]
pub struct KindPower {
    /// The component kind.
    pub kind: String,
    /// Power it adds while running (mW).
    pub power_mw: f64,
    /// Standard error of `power_mw` (mW).
    pub stderr_mw: f64,
}

/// A fit over a run's windows.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerFit {
    /// Background power, drawn whatever runs (mW).
    pub idle_mw: f64,
    /// Standard error of `idle_mw` (mW).
    pub idle_stderr_mw: f64,
    /// Each kind's power, in the order given.
    pub kinds: Vec<KindPower>,
    /// Windows fitted.
    pub windows: usize,
    /// Condition number of the scaled normal matrix.
    pub condition: f64,
}

/// Why a fit was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum FitRefused {
    /// Fewer windows than unknowns plus two.
    TooFewWindows {
        /// Windows given.
        windows: usize,
        /// Windows needed.
        needed: usize,
    },
    /// A kind with no time in any window.
    NeverRan {
        /// The kind.
        kind: String,
    },
    /// The mix of kinds does not vary enough between windows.
    NoVariation {
        /// The condition number found.
        condition: f64,
        /// The unknowns that move together (`idle` for the background).
        together: Vec<String>,
    },
    /// The fit leaves too much of the energy undetermined between the kinds (see
    /// [`MAX_UNDETERMINED`]).
    Undetermined {
        /// The undetermined share of the windows' energy.
        share: f64,
        /// The kind that contributes most to it.
        worst: String,
    },
    /// A window with a non-finite or negative figure.
    BadWindow {
        /// Its position.
        index: usize,
    },
}

impl fmt::Display for FitRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitRefused::TooFewWindows { windows, needed } => write!(
                f,
                "{windows} power windows, {needed} needed to fit the components' power; run longer or sample more often"
            ),
            FitRefused::NeverRan { kind } => {
                write!(f, "component kind `{kind}` never ran inside a power window")
            }
            FitRefused::NoVariation { condition, together } => write!(
                f,
                "the mix of components hardly varies between windows (condition number {condition:.1e}; {} move together); profile prefill and decode together, generate more tokens, or sample more often",
                together.join(", ")
            ),
            FitRefused::Undetermined { share, worst } => write!(
                f,
                "the windows leave {:.0} % of the energy undetermined between the components (most of it `{worst}`'s, which runs too little or too evenly to be told apart); generate more tokens, profile prefill and decode together, or sample more often",
                share * 100.0
            ),
            FitRefused::BadWindow { index } => {
                write!(f, "power window {index} has a negative or non-finite figure")
            }
        }
    }
}

impl PowerFit {
    /// Shares of one window's energy: `(background, per kind)`, in proportion to
    /// `P_idle * seconds` and `P_k * kind_seconds[k]`. They sum to 1. `None` when every
    /// term is zero (nothing to share by).
    pub fn shares(&self, seconds: f64, kind_seconds: &[f64]) -> Option<(f64, Vec<f64>)> {
        let idle = self.idle_mw * seconds.max(0.0);
        let kinds: Vec<f64> = self
            .kinds
            .iter()
            .zip(kind_seconds)
            .map(|(k, s)| k.power_mw * s.max(0.0))
            .collect();
        let total = idle + kinds.iter().sum::<f64>();
        if !(total > 0.0 && total.is_finite()) {
            return None;
        }
        Some((idle / total, kinds.into_iter().map(|k| k / total).collect()))
    }
}

/// Fits the background and each kind's power over the windows (see the module docs).
pub fn fit(kinds: &[String], windows: &[Window]) -> Result<PowerFit, FitRefused> {
    let p = kinds.len() + 1;
    let n = windows.len();
    if n < p + 2 {
        return Err(FitRefused::TooFewWindows {
            windows: n,
            needed: p + 2,
        });
    }
    // Design rows: [t_w, t_1w, ..., t_Kw]; target E_w.
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(n);
    for (index, w) in windows.iter().enumerate() {
        let mut row = Vec::with_capacity(p);
        row.push(w.seconds);
        row.extend((0..kinds.len()).map(|k| w.kind_seconds.get(k).copied().unwrap_or(0.0)));
        if row
            .iter()
            .chain([&w.energy_mj])
            .any(|v| !v.is_finite() || *v < 0.0)
        {
            return Err(FitRefused::BadWindow { index });
        }
        rows.push(row);
    }
    // Scale columns to unit norm, so that the condition number speaks of the mix, not of
    // the units.
    let mut scale = vec![0.0; p];
    for row in &rows {
        for (s, v) in scale.iter_mut().zip(row) {
            *s += v * v;
        }
    }
    for (j, s) in scale.iter_mut().enumerate() {
        *s = s.sqrt();
        if *s == 0.0 {
            return Err(if j == 0 {
                FitRefused::TooFewWindows {
                    windows: 0,
                    needed: p + 2,
                }
            } else {
                FitRefused::NeverRan {
                    kind: kinds[j - 1].clone(),
                }
            });
        }
    }
    let mut gram = vec![vec![0.0; p]; p];
    let mut rhs = vec![0.0; p];
    for (row, w) in rows.iter().zip(windows) {
        for i in 0..p {
            let xi = row[i] / scale[i];
            rhs[i] += xi * w.energy_mj;
            for j in 0..p {
                gram[i][j] += xi * row[j] / scale[j];
            }
        }
    }
    let (values, vectors) = symmetric_eigen(&gram);
    let (min_k, min) = values
        .iter()
        .copied()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0));
    let max = values.iter().copied().fold(0.0, f64::max);
    let condition = if min > 0.0 { max / min } else { f64::INFINITY };
    if condition > MAX_CONDITION {
        let name = |j: usize| {
            if j == 0 {
                "idle".to_string()
            } else {
                kinds[j - 1].clone()
            }
        };
        let weight: f64 = (0..p).map(|j| vectors[j][min_k].abs()).fold(0.0, f64::max);
        let together = (0..p)
            .filter(|&j| vectors[j][min_k].abs() >= 0.3 * weight)
            .map(name)
            .collect();
        return Err(FitRefused::NoVariation {
            condition,
            together,
        });
    }
    let scaled = nnls(&gram, &rhs);
    let x: Vec<f64> = scaled.iter().zip(&scale).map(|(v, s)| v / s).collect();
    // Residual variance and the OLS covariance of the scaled unknowns.
    let rss: f64 = rows
        .iter()
        .zip(windows)
        .map(|(row, w)| {
            let fitted: f64 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            (w.energy_mj - fitted).powi(2)
        })
        .sum();
    let s2 = rss / (n - p) as f64;
    let inverse_diag: Vec<f64> = (0..p)
        .map(|j| {
            (0..p)
                .map(|k| vectors[j][k] * vectors[j][k] / values[k])
                .sum::<f64>()
        })
        .collect();
    let stderr = |j: usize| (s2 * inverse_diag[j]).max(0.0).sqrt() / scale[j];
    // Energy the fit could move between kinds: each kind's standard error over its time.
    let spread: Vec<f64> = (1..p)
        .map(|j| stderr(j) * rows.iter().map(|r| r[j]).sum::<f64>())
        .collect();
    let energy: f64 = windows.iter().map(|w| w.energy_mj).sum();
    let undetermined: f64 = spread.iter().sum();
    if undetermined > MAX_UNDETERMINED * energy {
        let worst = (0..spread.len())
            .max_by(|&a, &b| spread[a].total_cmp(&spread[b]))
            .map_or_else(String::new, |k| kinds[k].clone());
        return Err(FitRefused::Undetermined {
            share: undetermined / energy.max(f64::MIN_POSITIVE),
            worst,
        });
    }
    Ok(PowerFit {
        idle_mw: x[0],
        idle_stderr_mw: stderr(0),
        kinds: kinds
            .iter()
            .enumerate()
            .map(|(k, kind)| KindPower {
                kind: kind.clone(),
                power_mw: x[k + 1],
                stderr_mw: stderr(k + 1),
            })
            .collect(),
        windows: n,
        condition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Windows of 0.1 s whose mix varies, with energy from known powers (mW).
    fn windows(idle: f64, powers: &[f64], noise: f64) -> Vec<Window> {
        (0..60)
            .map(|w| {
                let t = 0.1;
                let f = w as f64 / 60.0;
                // Attention's share grows (a growing KV cache); MLP's shrinks, not in step
                // (a linear fall would make attention + 1.25 MLP constant: collinear with
                // the background); norms wobble.
                let ks = [
                    t * (0.1 + 0.5 * f),
                    t * (0.6 - 0.4 * f * f),
                    t * (0.05 + 0.03 * ((w % 7) as f64 / 7.0)),
                ];
                let ks = &ks[..powers.len()];
                let wobble = if w % 2 == 0 { noise } else { -noise };
                Window {
                    energy_mj: idle * t
                        + ks.iter().zip(powers).map(|(s, p)| s * p).sum::<f64>()
                        + wobble,
                    seconds: t,
                    kind_seconds: ks.to_vec(),
                }
            })
            .collect()
    }

    #[test]
    fn recovers_known_powers() {
        let names = kinds(&["attention", "mlp", "norm"]);
        let fit = fit(&names, &windows(2000.0, &[20000.0, 10000.0, 5000.0], 0.0)).unwrap();
        assert!((fit.idle_mw - 2000.0).abs() < 1e-6, "{fit:?}");
        for (k, want) in fit.kinds.iter().zip([20000.0, 10000.0, 5000.0]) {
            assert!((k.power_mw - want).abs() < 1e-6 * want, "{k:?}");
            assert!(k.stderr_mw < 1e-6, "exact data has no error: {k:?}");
        }
        assert_eq!(fit.windows, 60);
    }

    #[test]
    fn noise_gives_standard_errors_that_cover_the_truth() {
        let names = kinds(&["attention", "mlp", "norm"]);
        let fit = fit(&names, &windows(2000.0, &[20000.0, 10000.0, 5000.0], 5.0)).unwrap();
        for (k, want) in fit.kinds.iter().zip([20000.0, 10000.0, 5000.0]) {
            assert!(k.stderr_mw > 0.0, "{k:?}");
            assert!(
                (k.power_mw - want).abs() < 4.0 * k.stderr_mw,
                "{k:?} vs {want}"
            );
        }
    }

    #[test]
    fn powers_stay_non_negative() {
        // The truth has the norm drawing nothing; noise would push an unconstrained fit
        // below zero.
        let names = kinds(&["attention", "mlp", "norm"]);
        let fit = fit(&names, &windows(2000.0, &[20000.0, 10000.0, 0.0], 20.0)).unwrap();
        assert!(fit.kinds.iter().all(|k| k.power_mw >= 0.0), "{fit:?}");
        assert!(fit.idle_mw >= 0.0);
        assert!(
            (fit.kinds[0].power_mw - 20000.0).abs() < 0.05 * 20000.0,
            "{fit:?}"
        );
    }

    #[test]
    fn mixes_that_trade_off_in_step_are_refused() {
        // Attention grows as MLP falls, linearly: attention + 1.25 MLP is a constant share,
        // indistinguishable from the background.
        let names = kinds(&["attention", "mlp"]);
        let ws: Vec<Window> = (0..40)
            .map(|w| {
                let f = w as f64 / 40.0;
                let ks = vec![0.1 * (0.1 + 0.5 * f), 0.1 * (0.6 - 0.4 * f)];
                Window {
                    energy_mj: 0.2 + 2.0 * ks[0] + 1.0 * ks[1],
                    seconds: 0.1,
                    kind_seconds: ks,
                }
            })
            .collect();
        match fit(&names, &ws) {
            Err(FitRefused::NoVariation { together, .. }) => {
                assert_eq!(together, ["idle", "attention", "mlp"])
            }
            other => panic!("expected NoVariation, got {other:?}"),
        }
    }

    #[test]
    fn a_constant_mix_is_refused_with_the_kinds_that_move_together() {
        let names = kinds(&["attention", "mlp"]);
        let ws: Vec<Window> = (0..30)
            .map(|w| Window {
                energy_mj: 100.0 + w as f64,
                seconds: 0.1,
                kind_seconds: vec![0.04, 0.05],
            })
            .collect();
        match fit(&names, &ws) {
            Err(FitRefused::NoVariation { together, .. }) => {
                assert!(together.len() >= 2, "{together:?}")
            }
            other => panic!("expected NoVariation, got {other:?}"),
        }
    }

    #[test]
    fn a_fit_that_leaves_the_split_to_noise_is_refused() {
        // Norms run 0.1-0.2 % of each window; window noise (about 2 % of a window's
        // energy) hides their power: its error bar spans more of the energy than a fit
        // may leave.
        let names = kinds(&["attention", "norm"]);
        let ws: Vec<Window> = (0..12)
            .map(|w| {
                let ks = vec![0.01 * (1 + w % 5) as f64, 0.0001 * (1 + w % 2) as f64];
                let noise = if w % 3 == 0 { 200.0 } else { -100.0 };
                Window {
                    energy_mj: 200.0 + 20_000.0 * ks[0] + 5_000.0 * ks[1] + noise,
                    seconds: 0.1,
                    kind_seconds: ks,
                }
            })
            .collect();
        match fit(&names, &ws) {
            Err(FitRefused::Undetermined { share, worst }) => {
                assert!(share > MAX_UNDETERMINED, "{share}");
                assert_eq!(worst, "norm");
            }
            other => panic!("expected Undetermined, got {other:?}"),
        }
    }

    #[test]
    fn too_few_windows_and_absent_kinds_are_refused() {
        let names = kinds(&["attention", "mlp"]);
        let ws = windows(1.0, &[2.0, 3.0], 0.0);
        assert_eq!(
            fit(&names, &ws[..3]),
            Err(FitRefused::TooFewWindows {
                windows: 3,
                needed: 5
            })
        );
        let mut none = ws.clone();
        for w in &mut none {
            w.kind_seconds[1] = 0.0;
        }
        assert_eq!(
            fit(&names, &none),
            Err(FitRefused::NeverRan { kind: "mlp".into() })
        );
        let mut bad = ws;
        bad[4].energy_mj = f64::NAN;
        assert_eq!(fit(&names, &bad), Err(FitRefused::BadWindow { index: 4 }));
    }

    #[test]
    fn shares_sum_to_one_in_proportion_to_power_times_time() {
        let f = PowerFit {
            idle_mw: 1000.0,
            idle_stderr_mw: 0.0,
            kinds: vec![
                KindPower {
                    kind: "attention".into(),
                    power_mw: 4000.0,
                    stderr_mw: 0.0,
                },
                KindPower {
                    kind: "mlp".into(),
                    power_mw: 2000.0,
                    stderr_mw: 0.0,
                },
            ],
            windows: 10,
            condition: 1.0,
        };
        // 1 W * 0.1 s = 0.1; 4 W * 0.05 = 0.2; 2 W * 0.05 = 0.1: shares 1/4, 1/2, 1/4.
        let (idle, ks) = f.shares(0.1, &[0.05, 0.05]).unwrap();
        assert!((idle - 0.25).abs() < 1e-12);
        assert!((ks[0] - 0.5).abs() < 1e-12 && (ks[1] - 0.25).abs() < 1e-12);
        assert!((idle + ks.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let zero = PowerFit { idle_mw: 0.0, ..f };
        assert_eq!(zero.shares(0.1, &[0.0, 0.0]), None);
    }
}
