//! Fake GPUs behind the `GpuDevice`/`GpuDriver` traits, and runs of an `NvmlMeter` through
//! `PolledSource` and the real sampler, with the checks the NVML tests make on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_energy::clock;
use tracing_energy::power::nvml::{GpuDevice, GpuDriver, GpuSelection, NvmlMeter};
use tracing_energy::power::{
    Availability, Meter, PolledSource, PowerSample, SampleBuffer, Sampler, SamplerConfig,
    SamplerStatus,
};

/// How a fake GPU reports energy.
#[derive(Clone)]
pub enum Kind {
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
pub struct FakeGpu {
    pub index: u32,
    pub name: &'static str,
    pub uuid: String,
    pub kind: Kind,
    pub born_ns: u64,
    /// Once set, every call fails as a GPU that fell off the bus.
    pub lost: Arc<AtomicBool>,
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

pub struct FakeDriver {
    pub gpus: Vec<FakeGpu>,
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

pub const H100: &str = "NVIDIA H100 80GB HBM3";
pub const A100: &str = "NVIDIA A100-SXM4-40GB";
pub const P100: &str = "Tesla P100-PCIE-16GB";

pub fn counter(index: u32, name: &'static str, watts: f64) -> FakeGpu {
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

pub fn power_only(index: u32, name: &'static str, mw: u32) -> FakeGpu {
    FakeGpu {
        kind: Kind::Power { mw },
        ..counter(index, name, 0.0)
    }
}

pub fn meter(gpus: Vec<FakeGpu>, selection: GpuSelection) -> NvmlMeter {
    NvmlMeter::with_driver(Box::new(FakeDriver { gpus }), selection)
}

pub struct Run {
    pub samples: Vec<PowerSample>,
    pub tapped: usize,
    pub status: SamplerStatus,
    pub method: Option<String>,
    pub counter_update: Option<Duration>,
}

/// Runs `meter` through `PolledSource` and the sampler for `run_for`, into a private buffer
/// and a tap. `during` is called halfway.
pub fn run(meter: NvmlMeter, interval: Duration, run_for: Duration, during: impl FnOnce()) -> Run {
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
pub fn gpu_power(samples: &[PowerSample]) -> (f64, f64) {
    let mj: f64 = samples.iter().map(|s| s.energy.gpu.unwrap()).sum();
    let ns: u64 = samples.iter().map(|s| s.duration_ns()).sum();
    let mut each: Vec<f64> = samples
        .iter()
        .map(|s| s.power_mw(tracing_energy::power::Domain::Gpu).unwrap())
        .collect();
    each.sort_by(f64::total_cmp);
    (mj * 1e9 / ns as f64, each[each.len() / 2])
}

pub fn assert_within_1_percent(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 0.01 * want,
        "{what}: {got:.0} mW, want {want:.0} mW within 1 %"
    );
}

pub fn assert_measured_gpu_only(samples: &[PowerSample]) {
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

pub fn three() -> Vec<FakeGpu> {
    vec![
        counter(0, H100, 100.0),
        counter(1, A100, 200.0),
        counter(2, H100, 400.0),
    ]
}

pub fn available(m: &NvmlMeter) -> String {
    match m.is_available() {
        Availability::Available(text) => text,
        a => panic!("{a:?}"),
    }
}

pub fn unavailable(m: &NvmlMeter) -> (String, String) {
    match m.is_available() {
        Availability::Unavailable { reason, fix } => (reason, fix),
        a => panic!("{a:?}"),
    }
}

/// Runs `meter` at 100 ms windows for `run_for` and checks a stopped, measured, GPU-only
/// stream whose mean and median window power are `want_mw` within 1 %.
pub fn run_at_known_power(meter: NvmlMeter, run_for: Duration, want_mw: f64) -> Run {
    let r = run(meter, Duration::from_millis(100), run_for, || {});
    assert_eq!(r.status, SamplerStatus::Stopped);
    assert_measured_gpu_only(&r.samples);
    let (mean, median) = gpu_power(&r.samples);
    assert_within_1_percent(mean, want_mw, "mean");
    assert_within_1_percent(median, want_mw, "median window");
    r
}
