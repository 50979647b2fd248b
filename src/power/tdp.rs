//! Where the estimate's watts per busy CPU come from: a table of CPU models (TDP and thread
//! count), a per-vCPU figure for virtual machines, or a default, each with the text that says
//! so.
//!
//! [`CpuWatts::for_host`] picks, in this order:
//! 1. a **virtual machine** ([`VirtualMachine`]: the `hypervisor` CPU flag, `/sys/hypervisor`,
//!    the DMI system vendor, or macOS's `kern.hv_vmm_present`): a vCPU is a thread of a host
//!    CPU shared with other tenants, and the host's model string is often generic ("AMD EPYC"),
//!    so the TDP of a whole package says nothing about it. Figure: Cloud Carbon Footprint's
//!    per-vCPU *max watts* (the power of one vCPU at 100 % load) for the cloud the DMI vendor
//!    names, or AWS's 3.5 W, the lowest of the three clouds', where the cloud is not known;
//! 2. a **known CPU model** ([`lookup`]): the vendor's TDP shared by the package's hardware
//!    threads (`src/power/tdp.csv`, each row's source in the file);
//! 3. **otherwise** 85 W, CodeCarbon's `POWER_CONSTANT` (its TDP for a CPU it cannot identify),
//!    shared by the machine's online logical CPUs, as CodeCarbon shares it.
//!
//! A value set by the user comes before all three; [`super::EstimateSource`] records it as
//! [`WattsOrigin::UserTdp`] or [`WattsOrigin::UserWattsPerCpu`].
//!
//! Sources:
//! - Cloud Carbon Footprint, "Methodology", section *Compute* (cloudcarbonfootprint.org/docs/methodology,
//!   Apache-2.0): `Average Watts = Min Watts + Avg vCPU Utilization * (Max Watts - Min Watts)`
//!   per vCPU, with, where the micro-architecture is unknown, AWS average 0.74 / 3.5 W,
//!   GCP median 0.71 / 4.26 W, Azure average 0.78 / 3.76 W (min / max). This estimate, like
//!   CodeCarbon's process mode, attributes power to busy CPU time only (no idle share), so a
//!   busy vCPU gets the max figure and an idle one nothing.
//! - CodeCarbon 3.3.2 (MIT): `codecarbon/external/hardware.py` `POWER_CONSTANT = 85`;
//!   `data/hardware/cpu_power.csv` for the TDPs the table shares with it.

use std::sync::OnceLock;

/// The TDP used for a CPU that is neither in the table nor a virtual machine (W): CodeCarbon's
/// `POWER_CONSTANT`.
pub const UNKNOWN_CPU_TDP_WATTS: f64 = 85.0;

/// One row of the CPU table: a model with its TDP and hardware threads.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTdp {
    /// The vendor's product name, e.g. `AMD EPYC 7763`.
    pub model: &'static str,
    /// The vendor's TDP (or Intel's Processor Base Power), W.
    pub tdp_watts: f64,
    /// Hardware threads of one package.
    pub threads: usize,
    /// Where the figures come from.
    pub source: &'static str,
}

impl CpuTdp {
    /// The TDP shared by the package's threads (W per busy thread).
    pub fn watts_per_thread(&self) -> f64 {
        self.tdp_watts / self.threads as f64
    }
}

const TABLE_CSV: &str = include_str!("tdp.csv");

/// The CPU table (`src/power/tdp.csv`, with its sources), parsed once.
pub fn table() -> &'static [CpuTdp] {
    static TABLE: OnceLock<Vec<CpuTdp>> = OnceLock::new();
    TABLE.get_or_init(|| {
        TABLE_CSV
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("model,"))
            .map(|l| {
                let f: Vec<&'static str> = l.splitn(4, ',').collect();
                // The file is part of the crate; a unit test parses every row.
                assert!(f.len() == 4, "tdp.csv: bad row `{l}`");
                CpuTdp {
                    model: f[0].trim(),
                    tdp_watts: f[1].trim().parse().expect("tdp.csv: TDP"),
                    threads: f[2].trim().parse().expect("tdp.csv: threads"),
                    source: f[3].trim(),
                }
            })
            .collect()
    })
}

/// A CPU model name reduced to the words that name the product: lower case, without the
/// vendor, trademarks, "CPU", "Processor", "N-Core", the "12th Gen" prefix, the clock after
/// `@` and a "with Radeon Graphics" tail. `Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz` becomes
/// `xeon e5-2690 v4`; `AMD EPYC 7763 64-Core Processor` becomes `epyc 7763`.
pub fn normalize_model(model: &str) -> String {
    let mut s = model.to_lowercase();
    for mark in ["(r)", "(tm)", "(c)", "®", "™"] {
        s = s.replace(mark, " ");
    }
    if let Some(at) = s.find('@') {
        s.truncate(at);
    }
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let mut out: Vec<&str> = Vec::new();
    for (k, t) in tokens.iter().enumerate() {
        let ordinal = |t: &str| {
            ["st", "nd", "rd", "th"].iter().any(|suf| {
                t.strip_suffix(suf)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        };
        let n_core = t
            .strip_suffix("-core")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if *t == "with" {
            break;
        }
        if matches!(*t, "intel" | "amd" | "apple" | "cpu" | "processor" | "gen")
            || n_core
            || (ordinal(t) && tokens.get(k + 1) == Some(&"gen"))
        {
            continue;
        }
        out.push(t);
    }
    out.join(" ")
}

/// The table's row for this model string, if the table holds exactly this model.
///
/// The whole normalised name must equal a row's normalised name. There is no fuzzy or
/// partial match on purpose: a family name such as `AMD EPYC` (what a cloud VM often shows)
/// names no model, and parts of one family differ several times over in TDP per thread (EPYC
/// 9654: 1.9 W, EPYC 7452: 2.4 W, the 8-core EPYC 72F3: 11 W), so taking any one row for it
/// would be a guess presented as a lookup. Token-set matching of the kind CodeCarbon uses
/// (`rapidfuzz.fuzz.token_set_ratio`) scores a name 100 against every row that contains its
/// words, and CodeCarbon takes such a row when it is the only one; here a near neighbour
/// (`i9-9900KF` for `i9-9900K`) is no match either. No row name reduces to a bare family
/// name: every one keeps a model number (a unit test checks).
pub fn lookup(model: &str) -> Option<&'static CpuTdp> {
    let key = normalize_model(model);
    if key.is_empty() {
        return None;
    }
    table().iter().find(|row| normalize_model(row.model) == key)
}

/// A cloud whose per-vCPU figures Cloud Carbon Footprint publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Amazon Web Services (DMI vendor `Amazon EC2`).
    Aws,
    /// Google Cloud (DMI vendor `Google`).
    Gcp,
    /// Microsoft Azure (DMI vendor `Microsoft Corporation`, which Hyper-V also shows).
    Azure,
}

impl Cloud {
    /// Cloud Carbon Footprint's max watts per vCPU for this cloud, where the
    /// micro-architecture is not known (AWS and Azure: average; GCP: median).
    pub fn max_watts_per_vcpu(self) -> f64 {
        match self {
            Cloud::Aws => 3.5,
            Cloud::Gcp => 4.26,
            Cloud::Azure => 3.76,
        }
    }

    /// The cloud's short name: `AWS`, `GCP`, `Azure`.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "AWS",
            Cloud::Gcp => "GCP",
            Cloud::Azure => "Azure",
        }
    }
}

/// What showed that this machine is a virtual machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvidence {
    /// The `hypervisor` flag in `/proc/cpuinfo` (x86: CPUID leaf 1, ECX bit 31).
    HypervisorFlag,
    /// `/sys/hypervisor/type` names one (Xen guests).
    HypervisorType(String),
    /// `/sys/class/dmi/id/sys_vendor` is a hypervisor's or a cloud's.
    DmiVendor(String),
    /// macOS's `sysctl kern.hv_vmm_present` is 1.
    MacOsVmm,
}

impl std::fmt::Display for VmEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmEvidence::HypervisorFlag => f.write_str("hypervisor flag in /proc/cpuinfo"),
            VmEvidence::HypervisorType(t) => write!(f, "/sys/hypervisor/type `{t}`"),
            VmEvidence::DmiVendor(v) => write!(f, "DMI system vendor `{v}`"),
            VmEvidence::MacOsVmm => f.write_str("kern.hv_vmm_present"),
        }
    }
}

/// This machine is a virtual machine: how we know, and which cloud, where the DMI vendor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMachine {
    /// The first sign found.
    pub evidence: VmEvidence,
    /// The cloud, when the DMI system vendor names one.
    pub cloud: Option<Cloud>,
}

/// DMI `sys_vendor` values of hypervisors and clouds, with the cloud they name.
const VM_VENDORS: [(&str, Option<Cloud>); 9] = [
    ("amazon ec2", Some(Cloud::Aws)),
    ("google", Some(Cloud::Gcp)),
    ("microsoft corporation", Some(Cloud::Azure)),
    ("qemu", None),
    ("vmware", None),
    ("xen", None),
    ("innotek gmbh", None), // VirtualBox
    ("parallels", None),
    ("red hat", None), // RHEV / OpenShift Virtualization (KVM)
];

impl VirtualMachine {
    /// Detects a virtual machine from the text of `/proc/cpuinfo`, `/sys/hypervisor/type` and
    /// `/sys/class/dmi/id/sys_vendor` (each `None` where absent). The DMI vendor also names
    /// the cloud; the `hypervisor` flag alone does not.
    pub fn from_texts(
        cpuinfo: Option<&str>,
        hypervisor_type: Option<&str>,
        dmi_sys_vendor: Option<&str>,
    ) -> Option<VirtualMachine> {
        let vendor = dmi_sys_vendor.map(str::trim).filter(|v| !v.is_empty());
        let dmi = vendor.and_then(|v| {
            let lower = v.to_lowercase();
            VM_VENDORS
                .iter()
                .find(|(name, _)| lower.starts_with(name))
                .map(|(_, cloud)| (v, *cloud))
        });
        let cloud = dmi.and_then(|(_, c)| c);
        let flag = cpuinfo.is_some_and(has_hypervisor_flag);
        let hyp = hypervisor_type
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "none");
        let evidence = if flag {
            VmEvidence::HypervisorFlag
        } else if let Some(t) = hyp {
            VmEvidence::HypervisorType(t.to_string())
        } else if let Some((v, _)) = dmi {
            VmEvidence::DmiVendor(v.to_string())
        } else {
            return None;
        };
        Some(VirtualMachine { evidence, cloud })
    }

    /// Watts per busy vCPU: Cloud Carbon Footprint's max watts for the cloud, AWS's where
    /// the cloud is not known.
    pub fn watts_per_vcpu(&self) -> f64 {
        self.cloud.unwrap_or(Cloud::Aws).max_watts_per_vcpu()
    }
}

/// True when a `flags` line of `/proc/cpuinfo` lists `hypervisor`.
fn has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .filter_map(|l| l.split_once(':'))
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "hypervisor"))
}

/// Where the watts per busy CPU come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WattsOrigin {
    /// The user gave the TDP.
    UserTdp,
    /// The user gave the watts per busy CPU (the value given).
    UserWattsPerCpu(f64),
    /// A virtual machine: a per-vCPU figure.
    VirtualMachine(VirtualMachine),
    /// A CPU model found in the table.
    KnownCpu(&'static CpuTdp),
    /// A CPU model not in the table (or not known at all): the default TDP.
    UnknownCpu {
        /// The model string the system gave, if any.
        model: Option<String>,
    },
}

/// A TDP shared by logical CPUs, and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuWatts {
    /// The power of all `logical_cpus` busy together (W).
    pub tdp_watts: f64,
    /// The logical CPUs that share it.
    pub logical_cpus: usize,
    /// Where the figure comes from.
    pub origin: WattsOrigin,
}

impl CpuWatts {
    /// Chooses for a host with this CPU model string, virtual machine signs and online
    /// logical CPUs: a VM's per-vCPU figure, else the table's row, else the default TDP.
    pub fn for_host(
        model: Option<&str>,
        vm: Option<VirtualMachine>,
        online_cpus: usize,
    ) -> CpuWatts {
        let online_cpus = online_cpus.max(1);
        if let Some(vm) = vm {
            return CpuWatts {
                tdp_watts: vm.watts_per_vcpu() * online_cpus as f64,
                logical_cpus: online_cpus,
                origin: WattsOrigin::VirtualMachine(vm),
            };
        }
        if let Some(row) = model.and_then(lookup) {
            return CpuWatts {
                tdp_watts: row.tdp_watts,
                logical_cpus: row.threads,
                origin: WattsOrigin::KnownCpu(row),
            };
        }
        CpuWatts {
            tdp_watts: UNKNOWN_CPU_TDP_WATTS,
            logical_cpus: online_cpus,
            origin: WattsOrigin::UnknownCpu {
                model: model.map(str::to_string),
            },
        }
    }

    /// This machine's choice, detected once per process (CPU model, VM signs, online CPUs).
    pub fn detected() -> &'static CpuWatts {
        static DETECTED: OnceLock<CpuWatts> = OnceLock::new();
        DETECTED.get_or_init(|| {
            CpuWatts::for_host(
                crate::host::cpu_model().as_deref(),
                crate::host::virtual_machine(),
                crate::host::online_cpus(),
            )
        })
    }

    /// Watts attributed to one fully busy logical CPU.
    pub fn watts_per_cpu(&self) -> f64 {
        self.tdp_watts / self.logical_cpus.max(1) as f64
    }

    /// Where the figure comes from, in words, e.g. `TDP 85 W: default for an unknown CPU
    /// (CodeCarbon's constant; "AMD EPYC" is not in the table), shared by 2 logical CPUs:
    /// 42.5 W per busy CPU`.
    pub fn describe(&self) -> String {
        let per = watts(self.watts_per_cpu());
        let (tdp, n) = (watts(self.tdp_watts), self.logical_cpus);
        match &self.origin {
            WattsOrigin::UserTdp => {
                format!("TDP {tdp} W: set by the user, shared by {n} logical CPUs: {per} W per busy CPU")
            }
            WattsOrigin::UserWattsPerCpu(w) => {
                format!("{} W per busy CPU: set by the user", watts(*w))
            }
            WattsOrigin::VirtualMachine(vm) => {
                let cloud = match vm.cloud {
                    Some(c) => format!("{} figure", c.name()),
                    None => "AWS figure, the lowest of its three clouds' (cloud not identified)"
                        .to_string(),
                };
                format!(
                    "{per} W per busy vCPU: virtual machine ({}), Cloud Carbon Footprint's max watts per vCPU, {cloud}",
                    vm.evidence
                )
            }
            WattsOrigin::KnownCpu(row) => format!(
                "TDP {tdp} W: {} ({}), shared by its {n} threads: {per} W per busy thread",
                row.model, row.source
            ),
            WattsOrigin::UnknownCpu { model } => {
                let which = match model {
                    Some(m) => format!("; \"{m}\" is not in the table"),
                    None => "; the CPU model is not known".to_string(),
                };
                format!(
                    "TDP {tdp} W: default for an unknown CPU (CodeCarbon's constant{which}), shared by {n} logical CPUs: {per} W per busy CPU"
                )
            }
        }
    }
}

/// Watts with up to two decimals, trailing zeros dropped: `85`, `42.5`, `2.19`.
fn watts(w: f64) -> String {
    let s = format!("{w:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_parses_has_a_model_number_and_a_unique_name() {
        let t = table();
        assert!(t.len() >= 25, "{} rows", t.len());
        for row in t {
            assert!(row.tdp_watts > 0.0 && row.threads > 0, "{row:?}");
            assert!(!row.source.is_empty(), "{row:?}");
            let key = normalize_model(row.model);
            assert!(key.bytes().any(|b| b.is_ascii_digit()), "{key}");
            assert_eq!(lookup(row.model), Some(row), "row must find itself");
            let same = t.iter().filter(|r| normalize_model(r.model) == key).count();
            assert_eq!(same, 1, "{key} twice");
        }
    }

    #[test]
    fn model_strings_as_systems_print_them_find_their_row() {
        let cases = [
            ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763"),
            ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X"),
            (
                "Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz",
                "Intel Xeon E5-2690 v4",
            ),
            (
                "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz",
                "Intel Xeon Platinum 8380",
            ),
            (
                "Intel(R) Xeon(R) Platinum 8480+",
                "Intel Xeon Platinum 8480+",
            ),
            (
                "Intel(R) Core(TM) i9-9900K CPU @ 3.60GHz",
                "Intel Core i9-9900K",
            ),
            (
                "13th Gen Intel(R) Core(TM) i9-13900K",
                "Intel Core i9-13900K",
            ),
            ("Apple M1", "Apple M1"),
            ("Apple M2 Max", "Apple M2 Max"),
        ];
        for (raw, model) in cases {
            assert_eq!(lookup(raw).map(|r| r.model), Some(model), "{raw}");
        }
    }

    #[test]
    fn a_family_or_a_neighbour_is_not_a_model() {
        for raw in [
            "AMD EPYC",
            "AMD EPYC Processor",
            "AMD EPYC 7B13",
            "AMD EPYC 77630",
            "Intel(R) Core(TM) i9-9900KF CPU @ 3.60GHz",
            "Intel Xeon Processor (Icelake)",
            "Apple M1 Pro",
            "Apple M2 Pro",
            "",
        ] {
            assert_eq!(lookup(raw), None, "{raw}");
        }
    }

    #[test]
    fn normalisation_drops_marks_clock_and_tails() {
        assert_eq!(
            normalize_model("AMD Ryzen 7 5800H with Radeon Graphics"),
            "ryzen 7 5800h"
        );
        assert_eq!(
            normalize_model("12th Gen Intel(R) Core(TM) i7-12700H"),
            "core i7-12700h"
        );
        assert_eq!(normalize_model("AMD EPYC"), "epyc");
    }

    #[test]
    fn descriptions_name_the_figure_and_its_source() {
        let unknown = CpuWatts::for_host(Some("AMD EPYC"), None, 2);
        assert_eq!(
            unknown.describe(),
            "TDP 85 W: default for an unknown CPU (CodeCarbon's constant; \"AMD EPYC\" is not in the table), shared by 2 logical CPUs: 42.5 W per busy CPU"
        );
        let known = CpuWatts::for_host(Some("AMD EPYC 7763 64-Core Processor"), None, 256);
        assert_eq!((known.tdp_watts, known.logical_cpus), (280.0, 128));
        assert!(
            known.describe().starts_with("TDP 280 W: AMD EPYC 7763 (AMD product specifications), shared by its 128 threads: 2.19 W"),
            "{}",
            known.describe()
        );
        let vm = VirtualMachine::from_texts(Some("flags\t\t: fpu hypervisor lahf_lm"), None, None);
        let on_vm = CpuWatts::for_host(Some("AMD EPYC 7763 64-Core Processor"), vm, 2);
        assert_eq!(on_vm.watts_per_cpu(), 3.5);
        assert_eq!(
            on_vm.describe(),
            "3.5 W per busy vCPU: virtual machine (hypervisor flag in /proc/cpuinfo), Cloud Carbon Footprint's max watts per vCPU, AWS figure, the lowest of its three clouds' (cloud not identified)"
        );
    }
}
