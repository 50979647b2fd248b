//! The replay source: plays a recorded `powermetrics -f plist` capture onto the live
//! timeline, window by window at the capture's own `elapsed_ns` pace.
//!
//! For demos and tests on machines without a sensor. Samples carry the name
//! `replay:<file>` and are *not* marked estimated (they are real measurements, just not of
//! this run): a report shows the source name, so nobody mistakes them for this machine's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::plist_stream::{parse_document, PlistSplitter, Reading};
use super::{Availability, PowerSample, PowerSource, SourceContext, SourceEnd};
use crate::{clock, Error, Result};

/// Replays a capture file.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    path: PathBuf,
    looping: bool,
}

/// A capture file read into windows.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The usable windows, in order.
    pub readings: Vec<Reading>,
    /// Documents that could not be used: (kind, description).
    pub rejected: Vec<(&'static str, String)>,
}

impl Capture {
    /// Reads and parses every document of a capture file.
    pub fn load(path: &Path) -> Result<Capture> {
        let bytes = std::fs::read(path).map_err(|cause| Error::CaptureRead {
            path: path.to_path_buf(),
            cause,
        })?;
        let mut splitter = PlistSplitter::new();
        let mut readings = Vec::new();
        let mut rejected = Vec::new();
        for doc in splitter.push(&bytes) {
            match parse_document(&doc) {
                Ok(r) => readings.push(r),
                Err(p) => rejected.push((p.kind(), p.to_string())),
            }
        }
        if readings.is_empty() {
            let detail = match rejected.first() {
                Some((_, why)) => format!(
                    "{} document(s), none usable; the first: {why}",
                    rejected.len()
                ),
                None => "no `</plist>`-terminated document".into(),
            };
            return Err(Error::CaptureEmpty {
                path: path.to_path_buf(),
                detail,
            });
        }
        Ok(Capture { readings, rejected })
    }
}

impl ReplaySource {
    /// Replays the capture at `path`.
    pub fn new(path: impl Into<PathBuf>) -> ReplaySource {
        ReplaySource {
            path: path.into(),
            looping: false,
        }
    }

    /// Plays the capture again from its start when it ends, until stopped (so that a short
    /// capture covers a whole profile).
    pub fn looping(mut self, looping: bool) -> ReplaySource {
        self.looping = looping;
        self
    }

    /// The capture file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PowerSource for ReplaySource {
    fn name(&self) -> String {
        format!("replay:{}", self.path.display())
    }

    fn estimated(&self) -> bool {
        false
    }

    fn is_available(&self) -> Availability {
        match Capture::load(&self.path) {
            Ok(c) => {
                let secs: f64 = c.readings.iter().map(|r| r.elapsed_ns as f64 / 1e9).sum();
                Availability::Available(format!(
                    "{} windows, {:.1} s of recorded power",
                    c.readings.len(),
                    secs
                ))
            }
            Err(Error::CaptureRead { path, cause }) => Availability::Unavailable {
                reason: format!("cannot read capture file {}: {cause}", path.display()),
                fix: "check the path and that the file is readable".into(),
            },
            Err(Error::CaptureEmpty { path, detail }) => Availability::Unavailable {
                reason: format!("{} holds no usable powermetrics sample ({detail})", path.display()),
                fix: "give a capture recorded with `powermetrics --samplers cpu_power,gpu_power -f plist -o FILE`".into(),
            },
            Err(e) => Availability::Unavailable {
                reason: e.to_string(),
                fix: "give the path of a capture written by `powermetrics -f plist`".into(),
            },
        }
    }

    fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd> {
        let capture = Capture::load(&self.path)?;
        for (kind, why) in &capture.rejected {
            ctx.reject(kind, why);
        }
        let name: Arc<str> = ctx.source_name();
        let mut start = clock::now_ns();
        loop {
            for r in &capture.readings {
                let end = start + r.elapsed_ns;
                let now = clock::now_ns();
                if ctx.wait(Duration::from_nanos(end.saturating_sub(now))) {
                    return Ok(SourceEnd::Stopped);
                }
                if let Some(sample) =
                    PowerSample::new(start, end, r.energy, Arc::clone(&name), false)
                {
                    ctx.emit(sample);
                }
                start = end;
            }
            if !self.looping {
                return Ok(SourceEnd::Finished);
            }
        }
    }
}
