//! A run's idle baseline: the power the machine drew while nothing was profiled, and the
//! dynamic (above idle) energy that follows from it.
//!
//! A *gross* figure is the energy measured while a section ran. Its *dynamic* figure is the
//! gross one minus the baseline's power over the section's duration: what the work added to
//! what the idle machine draws anyway. A section that drew less than the idle machine
//! (measurement noise, or a quieter machine than during the baseline) has a negative dynamic
//! energy: it is reported as it is, never clamped. Without a baseline there is no dynamic
//! figure (`None`), never 0.

use serde::{Deserialize, Serialize};

/// Mean power per domain while nothing was profiled, measured by the run's own source
/// before the run started. A domain the source does not measure (or that a baseline window
/// lacked) is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// How long the baseline's sample windows lasted together (ms).
    pub duration_ms: f64,
    /// Mean CPU power (mW).
    pub cpu_mw: Option<f64>,
    /// Mean GPU power (mW).
    pub gpu_mw: Option<f64>,
    /// Mean Neural Engine power (mW).
    pub ane_mw: Option<f64>,
    /// Mean DRAM power (mW).
    pub dram_mw: Option<f64>,
    /// Mean power of all measured domains (mW).
    pub total_mw: f64,
}

impl Baseline {
    /// The energy the idle machine draws in `duration_ms` (mJ): mW x ms / 1000.
    pub fn idle_mj(&self, duration_ms: f64) -> f64 {
        self.total_mw * duration_ms / 1000.0
    }

    /// `gross_mj` less the idle energy over `duration_ms` (may be negative).
    pub fn dynamic_mj(&self, gross_mj: f64, duration_ms: f64) -> f64 {
        gross_mj - self.idle_mj(duration_ms)
    }

    /// "3412 mW idle (cpu 3100, gpu 312 mW) over 2.0 s", for a person.
    pub fn describe(&self) -> String {
        let domains: Vec<String> = [
            ("cpu", self.cpu_mw),
            ("gpu", self.gpu_mw),
            ("ane", self.ane_mw),
            ("dram", self.dram_mw),
        ]
        .iter()
        .filter_map(|(n, v)| v.map(|v| format!("{n} {v:.0}")))
        .collect();
        format!(
            "{:.0} mW idle ({} mW) over {:.1} s",
            self.total_mw,
            domains.join(", "),
            self.duration_ms / 1000.0
        )
    }
}

/// The dynamic figure of a gross energy over `duration_ms`: `None` when there is no
/// baseline or the gross energy is unknown.
pub fn dynamic_mj(
    baseline: Option<&Baseline>,
    gross_mj: Option<f64>,
    duration_ms: f64,
) -> Option<f64> {
    Some(baseline?.dynamic_mj(gross_mj?, duration_ms))
}

/// The text a person reads where a dynamic figure would go without a baseline.
pub const NO_BASELINE: &str = "no idle baseline";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_is_gross_less_idle_power_times_duration_and_may_be_negative() {
        let b = Baseline {
            duration_ms: 2000.0,
            cpu_mw: Some(1500.0),
            gpu_mw: None,
            ane_mw: None,
            dram_mw: Some(500.0),
            total_mw: 2000.0,
        };
        // 2 W for 1.5 s = 3 J.
        assert!((b.dynamic_mj(5000.0, 1500.0) - 2000.0).abs() < 1e-9);
        assert!((b.dynamic_mj(1000.0, 1500.0) + 2000.0).abs() < 1e-9);
        assert_eq!(dynamic_mj(None, Some(5.0), 1.0), None);
        assert_eq!(dynamic_mj(Some(&b), None, 1.0), None);
        assert_eq!(
            b.describe(),
            "2000 mW idle (cpu 1500, dram 500 mW) over 2.0 s"
        );
    }
}
