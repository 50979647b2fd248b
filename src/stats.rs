//! Statistics of repeated measurements: mean, sample standard deviation, a 95 % confidence
//! interval of the mean with Student's t, and Welch's t-test of two means.
//!
//! The t distribution is computed, not tabulated: its CDF is the regularized incomplete
//! beta function (continued fraction, Lentz's method, as in Press et al., *Numerical
//! Recipes*, 3rd ed., section 6.4), with `ln Γ` by Lanczos' approximation (g = 7, 9
//! coefficients), and a quantile is found by bisection on the CDF to 1e-12. That works
//! for any degrees of freedom, including Welch's fractional ones; the tests hold it to the
//! printed tables (t(0.975, 4) = 2.7764, t(0.975, 30) = 2.0423, ...).
//!
//! Unknown values are never 0: a caller leaves them out and keeps the count of those left
//! out ([`Estimate::of`]). With fewer than 2 values there is no spread and no interval.

use serde::Serialize;

/// The confidence level of every interval here.
pub const CONFIDENCE: f64 = 0.95;

/// The mean of a sample with its spread and 95 % confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// How many values there are.
    pub n: usize,
    /// How many were unknown and left out.
    pub unknown: usize,
    /// The mean, `None` without any value.
    pub mean: Option<f64>,
    /// The sample standard deviation (n - 1 in the denominator), `None` with n < 2.
    pub sd: Option<f64>,
    /// The half-width of the 95 % interval of the mean: t(0.975, n - 1) * sd / sqrt(n);
    /// `None` with n < 2.
    pub half_width: Option<f64>,
    /// The interval's lower bound.
    pub low: Option<f64>,
    /// The interval's upper bound.
    pub high: Option<f64>,
}

impl Estimate {
    /// The estimate of the known values among `values`; the `None`s are counted in
    /// `unknown` and left out.
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Estimate {
        let mut known = Vec::new();
        let mut unknown = 0;
        for v in values {
            match v {
                Some(v) if v.is_finite() => known.push(v),
                _ => unknown += 1,
            }
        }
        let n = known.len();
        let mean = (n > 0).then(|| known.iter().sum::<f64>() / n as f64);
        let sd = mean.filter(|_| n >= 2).map(|m| {
            let ss: f64 = known.iter().map(|v| (v - m) * (v - m)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let half_width = sd
            .map(|sd| t_quantile(0.5 + CONFIDENCE / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt());
        Estimate {
            n,
            unknown,
            mean,
            sd,
            half_width,
            low: mean.zip(half_width).map(|(m, h)| m - h),
            high: mean.zip(half_width).map(|(m, h)| m + h),
        }
    }

    /// The interval's width relative to the mean (2 * half-width / |mean|), `None` without
    /// an interval or with a zero mean.
    pub fn relative_width(&self) -> Option<f64> {
        let (m, h) = (self.mean?, self.half_width?);
        (m != 0.0).then(|| 2.0 * h / m.abs())
    }

    /// "12.34 ± 0.56 (n = 5)", "12.34 (n = 1: no interval)" or "unknown (n = 0)", with
    /// `digits` decimals; "(2 unknown left out)" is added when values were.
    pub fn describe(&self, digits: usize) -> String {
        let left_out = if self.unknown > 0 {
            format!(", {} unknown left out", self.unknown)
        } else {
            String::new()
        };
        match (self.mean, self.half_width) {
            (Some(m), Some(h)) => format!("{m:.digits$} ± {h:.digits$} (n = {}{left_out})", self.n),
            (Some(m), None) => format!("{m:.digits$} (n = 1: no interval{left_out})"),
            _ => format!("unknown (n = 0{left_out})"),
        }
    }
}

/// Two estimates compared: their difference, whether their intervals overlap, and Welch's
/// t-test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Mean of B less mean of A, `None` when either is unknown.
    pub delta: Option<f64>,
    /// `delta` relative to A's mean (a fraction).
    pub delta_fraction: Option<f64>,
    /// True when both have an interval and the intervals do not overlap: the means differ
    /// beyond their intervals. `None` when either has no interval.
    pub beyond_intervals: Option<bool>,
    /// The two-sided p-value of Welch's t-test (unequal variances), `None` when either
    /// side has fewer than 2 values or both have no spread.
    pub welch_p: Option<f64>,
}

impl Difference {
    /// Compares `a` and `b`.
    pub fn between(a: &Estimate, b: &Estimate) -> Difference {
        let delta = a.mean.zip(b.mean).map(|(a, b)| b - a);
        let overlap = match (a.low, a.high, b.low, b.high) {
            (Some(al), Some(ah), Some(bl), Some(bh)) => Some(al <= bh && bl <= ah),
            _ => None,
        };
        Difference {
            delta,
            delta_fraction: delta
                .zip(a.mean)
                .and_then(|(d, m)| (m != 0.0).then(|| d / m.abs())),
            beyond_intervals: overlap.map(|o| !o),
            welch_p: welch_p(a, b),
        }
    }

    /// "differ beyond their intervals", "within the noise", or why it cannot say.
    pub fn verdict(&self) -> &'static str {
        match self.beyond_intervals {
            Some(true) => "differ beyond their intervals",
            Some(false) => "within the noise",
            None => "no interval (n < 2)",
        }
    }
}

/// Welch's two-sided p-value for the means of `a` and `b`.
fn welch_p(a: &Estimate, b: &Estimate) -> Option<f64> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.sd? * a.sd? / a.n as f64, b.sd? * b.sd? / b.n as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (b.mean? - a.mean?) / se2.sqrt();
    // Welch–Satterthwaite degrees of freedom.
    let df = se2 * se2 / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    Some(2.0 * (1.0 - t_cdf(t.abs(), df)))
}

/// The CDF of Student's t distribution with `df` degrees of freedom (df > 0).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile of Student's t distribution with `df` degrees of freedom (0 < p < 1,
/// df > 0), by bisection on [`t_cdf`].
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The regularized incomplete beta function I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} != {b} (±{tol})");
    }

    #[test]
    fn t_quantiles_match_the_printed_tables() {
        // Two-sided 95 % critical values, e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2.
        for (df, t) in [
            (1.0, 12.706),
            (2.0, 4.303),
            (3.0, 3.182),
            (4.0, 2.776),
            (5.0, 2.571),
            (9.0, 2.262),
            (10.0, 2.228),
            (20.0, 2.086),
            (30.0, 2.042),
            (100.0, 1.984),
        ] {
            close(t_quantile(0.975, df), t, 5e-4);
        }
        close(t_quantile(0.975, 4.0), 2.776_445, 1e-5);
        close(t_quantile(0.975, 1e7), 1.959_964, 1e-5);
        close(t_quantile(0.025, 4.0), -2.776_445, 1e-5);
        close(t_cdf(0.0, 3.0), 0.5, 1e-12);
        // df = 1 is the Cauchy distribution: F(1) = 3/4.
        close(t_cdf(1.0, 1.0), 0.75, 1e-10);
    }

    #[test]
    fn one_to_five_by_hand() {
        let e = Estimate::of([1.0, 2.0, 3.0, 4.0, 5.0].map(Some));
        assert_eq!((e.n, e.unknown), (5, 0));
        close(e.mean.unwrap(), 3.0, 1e-12);
        close(e.sd.unwrap(), 2.5_f64.sqrt(), 1e-12); // 1.5811
                                                     // 2.7764 * 1.5811 / sqrt(5) = 1.9632
        close(
            e.half_width.unwrap(),
            2.776_445 * 2.5_f64.sqrt() / 5_f64.sqrt(),
            1e-5,
        );
        close(e.half_width.unwrap(), 1.9632, 1e-4);
        close(e.low.unwrap(), 3.0 - 1.9632, 1e-4);
        close(e.relative_width().unwrap(), 2.0 * 1.9632 / 3.0, 1e-4);
        assert_eq!(e.describe(2), "3.00 ± 1.96 (n = 5)");
    }

    #[test]
    fn unknown_values_are_left_out_and_counted() {
        let e = Estimate::of([Some(2.0), None, Some(4.0), Some(f64::NAN)]);
        assert_eq!((e.n, e.unknown), (2, 2));
        close(e.mean.unwrap(), 3.0, 1e-12);
        // sd = sqrt(2), t(0.975, 1) = 12.7062: half-width 12.7062 * sqrt(2) / sqrt(2).
        close(e.half_width.unwrap(), 12.706_2, 1e-3);
        assert!(e.describe(1).ends_with("(n = 2, 2 unknown left out)"));

        let one = Estimate::of([Some(7.0), None]);
        assert_eq!((one.mean, one.sd, one.half_width), (Some(7.0), None, None));
        assert_eq!(
            one.describe(1),
            "7.0 (n = 1: no interval, 1 unknown left out)"
        );
        let none = Estimate::of([None, None]);
        assert_eq!(none.mean, None, "unknown is never 0");
        assert_eq!(none.describe(1), "unknown (n = 0, 2 unknown left out)");
    }

    #[test]
    fn differences_beyond_and_within_the_intervals() {
        let a = Estimate::of([10.0, 10.1, 9.9, 10.0].map(Some));
        let b = Estimate::of([12.0, 12.1, 11.9, 12.0].map(Some));
        let d = Difference::between(&a, &b);
        close(d.delta.unwrap(), 2.0, 1e-12);
        close(d.delta_fraction.unwrap(), 0.2, 1e-12);
        assert_eq!(d.beyond_intervals, Some(true));
        assert_eq!(d.verdict(), "differ beyond their intervals");
        // Equal variances and sizes: t = 2 / sqrt(2 * 0.00667 / 4) = 34.64, df = 6.
        let p = d.welch_p.unwrap();
        assert!(p < 1e-6, "{p}");

        let c = Estimate::of([10.05, 9.8, 10.2, 10.0].map(Some));
        let d = Difference::between(&a, &c);
        assert_eq!(d.verdict(), "within the noise");
        assert!(d.welch_p.unwrap() > 0.5);

        let lone = Estimate::of([Some(1.0)]);
        let d = Difference::between(&a, &lone);
        assert_eq!((d.beyond_intervals, d.welch_p), (None, None));
        assert_eq!(d.verdict(), "no interval (n < 2)");
    }

    #[test]
    fn welch_p_matches_a_hand_computation() {
        // a: mean 3, var 2.5, n 5; b: mean 5, var 2.5, n 5: t = 2 / 1 = 2, df = 8;
        // two-sided p for t = 2 with 8 df is 0.0805.
        let a = Estimate::of([1.0, 2.0, 3.0, 4.0, 5.0].map(Some));
        let b = Estimate::of([3.0, 4.0, 5.0, 6.0, 7.0].map(Some));
        close(Difference::between(&a, &b).welch_p.unwrap(), 0.0805, 5e-4);
    }
}
