//! Reading `powermetrics -f plist` output: a streaming document splitter and the
//! conversion of one document into energies.
//!
//! powermetrics writes one XML plist document per sample, each ending in `</plist>\n`,
//! with one NUL byte *before* every document but the first (so the NUL arrives together
//! with the next sample). A splitter that waited for the NUL would deliver every sample one
//! interval late; [`PlistSplitter`] completes a document at `</plist>` and skips the NUL and
//! whitespace that come before the next one, whatever the read sizes.

use memchr::memmem;
use plist::{Dictionary, Value};

use super::powermetrics_tasks::SamplerTask;
use super::DomainEnergy;

const END_TAG: &[u8] = b"</plist>";

/// Splits a byte stream into complete plist documents.
#[derive(Debug, Default)]
pub struct PlistSplitter {
    buf: Vec<u8>,
    /// Where the next search for the end tag starts.
    scan_from: usize,
}

impl PlistSplitter {
    /// A splitter with nothing buffered.
    pub fn new() -> PlistSplitter {
        PlistSplitter::default()
    }

    /// Feeds bytes; returns every document completed by them, in order. Each document
    /// runs from its first non-separator byte through `</plist>`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut docs = Vec::new();
        loop {
            self.skip_separators();
            let from = self.scan_from.min(self.buf.len());
            match memmem::find(&self.buf[from..], END_TAG) {
                Some(i) => {
                    let end = from + i + END_TAG.len();
                    docs.push(self.buf[..end].to_vec());
                    self.buf.drain(..end);
                    self.scan_from = 0;
                }
                None => {
                    self.scan_from = self.buf.len().saturating_sub(END_TAG.len() - 1);
                    return docs;
                }
            }
        }
    }

    /// Bytes of a document begun but not completed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Drops the bytes of an incomplete document.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scan_from = 0;
    }

    fn skip_separators(&mut self) {
        let n = self
            .buf
            .iter()
            .take_while(|b| **b == 0 || b.is_ascii_whitespace())
            .count();
        if n > 0 {
            self.buf.drain(..n);
            self.scan_from = self.scan_from.saturating_sub(n);
        }
    }
}

/// What one powermetrics document says about energy.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The window's true length (`elapsed_ns`).
    pub elapsed_ns: u64,
    /// Energy per domain for the window (mJ). `None` where the document has no value.
    pub energy: DomainEnergy,
    /// The machine model (`hw_model`), e.g. `Mac14,14`.
    pub hw_model: Option<String>,
    /// The macOS build (`kern_osversion`), e.g. `23E224`.
    pub os_build: Option<String>,
    /// The sampler's own task, from the `tasks` sampler's list; `None` when the document
    /// lists no tasks (see [`SamplerTask`]).
    pub sampler_task: Option<SamplerTask>,
}

/// Why a document could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocProblem {
    /// Not a well-formed plist.
    #[error("not a well-formed plist document: {0}")]
    Malformed(String),
    /// The document's root is not a dictionary.
    #[error("the document's root is not a dictionary")]
    NotADictionary,
    /// `elapsed_ns` is missing or not a positive integer.
    #[error("`elapsed_ns` is missing or not positive")]
    NoElapsed,
    /// A value that is needed is NaN, infinite or negative.
    #[error("`{0}` is not a finite, non-negative number")]
    BadValue(&'static str),
    /// Neither a `processor` nor a `gpu` dictionary carries energy or power.
    #[error(
        "no energy or power values (was powermetrics run with --samplers cpu_power,gpu_power?)"
    )]
    NoPowerData,
}

impl DocProblem {
    /// A short stable label, for counting problems by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            DocProblem::Malformed(_) => "malformed",
            DocProblem::NotADictionary => "not a dictionary",
            DocProblem::NoElapsed => "no elapsed_ns",
            DocProblem::BadValue(_) => "NaN, negative or overflowing value",
            DocProblem::NoPowerData => "no power data",
        }
    }
}

/// Reads the energies of one document.
///
/// Sources, in order of preference (energies are exact integers; powers are derived):
/// - CPU: `processor.cpu_energy` (mJ), else `processor.cpu_power` (mW) x `elapsed_ns`.
/// - GPU: `processor.gpu_energy`, else `processor.gpu_power`, else `gpu.gpu_energy`
///   (the `gpu_power` sampler alone writes only the `gpu` dictionary). The `processor`
///   value comes first because `processor.combined_power` is built from it.
/// - ANE: `processor.ane_energy`, else `processor.ane_power`.
/// - DRAM: `processor.dram_energy`, else `processor.dram_power` (macOS 12 and earlier
///   only; newer macOS does not measure DRAM, so it stays `None`).
///
/// A task list (the `tasks` sampler) is read as [`parse_document_for`] does without a
/// process id.
pub fn parse_document(doc: &[u8]) -> Result<Reading, DocProblem> {
    parse_document_for(doc, None)
}

/// [`parse_document`], finding the sampler's own task in a task list with the id of the
/// process we spawned (`child_pid`; see [`SamplerTask::from_document`]).
pub fn parse_document_for(doc: &[u8], child_pid: Option<u32>) -> Result<Reading, DocProblem> {
    let value = Value::from_reader_xml(doc).map_err(|e| DocProblem::Malformed(e.to_string()))?;
    let root = value.as_dictionary().ok_or(DocProblem::NotADictionary)?;
    let elapsed_ns = match root.get("elapsed_ns") {
        Some(v) => number(v)
            .filter(|n| n.is_finite() && *n >= 1.0)
            .ok_or(DocProblem::NoElapsed)? as u64,
        None => return Err(DocProblem::NoElapsed),
    };
    let processor = root.get("processor").and_then(Value::as_dictionary);
    let gpu_dict = root.get("gpu").and_then(Value::as_dictionary);
    let elapsed_s = elapsed_ns as f64 / 1e9;

    let from_processor = |energy_key: &'static str, power_key: &'static str| {
        processor.map_or(Ok(None), |p| {
            energy_or_power(p, energy_key, power_key, elapsed_s)
        })
    };
    let cpu = from_processor("cpu_energy", "cpu_power")?;
    let ane = from_processor("ane_energy", "ane_power")?;
    let dram = from_processor("dram_energy", "dram_power")?;
    let gpu = match from_processor("gpu_energy", "gpu_power")? {
        Some(v) => Some(v),
        None => gpu_dict.map_or(Ok(None), |g| {
            energy_or_power(g, "gpu_energy", "gpu_power", elapsed_s)
        })?,
    };
    let energy = DomainEnergy {
        cpu,
        gpu,
        ane,
        dram,
    };
    if energy.total().is_none() {
        return Err(DocProblem::NoPowerData);
    }
    let text = |k: &str| root.get(k).and_then(Value::as_string).map(str::to_owned);
    Ok(Reading {
        elapsed_ns,
        energy,
        hw_model: text("hw_model"),
        os_build: text("kern_osversion"),
        sampler_task: SamplerTask::from_document(root, child_pid),
    })
}

fn energy_or_power(
    dict: &Dictionary,
    energy_key: &'static str,
    power_key: &'static str,
    elapsed_s: f64,
) -> Result<Option<f64>, DocProblem> {
    let checked = |key: &'static str| -> Result<Option<f64>, DocProblem> {
        match dict.get(key) {
            None => Ok(None),
            Some(v) => match number(v) {
                Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                _ => Err(DocProblem::BadValue(key)),
            },
        }
    };
    if let Some(mj) = checked(energy_key)? {
        return Ok(Some(mj));
    }
    // A finite power can still overflow over the window (1e308 mW for 10 s).
    match checked(power_key)?.map(|mw| mw * elapsed_s) {
        Some(mj) if !mj.is_finite() => Err(DocProblem::BadValue(power_key)),
        other => Ok(other),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => i
            .as_signed()
            .map(|i| i as f64)
            .or_else(|| i.as_unsigned().map(|u| u as f64)),
        Value::Real(r) => Some(*r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by reading the code while fuzzing: a power that overflows to infinity over the
    /// window is a bad value, not an infinite energy.
    #[test]
    fn a_power_overflowing_over_the_window_is_a_bad_value() {
        let d = doc("<key>elapsed_ns</key><integer>10000000000</integer>\n\
             <key>processor</key><dict><key>cpu_power</key><real>1e308</real></dict>\n");
        match parse_document(d.as_bytes()) {
            Err(DocProblem::BadValue(key)) => assert_eq!(key, "cpu_power"),
            other => panic!("{other:?}"),
        }
    }

    fn doc(body: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n{body}</dict>\n</plist>\n"
        )
    }

    #[test]
    fn splitter_completes_at_end_tag_without_waiting_for_nul() {
        let mut s = PlistSplitter::new();
        let a = doc("<key>elapsed_ns</key><integer>1</integer>\n");
        let docs = s.push(a.as_bytes());
        assert_eq!(
            docs.len(),
            1,
            "the first document must not wait for the NUL"
        );
        assert!(docs[0].ends_with(b"</plist>"));
        // The NUL arrives with the next document.
        let mut next = vec![0u8];
        next.extend_from_slice(a.as_bytes());
        let docs = s.push(&next);
        assert_eq!(docs.len(), 1);
        assert!(docs[0].starts_with(b"<?xml"));
        assert!(s.pending().is_empty());
    }

    #[test]
    fn splitter_handles_end_tag_split_across_reads() {
        let mut s = PlistSplitter::new();
        let a = doc("");
        let bytes = a.as_bytes();
        let cut = a.find("</pl").unwrap() + 4;
        assert!(s.push(&bytes[..cut]).is_empty());
        assert_eq!(s.push(&bytes[cut..]).len(), 1);
    }

    #[test]
    fn reads_energies_and_derives_missing_ones_from_power() {
        let d = doc("<key>elapsed_ns</key><integer>500000000</integer>\
             <key>hw_model</key><string>Mac14,14</string>\
             <key>processor</key><dict><key>cpu_energy</key><integer>100</integer>\
             <key>cpu_power</key><real>1</real><key>gpu_power</key><real>40</real></dict>");
        let r = parse_document(d.as_bytes()).unwrap();
        assert_eq!(r.elapsed_ns, 500_000_000);
        assert_eq!(r.energy.cpu, Some(100.0), "energy is preferred over power");
        assert_eq!(r.energy.gpu, Some(20.0), "40 mW for 0.5 s");
        assert_eq!(r.energy.ane, None);
        assert_eq!(r.energy.dram, None, "DRAM is unknown, not 0");
        assert_eq!(r.hw_model.as_deref(), Some("Mac14,14"));
    }

    #[test]
    fn gpu_dictionary_alone_is_enough() {
        let d = doc(
            "<key>elapsed_ns</key><integer>5000000000</integer>\
             <key>gpu</key><dict><key>idle_ns</key><integer>1</integer>\
             <key>idle_ns</key><integer>1</integer><key>gpu_energy</key><integer>19</integer></dict>",
        );
        let r = parse_document(d.as_bytes()).unwrap();
        assert_eq!(r.energy.gpu, Some(19.0));
        assert_eq!(r.energy.cpu, None);
    }

    #[test]
    fn nan_missing_and_empty_documents_are_rejected() {
        let nan = doc("<key>elapsed_ns</key><integer>100</integer>\
             <key>processor</key><dict><key>cpu_power</key><real>nan</real></dict>");
        assert!(matches!(
            parse_document(nan.as_bytes()),
            Err(DocProblem::BadValue("cpu_power"))
        ));
        let no_elapsed =
            doc("<key>processor</key><dict><key>cpu_energy</key><integer>1</integer></dict>");
        assert_eq!(
            parse_document(no_elapsed.as_bytes()),
            Err(DocProblem::NoElapsed)
        );
        let battery =
            doc("<key>elapsed_ns</key><integer>100</integer><key>battery</key><dict></dict>");
        assert_eq!(
            parse_document(battery.as_bytes()),
            Err(DocProblem::NoPowerData)
        );
        assert!(matches!(
            parse_document(b"<plist>"),
            Err(DocProblem::Malformed(_))
        ));
    }
}
