//! What machine this is (host name, OS release, CPU model, logical CPUs, whether it is a
//! virtual machine) and whether a process on it is alive: facts about the host, read by the
//! store for a run's metadata and for runs whose writer died, and by the CPU-time estimate.

use crate::power::tdp::{VirtualMachine, VmEvidence};

/// This machine's host name, `None` when it has none.
pub(crate) fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// The operating system and its release, e.g. `linux 6.1.0`.
pub(crate) fn os_release() -> String {
    // SAFETY: uname fills a zeroed utsname struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    let release = if unsafe { libc::uname(&mut u) } == 0 {
        let bytes: Vec<u8> = u
            .release
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        String::new()
    };
    let os = std::env::consts::OS;
    if release.is_empty() {
        os.to_string()
    } else {
        format!("{os} {release}")
    }
}

/// The CPU or chip model, where the system says.
pub(crate) fn cpu_model() -> Option<String> {
    if cfg!(target_os = "macos") {
        let out = std::process::Command::new("sysctl")
            .args(["-n", "machdep.cpu.brand_string"])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return (!s.is_empty()).then_some(s);
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| {
            l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware")
        })
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// True when a process with this pid exists on this machine (zombies count as alive
/// until reaped).
pub(crate) fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The logical CPUs online on this machine (`sysconf(_SC_NPROCESSORS_ONLN)`), what CodeCarbon
/// counts (`psutil.cpu_count()`): a package's TDP is shared by all its threads, whatever
/// share of them this process may use.
pub(crate) fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Whether this machine is a virtual machine, from `/proc/cpuinfo`'s `hypervisor` flag,
/// `/sys/hypervisor/type` and the DMI system vendor on Linux, `kern.hv_vmm_present` on macOS.
pub(crate) fn virtual_machine() -> Option<VirtualMachine> {
    if cfg!(target_os = "macos") {
        let out = std::process::Command::new("sysctl")
            .args(["-n", "kern.hv_vmm_present"])
            .output()
            .ok()?;
        return (String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(VirtualMachine {
            evidence: VmEvidence::MacOsVmm,
            cloud: None,
        });
    }
    let read = |p: &str| std::fs::read_to_string(p).ok();
    VirtualMachine::from_texts(
        read("/proc/cpuinfo").as_deref(),
        read("/sys/hypervisor/type").as_deref(),
        read("/sys/class/dmi/id/sys_vendor").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::tdp::Cloud;

    /// The `flags` line of this development VM (2 vCPUs, "AMD EPYC"), cut short.
    const EPYC_VM_CPUINFO: &str =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
        flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 \
        clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc \
        rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 \
        fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c \
        rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch\n";

    /// A bare-metal machine's flags: no `hypervisor`, but `vmx` (it can host VMs).
    const BARE_METAL_CPUINFO: &str = "model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz\n\
        flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr vmx smx est tm2 ssse3\n";

    #[test]
    fn the_hypervisor_flag_marks_a_vm() {
        let vm = VirtualMachine::from_texts(Some(EPYC_VM_CPUINFO), None, None).unwrap();
        assert_eq!(vm.evidence, VmEvidence::HypervisorFlag);
        assert_eq!(vm.cloud, None);
        assert_eq!(vm.watts_per_vcpu(), 3.5);
        assert_eq!(
            VirtualMachine::from_texts(Some(BARE_METAL_CPUINFO), Some(""), None),
            None
        );
        // "hypervisor" only counts as a whole flag on a flags line.
        let other = "model name\t: hypervisor\nflags\t\t: fpu hypervisorx\n";
        assert_eq!(VirtualMachine::from_texts(Some(other), None, None), None);
    }

    #[test]
    fn dmi_vendor_and_xen_mark_a_vm_and_name_the_cloud() {
        let aws = VirtualMachine::from_texts(Some(BARE_METAL_CPUINFO), None, Some("Amazon EC2\n"));
        assert_eq!(
            aws,
            Some(VirtualMachine {
                evidence: VmEvidence::DmiVendor("Amazon EC2".into()),
                cloud: Some(Cloud::Aws),
            })
        );
        let gcp =
            VirtualMachine::from_texts(Some(EPYC_VM_CPUINFO), None, Some("Google\n")).unwrap();
        assert_eq!(gcp.evidence, VmEvidence::HypervisorFlag);
        assert_eq!((gcp.cloud, gcp.watts_per_vcpu()), (Some(Cloud::Gcp), 4.26));
        let azure = VirtualMachine::from_texts(None, None, Some("Microsoft Corporation")).unwrap();
        assert_eq!(azure.watts_per_vcpu(), 3.76);
        let qemu = VirtualMachine::from_texts(None, None, Some("QEMU")).unwrap();
        assert_eq!(qemu.cloud, None);
        let xen = VirtualMachine::from_texts(None, Some("xen\n"), None).unwrap();
        assert_eq!(xen.evidence, VmEvidence::HypervisorType("xen".into()));
        for vendor in ["Dell Inc.", "LENOVO", "System manufacturer", ""] {
            assert_eq!(VirtualMachine::from_texts(None, None, Some(vendor)), None);
        }
    }

    #[test]
    fn this_machine_has_some_cpus() {
        assert!(online_cpus() >= 1);
    }
}
