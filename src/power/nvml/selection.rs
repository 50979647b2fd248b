//! Which GPUs the `nvml` source reads: all of them, those `--gpus` names, or those
//! `CUDA_VISIBLE_DEVICES` leaves visible to the profiled program.

use std::fmt;

use super::{label, unavailable, GpuDevice, GpuDriver};
use crate::{Error, Result};

/// One GPU as a user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuId {
    /// NVML's index: the numbering of `nvidia-smi -L` (PCI bus order).
    Index(u32),
    /// A GPU UUID (`GPU-8932f937-d72c-4106-c12f-20bd9faed9f6`) or a prefix of one that
    /// names a single GPU, as CUDA accepts them.
    Uuid(String),
}

impl fmt::Display for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuId::Index(i) => write!(f, "{i}"),
            GpuId::Uuid(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    All,
    Ids(Vec<GpuId>),
    /// A selection that cannot be used (from the environment, which is read without
    /// failing): reported when the source is checked.
    Invalid {
        reason: String,
        fix: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Default,
    Explicit(String),
    Cuda {
        value: String,
        /// `CUDA_DEVICE_ORDER=PCI_BUS_ID`: CUDA's indices are NVML's.
        pci_bus_order: bool,
        /// Entries from the first invalid one on, which CUDA ignores.
        ignored: Option<String>,
    },
}

/// The GPUs an [`super::NvmlMeter`] reads; their energies are summed into the `gpu` domain.
///
/// - [`GpuSelection::all`] (the default): every GPU the driver reports.
/// - [`GpuSelection::parse`]: an explicit list, as `--gpus 0,2` gives it.
/// - [`GpuSelection::from_env`]: the GPUs `CUDA_VISIBLE_DEVICES` leaves visible, all when
///   it is unset.
///
/// An explicit list wins over the environment ([`GpuSelection::resolve`]). Whether the
/// named GPUs exist is checked when the meter opens them, with an error that lists the GPUs
/// found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSelection {
    choice: Choice,
    origin: Origin,
}

impl Default for GpuSelection {
    fn default() -> Self {
        GpuSelection::all()
    }
}

const GPUS_ACCEPTED: &str = "give NVML indices as `nvidia-smi -L` lists them (e.g. `0,2`), \
                             GPU UUIDs (`GPU-8932f937-...`), or `all`";

fn parse_id(entry: &str) -> std::result::Result<GpuId, String> {
    let prefix = |p: &str| {
        entry
            .get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
    };
    if prefix("MIG-") {
        return Err(format!(
            "`{entry}` is a MIG instance, and NVML measures energy per physical GPU only"
        ));
    }
    if prefix("GPU-") && entry.len() > 4 {
        return Ok(GpuId::Uuid(format!("GPU-{}", &entry[4..])));
    }
    match entry.parse::<u32>() {
        Ok(i) if !entry.starts_with('+') => Ok(GpuId::Index(i)),
        _ => Err(format!("`{entry}` is not a GPU index or UUID")),
    }
}

fn duplicate(ids: &[GpuId]) -> Option<&GpuId> {
    ids.iter()
        .enumerate()
        .find(|(k, id)| ids[..*k].contains(id))
        .map(|(_, id)| id)
}

impl GpuSelection {
    /// Every GPU the driver reports.
    pub fn all() -> GpuSelection {
        GpuSelection {
            choice: Choice::All,
            origin: Origin::Default,
        }
    }

    /// An explicit list, as `--gpus` gives it: `0,2`, `GPU-8932f937,1`, or `all`.
    /// Indices are NVML's (`nvidia-smi -L`).
    pub fn parse(text: &str) -> Result<GpuSelection> {
        let bad = |reason: String| Error::InvalidSetting {
            name: "gpus",
            reason,
        };
        let text = text.trim();
        let origin = Origin::Explicit(text.to_string());
        if text.eq_ignore_ascii_case("all") {
            return Ok(GpuSelection {
                choice: Choice::All,
                origin,
            });
        }
        if text.is_empty() {
            return Err(bad(format!("the list is empty; {GPUS_ACCEPTED}")));
        }
        let mut ids = Vec::new();
        for entry in text.split(',').map(str::trim) {
            if entry.is_empty() {
                return Err(bad(format!("`{text}` has an empty entry; {GPUS_ACCEPTED}")));
            }
            ids.push(parse_id(entry).map_err(|e| {
                bad(format!(
                    "{e}; {GPUS_ACCEPTED}{}",
                    if e.contains("MIG instance") {
                        " (the index of the GPU that holds the MIG instance measures it, \
                         with every other instance on that GPU)"
                    } else {
                        ""
                    }
                ))
            })?);
        }
        if let Some(d) = duplicate(&ids) {
            return Err(bad(format!(
                "`{text}` names GPU {d} twice; name each GPU once"
            )));
        }
        Ok(GpuSelection {
            choice: Choice::Ids(ids),
            origin,
        })
    }

    /// The GPUs that `CUDA_VISIBLE_DEVICES` leaves visible (all when it is unset), with
    /// `CUDA_DEVICE_ORDER` telling how CUDA numbers them. Never fails: a value that cannot
    /// be used is reported when the meter is checked ([`super::NvmlMeter`]'s
    /// `is_available`).
    pub fn from_env() -> GpuSelection {
        let var =
            |name: &str| std::env::var_os(name).map(|v| v.to_str().map(str::to_string).ok_or(v));
        let order = var("CUDA_DEVICE_ORDER").and_then(|v| v.ok());
        match var("CUDA_VISIBLE_DEVICES") {
            None => GpuSelection::all(),
            Some(Ok(value)) => GpuSelection::from_cuda_visible_devices(&value, order.as_deref()),
            Some(Err(raw)) => GpuSelection {
                choice: Choice::Invalid {
                    reason: format!("CUDA_VISIBLE_DEVICES={raw:?} is not valid UTF-8"),
                    fix: "set it to GPU indices or UUIDs, e.g. `0,1`, or pass --gpus".into(),
                },
                origin: Origin::Cuda {
                    value: raw.to_string_lossy().into_owned(),
                    pci_bus_order: false,
                    ignored: None,
                },
            },
        }
    }

    /// `--gpus` when given (`explicit`), else [`GpuSelection::from_env`]: an explicit list
    /// wins over `CUDA_VISIBLE_DEVICES`.
    pub fn resolve(explicit: Option<&str>) -> Result<GpuSelection> {
        match explicit {
            Some(list) => GpuSelection::parse(list),
            None => Ok(GpuSelection::from_env()),
        }
    }

    /// [`GpuSelection::resolve`] with the environment given rather than read:
    /// `cuda_visible_devices` and `cuda_device_order` as the variables would hold them.
    pub fn resolve_with(
        explicit: Option<&str>,
        cuda_visible_devices: Option<&str>,
        cuda_device_order: Option<&str>,
    ) -> Result<GpuSelection> {
        match (explicit, cuda_visible_devices) {
            (Some(list), _) => GpuSelection::parse(list),
            (None, Some(value)) => Ok(GpuSelection::from_cuda_visible_devices(
                value,
                cuda_device_order,
            )),
            (None, None) => Ok(GpuSelection::all()),
        }
    }

    /// The GPUs a value of `CUDA_VISIBLE_DEVICES` leaves visible, read as CUDA reads it:
    /// indices or `GPU-` UUIDs (or unique prefixes), separated by commas; CUDA ignores
    /// everything from the first invalid entry on (so `-1` hides every GPU), and an empty
    /// value hides every GPU. CUDA numbers GPUs fastest first unless `CUDA_DEVICE_ORDER` is
    /// `PCI_BUS_ID`; NVML numbers them in PCI bus order, so indices are taken only where the
    /// two agree (see [`super::NvmlMeter`]). MIG instances (`MIG-...`) cannot be measured
    /// on their own: such a value is reported as unusable, with the fix.
    pub fn from_cuda_visible_devices(value: &str, cuda_device_order: Option<&str>) -> GpuSelection {
        let pci_bus_order = cuda_device_order.map(str::trim) == Some("PCI_BUS_ID");
        let mut ids = Vec::new();
        let mut ignored = None;
        let mut invalid = None;
        let entries: Vec<&str> = if value.trim().is_empty() {
            Vec::new()
        } else {
            value.split(',').map(str::trim).collect()
        };
        for (k, entry) in entries.iter().enumerate() {
            match parse_id(entry) {
                Ok(id) => ids.push(id),
                Err(e) if e.contains("MIG instance") => {
                    invalid = Some(Choice::Invalid {
                        reason: format!("CUDA_VISIBLE_DEVICES={value} names {e}"),
                        fix: "pass --gpus with the index of the GPU that holds it \
                              (`nvidia-smi -L` lists them); its energy includes every other \
                              instance on that GPU"
                            .into(),
                    });
                    break;
                }
                Err(_) => {
                    ignored = Some(entries[k..].join(","));
                    break;
                }
            }
        }
        let choice = match (invalid, duplicate(&ids)) {
            (Some(c), _) => c,
            (None, Some(d)) => Choice::Invalid {
                reason: format!("CUDA_VISIBLE_DEVICES={value} names GPU {d} twice"),
                fix: "name each GPU once, or pass --gpus".into(),
            },
            (None, None) => Choice::Ids(ids),
        };
        GpuSelection {
            choice,
            origin: Origin::Cuda {
                value: value.to_string(),
                pci_bus_order,
                ignored,
            },
        }
    }

    /// The GPUs named, in the order given; `None` for all GPUs, or when the selection
    /// cannot be used.
    pub fn ids(&self) -> Option<&[GpuId]> {
        match &self.choice {
            Choice::Ids(ids) => Some(ids),
            _ => None,
        }
    }

    /// Where the selection comes from, for messages: `all GPUs`, `--gpus 0,2`,
    /// `CUDA_VISIBLE_DEVICES=1`.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Default => "all GPUs".into(),
            Origin::Explicit(text) => format!("--gpus {text}"),
            Origin::Cuda { value, ignored, .. } => match ignored {
                Some(rest) => format!(
                    "CUDA_VISIBLE_DEVICES={value}, of which CUDA ignores `{rest}` (everything \
                     from the first invalid entry on)"
                ),
                None => format!("CUDA_VISIBLE_DEVICES={value}"),
            },
        }
    }

    /// Opens the selected GPUs of `driver`, in the selection's order. Errors are
    /// [`Error::SourceUnavailable`] with the fix: no GPU, a GPU that does not exist (listing
    /// those found), an ambiguous UUID prefix, a GPU that cannot be opened.
    pub fn open(&self, driver: &dyn GpuDriver) -> Result<Vec<Box<dyn GpuDevice>>> {
        if let Choice::Invalid { reason, fix } = &self.choice {
            return Err(unavailable(reason.clone(), fix.clone()));
        }
        let count = driver.gpu_count()?;
        if count == 0 {
            return Err(unavailable(
                "the NVIDIA driver reports no GPU".into(),
                "check `nvidia-smi -L`; in a container, pass the GPUs in (e.g. `docker run \
                 --gpus all`); or use --source rapl / estimate"
                    .into(),
            ));
        }
        let open_one = |i: u32| {
            driver.open(i).map_err(|e| {
                let others: Vec<String> = (0..count)
                    .filter(|j| *j != i)
                    .map(|j| j.to_string())
                    .collect();
                unavailable(
                    format!("GPU {i} cannot be opened (nvmlDeviceGetHandleByIndex: {e})"),
                    if others.is_empty() {
                        format!(
                            "check it with `nvidia-smi -i {i}`, or use --source rapl / estimate"
                        )
                    } else {
                        format!(
                            "check it with `nvidia-smi -i {i}`, or leave it out with --gpus \
                             (e.g. --gpus {})",
                            others.join(",")
                        )
                    },
                )
            })
        };
        let open_all = || (0..count).map(open_one).collect::<Result<Vec<_>>>();
        let ids = match &self.choice {
            Choice::All => return open_all(),
            Choice::Ids(ids) if ids.is_empty() => {
                return Err(unavailable(
                    format!("{} leaves no GPU visible", self.describe()),
                    "set CUDA_VISIBLE_DEVICES to the GPUs your program uses, or pass --gpus".into(),
                ))
            }
            Choice::Ids(ids) => ids,
            Choice::Invalid { .. } => unreachable!("returned above"),
        };
        let by_cuda_index = matches!(
            self.origin,
            Origin::Cuda {
                pci_bus_order: false,
                ..
            }
        ) && ids.iter().any(|id| matches!(id, GpuId::Index(_)));
        let needs_all = by_cuda_index && count > 1
            || ids.iter().any(|id| {
                matches!(id, GpuId::Uuid(_)) || matches!(id, GpuId::Index(i) if *i >= count)
            });
        if !needs_all {
            return ids
                .iter()
                .map(|id| match id {
                    GpuId::Index(i) => open_one(*i),
                    GpuId::Uuid(_) => unreachable!("UUIDs open every GPU"),
                })
                .collect();
        }
        let mut all: Vec<Option<Box<dyn GpuDevice>>> = open_all()?.into_iter().map(Some).collect();
        let found = all
            .iter()
            .flatten()
            .map(|d| describe_found(d.as_ref()))
            .collect::<Vec<_>>()
            .join(", ");
        if by_cuda_index && count > 1 {
            let mut names: Vec<Option<String>> = all.iter().flatten().map(|d| d.name()).collect();
            names.dedup();
            if names.len() > 1 || names.iter().any(Option::is_none) {
                return Err(unavailable(
                    format!(
                        "{} names GPUs by CUDA's index, and CUDA numbers these GPUs of \
                         different models fastest first, not in NVML's PCI bus order: the \
                         indices may name other GPUs (found: {})",
                        self.describe(),
                        found
                    ),
                    "set CUDA_DEVICE_ORDER=PCI_BUS_ID (for the profiled program too), or name \
                     the GPUs by UUID, or pass --gpus"
                        .into(),
                ));
            }
        }
        let mut picked = Vec::with_capacity(ids.len());
        for id in ids {
            let at = match id {
                GpuId::Index(i) if *i < count => *i as usize,
                GpuId::Index(i) => {
                    return Err(unavailable(
                        format!(
                            "{} names GPU {i}, and the driver reports {count} GPU{}: {}",
                            self.describe(),
                            if count == 1 { "" } else { "s" },
                            found
                        ),
                        "choose among those (--gpus, or CUDA_VISIBLE_DEVICES)".into(),
                    ))
                }
                GpuId::Uuid(prefix) => {
                    let hits: Vec<usize> = all
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| {
                            d.as_ref().and_then(|d| d.uuid()).is_some_and(|u| {
                                u.to_ascii_lowercase()
                                    .starts_with(&prefix.to_ascii_lowercase())
                            })
                        })
                        .map(|(k, _)| k)
                        .collect();
                    match hits.as_slice() {
                        [k] => *k,
                        [] => {
                            return Err(unavailable(
                                format!(
                                    "{} names {prefix}, which is no GPU's UUID; the driver \
                                     reports {}",
                                    self.describe(),
                                    found
                                ),
                                "choose among those (`nvidia-smi -L` shows the UUIDs)".into(),
                            ))
                        }
                        _ => {
                            return Err(unavailable(
                                format!(
                                    "{} names {prefix}, which begins the UUIDs of several \
                                     GPUs: {}",
                                    self.describe(),
                                    found
                                ),
                                "give more of the UUID".into(),
                            ))
                        }
                    }
                }
            };
            match all[at].take() {
                Some(d) => picked.push(d),
                None => {
                    return Err(unavailable(
                        format!("{} names GPU {at} twice", self.describe()),
                        "name each GPU once".into(),
                    ))
                }
            }
        }
        Ok(picked)
    }
}

/// `GPU 0 (NVIDIA H100 80GB HBM3, GPU-8932f937-...)`, for lists of the GPUs found.
fn describe_found(d: &dyn GpuDevice) -> String {
    match d.uuid() {
        Some(u) => format!("{} [{u}]", label(d)),
        None => label(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_lists_parse_and_bad_ones_say_what_is_accepted() {
        let s = GpuSelection::parse(" 0, 2 ").unwrap();
        assert_eq!(s.ids(), Some(&[GpuId::Index(0), GpuId::Index(2)][..]));
        assert_eq!(s.describe(), "--gpus 0, 2");
        let s = GpuSelection::parse("gpu-AB12,1").unwrap();
        assert_eq!(
            s.ids(),
            Some(&[GpuId::Uuid("GPU-AB12".into()), GpuId::Index(1)][..])
        );
        assert_eq!(GpuSelection::parse("all").unwrap().ids(), None);
        for (bad, says) in [
            ("", "empty"),
            ("0,,1", "empty entry"),
            ("x", "`x` is not a GPU index"),
            ("-1", "`-1` is not"),
            ("0,0", "twice"),
            ("MIG-1234", "per physical GPU"),
            ("é", "`é` is not"),
        ] {
            let e = GpuSelection::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("gpus"), "{bad}: {e}");
        }
    }

    #[test]
    fn cuda_visible_devices_is_read_as_cuda_reads_it() {
        let s = GpuSelection::from_cuda_visible_devices("1,GPU-abc", Some("PCI_BUS_ID"));
        assert_eq!(
            s.ids(),
            Some(&[GpuId::Index(1), GpuId::Uuid("GPU-abc".into())][..])
        );
        // CUDA stops at the first invalid entry.
        let s = GpuSelection::from_cuda_visible_devices("0,2,-1,1", None);
        assert_eq!(s.ids(), Some(&[GpuId::Index(0), GpuId::Index(2)][..]));
        assert!(s.describe().contains("ignores `-1,1`"), "{}", s.describe());
        assert_eq!(
            GpuSelection::from_cuda_visible_devices("", None).ids(),
            Some(&[][..])
        );
        assert_eq!(
            GpuSelection::from_cuda_visible_devices("-1", None).ids(),
            Some(&[][..])
        );
        let mig = GpuSelection::from_cuda_visible_devices("MIG-5c89", None);
        assert_eq!(mig.ids(), None);
        assert!(
            matches!(&mig.choice, Choice::Invalid { reason, .. } if reason.contains("MIG-5c89"))
        );
    }

    #[test]
    fn explicit_wins_over_the_environment() {
        let s = GpuSelection::resolve_with(Some("0,2"), Some("1"), None).unwrap();
        assert_eq!(s.ids(), Some(&[GpuId::Index(0), GpuId::Index(2)][..]));
        let s = GpuSelection::resolve_with(None, Some("1"), None).unwrap();
        assert_eq!(s.ids(), Some(&[GpuId::Index(1)][..]));
        assert_eq!(
            GpuSelection::resolve_with(None, None, None).unwrap(),
            GpuSelection::all()
        );
    }
}
