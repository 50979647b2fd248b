//! The NVML meter through the real sampler and `PolledSource`, on fake GPUs (this machine
//! has none), and the real driver's absence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_energy::clock;
use tracing_energy::power::nvml::{GpuDevice, GpuDriver, GpuSelection, NvmlMeter};
use tracing_energy::power::polled::update_period;
use tracing_energy::power::{
    Availability, Meter, PolledSource, PowerSample, SampleBuffer, Sampler, SamplerConfig,
    SamplerStatus,
};

/// How a fake GPU reports energy.
#[derive(Clone)]
enum Kind {
    /// An energy counter at `watts`, starting at `offset_mj` (energy since the driver was
    /// loaded) and advancing every `every` (continuously, to the mJ, when `None`).
    Counter {
        watts: f64,
        offset_mj: u64,
        every: Option<Duration>,
    },
    /// No energy counter (older than Volta): power only.
    Power { mw: u32 },
}

#[derive(Clone)]
struct FakeGpu {
    index: u32,
    name: &'static str,
    uuid: String,
    kind: Kind,
    born_ns: u64,
    /// Once set, every call fails as a GPU that fell off the bus.
    lost: Arc<AtomicBool>,
}

impl GpuDevice for FakeGpu {
    fn index(&self) -> u32 {
        self.index
    }
    fn name(&self) -> Option<String> {
        Some(self.name.to_string())
    }
    fn uuid(&self) -> Option<String> {
        Some(self.uuid.clone())
    }
    fn total_energy_mj(&mut self) -> Result<Option<u64>, String> {
        if self.lost.load(Ordering::SeqCst) {
            return Err("device fell off the bus or has otherwise become inacessible".into());
        }
        match &self.kind {
            Kind::Counter {
                watts,
                offset_mj,
                every,
            } => {
                let mut ns = clock::now_ns() - self.born_ns;
                if let Some(every) = every {
                    ns -= ns % every.as_nanos() as u64;
                }
                // W x ns / 1e6 = mJ
                Ok(Some(offset_mj + (watts * ns as f64 / 1e6) as u64))
            }
            Kind::Power { .. } => Ok(None),
        }
    }
    fn power_mw(&mut self) -> Result<u32, String> {
        if self.lost.load(Ordering::SeqCst) {
            return Err("device fell off the bus or has otherwise become inacessible".into());
        }
        Ok(match self.kind {
            Kind::Counter { watts, .. } => (watts * 1000.0) as u32,
            Kind::Power { mw } => mw,
        })
    }
}

struct FakeDriver {
    gpus: Vec<FakeGpu>,
}

impl GpuDriver for FakeDriver {
    fn gpu_count(&self) -> tracing_energy::Result<u32> {
        Ok(self.gpus.len() as u32)
    }
    fn open(&self, index: u32) -> Result<Box<dyn GpuDevice>, String> {
        match self.gpus.get(index as usize) {
            Some(g) => Ok(Box::new(g.clone())),
            None => Err("a supplied argument was invalid".into()),
        }
    }
}

const H100: &str = "NVIDIA H100 80GB HBM3";
const A100: &str = "NVIDIA A100-SXM4-40GB";
const P100: &str = "Tesla P100-PCIE-16GB";

fn counter(index: u32, name: &'static str, watts: f64) -> FakeGpu {
    FakeGpu {
        index,
        name,
        uuid: format!("GPU-{index}{index}{index}{index}abcd-0000"),
        kind: Kind::Counter {
            watts,
            offset_mj: 5_000_000 + u64::from(index),
            every: None,
        },
        born_ns: clock::now_ns(),
        lost: Arc::new(AtomicBool::new(false)),
    }
}

fn power_only(index: u32, name: &'static str, mw: u32) -> FakeGpu {
    FakeGpu {
        kind: Kind::Power { mw },
        ..counter(index, name, 0.0)
    }
}

fn meter(gpus: Vec<FakeGpu>, selection: GpuSelection) -> NvmlMeter {
    NvmlMeter::with_driver(Box::new(FakeDriver { gpus }), selection)
}

struct Run {
    samples: Vec<PowerSample>,
    tapped: usize,
    status: SamplerStatus,
    method: Option<String>,
    counter_update: Option<Duration>,
}

/// Runs `meter` through `PolledSource` and the sampler for `run_for`, into a private buffer
/// and a tap. `during` is called halfway.
fn run(meter: NvmlMeter, interval: Duration, run_for: Duration, during: impl FnOnce()) -> Run {
    let buffer = Arc::new(SampleBuffer::with_capacity(1000));
    let (tx, rx) = crossbeam_channel::unbounded();
    let sampler = Sampler::start(
        Box::new(PolledSource::new(vec![Box::new(meter)])),
        SamplerConfig::new(interval)
            .buffer(Arc::clone(&buffer))
            .tap(tx),
    )
    .unwrap();
    std::thread::sleep(run_for / 2);
    during();
    let deadline = Instant::now() + run_for / 2;
    while Instant::now() < deadline && sampler.status() == SamplerStatus::Running {
        std::thread::sleep(Duration::from_millis(10));
    }
    let method = sampler.method().map(String::from);
    let counter_update = sampler.counter_update();
    let report = sampler.stop();
    Run {
        samples: buffer.overlapping(0, u64::MAX / 2),
        tapped: rx.try_iter().count(),
        status: report.status,
        method,
        counter_update,
    }
}

/// Mean GPU power (mW) over all windows, and the median window's.
fn gpu_power(samples: &[PowerSample]) -> (f64, f64) {
    let mj: f64 = samples.iter().map(|s| s.energy.gpu.unwrap()).sum();
    let ns: u64 = samples.iter().map(|s| s.duration_ns()).sum();
    let mut each: Vec<f64> = samples
        .iter()
        .map(|s| s.power_mw(tracing_energy::power::Domain::Gpu).unwrap())
        .collect();
    each.sort_by(f64::total_cmp);
    (mj * 1e9 / ns as f64, each[each.len() / 2])
}

fn assert_within_1_percent(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 0.01 * want,
        "{what}: {got:.0} mW, want {want:.0} mW within 1 %"
    );
}

fn assert_measured_gpu_only(samples: &[PowerSample]) {
    assert!(samples.len() >= 4, "{} samples", samples.len());
    for (k, s) in samples.iter().enumerate() {
        assert_eq!(&*s.source, "nvml");
        assert!(!s.estimated);
        assert!(s.energy.gpu.is_some());
        assert_eq!(
            (s.energy.cpu, s.energy.ane, s.energy.dram),
            (None, None, None)
        );
        if k > 0 {
            assert_eq!(s.start_ns, samples[k - 1].end_ns, "windows back to back");
        }
    }
}

#[test]
fn an_energy_counter_gpu_gives_its_power() {
    let m = meter(vec![counter(0, H100, 300.0)], GpuSelection::all());
    assert_eq!(
        m.is_available(),
        Availability::Available(format!(
            "will read GPU 0 ({H100}, energy counter) [all GPUs]"
        ))
    );
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(900),
        || {},
    );
    assert_eq!(r.status, SamplerStatus::Stopped);
    assert_measured_gpu_only(&r.samples);
    assert_eq!(r.tapped, r.samples.len(), "the tap sees every sample");
    // The counter starts at 5,000,000 mJ (energy since the driver was loaded): windows hold
    // only what was used in them.
    let (mean, median) = gpu_power(&r.samples);
    assert_within_1_percent(mean, 300_000.0, "mean");
    assert_within_1_percent(median, 300_000.0, "median window");
    assert_eq!(
        r.method.as_deref(),
        Some("nvml: energy counter (nvmlDeviceGetTotalEnergyConsumption) on GPU 0")
    );
}

#[test]
fn a_power_only_gpu_is_integrated_over_time() {
    let m = meter(vec![power_only(0, P100, 75_000)], GpuSelection::all());
    assert_eq!(
        m.is_available(),
        Availability::Available(format!("will read GPU 0 ({P100}, power x time) [all GPUs]"))
    );
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(900),
        || {},
    );
    assert_eq!(r.status, SamplerStatus::Stopped);
    assert_measured_gpu_only(&r.samples);
    let (mean, median) = gpu_power(&r.samples);
    assert_within_1_percent(mean, 75_000.0, "mean");
    assert_within_1_percent(median, 75_000.0, "median window");
    let method = r.method.unwrap();
    assert!(
        method.starts_with("nvml: power x time (nvmlDeviceGetPowerUsage")
            && method.contains("on GPU 0: no energy counter")
            && method.contains("Volta"),
        "{method}"
    );
}

#[test]
fn two_gpus_are_summed() {
    let m = meter(
        vec![counter(0, H100, 300.0), power_only(1, P100, 100_000)],
        GpuSelection::all(),
    );
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(900),
        || {},
    );
    assert_eq!(r.status, SamplerStatus::Stopped);
    assert_measured_gpu_only(&r.samples);
    let (mean, median) = gpu_power(&r.samples);
    assert_within_1_percent(mean, 400_000.0, "mean");
    assert_within_1_percent(median, 400_000.0, "median window");
    let method = r.method.unwrap();
    assert!(
        method.contains("energy counter (nvmlDeviceGetTotalEnergyConsumption) on GPU 0;")
            && method.contains("power x time (nvmlDeviceGetPowerUsage")
            && method.contains("on GPU 1:"),
        "{method}"
    );
}

fn three() -> Vec<FakeGpu> {
    vec![
        counter(0, H100, 100.0),
        counter(1, A100, 200.0),
        counter(2, H100, 400.0),
    ]
}

fn available(m: &NvmlMeter) -> String {
    match m.is_available() {
        Availability::Available(text) => text,
        a => panic!("{a:?}"),
    }
}

fn unavailable(m: &NvmlMeter) -> (String, String) {
    match m.is_available() {
        Availability::Unavailable { reason, fix } => (reason, fix),
        a => panic!("{a:?}"),
    }
}

#[test]
fn gpus_are_chosen_by_cuda_visible_devices_or_an_explicit_list_which_wins() {
    let cuda = |value, order| GpuSelection::resolve_with(None, Some(value), order).unwrap();
    // CUDA_VISIBLE_DEVICES, in CUDA's PCI bus order: the GPUs it names, in its order.
    let text = available(&meter(three(), cuda("2,0", Some("PCI_BUS_ID"))));
    assert_eq!(
        text,
        format!(
            "will read GPU 2 ({H100}, energy counter), GPU 0 ({H100}, energy counter) \
             [CUDA_VISIBLE_DEVICES=2,0]"
        )
    );
    // By UUID prefix.
    let text = available(&meter(three(), cuda("GPU-1111", None)));
    assert!(
        text.starts_with(&format!("will read GPU 1 ({A100}")),
        "{text}"
    );
    // CUDA's default order (fastest first) is not NVML's on GPUs of different models.
    let (reason, fix) = unavailable(&meter(three(), cuda("1", None)));
    assert!(reason.contains("fastest first"), "{reason}");
    assert!(fix.contains("CUDA_DEVICE_ORDER=PCI_BUS_ID"), "{fix}");
    // CUDA_VISIBLE_DEVICES that hides every GPU.
    let (reason, _) = unavailable(&meter(three(), cuda("-1", None)));
    assert!(reason.contains("leaves no GPU visible"), "{reason}");

    // An explicit list wins over the environment; its energy is the sum of its GPUs.
    let chosen = GpuSelection::resolve_with(Some("0,2"), Some("1"), Some("PCI_BUS_ID")).unwrap();
    let m = meter(three(), chosen);
    let text = available(&m);
    assert!(
        text.contains("GPU 0 (") && text.contains("GPU 2 (") && !text.contains("GPU 1 ("),
        "{text}"
    );
    assert!(text.ends_with("[--gpus 0,2]"), "{text}");
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(700),
        || {},
    );
    assert_measured_gpu_only(&r.samples);
    assert_within_1_percent(gpu_power(&r.samples).0, 500_000.0, "GPU 0 + GPU 2");
    assert!(
        r.method.as_deref().unwrap().ends_with("on GPU 0, 2"),
        "{:?}",
        r.method
    );
}

#[test]
fn a_gpu_that_does_not_exist_is_refused_with_the_gpus_found() {
    let m = meter(three(), GpuSelection::parse("0,5").unwrap());
    let (reason, fix) = unavailable(&m);
    assert!(
        reason.starts_with("--gpus 0,5 names GPU 5, and the driver reports 3 GPUs:"),
        "{reason}"
    );
    for found in [
        format!("GPU 0 ({H100}) [GPU-0000abcd-0000]"),
        format!("GPU 1 ({A100}) [GPU-1111abcd-0000]"),
        format!("GPU 2 ({H100}) [GPU-2222abcd-0000]"),
    ] {
        assert!(reason.contains(&found), "{found} in {reason}");
    }
    assert!(fix.contains("choose among those"), "{fix}");
    // Reading it says the same, as an error.
    let mut m = m;
    let e = m.read().unwrap_err().to_string();
    assert!(e.contains("names GPU 5") && e.contains("Fix:"), "{e}");
    // And the sampler refuses to start.
    let e = Sampler::start(
        Box::new(PolledSource::new(vec![Box::new(meter(
            three(),
            GpuSelection::parse("7").unwrap(),
        ))])),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::new(SampleBuffer::new())),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("power source `nvml` is not available") && e.contains("names GPU 7"),
        "{e}"
    );
}

#[test]
fn a_gpu_failing_mid_run_fails_the_source_and_keeps_the_samples() {
    let gpus = vec![counter(0, H100, 300.0), counter(1, A100, 250.0)];
    let lost = Arc::clone(&gpus[1].lost);
    let r = run(
        meter(gpus, GpuSelection::all()),
        Duration::from_millis(50),
        Duration::from_millis(1000),
        || lost.store(true, Ordering::SeqCst),
    );
    let SamplerStatus::Failed(reason) = &r.status else {
        panic!("expected a failure, got {:?}", r.status)
    };
    assert!(
        reason.contains(&format!(
            "GPU 1 ({A100}): nvmlDeviceGetTotalEnergyConsumption failed: device fell off the bus"
        )) && reason.contains("Fix: check the GPU with `nvidia-smi -i 1`"),
        "{reason}"
    );
    // The windows before the failure are kept, and they were right.
    assert_measured_gpu_only(&r.samples);
    assert_within_1_percent(gpu_power(&r.samples).0, 550_000.0, "before the failure");
}

#[test]
fn the_update_period_of_the_counter_is_measured() {
    let slow = FakeGpu {
        kind: Kind::Counter {
            watts: 300.0,
            offset_mj: 123,
            every: Some(Duration::from_millis(50)),
        },
        ..counter(0, H100, 0.0)
    };
    let mut m = meter(vec![slow.clone()], GpuSelection::all());
    let p = update_period(&mut m, Duration::from_millis(600))
        .unwrap()
        .expect("the counter changed");
    assert!(
        p >= Duration::from_millis(45) && p <= Duration::from_millis(60),
        "{p:?}"
    );
    // The sampler measures it too, and samples at that period rather than the 10 ms asked
    // (on a fixed grid: a late wake-up lengthens one window and shortens the next).
    let r = run(
        meter(vec![slow], GpuSelection::all()),
        Duration::from_millis(10),
        Duration::from_millis(600),
        || {},
    );
    let p = r.counter_update.expect("measured");
    assert!(
        p >= Duration::from_millis(45) && p <= Duration::from_millis(60),
        "{p:?}"
    );
    assert!(r.samples.len() >= 3, "{}", r.samples.len());
    let lengths: Vec<u64> = r.samples.iter().map(|s| s.duration_ns()).collect();
    let mean = lengths.iter().sum::<u64>() / lengths.len() as u64;
    assert!(
        (45_000_000..=60_000_000).contains(&mean),
        "mean window {mean} ns: {lengths:?}"
    );
}

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
    let r = run(
        m,
        Duration::from_millis(100),
        Duration::from_millis(700),
        || {},
    );
    assert_eq!(r.status, SamplerStatus::Stopped);
    assert_measured_gpu_only(&r.samples);
    let (mean, median) = gpu_power(&r.samples);
    assert_within_1_percent(mean, 400_000.0, "mean");
    assert_within_1_percent(median, 400_000.0, "median window");
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
