//! The RAPL source (Linux, Intel and AMD): CPU package and DRAM energy from powercap.
//!
//! Linux publishes the CPU's RAPL (Running Average Power Limit) energy counters under
//! `/sys/class/powercap` (or the folder named by `TRACING_ENERGY_POWERCAP`, for tests):
//!
//! ```text
//! intel-rapl:0/        name = package-0    energy_uj  max_energy_range_uj
//!   intel-rapl:0:0/    name = core         (inside package-0)
//!   intel-rapl:0:1/    name = uncore       (inside package-0; the integrated GPU)
//!   intel-rapl:0:2/    name = dram         (NOT inside package-0)
//! intel-rapl:1/        name = package-1    (second socket), or psys (whole platform)
//! intel-rapl:0:0 ...   every sub-zone also appears flat at the top level, as a symlink
//! ```
//!
//! [`RaplMeter`] finds the zones by their `name` file and reads:
//! - `cpu`: the sum of the top-level `package-N` zones (one per socket or die);
//! - `dram`: the sum of the zones named `dram` (top-level or sub-zones);
//! - not added: `core` and `uncore` (already inside the package), `psys` (the whole
//!   platform, which contains the package), and zones it does not know.
//!
//! AMD Zen CPUs use the same `intel-rapl` zone names; a control type named `amd-rapl` is
//! read the same way where a kernel has one. `intel-rapl-mmio` (a second interface to
//! package-0 on some Intel laptops) is not read: adding it would count package-0 twice.
//!
//! `energy_uj` is a counter in microjoules that wraps at `max_energy_range_uj`: a reading
//! below the previous one has wrapped once, and adds `max_range - previous + current`. The
//! meter must therefore be read at least once per wrap period (with the usual range of
//! about 262 kJ: 43 minutes at 100 W); the sampler reads it every window. The counter
//! changes about every 1 ms.
//!
//! Since Linux 5.10 `energy_uj` is readable by root only (CVE-2020-8694, "Platypus": the
//! counter's fine resolution leaks what other processes compute). Run as root, or run
//! `sudo scripts/setup_rapl.sh` once, which lets the group `powercap` read it.
//!
//! Only the powercap files are read; the `perf_event` interface to the same counters
//! (`/sys/bus/event_source/devices/power`) is not implemented.
//!
//! A source from the meter: [`rapl_source`], or `PolledSource::new(vec![Box::new(
//! RaplMeter::new())])` to read it together with other meters (e.g. NVML).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::polled::{Meter, PolledSource};
use super::{Availability, Domain, DomainEnergy};
use crate::{Error, Result};

/// The powercap folder read when `TRACING_ENERGY_POWERCAP` is not set.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// The environment variable that replaces [`DEFAULT_POWERCAP_ROOT`] (for tests).
pub const POWERCAP_ENV: &str = "TRACING_ENERGY_POWERCAP";

/// The powercap control types whose zones are RAPL zones.
const CONTROL_TYPES: [&str; 2] = ["intel-rapl", "amd-rapl"];

/// What the user can do when `energy_uj` is root-only.
const PERMISSION_FIX: &str = "run as root, or run `sudo scripts/setup_rapl.sh` once (it gives \
     the group `powercap` read access to energy_uj), then log in again";

/// A source that reads RAPL alone: `PolledSource::new(vec![Box::new(RaplMeter::new())])`.
pub fn rapl_source() -> PolledSource {
    PolledSource::new(vec![Box::new(RaplMeter::new())])
}

/// Reads RAPL energy counters from powercap: `cpu` (packages) and `dram`.
///
/// [`Meter::read`] returns the energy (mJ) used since the meter's first read, per domain,
/// unwrapped: it never decreases. See the module docs for the zones it uses.
pub struct RaplMeter {
    root: PathBuf,
    found: std::result::Result<Found, Problem>,
    counters: Vec<Counter>,
}

/// The zones under the root: those read and those left out.
struct Found {
    used: Vec<Zone>,
    left_out: Vec<(String, &'static str)>,
}

/// A zone whose energy is read.
struct Zone {
    id: String,
    name: String,
    domain: Domain,
    dir: PathBuf,
    max_range_uj: u64,
}

impl Zone {
    fn energy_path(&self) -> PathBuf {
        self.dir.join("energy_uj")
    }
}

/// Why the meter cannot read, and the fix.
#[derive(Debug, Clone)]
struct Problem {
    reason: String,
    fix: String,
}

impl Problem {
    fn to_error(&self) -> Error {
        Error::SourceUnavailable {
            source_name: "rapl".into(),
            reason: self.reason.clone(),
            fix: self.fix.clone(),
        }
    }
}

/// One zone's counter, unwrapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counter {
    prev_uj: Option<u64>,
    total_uj: u64,
}

impl Counter {
    /// Takes a new raw reading; a reading below the previous one wrapped at `max_range_uj`.
    fn advance(&mut self, raw_uj: u64, max_range_uj: u64) {
        if let Some(prev) = self.prev_uj {
            let step = if raw_uj >= prev {
                raw_uj - prev
            } else {
                max_range_uj.saturating_sub(prev) + raw_uj
            };
            self.total_uj = self.total_uj.saturating_add(step);
        }
        self.prev_uj = Some(raw_uj);
    }
}

impl Default for RaplMeter {
    fn default() -> Self {
        RaplMeter::new()
    }
}

impl RaplMeter {
    /// A meter on `TRACING_ENERGY_POWERCAP` when set, else `/sys/class/powercap`.
    pub fn new() -> RaplMeter {
        let root = std::env::var_os(POWERCAP_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_POWERCAP_ROOT), PathBuf::from);
        RaplMeter::with_root(root)
    }

    /// A meter on another powercap folder. The zones are found now; whether their
    /// counters can be read is for [`Meter::is_available`] to say.
    pub fn with_root(root: impl Into<PathBuf>) -> RaplMeter {
        let root = root.into();
        let found = discover(&root);
        let n = found.as_ref().map_or(0, |f| f.used.len());
        RaplMeter {
            root,
            found,
            counters: vec![Counter::default(); n],
        }
    }

    /// The powercap folder read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn describe(&self, found: &Found) -> String {
        let list = |d: Domain| {
            let mut names: Vec<(String, usize)> = Vec::new();
            for z in found.used.iter().filter(|z| z.domain == d) {
                match names.iter_mut().find(|(n, _)| *n == z.name) {
                    Some((_, k)) => *k += 1,
                    None => names.push((z.name.clone(), 1)),
                }
            }
            let names: Vec<String> = names
                .into_iter()
                .map(|(n, k)| if k == 1 { n } else { format!("{k} {n} zones") })
                .collect();
            (!names.is_empty()).then(|| format!("{} ({})", names.join(", "), d.name()))
        };
        let read: Vec<String> = [Domain::Cpu, Domain::Dram]
            .into_iter()
            .filter_map(list)
            .collect();
        let mut text = format!(
            "will read {} under {}",
            read.join(" and "),
            self.root.display()
        );
        if !found.left_out.is_empty() {
            let out: Vec<String> = found
                .left_out
                .iter()
                .map(|(name, why)| format!("{name} ({why})"))
                .collect();
            text += &format!("; not added: {}", out.join(", "));
        }
        text + "; powercap only (the perf_event interface is not read)"
    }
}

impl Meter for RaplMeter {
    fn name(&self) -> String {
        "rapl".into()
    }

    fn is_available(&self) -> Availability {
        let found = match &self.found {
            Ok(f) => f,
            Err(p) => {
                return Availability::Unavailable {
                    reason: p.reason.clone(),
                    fix: p.fix.clone(),
                }
            }
        };
        // Opening the file is the only honest check: mode bits say nothing to root, and
        // a security module may refuse what the mode allows.
        for z in &found.used {
            let path = z.energy_path();
            if let Err(e) = read_uj(&path) {
                let p = unreadable(z, &path, e, &self.root);
                return Availability::Unavailable {
                    reason: p.reason,
                    fix: p.fix,
                };
            }
        }
        Availability::Available(self.describe(found))
    }

    fn read(&mut self) -> Result<DomainEnergy> {
        let found = self.found.as_ref().map_err(Problem::to_error)?;
        // Read every zone before changing any counter, so that a failed read changes none.
        let mut raw = Vec::with_capacity(found.used.len());
        for z in &found.used {
            let path = z.energy_path();
            raw.push(read_uj(&path).map_err(|e| unreadable(z, &path, e, &self.root).to_error())?);
        }
        let mut energy = DomainEnergy::default();
        for ((z, c), raw_uj) in found.used.iter().zip(&mut self.counters).zip(raw) {
            c.advance(raw_uj, z.max_range_uj);
            let mj = c.total_uj as f64 / 1000.0;
            let slot = match z.domain {
                Domain::Dram => &mut energy.dram,
                _ => &mut energy.cpu,
            };
            *slot = Some(slot.unwrap_or(0.0) + mj);
        }
        Ok(energy)
    }

    fn method(&self) -> String {
        "energy counter (powercap energy_uj)".into()
    }

    /// Each zone's raw `energy_uj`: zones update at moments of their own, so their sum
    /// changes more often than any one of them.
    fn counters(&mut self) -> Result<Vec<Option<f64>>> {
        let found = self.found.as_ref().map_err(Problem::to_error)?;
        found
            .used
            .iter()
            .map(|z| {
                let path = z.energy_path();
                read_uj(&path)
                    .map(|uj| Some(uj as f64))
                    .map_err(|e| unreadable(z, &path, e, &self.root).to_error())
            })
            .collect()
    }
}

/// A zone's folder name split up: control type, socket, sub-zone (`intel-rapl:0:2`).
type ZoneKey = (String, u32, Option<u32>);

fn parse_zone_id(id: &str) -> Option<ZoneKey> {
    let mut parts = id.split(':');
    let control = parts.next()?;
    if !CONTROL_TYPES.contains(&control) {
        return None;
    }
    let socket = parts.next()?.parse().ok()?;
    let sub = match parts.next() {
        Some(s) => Some(s.parse().ok()?),
        None => None,
    };
    parts
        .next()
        .is_none()
        .then(|| (control.to_string(), socket, sub))
}

/// What a zone's name means: its domain, or why it is not added.
fn classify(name: &str, sub_zone: bool) -> std::result::Result<Domain, &'static str> {
    match name {
        "dram" => Ok(Domain::Dram),
        n if n.starts_with("package-") && !sub_zone => Ok(Domain::Cpu),
        "core" | "uncore" => Err("inside the package"),
        "psys" => Err("the whole platform, which contains the package"),
        _ => Err("not a zone tracing-energy knows"),
    }
}

fn no_zones(root: &Path, detail: &str) -> Problem {
    Problem {
        reason: format!(
            "no RAPL zones under {}{detail} (not Linux, a VM without RAPL, or the intel_rapl/amd \
             module not loaded)",
            root.display()
        ),
        fix: "on Linux with an Intel or AMD Zen CPU, load the driver (`sudo modprobe \
              intel_rapl_msr`) and check `ls /sys/class/powercap`; in a VM or elsewhere use \
              `--source estimate` (labelled estimated)"
            .into(),
    }
}

/// Finds the RAPL zones under `root`: the flat top-level entries, and sub-zones nested in
/// zone folders, each zone once (the flat entry wins).
fn discover(root: &Path) -> std::result::Result<Found, Problem> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(no_zones(root, "")),
        Err(e) => {
            return Err(Problem {
                reason: format!("cannot list {}: {e}", root.display()),
                fix: format!("check that {} is a readable folder", root.display()),
            })
        }
    };
    let mut zones: BTreeMap<ZoneKey, (String, PathBuf)> = BTreeMap::new();
    let mut add = |id: String, dir: PathBuf| {
        if let Some(key) = parse_zone_id(&id) {
            zones.entry(key).or_insert((id, dir));
        }
    };
    let mut tops = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        tops.push(entry.path());
        add(id, entry.path());
    }
    for top in tops {
        for entry in std::fs::read_dir(&top).into_iter().flatten().flatten() {
            add(
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            );
        }
    }
    if zones.is_empty() {
        return Err(no_zones(root, ""));
    }
    let mut found = Found {
        used: Vec::new(),
        left_out: Vec::new(),
    };
    for ((_, _, sub), (id, dir)) in zones {
        let name_path = dir.join("name");
        let name = std::fs::read_to_string(&name_path)
            .map_err(|e| Problem {
                reason: format!("cannot read {}: {e}", name_path.display()),
                fix: format!(
                    "check the powercap tree with `ls {}`; if zones come and go, wait for \
                     the driver to finish loading and start again",
                    root.display()
                ),
            })?
            .trim()
            .to_string();
        let domain = match classify(&name, sub.is_some()) {
            Ok(d) => d,
            Err(why) => {
                found.left_out.push((name, why));
                continue;
            }
        };
        let range_path = dir.join("max_energy_range_uj");
        let max_range_uj = match read_uj(&range_path) {
            Ok(r) if r > 0 => r,
            Ok(_) => {
                return Err(Problem {
                    reason: format!("{} is 0: the counter's wrap point is unknown", range_path.display()),
                    fix: "the RAPL driver reports no energy range for this zone; use `--source estimate` on this machine".into(),
                })
            }
            Err(e) => {
                return Err(Problem {
                    reason: format!("cannot read {}: {e}", range_path.display()),
                    fix: "a RAPL zone without its energy range cannot be unwrapped; update the \
                          kernel, or use `--source estimate`"
                        .into(),
                })
            }
        };
        found.used.push(Zone {
            id,
            name,
            domain,
            dir,
            max_range_uj,
        });
    }
    if found.used.is_empty() {
        let names: Vec<&str> = found.left_out.iter().map(|(n, _)| n.as_str()).collect();
        return Err(no_zones(
            root,
            &format!(
                " that measure the CPU package or DRAM (found only: {})",
                names.join(", ")
            ),
        ));
    }
    Ok(found)
}

/// Reads a counter file: one unsigned integer.
fn read_uj(path: &Path) -> io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a whole number: {:?}", text.trim()),
        )
    })
}

/// What a failed read of `energy_uj` means: the root-only rule, or a zone that went away.
fn unreadable(zone: &Zone, path: &Path, e: io::Error, root: &Path) -> Problem {
    if e.kind() == io::ErrorKind::PermissionDenied {
        return Problem {
            reason: format!(
                "{} is readable by root only (since Linux 5.10, CVE-2020-8694 'Platypus')",
                path.display()
            ),
            fix: PERMISSION_FIX.into(),
        };
    }
    Problem {
        reason: format!(
            "RAPL zone {} ({}) can no longer be read: {}: {e}",
            zone.id,
            zone.name,
            path.display()
        ),
        fix: format!(
            "the zone went away (its driver was unloaded, or its CPU package went offline); \
             check `ls {}`, load the driver with `sudo modprobe intel_rapl_msr`, and start \
             sampling again",
            root.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_unwraps_at_its_range_and_never_goes_back() {
        let mut c = Counter::default();
        c.advance(900, 1000);
        assert_eq!(c.total_uj, 0, "the first reading is the origin");
        c.advance(950, 1000);
        assert_eq!(c.total_uj, 50);
        c.advance(30, 1000); // wrapped: 50 to the top, 30 after it
        assert_eq!(c.total_uj, 130);
        c.advance(30, 1000);
        assert_eq!(c.total_uj, 130);
    }

    #[test]
    fn zone_folders_and_names_are_classified() {
        assert_eq!(
            parse_zone_id("intel-rapl:0:2"),
            Some(("intel-rapl".into(), 0, Some(2)))
        );
        assert_eq!(
            parse_zone_id("amd-rapl:1"),
            Some(("amd-rapl".into(), 1, None))
        );
        for not_a_zone in [
            "intel-rapl",
            "intel-rapl-mmio:0",
            "intel-rapl:x",
            "intel-rapl:0:1:2",
            "dtpm:0",
        ] {
            assert_eq!(parse_zone_id(not_a_zone), None, "{not_a_zone}");
        }
        assert_eq!(classify("package-1", false), Ok(Domain::Cpu));
        assert_eq!(classify("package-0-die-1", false), Ok(Domain::Cpu));
        assert_eq!(classify("dram", true), Ok(Domain::Dram));
        assert_eq!(classify("dram", false), Ok(Domain::Dram));
        assert!(classify("core", true).is_err());
        assert!(classify("uncore", true).is_err());
        assert!(classify("psys", false).is_err());
    }
}
