//! Choosing a source by name, as the CLI and the builder do.

use std::path::PathBuf;
use std::str::FromStr;

use super::nvml::{GpuSelection, NvmlMeter};
use super::probe::{probe, PROBE_INTERVAL, PROBE_TIMEOUT};
use super::rapl::RaplMeter;
use super::{
    Availability, EstimateSource, Meter, PolledSource, PowerSource, PowermetricsSource,
    ReplaySource,
};
use crate::{Error, Result};

/// A power source named in text: `auto`, `powermetrics`, `rapl`, `nvml`, `rapl+nvml`,
/// `estimate` or `replay:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// powermetrics on macOS; elsewhere RAPL and/or NVML where they can be read; else the
    /// estimate.
    Auto,
    /// Apple's powermetrics; `tasks` also asks for its `tasks` sampler, for its own
    /// estimated power (see [`PowermetricsSource::tasks`]).
    Powermetrics {
        /// Ask for the `tasks` sampler too.
        tasks: bool,
    },
    /// Linux powercap (Intel and AMD RAPL): CPU packages and DRAM.
    Rapl,
    /// NVIDIA GPUs through NVML; `gpus` as `--gpus` gives it (`0,2`), `None` for
    /// `CUDA_VISIBLE_DEVICES` or all.
    Nvml {
        /// The GPUs to read.
        gpus: Option<String>,
    },
    /// RAPL and NVML read at the same instants: one stream with `cpu`, `dram` and `gpu`.
    RaplNvml {
        /// The GPUs to read, as for [`SourceSpec::Nvml`].
        gpus: Option<String>,
    },
    /// The CPU-time estimate.
    Estimate,
    /// A recorded capture.
    Replay(PathBuf),
}

const NAMES: &str = "auto, powermetrics, rapl, nvml, rapl+nvml, estimate or replay:PATH";

impl SourceSpec {
    /// Parses a source name.
    pub fn parse(text: &str) -> Result<SourceSpec> {
        match text {
            "auto" => Ok(SourceSpec::Auto),
            "powermetrics" => Ok(SourceSpec::Powermetrics { tasks: false }),
            "rapl" => Ok(SourceSpec::Rapl),
            "nvml" => Ok(SourceSpec::Nvml { gpus: None }),
            "rapl+nvml" | "nvml+rapl" => Ok(SourceSpec::RaplNvml { gpus: None }),
            "estimate" => Ok(SourceSpec::Estimate),
            _ => match text.strip_prefix("replay:") {
                Some("") => Err(Error::InvalidSetting {
                    name: "source",
                    reason: "`replay:` needs a file: `replay:PATH`".into(),
                }),
                Some(path) => Ok(SourceSpec::Replay(PathBuf::from(path))),
                None => Err(Error::InvalidSetting {
                    name: "source",
                    reason: format!("unknown power source `{text}`; use {NAMES}"),
                }),
            },
        }
    }

    /// Chooses the GPUs (`--gpus 0,2`) for a source that reads NVML; an error for one that
    /// does not.
    pub fn with_gpus(self, gpus: &str) -> Result<SourceSpec> {
        GpuSelection::parse(gpus)?;
        let gpus = Some(gpus.to_string());
        match self {
            SourceSpec::Nvml { .. } => Ok(SourceSpec::Nvml { gpus }),
            SourceSpec::RaplNvml { .. } => Ok(SourceSpec::RaplNvml { gpus }),
            other => Err(Error::InvalidSetting {
                name: "gpus",
                reason: format!(
                    "--gpus chooses NVIDIA GPUs, and the source {other:?} reads none; use --source nvml or rapl+nvml"
                ),
            }),
        }
    }

    /// Asks powermetrics for its `tasks` sampler too (`--powermetrics-tasks`), so that the
    /// run stores powermetrics' own estimated power; an error for any other source, `auto`
    /// included (it may not pick powermetrics).
    pub fn with_powermetrics_tasks(self) -> Result<SourceSpec> {
        match self {
            SourceSpec::Powermetrics { .. } => Ok(SourceSpec::Powermetrics { tasks: true }),
            other => Err(Error::InvalidSetting {
                name: "powermetrics-tasks",
                reason: format!(
                    "--powermetrics-tasks measures powermetrics' own power, and the source {other:?} is not powermetrics; use --power powermetrics with it, or leave it out"
                ),
            }),
        }
    }

    /// Builds the source for a profile: like [`SourceSpec::build`], but a replayed capture
    /// plays in a loop so that it covers the whole run, and the choice comes with a note
    /// when `auto` had to fall back (stored on the run as a warning).
    pub fn build_for_profile(&self) -> Result<Chosen> {
        match self {
            SourceSpec::Replay(p) => Ok(Chosen {
                source: Box::new(ReplaySource::new(p.clone()).looping(true)),
                note: None,
            }),
            other => other.choose(),
        }
    }

    /// Builds the source. `Auto` runs a sensor briefly ([`probe`]) before taking it.
    pub fn build(&self) -> Result<Box<dyn PowerSource>> {
        Ok(self.choose()?.source)
    }

    /// Like [`SourceSpec::build`], with why `auto` did not pick a sensor it found.
    pub fn choose(&self) -> Result<Chosen> {
        let plain = |source: Box<dyn PowerSource>| Chosen { source, note: None };
        Ok(match self {
            SourceSpec::Auto => auto(),
            SourceSpec::Powermetrics { tasks } => {
                plain(Box::new(PowermetricsSource::new().tasks(*tasks)))
            }
            SourceSpec::Rapl => plain(Box::new(PolledSource::new(vec![
                Box::new(RaplMeter::new()),
            ]))),
            SourceSpec::Nvml { gpus } => {
                plain(Box::new(PolledSource::new(vec![nvml_meter(gpus)?])))
            }
            SourceSpec::RaplNvml { gpus } => plain(Box::new(PolledSource::new(vec![
                Box::new(RaplMeter::new()),
                nvml_meter(gpus)?,
            ]))),
            SourceSpec::Estimate => plain(Box::new(EstimateSource::new())),
            SourceSpec::Replay(p) => plain(Box::new(ReplaySource::new(p.clone()))),
        })
    }
}

fn nvml_meter(gpus: &Option<String>) -> Result<Box<dyn Meter>> {
    let selection = match gpus {
        Some(list) => GpuSelection::parse(list)?,
        None => GpuSelection::from_env(),
    };
    Ok(Box::new(NvmlMeter::new(selection)))
}

/// Makes a fresh meter of one kind.
type MakeMeter = fn() -> Box<dyn Meter>;

/// `auto`: powermetrics where it is available (macOS); otherwise RAPL and NVML, each where
/// it can be read, together when both can; otherwise the estimate. A sensor is taken only
/// after it delivered a sample ([`probe`]); the note says what was passed over and why.
fn auto() -> Chosen {
    let mut passed_over = Vec::new();
    let pm = PowermetricsSource::new();
    match pm.is_available() {
        Availability::Available(_) => {
            match probe(Box::new(pm.clone()), PROBE_INTERVAL, PROBE_TIMEOUT) {
                Ok(_) => {
                    return Chosen {
                        source: Box::new(pm),
                        note: None,
                    }
                }
                Err(e) => {
                    passed_over.push(format!("powermetrics was found but did not work ({e})"))
                }
            }
        }
        Availability::Unavailable { .. } if !cfg!(target_os = "macos") => {}
        Availability::Unavailable { reason, .. } => {
            passed_over.push(format!("powermetrics: {reason}"))
        }
    }
    let mut meters: Vec<Box<dyn Meter>> = Vec::new();
    // A probe consumes the meter it tries: each candidate is made again to be kept.
    let candidates: [(&str, MakeMeter); 2] = [
        ("rapl", || Box::new(RaplMeter::new())),
        ("nvml", || {
            Box::new(NvmlMeter::new(GpuSelection::from_env()))
        }),
    ];
    for (name, make) in candidates {
        let meter = make();
        match meter.is_available() {
            Availability::Available(_) => {
                let trial = PolledSource::new(vec![meter]);
                match probe(Box::new(trial), PROBE_INTERVAL, PROBE_TIMEOUT) {
                    Ok(_) => meters.push(make()),
                    Err(e) => passed_over.push(format!("{name} was found but did not work ({e})")),
                }
            }
            Availability::Unavailable { reason, .. } => {
                passed_over.push(format!("{name}: {reason}"))
            }
        }
    }
    let note = |using: &str| {
        (!passed_over.is_empty()).then(|| {
            format!(
                "auto chose {using}; passed over: {}. Fix: run `tracing-energy doctor`",
                passed_over.join("; ")
            )
        })
    };
    if meters.is_empty() {
        let note = note("the CPU-time estimate");
        return Chosen {
            source: Box::new(EstimateSource::new()),
            note,
        };
    }
    let source = PolledSource::new(meters);
    let note = note(&source.name());
    Chosen {
        source: Box::new(source),
        note,
    }
}

/// A source chosen from a [`SourceSpec`].
pub struct Chosen {
    /// The source to run.
    pub source: Box<dyn PowerSource>,
    /// What the choice worked around (`auto` passing over a sensor that is missing or did
    /// not work), for a person to read; `None` when nothing.
    pub note: Option<String>,
}

impl FromStr for SourceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SourceSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_explains_mistakes() {
        assert_eq!(SourceSpec::parse("auto").unwrap(), SourceSpec::Auto);
        assert_eq!(SourceSpec::parse("rapl").unwrap(), SourceSpec::Rapl);
        assert_eq!(
            SourceSpec::parse("nvml+rapl").unwrap(),
            SourceSpec::RaplNvml { gpus: None }
        );
        assert_eq!(
            SourceSpec::parse("replay:a/b.plist").unwrap(),
            SourceSpec::Replay("a/b.plist".into())
        );
        let e = SourceSpec::parse("rapl2").unwrap_err().to_string();
        assert!(e.contains("rapl2") && e.contains("rapl+nvml"), "{e}");
        assert!(SourceSpec::parse("replay:").is_err());
    }

    #[test]
    fn gpus_go_with_a_source_that_reads_nvml() {
        assert_eq!(
            SourceSpec::parse("nvml").unwrap().with_gpus("0,2").unwrap(),
            SourceSpec::Nvml {
                gpus: Some("0,2".into())
            }
        );
        let e = SourceSpec::Rapl.with_gpus("0").unwrap_err().to_string();
        assert!(e.contains("--source nvml"), "{e}");
    }

    #[test]
    fn tasks_go_with_powermetrics_only() {
        let pm = SourceSpec::parse("powermetrics").unwrap();
        assert_eq!(pm, SourceSpec::Powermetrics { tasks: false });
        assert_eq!(
            pm.with_powermetrics_tasks().unwrap(),
            SourceSpec::Powermetrics { tasks: true }
        );
        for other in [SourceSpec::Auto, SourceSpec::Estimate, SourceSpec::Rapl] {
            let e = other.with_powermetrics_tasks().unwrap_err().to_string();
            assert!(e.contains("--power powermetrics"), "{e}");
        }
    }
}
