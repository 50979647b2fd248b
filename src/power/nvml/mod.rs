//! The NVML source (NVIDIA GPUs): GPU energy from the driver.
//!
//! An [`NvmlMeter`] is a [`Meter`] for [`super::PolledSource`]: its `gpu` domain is the
//! energy of the selected GPUs ([`GpuSelection`]) summed, in mJ since the meter's first
//! read. Per GPU it uses
//!
//! - the energy counter, `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver was
//!   loaded; Volta and newer): the differences of its readings. It updates every ~20-100 ms,
//!   which [`super::polled::update_period`] measures so that windows are no shorter;
//! - where a GPU has no counter (older than Volta, or where NVML says not supported), its
//!   power, `nvmlDeviceGetPowerUsage` (mW), integrated over the time between reads by the
//!   trapezoid rule on the monotonic clock ([`crate::clock::now_ns`]). Power is sampled
//!   only at the reads, so that energy is an approximation of the counter's; the run's
//!   method says which GPUs it concerns.
//!
//! The driver is behind two small traits, [`GpuDriver`] and [`GpuDevice`], so that the logic
//! can be tested without a GPU; [`NvmlDriver`] is the real one. `nvml-wrapper` loads
//! `libnvidia-ml.so.1` at run time: the crate builds and runs without NVIDIA's software,
//! and the source is then unavailable with the fix.

mod driver;
mod selection;

use parking_lot::Mutex;

use super::{Availability, DomainEnergy, Meter};
use crate::{clock, Error, Result};

pub use driver::NvmlDriver;
pub use selection::{GpuId, GpuSelection};

/// One GPU, as the meter reads it. Errors are the driver's words; the meter adds the GPU
/// and the call.
pub trait GpuDevice: Send {
    /// The driver's index of the GPU (NVML: the numbering of `nvidia-smi -L`).
    fn index(&self) -> u32;

    /// The product name (`NVIDIA H100 80GB HBM3`), where the driver says it.
    fn name(&self) -> Option<String>;

    /// The UUID (`GPU-8932f937-...`), where the driver says it.
    fn uuid(&self) -> Option<String>;

    /// The energy counter: mJ since the driver was loaded
    /// (`nvmlDeviceGetTotalEnergyConsumption`, Volta and newer). `Ok(None)` when the GPU
    /// has none (the meter then integrates [`GpuDevice::power_mw`]).
    fn total_energy_mj(&mut self) -> std::result::Result<Option<u64>, String>;

    /// The power draw now, mW (`nvmlDeviceGetPowerUsage`).
    fn power_mw(&mut self) -> std::result::Result<u32, String>;
}

/// The GPUs of a machine. [`GpuSelection::open`] opens those a selection names.
pub trait GpuDriver: Send {
    /// How many GPUs the driver reports. An error is [`Error::SourceUnavailable`] with the
    /// fix (e.g. the driver library cannot be loaded).
    fn gpu_count(&self) -> Result<u32>;

    /// Opens the GPU with this index (`0..gpu_count()`). The error is the driver's words.
    fn open(&self, index: u32) -> std::result::Result<Box<dyn GpuDevice>, String>;
}

/// `GPU 0 (NVIDIA H100 80GB HBM3)`, or `GPU 0` where the name is not known.
fn label(d: &dyn GpuDevice) -> String {
    match d.name() {
        Some(name) => format!("GPU {} ({name})", d.index()),
        None => format!("GPU {}", d.index()),
    }
}

fn unavailable(reason: String, fix: String) -> Error {
    Error::SourceUnavailable {
        source_name: "nvml".into(),
        reason,
        fix,
    }
}

const ENERGY_CALL: &str = "nvmlDeviceGetTotalEnergyConsumption";
const POWER_CALL: &str = "nvmlDeviceGetPowerUsage";

/// How one GPU is measured, and what is needed for its next reading.
enum Reading {
    /// The energy counter; its last value.
    Counter { last: Option<u64> },
    /// Power x time; the last power (mW) and when it was read (ns).
    Power { last: Option<(u64, u32)> },
}

/// One selected GPU and its energy so far.
struct Gpu {
    device: Box<dyn GpuDevice>,
    reading: Reading,
    /// mJ since the meter's first read.
    energy_mj: f64,
}

impl Gpu {
    /// Finds how the GPU can be measured: its counter, else its power.
    fn probe(mut device: Box<dyn GpuDevice>) -> Result<Gpu> {
        let reading = match device.total_energy_mj() {
            Ok(Some(_)) => Reading::Counter { last: None },
            Ok(None) => match device.power_mw() {
                Ok(_) => Reading::Power { last: None },
                Err(e) => {
                    return Err(unavailable(
                        format!(
                            "{} has no energy counter ({ENERGY_CALL} is not supported) and its \
                             power cannot be read ({POWER_CALL}: {e})",
                            label(device.as_ref())
                        ),
                        format!(
                            "leave it out with --gpus (`nvidia-smi -L` lists the GPUs), or \
                             check `nvidia-smi -q -d POWER -i {}`",
                            device.index()
                        ),
                    ))
                }
            },
            Err(e) => {
                return Err(unavailable(
                    format!("{}: {ENERGY_CALL} failed: {e}", label(device.as_ref())),
                    format!(
                        "check the GPU with `nvidia-smi -i {}`, or leave it out with --gpus",
                        device.index()
                    ),
                ))
            }
        };
        Ok(Gpu {
            device,
            reading,
            energy_mj: 0.0,
        })
    }

    /// Reads the GPU and returns its energy (mJ) since the meter's first read. `now` is
    /// the monotonic clock (ns).
    fn advance(&mut self, now: &mut dyn FnMut() -> u64) -> Result<f64> {
        let failed = |device: &dyn GpuDevice, call: &str, what: String| Error::SourceFailed {
            source_name: "nvml".into(),
            reason: format!(
                "{}: {call} {what}. Fix: check the GPU with `nvidia-smi -i {}`; the samples \
                 taken before are kept",
                label(device),
                device.index()
            ),
        };
        match &mut self.reading {
            Reading::Counter { last } => {
                let raw = match self.device.total_energy_mj() {
                    Ok(Some(raw)) => raw,
                    Ok(None) => {
                        return Err(failed(
                            self.device.as_ref(),
                            ENERGY_CALL,
                            "stopped working (not supported any more)".into(),
                        ))
                    }
                    Err(e) => {
                        return Err(failed(
                            self.device.as_ref(),
                            ENERGY_CALL,
                            format!("failed: {e}"),
                        ))
                    }
                };
                if let Some(prev) = *last {
                    if raw < prev {
                        return Err(failed(
                            self.device.as_ref(),
                            ENERGY_CALL,
                            format!(
                                "went backwards, from {prev} to {raw} mJ (was the driver \
                                 reloaded?)"
                            ),
                        ));
                    }
                    self.energy_mj += (raw - prev) as f64;
                }
                *last = Some(raw);
            }
            Reading::Power { last } => {
                let before = now();
                let mw = self.device.power_mw().map_err(|e| {
                    failed(self.device.as_ref(), POWER_CALL, format!("failed: {e}"))
                })?;
                let after = now();
                // The reading's instant: the middle of the call.
                let t = before + after.saturating_sub(before) / 2;
                if let Some((t0, mw0)) = *last {
                    // Trapezoid: mean of the two powers (mW) x seconds = mJ.
                    let dt_s = t.saturating_sub(t0) as f64 / 1e9;
                    self.energy_mj += (f64::from(mw0) + f64::from(mw)) / 2.0 * dt_s;
                }
                *last = Some((t, mw));
            }
        }
        Ok(self.energy_mj)
    }

    fn what(&self) -> &'static str {
        match self.reading {
            Reading::Counter { .. } => "energy counter",
            Reading::Power { .. } => "power x time",
        }
    }
}

/// NVIDIA GPUs through NVML, as a [`Meter`]: the `gpu` domain is the selected GPUs' energy
/// summed (see the module docs for how each GPU is read).
///
/// ```no_run
/// use tracing_energy::power::nvml::{GpuSelection, NvmlMeter};
/// use tracing_energy::power::{Meter, PolledSource};
///
/// let meter = NvmlMeter::new(GpuSelection::resolve(Some("0,2"))?);
/// println!("{:?}", meter.is_available());
/// let source = PolledSource::new(vec![Box::new(meter)]);
/// # Ok::<(), tracing_energy::Error>(())
/// ```
pub struct NvmlMeter {
    driver: Box<dyn GpuDriver>,
    selection: GpuSelection,
    /// The selected GPUs, opened and probed on first use.
    gpus: Mutex<Option<Vec<Gpu>>>,
}

impl NvmlMeter {
    /// Reads the `selection` of this machine's GPUs through NVML. Nothing is loaded until
    /// the meter is checked or read.
    pub fn new(selection: GpuSelection) -> NvmlMeter {
        NvmlMeter::with_driver(Box::new(NvmlDriver::new()), selection)
    }

    /// Reads the `selection` of `driver`'s GPUs (tests give a fake driver).
    pub fn with_driver(driver: Box<dyn GpuDriver>, selection: GpuSelection) -> NvmlMeter {
        NvmlMeter {
            driver,
            selection,
            gpus: Mutex::new(None),
        }
    }

    /// The GPUs it reads.
    pub fn selection(&self) -> &GpuSelection {
        &self.selection
    }

    /// Opens and probes the selected GPUs, once.
    fn open<'a>(
        driver: &dyn GpuDriver,
        selection: &GpuSelection,
        gpus: &'a mut Option<Vec<Gpu>>,
    ) -> Result<&'a mut Vec<Gpu>> {
        if gpus.is_none() {
            let opened = selection
                .open(driver)?
                .into_iter()
                .map(Gpu::probe)
                .collect::<Result<Vec<_>>>()?;
            *gpus = Some(opened);
        }
        Ok(gpus.as_mut().expect("opened above"))
    }

    fn read_with(&mut self, now: &mut dyn FnMut() -> u64) -> Result<DomainEnergy> {
        let gpus = NvmlMeter::open(self.driver.as_ref(), &self.selection, self.gpus.get_mut())?;
        let mut sum = 0.0;
        for gpu in gpus.iter_mut() {
            sum += gpu.advance(now)?;
        }
        Ok(DomainEnergy {
            gpu: Some(sum),
            ..Default::default()
        })
    }
}

fn indices(gpus: &[&Gpu]) -> String {
    gpus.iter()
        .map(|g| g.device.index().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Meter for NvmlMeter {
    fn name(&self) -> String {
        "nvml".into()
    }

    fn is_available(&self) -> Availability {
        let mut slot = self.gpus.lock();
        match NvmlMeter::open(self.driver.as_ref(), &self.selection, &mut slot) {
            Ok(gpus) => Availability::Available(format!(
                "will read {} [{}]",
                gpus.iter()
                    .map(|g| match g.device.name() {
                        Some(name) => format!("GPU {} ({name}, {})", g.device.index(), g.what()),
                        None => format!("GPU {} ({})", g.device.index(), g.what()),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                self.selection.describe()
            )),
            Err(Error::SourceUnavailable { reason, fix, .. }) => {
                Availability::Unavailable { reason, fix }
            }
            Err(other) => Availability::Unavailable {
                reason: other.to_string(),
                fix: "check the driver with `nvidia-smi`".into(),
            },
        }
    }

    fn read(&mut self) -> Result<DomainEnergy> {
        self.read_with(&mut clock::now_ns)
    }

    /// Each counter GPU's raw energy counter; `None` for a GPU read as power x time, whose
    /// integrated energy changes at every read and says nothing of an update period.
    fn counters(&mut self) -> Result<Vec<Option<f64>>> {
        let gpus = NvmlMeter::open(self.driver.as_ref(), &self.selection, self.gpus.get_mut())?;
        gpus.iter_mut()
            .map(|g| match g.reading {
                Reading::Counter { .. } => match g.device.total_energy_mj() {
                    Ok(v) => Ok(v.map(|mj| mj as f64)),
                    Err(e) => Err(Error::SourceFailed {
                        source_name: "nvml".into(),
                        reason: format!("{}: {ENERGY_CALL} failed: {e}", label(g.device.as_ref())),
                    }),
                },
                Reading::Power { .. } => Ok(None),
            })
            .collect()
    }

    fn method(&self) -> String {
        let mut slot = self.gpus.lock();
        let gpus = match NvmlMeter::open(self.driver.as_ref(), &self.selection, &mut slot) {
            Ok(gpus) => gpus,
            Err(e) => return format!("none: {e}"),
        };
        let counter: Vec<&Gpu> = gpus
            .iter()
            .filter(|g| matches!(g.reading, Reading::Counter { .. }))
            .collect();
        let power: Vec<&Gpu> = gpus
            .iter()
            .filter(|g| matches!(g.reading, Reading::Power { .. }))
            .collect();
        let mut parts = Vec::new();
        if !counter.is_empty() {
            parts.push(format!(
                "energy counter ({ENERGY_CALL}) on GPU {}",
                indices(&counter)
            ));
        }
        if !power.is_empty() {
            parts.push(format!(
                "power x time ({POWER_CALL}, trapezoid between reads) on GPU {}: no energy \
                 counter ({ENERGY_CALL} not supported; it needs Volta or newer)",
                indices(&power)
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A GPU whose readings the test sets.
    struct Scripted {
        index: u32,
        counter: Option<Arc<AtomicU64>>,
        power: Arc<AtomicU64>,
    }

    impl GpuDevice for Scripted {
        fn index(&self) -> u32 {
            self.index
        }
        fn name(&self) -> Option<String> {
            None
        }
        fn uuid(&self) -> Option<String> {
            None
        }
        fn total_energy_mj(&mut self) -> std::result::Result<Option<u64>, String> {
            Ok(self.counter.as_ref().map(|c| c.load(Ordering::SeqCst)))
        }
        fn power_mw(&mut self) -> std::result::Result<u32, String> {
            match self.power.load(Ordering::SeqCst) {
                u64::MAX => Err("no power sensor".into()),
                p => Ok(p as u32),
            }
        }
    }

    struct OneGpu(Mutex<Option<Scripted>>);

    impl GpuDriver for OneGpu {
        fn gpu_count(&self) -> Result<u32> {
            Ok(1)
        }
        fn open(&self, _: u32) -> std::result::Result<Box<dyn GpuDevice>, String> {
            Ok(Box::new(self.0.lock().take().expect("opened once")))
        }
    }

    fn meter(counter: Option<Arc<AtomicU64>>, power: Arc<AtomicU64>) -> NvmlMeter {
        NvmlMeter::with_driver(
            Box::new(OneGpu(Mutex::new(Some(Scripted {
                index: 0,
                counter,
                power,
            })))),
            GpuSelection::all(),
        )
    }

    #[test]
    fn power_is_integrated_by_the_trapezoid_rule_on_the_given_clock() {
        let power = Arc::new(AtomicU64::new(100_000));
        let mut m = meter(None, Arc::clone(&power));
        // Each read takes the clock before and after the call: here both give `ns`.
        let clock_at = |ns: u64, m: &mut NvmlMeter| {
            let mut now = || ns;
            m.read_with(&mut now).unwrap().gpu.unwrap()
        };
        assert_eq!(
            clock_at(1_000_000_000, &mut m),
            0.0,
            "the first read is the origin"
        );
        // 100 W -> 300 W over 2 s: (100 + 300) / 2 W x 2 s = 400 J.
        power.store(300_000, Ordering::SeqCst);
        assert!((clock_at(3_000_000_000, &mut m) - 400_000.0).abs() < 1e-6);
        // 300 W for 0.5 s more: + 150 J, cumulative.
        assert!((clock_at(3_500_000_000, &mut m) - 550_000.0).abs() < 1e-6);
        assert!(
            m.method().contains("power x time (nvmlDeviceGetPowerUsage"),
            "{}",
            m.method()
        );
    }

    #[test]
    fn the_counter_is_read_from_its_first_value_and_may_not_go_back() {
        let counter = Arc::new(AtomicU64::new(7_000_000));
        let mut m = meter(Some(Arc::clone(&counter)), Arc::new(AtomicU64::new(0)));
        assert!(m.is_available().is_available());
        assert_eq!(m.read().unwrap().gpu, Some(0.0));
        counter.store(7_001_500, Ordering::SeqCst);
        let e = m.read().unwrap();
        assert_eq!((e.gpu, e.cpu, e.dram), (Some(1500.0), None, None));
        counter.store(10, Ordering::SeqCst);
        let err = m.read().unwrap_err().to_string();
        assert!(
            err.contains("GPU 0: nvmlDeviceGetTotalEnergyConsumption went backwards")
                && err.contains("Fix:"),
            "{err}"
        );
    }

    #[test]
    fn a_gpu_with_neither_counter_nor_power_is_unavailable_with_the_fix() {
        let m = meter(None, Arc::new(AtomicU64::new(u64::MAX)));
        match m.is_available() {
            Availability::Unavailable { reason, fix } => {
                assert!(
                    reason.contains("GPU 0 has no energy counter")
                        && reason.contains("no power sensor"),
                    "{reason}"
                );
                assert!(fix.contains("--gpus"), "{fix}");
            }
            a => panic!("{a:?}"),
        }
    }
}
