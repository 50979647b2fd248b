//! On Linux, the real NVML driver (`NvmlMeter::new`, through `nvml-wrapper`): its absence
//! on a machine without the NVIDIA driver, and its readings over a stub libnvidia-ml
//! compiled with `cc`, through the sampler (`common::gpu`) and the CLI
//! (`sample --source rapl+nvml`).

mod common;

#[cfg(target_os = "linux")]
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
use common::gpu::{available, run_at_known_power, unavailable};
#[cfg(target_os = "linux")]
use tracing_energy::power::nvml::{GpuSelection, NvmlMeter};
#[cfg(target_os = "linux")]
use tracing_energy::power::{
    Availability, Meter, PolledSource, SampleBuffer, Sampler, SamplerConfig,
};

#[cfg(target_os = "linux")]
/// Whether the dynamic loader finds and loads `name`, asked directly (not through NVML).
fn library_loads(name: &str) -> bool {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: dlopen with a valid C string; the handle is closed at once.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
        true
    }
}

#[cfg(target_os = "linux")]
#[test]
fn without_the_nvidia_driver_nvml_is_unavailable_with_the_fix() {
    let mut m = NvmlMeter::new(GpuSelection::all());
    let (reason, fix) = match m.is_available() {
        Availability::Available(what) => {
            eprintln!(
                "!! SKIPPED: this machine has a working NVIDIA driver ({what}); the message for \
                 a machine without one cannot be checked here"
            );
            return;
        }
        Availability::Unavailable { reason, fix } => (reason, fix),
    };
    assert!(fix.ends_with("or use --source rapl / estimate"), "{fix}");
    if library_loads("libnvidia-ml.so.1") {
        eprintln!(
            "!! NOTE: libnvidia-ml.so.1 loads here but NVML did not start, so only the general \
             form of the message is checked: {reason}. Fix: {fix}"
        );
    } else {
        assert!(
            reason.starts_with(
                "the NVIDIA driver library libnvidia-ml.so.1 cannot be loaded (libnvidia-ml.so.1:"
            ),
            "{reason}"
        );
        assert!(fix.starts_with("install the NVIDIA driver"), "{fix}");
    }
    // Reading fails the same way (never a 0), and so does starting a sampler.
    let e = m.read().unwrap_err().to_string();
    assert!(e.contains(&reason) && e.contains("Fix:"), "{e}");
    assert!(m.method().contains(&reason), "{}", m.method());
    let e = Sampler::start(
        Box::new(PolledSource::new(vec![Box::new(NvmlMeter::new(
            GpuSelection::parse("0").unwrap(),
        ))])),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::new(SampleBuffer::new())),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with("power source `nvml` is not available: ") && e.contains("Fix: "),
        "{e}"
    );
}

/// A stand-in for the NVIDIA driver's `libnvidia-ml.so.1`, with the NVML functions the meter
/// uses: GPU 0 an H100 whose energy counter starts at 1,000,000 mJ and advances at 300 W,
/// GPU 1 a P100 without the counter (NVML_ERROR_NOT_SUPPORTED = 3) drawing 100 W.
#[cfg(target_os = "linux")]
const STUB_NVML: &str = r#"
#include <string.h>
#include <time.h>
struct dev { int index; };
typedef struct dev *nvmlDevice_t;
static struct dev devs[2] = {{0}, {1}};
static double t0 = -1;
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
int nvmlInit_v2(void) { if (t0 < 0) t0 = now_s(); return 0; }
int nvmlShutdown(void) { return 0; }
int nvmlSystemGetDriverVersion(char *v, unsigned n) { strncpy(v, "550.54.15", n); return 0; }
int nvmlDeviceGetCount_v2(unsigned *c) { *c = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d) {
    if (i >= 2) return 2;
    *d = &devs[i];
    return 0;
}
int nvmlDeviceGetName(nvmlDevice_t d, char *s, unsigned n) {
    strncpy(s, d->index == 0 ? "NVIDIA H100 80GB HBM3" : "Tesla P100-PCIE-16GB", n);
    return 0;
}
int nvmlDeviceGetUUID(nvmlDevice_t d, char *s, unsigned n) {
    strncpy(s, d->index == 0 ? "GPU-00000000-aaaa-h100" : "GPU-11111111-bbbb-p100", n);
    return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *e) {
    if (d->index == 1) return 3;
    *e = 1000000ULL + (unsigned long long)(300.0 * 1000.0 * (now_s() - t0));
    return 0;
}
int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *p) {
    *p = d->index == 0 ? 300000 : 100000;
    return 0;
}
"#;

#[cfg(target_os = "linux")]
const STUB_CHILD: &str = "TRACING_ENERGY_TEST_NVML_STUB_CHILD";

/// The real driver (`NvmlMeter::new`, through `nvml-wrapper`) over the stub library: this
/// test compiles the stub, then runs itself again in a process that loads it (the library
/// search path is read when a process starts).
#[cfg(target_os = "linux")]
#[test]
fn the_real_driver_reads_libnvidia_ml() {
    if std::env::var_os(STUB_CHILD).is_some() {
        return real_driver_over_the_stub();
    }
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("stub_nvml.c");
    std::fs::write(&c, STUB_NVML).unwrap();
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = std::process::Command::new(&compiler)
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.path().join("libnvidia-ml.so.1"))
        .arg(&c)
        .status();
    match built {
        Ok(s) if s.success() => {}
        other => {
            eprintln!(
                "!! SKIPPED: no C compiler (`{compiler}`: {other:?}) to build the stub \
                 libnvidia-ml.so.1; the real driver was not exercised"
            );
            return;
        }
    }
    // The stub first, then whatever the test runner had there.
    let mut library_path = dir.path().as_os_str().to_owned();
    if let Some(was) = std::env::var_os("LD_LIBRARY_PATH") {
        library_path.push(":");
        library_path.push(was);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "the_real_driver_reads_libnvidia_ml",
            "--exact",
            "--nocapture",
        ])
        .env(STUB_CHILD, "1")
        .env("LD_LIBRARY_PATH", library_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the child failed:\n{text}"
    );
}

#[cfg(target_os = "linux")]
fn real_driver_over_the_stub() {
    let h100 = "GPU 0 (NVIDIA H100 80GB HBM3, energy counter)";
    let p100 = "GPU 1 (Tesla P100-PCIE-16GB, power x time)";
    let m = NvmlMeter::new(GpuSelection::all());
    assert_eq!(
        available(&m),
        format!("will read {h100}, {p100} [all GPUs]")
    );
    let r = run_at_known_power(m, Duration::from_millis(700), 400_000.0);
    let method = r.method.unwrap();
    assert!(
        method.starts_with(
            "nvml: energy counter (nvmlDeviceGetTotalEnergyConsumption) on GPU 0; power x time"
        ) && method.contains("on GPU 1: no energy counter"),
        "{method}"
    );
    // By UUID prefix, and a GPU that does not exist.
    let one = NvmlMeter::new(GpuSelection::parse("GPU-1111").unwrap());
    assert_eq!(
        available(&one),
        format!("will read {p100} [--gpus GPU-1111]")
    );
    rapl_and_nvml_in_one_stream_from_the_cli();
    let (reason, _) = unavailable(&NvmlMeter::new(GpuSelection::parse("3").unwrap()));
    assert!(
        reason.contains(
            "the driver reports 2 GPUs: GPU 0 (NVIDIA H100 80GB HBM3) [GPU-00000000-aaaa-h100], \
             GPU 1 (Tesla P100-PCIE-16GB) [GPU-11111111-bbbb-p100]"
        ),
        "{reason}"
    );
}

/// `sample --source rapl+nvml` through the real binary: one stream whose windows carry
/// `cpu` and `dram` (a powercap tree whose counters stand still: 0 W, measured) and `gpu`
/// (the stub driver's 400 W; 100 W with `--gpus 1`).
#[cfg(target_os = "linux")]
fn rapl_and_nvml_in_one_stream_from_the_cli() {
    let tree = tempfile::tempdir().unwrap();
    for (dir, name) in [
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0/intel-rapl:0:0", "dram"),
    ] {
        let d = tree.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(d.join("energy_uj"), "5000000\n").unwrap();
        std::fs::write(d.join("max_energy_range_uj"), "262143328850\n").unwrap();
    }
    for (gpus, watts) in [(None, 400.0), (Some("1"), 100.0)] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tracing-energy"));
        c.args(["sample", "--source", "rapl+nvml", "--format", "jsonl"])
            .args(["--count", "3", "--interval-ms", "100"])
            .env("TRACING_ENERGY_POWERCAP", tree.path());
        if let Some(g) = gpus {
            c.args(["--gpus", g]);
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        for v in &lines {
            assert_eq!(v["source"], "rapl+nvml", "{v}");
            assert_eq!(v["estimated"], false, "{v}");
            assert_eq!(v["cpu_mw"].as_f64(), Some(0.0), "{v}");
            assert_eq!(v["dram_mw"].as_f64(), Some(0.0), "{v}");
            assert!(v["ane_mw"].is_null(), "{v}");
            let gpu_w = v["gpu_mw"].as_f64().unwrap() / 1000.0;
            assert!(
                (gpu_w - watts).abs() < 0.05 * watts,
                "{gpus:?}: {gpu_w} W: {v}"
            );
        }
    }
}
