//! The power source's health over a run: a source that stops delivering (no sample for a
//! few intervals) is noticed while the run goes on, and what went wrong with the
//! measurement becomes the run's warnings (stored on it, shown by `summary` and the report).

use std::time::Duration;

use crate::power::{SamplerReport, SamplerStatus};

/// A source is stalled when no sample arrived for this many intervals (and at least
/// [`STALL_MIN`]).
const STALL_INTERVALS: u32 = 5;
const STALL_MIN: Duration = Duration::from_secs(2);
/// At most this many warnings are kept on a run (then one says how many were left out).
const MAX_WARNINGS: usize = 20;

pub(super) struct SourceHealth {
    /// The source's name; `None` without a source (nothing to watch).
    name: Option<String>,
    limit_ns: u64,
    /// When the last new sample arrived (ns), and since when the source is silent.
    last_arrival_ns: u64,
    stalled_since: Option<u64>,
    warnings: Vec<String>,
    left_out: usize,
}

impl SourceHealth {
    /// Watches `name`'s samples of `interval` from `start_ns`; `notes` are warnings known
    /// at the start.
    pub(super) fn new(
        name: Option<String>,
        interval: Duration,
        start_ns: u64,
        notes: Vec<String>,
    ) -> SourceHealth {
        SourceHealth {
            name,
            limit_ns: (interval * STALL_INTERVALS).max(STALL_MIN).as_nanos() as u64,
            last_arrival_ns: start_ns,
            stalled_since: None,
            warnings: notes,
            left_out: 0,
        }
    }

    /// New samples arrived at `now`.
    pub(super) fn arrived(&mut self, now: u64) {
        self.last_arrival_ns = now;
    }

    /// True while the source is silent past the limit.
    pub(super) fn stalled(&self) -> bool {
        self.stalled_since.is_some()
    }

    /// Checks at `now` (`run_start`: the run's start). Returns the seconds of silence when
    /// a stall is noticed now (for a log line); a stall that ended becomes a warning.
    pub(super) fn check(&mut self, now: u64, run_start: u64) -> Option<f64> {
        self.name.as_ref()?;
        let silent = now.saturating_sub(self.last_arrival_ns);
        match self.stalled_since {
            None if silent > self.limit_ns => {
                self.stalled_since = Some(self.last_arrival_ns.max(run_start));
                Some(silent as f64 / 1e9)
            }
            Some(since) if silent <= self.limit_ns => {
                self.stalled_since = None;
                let text = self.stall_text(since, self.last_arrival_ns, run_start, "then resumed");
                self.warn(text);
                None
            }
            _ => None,
        }
    }

    /// A new run starts at `t`: a stall going on continues in it from `t`.
    pub(super) fn rotate(&mut self, t: u64) {
        if self.stalled_since.is_some() {
            self.stalled_since = Some(t);
        }
    }

    fn stall_text(&self, from: u64, to: u64, run_start: u64, how: &str) -> String {
        format!(
            "power source `{}` delivered no sample for {:.1} s, from {:.1} s into the run, {how}",
            self.name.as_deref().unwrap_or("?"),
            to.saturating_sub(from) as f64 / 1e9,
            from.saturating_sub(run_start) as f64 / 1e9,
        )
    }

    /// A warning for the run from elsewhere in the processor.
    pub(super) fn note(&mut self, text: String) {
        self.warn(text);
    }

    fn warn(&mut self, text: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(text);
        } else {
            self.left_out += 1;
        }
    }

    /// The run's warnings, with those only known at its end (`end_ns`): a stall still going
    /// on, no sample at all (`any_sample` false), windows the source could not use (from the
    /// sampler's final `report`, when the source was stopped). Starts the next run's list.
    pub(super) fn take_warnings(
        &mut self,
        run_start: u64,
        end_ns: u64,
        any_sample: bool,
        report: Option<&SamplerReport>,
    ) -> Vec<String> {
        if let Some(name) = self.name.clone() {
            if let Some(since) = self.stalled_since {
                let how = match report.map(|r| &r.status) {
                    Some(SamplerStatus::Finished) => "and had ended on its own",
                    Some(SamplerStatus::Failed(_)) => "and had failed",
                    _ => "until the run ended",
                };
                let text = self.stall_text(since, end_ns, run_start, how);
                self.warn(text);
            } else if !any_sample && report.is_some() {
                self.warn(format!(
                    "power source `{name}` delivered no sample during the run"
                ));
            }
            for (kind, n) in report.map(|r| r.rejected.as_slice()).unwrap_or_default() {
                self.warn(format!(
                    "power source `{name}`: {n} window(s) could not be used ({kind})"
                ));
            }
        }
        let mut out = std::mem::take(&mut self.warnings);
        if self.left_out > 0 {
            out.push(format!(
                "... and {} more warning(s)",
                std::mem::take(&mut self.left_out)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn health() -> SourceHealth {
        SourceHealth::new(Some("pm".into()), Duration::from_millis(100), 0, vec![])
    }

    fn report(status: SamplerStatus, rejected: &[(&str, u64)]) -> SamplerReport {
        SamplerReport {
            source: "pm".into(),
            estimated: false,
            status,
            samples: 0,
            rejected: rejected.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn a_stall_is_noticed_after_the_limit_and_recorded_when_it_ends() {
        let mut h = health();
        h.arrived(S);
        assert_eq!(h.check(2 * S, 0), None, "1 s of silence is not a stall");
        assert_eq!(h.check(3 * S + 1, 0).map(|s| s.round()), Some(2.0));
        assert!(h.stalled());
        assert_eq!(h.check(4 * S, 0), None, "noticed once");
        h.arrived(5 * S);
        h.check(5 * S, 0);
        assert!(!h.stalled());
        let w = h.take_warnings(0, 6 * S, true, None);
        assert_eq!(
            w,
            ["power source `pm` delivered no sample for 4.0 s, from 1.0 s into the run, then resumed"]
        );
    }

    #[test]
    fn the_end_says_what_became_of_a_silent_source() {
        let mut h = health();
        h.check(3 * S, 0);
        let w = h.take_warnings(
            0,
            4 * S,
            false,
            Some(&report(
                SamplerStatus::Failed("x".into()),
                &[("malformed", 7)],
            )),
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("for 4.0 s, from 0.0 s") && w[0].ends_with("and had failed"));
        assert_eq!(
            w[1],
            "power source `pm`: 7 window(s) could not be used (malformed)"
        );
        let mut quiet = health();
        let w = quiet.take_warnings(0, S, false, Some(&report(SamplerStatus::Stopped, &[])));
        assert_eq!(w, ["power source `pm` delivered no sample during the run"]);
    }

    #[test]
    fn warnings_are_capped_and_the_rest_counted() {
        let mut h = SourceHealth::new(
            Some("pm".into()),
            Duration::from_millis(100),
            0,
            vec!["auto fell back".into()],
        );
        for k in 0..30u64 {
            h.arrived(k * 10 * S);
            h.check(k * 10 * S + 3 * S, 0);
            h.arrived(k * 10 * S + 4 * S);
            h.check(k * 10 * S + 4 * S, 0);
        }
        let w = h.take_warnings(0, 400 * S, true, None);
        assert_eq!(w.len(), MAX_WARNINGS + 1);
        assert_eq!(w[0], "auto fell back");
        assert_eq!(w[MAX_WARNINGS], "... and 11 more warning(s)");
    }

    #[test]
    fn without_a_source_nothing_is_watched() {
        let mut h = SourceHealth::new(None, Duration::from_millis(100), 0, vec![]);
        assert_eq!(h.check(100 * S, 0), None);
        assert!(h.take_warnings(0, 100 * S, false, None).is_empty());
    }
}
