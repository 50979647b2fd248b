//! Choosing a source by name, as the CLI and the builder do.

use std::path::PathBuf;
use std::str::FromStr;

use super::{EstimateSource, PowerSource, PowermetricsSource, ReplaySource};
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
    /// plays in a loop so that it covers the whole run.
    pub fn build_for_profile(&self) -> Result<Box<dyn PowerSource>> {
        match self {
            SourceSpec::Replay(p) => Ok(Box::new(ReplaySource::new(p.clone()).looping(true))),
            other => other.build(),
        }
    }

    /// Builds the source. `Auto` picks powermetrics when it is available here, else the
    /// estimate.
    pub fn build(&self) -> Result<Box<dyn PowerSource>> {
        Ok(match self {
            SourceSpec::Auto => {
                let pm = PowermetricsSource::new();
                if pm.is_available().is_available() {
                    Box::new(pm)
                } else {
                    Box::new(EstimateSource::new())
                }
            }
            SourceSpec::Powermetrics => Box::new(PowermetricsSource::new()),
            SourceSpec::Estimate => Box::new(EstimateSource::new()),
            SourceSpec::Replay(p) => Box::new(ReplaySource::new(p.clone())),
        })
    }
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
