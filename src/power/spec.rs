//! Choosing a source by name, as the CLI and the builder do.

use std::path::PathBuf;
use std::str::FromStr;

use super::probe::{probe, PROBE_INTERVAL, PROBE_TIMEOUT};
use super::{Availability, EstimateSource, PowerSource, PowermetricsSource, ReplaySource};
use crate::{Error, Result};

/// A power source named in text: `auto`, `powermetrics`, `estimate` or `replay:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// powermetrics where it works, else the estimate.
    Auto,
    /// Apple's powermetrics.
    Powermetrics,
    /// The CPU-time estimate.
    Estimate,
    /// A recorded capture.
    Replay(PathBuf),
}

impl SourceSpec {
    /// Parses a source name.
    pub fn parse(text: &str) -> Result<SourceSpec> {
        match text {
            "auto" => Ok(SourceSpec::Auto),
            "powermetrics" => Ok(SourceSpec::Powermetrics),
            "estimate" => Ok(SourceSpec::Estimate),
            _ => match text.strip_prefix("replay:") {
                Some("") => Err(Error::InvalidSetting {
                    name: "source",
                    reason: "`replay:` needs a file: `replay:PATH`".into(),
                }),
                Some(path) => Ok(SourceSpec::Replay(PathBuf::from(path))),
                None => Err(Error::InvalidSetting {
                    name: "source",
                    reason: format!(
                        "unknown power source `{text}`; use auto, powermetrics, estimate or replay:PATH"
                    ),
                }),
            },
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

    /// Builds the source. `Auto` runs powermetrics briefly ([`probe`]) where it is
    /// available, and takes it when it delivers a sample; otherwise the estimate.
    pub fn build(&self) -> Result<Box<dyn PowerSource>> {
        Ok(self.choose()?.source)
    }

    /// Like [`SourceSpec::build`], with why `auto` did not pick a sensor it found.
    pub fn choose(&self) -> Result<Chosen> {
        let plain = |source: Box<dyn PowerSource>| Chosen { source, note: None };
        Ok(match self {
            SourceSpec::Auto => {
                let pm = PowermetricsSource::new();
                match pm.is_available() {
                    Availability::Available(_) => {
                        match probe(Box::new(pm.clone()), PROBE_INTERVAL, PROBE_TIMEOUT) {
                            Ok(_) => plain(Box::new(pm)),
                            Err(e) => Chosen {
                                source: Box::new(EstimateSource::new()),
                                note: Some(format!(
                                    "auto: powermetrics was found but did not work ({e}); using the CPU-time estimate instead. Fix: run `tracing-energy doctor`"
                                )),
                            },
                        }
                    }
                    Availability::Unavailable { .. } => plain(Box::new(EstimateSource::new())),
                }
            }
            SourceSpec::Powermetrics => plain(Box::<PowermetricsSource>::default()),
            SourceSpec::Estimate => plain(Box::new(EstimateSource::new())),
            SourceSpec::Replay(p) => plain(Box::new(ReplaySource::new(p.clone()))),
        })
    }
}

/// A source chosen from a [`SourceSpec`].
pub struct Chosen {
    /// The source to run.
    pub source: Box<dyn PowerSource>,
    /// What the choice worked around (`auto` falling back from a sensor that did not
    /// work), for a person to read; `None` when nothing.
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
        assert_eq!(
            SourceSpec::parse("replay:a/b.plist").unwrap(),
            SourceSpec::Replay("a/b.plist".into())
        );
        let e = SourceSpec::parse("rapl2").unwrap_err().to_string();
        assert!(e.contains("rapl2") && e.contains("estimate"), "{e}");
        assert!(SourceSpec::parse("replay:").is_err());
    }
}
