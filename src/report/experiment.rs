//! Repeated runs of one experiment: per-run figures, their statistics (mean, standard
//! deviation, 95 % interval: [`crate::stats`]), and two experiments compared.
//!
//! Every figure is read from a run's stored token rows, so that `profile --repeat` (which
//! reads back the runs it just recorded) and `tracing-energy stats` (which reads them
//! later) give the same numbers:
//!
//! - decode mJ per token: the decode rows' energy over their count (gross);
//! - decode mJ per token above idle: the same less the idle baseline's power over each
//!   row's time (only for runs with a baseline);
//! - prefill mJ per prompt token: the prefill row's energy over the prompt's tokens;
//! - decode tokens/s: the decode rows' count over their summed time.
//!
//! A figure a run does not have (no power source, a row no sample covered) is unknown and
//! left out of its statistic, whose count says so; it is never 0. Only complete runs are
//! counted: runs tagged [`WARMUP_TAG`] and runs that did not complete (interrupted,
//! failed, still running, or left incomplete by a dead process) are listed as left out,
//! with the reason.

use std::fmt;

use serde::Serialize;

use crate::stats::{Difference, Estimate};
use crate::store::{Row, Run, RunFilter, RunId, RunStatus, Store, TokenRecord};
use crate::Result;

/// The tag of a run that holds a repeated profile's model load and warm-up generations:
/// it is kept (nothing measured is thrown away) but left out of the statistics.
pub const WARMUP_TAG: &str = "warmup";

/// The tag of each measured repetition of a repeated profile.
pub const REPEAT_TAG: &str = "repeat";

/// One figure of a run, as the statistics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean energy of a decode step (mJ), gross.
    DecodeMjPerToken,
    /// The same above the idle baseline (mJ).
    DynamicDecodeMjPerToken,
    /// Prefill energy per prompt token (mJ), gross.
    PrefillMjPerPromptToken,
    /// Decode steps per second.
    DecodeTokensPerS,
}

impl Metric {
    /// Every metric, in the order they are printed.
    pub const ALL: [Metric; 4] = [
        Metric::DecodeMjPerToken,
        Metric::DynamicDecodeMjPerToken,
        Metric::PrefillMjPerPromptToken,
        Metric::DecodeTokensPerS,
    ];

    /// Its label for a person, with the unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::DecodeMjPerToken => "decode mJ/token",
            Metric::DynamicDecodeMjPerToken => "decode mJ/token above idle",
            Metric::PrefillMjPerPromptToken => "prefill mJ/prompt token",
            Metric::DecodeTokensPerS => "decode tokens/s",
        }
    }

    /// The value of this metric for `run`.
    pub fn of(self, run: &RunMetrics) -> Option<f64> {
        match self {
            Metric::DecodeMjPerToken => run.decode_mj_per_token,
            Metric::DynamicDecodeMjPerToken => run.dynamic_decode_mj_per_token,
            Metric::PrefillMjPerPromptToken => run.prefill_mj_per_prompt_token,
            Metric::DecodeTokensPerS => run.decode_tokens_per_s,
        }
    }
}

/// The figures of one run that the statistics use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunMetrics {
    /// The run.
    pub run_id: RunId,
    /// Decode steps (token rows of phase `decode`).
    pub decode_tokens: usize,
    /// Prompt tokens (the prefill row's), `None` without a prefill row.
    pub prompt_tokens: Option<u32>,
    /// Mean energy of a decode step (mJ); `None` unless every decode row's energy is known.
    pub decode_mj_per_token: Option<f64>,
    /// The same above idle; `None` without a baseline.
    pub dynamic_decode_mj_per_token: Option<f64>,
    /// Prefill energy per prompt token (mJ).
    pub prefill_mj_per_prompt_token: Option<f64>,
    /// Decode steps per second of decode time.
    pub decode_tokens_per_s: Option<f64>,
}

impl RunMetrics {
    /// The figures of `run` from its token rows.
    pub fn of(run: &Run, tokens: &[Row<TokenRecord>]) -> RunMetrics {
        let decode: Vec<&TokenRecord> = tokens
            .iter()
            .map(|t| &t.record)
            .filter(|t| t.phase == "decode")
            .collect();
        let prefill = tokens
            .iter()
            .map(|t| &t.record)
            .find(|t| t.phase == "prefill");
        // The mean over the decode rows, or `None` when any of them is unknown.
        let mean = |f: &dyn Fn(&TokenRecord) -> Option<f64>| -> Option<f64> {
            let known: Option<Vec<f64>> = decode.iter().map(|t| f(t)).collect();
            known
                .filter(|k| !k.is_empty())
                .map(|k| k.iter().sum::<f64>() / k.len() as f64)
        };
        let decode_ms: f64 = decode.iter().map(|t| t.measured.duration_ms()).sum();
        RunMetrics {
            run_id: run.run_id,
            decode_tokens: decode.len(),
            prompt_tokens: prefill.map(|p| p.n_tokens),
            decode_mj_per_token: mean(&|t| t.measured.energy_mj),
            dynamic_decode_mj_per_token: run.baseline.as_ref().and_then(|b| {
                mean(&|t| {
                    t.measured
                        .energy_mj
                        .map(|e| b.dynamic_mj(e, t.measured.duration_ms()))
                })
            }),
            prefill_mj_per_prompt_token: prefill.and_then(|p| {
                p.measured
                    .energy_mj
                    .map(|e| e / f64::from(p.n_tokens.max(1)))
            }),
            decode_tokens_per_s: (!decode.is_empty() && decode_ms > 0.0)
                .then(|| decode.len() as f64 / (decode_ms / 1000.0)),
        }
    }
}

/// A run of the experiment that the statistics leave out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeftOut {
    /// The run.
    pub run_id: RunId,
    /// Why: `warm-up`, or its status (`interrupted`, `failed`, ...).
    pub reason: String,
}

/// One metric over an experiment's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricStats {
    /// The metric.
    pub metric: Metric,
    /// Its label, with the unit.
    pub label: &'static str,
    /// Mean, standard deviation and 95 % interval of its known values.
    pub estimate: Estimate,
}

/// The statistics of an experiment's complete runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentStats {
    /// The experiment's name.
    pub experiment: String,
    /// The runs counted, oldest first, with their figures.
    pub runs: Vec<RunMetrics>,
    /// The runs left out, with the reason.
    pub left_out: Vec<LeftOut>,
    /// The power sources of the runs counted (each once).
    pub power_sources: Vec<String>,
    /// True when any counted run's energy is estimated, not measured.
    pub estimated: bool,
    /// One entry per [`Metric`], in [`Metric::ALL`]'s order.
    pub metrics: Vec<MetricStats>,
}

impl ExperimentStats {
    /// The statistics of every run stored under `experiment`; `None` when it has no runs.
    pub fn load(store: &Store, experiment: &str) -> Result<Option<ExperimentStats>> {
        store.read_snapshot(|s| {
            let runs = s.get_runs(&RunFilter {
                experiment: Some(experiment.to_string()),
                ..RunFilter::default()
            })?;
            if runs.is_empty() {
                return Ok(None);
            }
            Self::of_runs(s, experiment, runs).map(Some)
        })
    }

    /// The statistics of the runs `ids` (as `profile --repeat` reads back the runs it just
    /// recorded, whatever else the experiment holds).
    pub fn load_runs(store: &Store, experiment: &str, ids: &[RunId]) -> Result<ExperimentStats> {
        store.read_snapshot(|s| {
            let mut runs = Vec::with_capacity(ids.len());
            for &id in ids {
                runs.extend(s.get_run(id)?);
            }
            Self::of_runs(s, experiment, runs)
        })
    }

    fn of_runs(store: &Store, experiment: &str, mut runs: Vec<Run>) -> Result<ExperimentStats> {
        runs.sort_by_key(|r| r.run_id);
        let mut counted = Vec::new();
        let mut left_out = Vec::new();
        let mut power_sources: Vec<String> = Vec::new();
        let mut estimated = false;
        for run in runs {
            let reason = if run.tags.iter().any(|t| t == WARMUP_TAG) {
                Some("warm-up".to_string())
            } else if run.status != RunStatus::Complete {
                Some(run.status.as_str().to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                left_out.push(LeftOut {
                    run_id: run.run_id,
                    reason,
                });
                continue;
            }
            let tokens = store.get_tokens(run.run_id)?;
            counted.push(RunMetrics::of(&run, &tokens));
            estimated |= run.estimated;
            if let Some(src) = &run.power_source {
                if !power_sources.contains(src) {
                    power_sources.push(src.clone());
                }
            }
        }
        Ok(ExperimentStats::of_metrics(
            experiment,
            counted,
            left_out,
            power_sources,
            estimated,
        ))
    }

    /// The statistics of runs' figures already read.
    pub fn of_metrics(
        experiment: &str,
        runs: Vec<RunMetrics>,
        left_out: Vec<LeftOut>,
        power_sources: Vec<String>,
        estimated: bool,
    ) -> ExperimentStats {
        let metrics = Metric::ALL
            .iter()
            .map(|&metric| MetricStats {
                metric,
                label: metric.label(),
                estimate: Estimate::of(runs.iter().map(|r| metric.of(r))),
            })
            .collect();
        ExperimentStats {
            experiment: experiment.to_string(),
            runs,
            left_out,
            power_sources,
            estimated,
            metrics,
        }
    }

    /// The statistic of `metric`.
    pub fn get(&self, metric: Metric) -> &Estimate {
        &self
            .metrics
            .iter()
            .find(|m| m.metric == metric)
            .expect("every metric is computed")
            .estimate
    }

    /// "3 complete runs (4, 5, 6); left out: run 3 (warm-up)".
    pub fn describe_runs(&self) -> String {
        let ids: Vec<String> = self.runs.iter().map(|r| r.run_id.to_string()).collect();
        let mut text = format!(
            "{} complete run{} ({})",
            self.runs.len(),
            if self.runs.len() == 1 { "" } else { "s" },
            if ids.is_empty() {
                "none".into()
            } else {
                ids.join(", ")
            }
        );
        if !self.left_out.is_empty() {
            let out: Vec<String> = self
                .left_out
                .iter()
                .map(|l| format!("run {} ({})", l.run_id, l.reason))
                .collect();
            text.push_str(&format!("; left out: {}", out.join(", ")));
        }
        text
    }

    fn power_note(&self) -> String {
        match (self.power_sources.is_empty(), self.estimated) {
            (true, _) => "none (times only)".into(),
            (false, true) => format!(
                "{} (ESTIMATED from CPU time, not measured)",
                self.power_sources.join(", ")
            ),
            (false, false) => self.power_sources.join(", "),
        }
    }
}

/// The statistics as a table for a person: one line per metric with its mean, the 95 %
/// interval, the standard deviation, the interval's width relative to the mean, and n.
impl fmt::Display for ExperimentStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "experiment {}", self.experiment)?;
        writeln!(f, "runs         {}", self.describe_runs())?;
        writeln!(f, "power source {}", self.power_note())?;
        writeln!(
            f,
            "{:<27} {:>10} {:>10} {:>21} {:>9} {:>7}  n",
            "metric", "mean", "± 95%", "95% interval", "sd", "width"
        )?;
        for m in &self.metrics {
            let e = &m.estimate;
            if m.metric == Metric::DynamicDecodeMjPerToken && e.n == 0 {
                // Runs without a baseline: there is no dynamic figure to speak of.
                writeln!(f, "{:<27} unknown (no idle baseline)", m.label)?;
                continue;
            }
            writeln!(f, "{}", metric_line(m.label, e))?;
        }
        Ok(())
    }
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn metric_line(label: &str, e: &Estimate) -> String {
    let interval = match (e.low, e.high) {
        (Some(l), Some(h)) => format!("[{l:.3}, {h:.3}]"),
        _ if e.n == 1 => "n = 1: no interval".into(),
        _ => "-".into(),
    };
    let mean = e
        .mean
        .map_or_else(|| "unknown".into(), |m| format!("{m:.3}"));
    let width = e
        .relative_width()
        .map_or_else(|| "-".into(), |w| format!("{:.1}%", w * 100.0));
    let unknown = if e.unknown > 0 {
        format!(" ({} unknown left out)", e.unknown)
    } else {
        String::new()
    };
    format!(
        "{label:<27} {mean:>10} {:>10} {interval:>21} {:>9} {width:>7}  {}{unknown}",
        cell(e.half_width, 3),
        cell(e.sd, 3),
        e.n
    )
}

/// One metric of two experiments side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricComparison {
    /// The metric.
    pub metric: Metric,
    /// Its label, with the unit.
    pub label: &'static str,
    /// Experiment A's statistic.
    pub a: Estimate,
    /// Experiment B's statistic.
    pub b: Estimate,
    /// B against A.
    pub difference: Difference,
}

/// Two experiments compared, metric by metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentComparison {
    /// Experiment A.
    pub a: ExperimentStats,
    /// Experiment B.
    pub b: ExperimentStats,
    /// One row per metric.
    pub metrics: Vec<MetricComparison>,
}

impl ExperimentComparison {
    /// Compares `a` and `b`.
    pub fn between(a: ExperimentStats, b: ExperimentStats) -> ExperimentComparison {
        let metrics = Metric::ALL
            .iter()
            .map(|&metric| {
                let (ea, eb) = (a.get(metric).clone(), b.get(metric).clone());
                MetricComparison {
                    metric,
                    label: metric.label(),
                    difference: Difference::between(&ea, &eb),
                    a: ea,
                    b: eb,
                }
            })
            .collect();
        ExperimentComparison { a, b, metrics }
    }
}

impl fmt::Display for ExperimentComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, e) in [("A", &self.a), ("B", &self.b)] {
            writeln!(
                f,
                "{key} = experiment {}: {}; power {}",
                e.experiment,
                e.describe_runs(),
                e.power_note()
            )?;
        }
        if self.a.estimated != self.b.estimated {
            writeln!(
                f,
                "warning: one experiment's energy is estimated and the other's measured: their energies are not comparable"
            )?;
        }
        for m in &self.metrics {
            let d = &m.difference;
            let delta = match (d.delta, d.delta_fraction) {
                (Some(v), Some(p)) => format!("{v:+.3} ({:+.1}%)", p * 100.0),
                (Some(v), None) => format!("{v:+.3}"),
                _ => "unknown".into(),
            };
            let p = d
                .welch_p
                .map_or_else(String::new, |p| format!(", Welch p = {p:.3}"));
            writeln!(f, "{}", m.label)?;
            writeln!(f, "  A  {}", m.a.describe(3))?;
            writeln!(f, "  B  {}", m.b.describe(3))?;
            writeln!(f, "  B - A = {delta}: {}{p}", d.verdict())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: RunId, decode: Option<f64>, tps: f64) -> RunMetrics {
        RunMetrics {
            run_id: id,
            decode_tokens: 8,
            prompt_tokens: Some(30),
            decode_mj_per_token: decode,
            dynamic_decode_mj_per_token: None,
            prefill_mj_per_prompt_token: decode.map(|d| d / 10.0),
            decode_tokens_per_s: Some(tps),
        }
    }

    #[test]
    fn the_table_says_what_is_unknown_and_what_was_left_out() {
        let left = vec![LeftOut {
            run_id: 1,
            reason: "warm-up".into(),
        }];
        let s = ExperimentStats::of_metrics(
            "e",
            vec![
                run(2, Some(1.0), 10.0),
                run(3, None, 11.0),
                run(4, Some(3.0), 12.0),
            ],
            left,
            vec!["estimate".into()],
            true,
        );
        assert_eq!(s.get(Metric::DecodeMjPerToken).n, 2);
        assert_eq!(s.get(Metric::DecodeMjPerToken).unknown, 1);
        assert_eq!(s.get(Metric::DecodeTokensPerS).n, 3);
        let text = s.to_string();
        assert!(
            text.contains("3 complete runs (2, 3, 4); left out: run 1 (warm-up)"),
            "{text}"
        );
        assert!(text.contains("(1 unknown left out)"), "{text}");
        assert!(text.contains("unknown (no idle baseline)"), "{text}");
        assert!(text.contains("ESTIMATED"), "{text}");
        // tokens/s 10, 11, 12: mean 11, sd 1, half-width 4.303 / sqrt(3) = 2.484.
        assert!(text.contains("11.000      2.484"), "{text}");

        let one =
            ExperimentStats::of_metrics("one", vec![run(9, Some(2.0), 5.0)], vec![], vec![], false);
        assert!(one.to_string().contains("n = 1: no interval"), "{one}");
        let cmp = ExperimentComparison::between(s, one);
        assert_eq!(cmp.metrics.len(), Metric::ALL.len());
        let text = cmp.to_string();
        assert!(text.contains("no interval (n < 2)"), "{text}");
        assert!(text.contains("not comparable"), "{text}");
    }
}
