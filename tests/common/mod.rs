//! Helpers shared by the integration tests: fixture discovery and an independent reading of
//! powermetrics documents (byte split on NUL and regular expressions, no plist parser), to
//! check the library's splitter and parser against.
#![allow(dead_code)]

pub mod chromium;
mod fixtures;
pub mod gpu;
pub mod http;
#[cfg(feature = "candle")]
pub mod model;
pub mod oracle;
#[cfg(unix)]
pub mod powercap;
#[cfg(feature = "candle")]
pub mod profiled;
#[cfg(unix)]
pub mod prometheus;
pub mod records;
pub mod serve;
pub mod trace;
pub mod tree;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing_energy::power::{
    Availability, DomainEnergy, PowerSample, PowerSource, SourceContext, SourceEnd,
};

#[allow(unused_imports)] // each test binary uses some
pub use fixtures::{all_plist_fixtures, local_fixture, shared_fixture, M1PRO_29, M4PRO_GPU_5};

use regex::Regex;

/// Keeps the calling thread busy (spinning) for `d`.
pub fn busy(d: Duration) {
    let t = std::time::Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The documents of a capture, split independently of the library: on NUL bytes, trimmed.
pub fn independent_docs(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == 0)
        .map(|piece| {
            let start = piece
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(piece.len());
            let end = piece
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(start, |i| i + 1);
            piece[start..end].to_vec()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

/// What a document says, read with regular expressions.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub elapsed_ns: u64,
    pub cpu_mj: Option<f64>,
    pub gpu_mj: Option<f64>,
    pub ane_mj: Option<f64>,
    /// powermetrics' own `processor.cpu_power` (mW), for a plausibility check.
    pub cpu_power_mw: Option<f64>,
}

fn int_after(text: &str, key: &str, followed_by: Option<&str>) -> Option<f64> {
    let pat = match followed_by {
        Some(next) => format!(r"<key>{key}</key>\s*<integer>(\d+)</integer>\s*<key>{next}</key>"),
        None => format!(r"<key>{key}</key>\s*<integer>(\d+)</integer>"),
    };
    Regex::new(&pat)
        .unwrap()
        .captures(text)
        .map(|c| c[1].parse::<f64>().unwrap())
}

/// Reads a document's window and energies without a plist parser. `None` when the document
/// has no power data (e.g. a battery-only capture).
pub fn expected(doc: &[u8]) -> Option<Expected> {
    let text = String::from_utf8_lossy(doc);
    let elapsed_ns = int_after(&text, "elapsed_ns", None)? as u64;
    let has_processor = text.contains("<key>processor</key>");
    let cpu_mj = if has_processor {
        int_after(&text, "cpu_energy", Some("cpu_power"))
    } else {
        None
    };
    let ane_mj = if has_processor {
        int_after(&text, "ane_energy", Some("ane_power"))
    } else {
        None
    };
    let gpu_mj = if has_processor {
        int_after(&text, "gpu_energy", Some("gpu_power"))
    } else {
        int_after(&text, "gpu_energy", None)
    };
    let cpu_power_mw = Regex::new(r"<key>cpu_power</key>\s*<real>([0-9.e+-]+)</real>")
        .unwrap()
        .captures(&text)
        .map(|c| c[1].parse().unwrap());
    if cpu_mj.is_none() && gpu_mj.is_none() && ane_mj.is_none() {
        return None;
    }
    Some(Expected {
        elapsed_ns,
        cpu_mj,
        gpu_mj,
        ane_mj,
        cpu_power_mw,
    })
}

/// powermetrics' own task in a document with a task list, read without a plist parser:
/// (its `cputime_ns`, `all_tasks.cputime_ns`). `None` when the document lists no task
/// named `powermetrics`.
pub fn expected_powermetrics_task(doc: &[u8]) -> Option<(u64, u64)> {
    let text = String::from_utf8_lossy(doc);
    let task = Regex::new(
        r"(?s)<key>name</key>\s*<string>powermetrics</string>.*?<key>cputime_ns</key>\s*<integer>(\d+)</integer>",
    )
    .unwrap();
    let all = Regex::new(
        r"(?s)<key>all_tasks</key>\s*<dict>.*?<key>cputime_ns</key>\s*<integer>(\d+)</integer>",
    )
    .unwrap();
    let own = task.captures(&text)?[1].parse().unwrap();
    let all = all.captures(&text)?[1].parse().unwrap();
    Some((own, all))
}

/// Path of the fake powermetrics executable.
pub fn fake_powermetrics() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-powermetrics")
}

/// Writes an executable wrapper in `dir` that runs the fake powermetrics with the given
/// environment (each test gets its own behaviour without touching this process's
/// environment).
pub fn fake_with_env(dir: &Path, env: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in env {
        script.push_str(&format!("{k}='{v}'; export {k}\n"));
    }
    script.push_str(&format!(
        "exec python3 '{}' \"$@\"\n",
        fake_powermetrics().display()
    ));
    let path = dir.join("powermetrics");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A source of known power: windows of `window` ms, cycling through `mw` (milliwatts).
pub struct KnownPower {
    /// Window length.
    pub window: Duration,
    /// Power of successive windows (mW), cycled; half CPU, half GPU.
    pub mw: Vec<f64>,
}

impl PowerSource for KnownPower {
    fn name(&self) -> String {
        "known".into()
    }
    fn estimated(&self) -> bool {
        false
    }
    fn is_available(&self) -> Availability {
        Availability::Available("synthetic".into())
    }
    fn run(&mut self, ctx: &mut SourceContext) -> tracing_energy::Result<SourceEnd> {
        let len = self.window.as_nanos() as u64;
        // The power is known by construction, so the windows may start before this thread
        // did: ten windows back, so that a sampler thread started late on a loaded machine
        // still covers sections begun right after the layer was built.
        let mut start = tracing_energy::clock::now_ns().saturating_sub(10 * len);
        for k in 0.. {
            let end = start + len;
            let now = tracing_energy::clock::now_ns();
            if ctx.wait(Duration::from_nanos(end.saturating_sub(now))) {
                return Ok(SourceEnd::Stopped);
            }
            let mw = self.mw[k % self.mw.len()];
            let mj = mw * len as f64 / 1e9;
            let energy = DomainEnergy {
                cpu: Some(mj * 0.5),
                gpu: Some(mj * 0.5),
                ane: None,
                dram: None,
            };
            ctx.emit(PowerSample::new(start, end, energy, ctx.source_name(), false).unwrap());
            start = end;
        }
        unreachable!()
    }
}

/// The `tracing-energy` binary, with no database chosen by the environment.
pub fn cli() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tracing-energy"));
    c.env_remove("TRACING_ENERGY_DB");
    c
}

/// Runs the binary with `args` on the database `db`.
pub fn cli_on(db: &Path, args: &[&str]) -> std::process::Output {
    cli()
        .args(args)
        .args(["--db", db.to_str().unwrap()])
        .output()
        .unwrap()
}

/// Like [`cli_on`], asserting success; returns standard output.
pub fn cli_ok(db: &Path, args: &[&str]) -> String {
    String::from_utf8(cli_ok_bytes(db, args)).unwrap()
}

/// Like [`cli_ok`], for output that need not be text (a gzip stream).
pub fn cli_ok_bytes(db: &Path, args: &[&str]) -> Vec<u8> {
    let out = cli_on(db, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The earliest start and latest end of some stored rows' windows.
pub fn extent<'a>(
    rows: impl IntoIterator<Item = &'a tracing_energy::store::Measured>,
) -> (u64, u64) {
    rows.into_iter().fold((u64::MAX, 0), |(s, e), m| {
        (s.min(m.start_ns), e.max(m.end_ns))
    })
}
