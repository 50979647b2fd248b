//! The real driver: NVIDIA's NVML through `nvml-wrapper`, which loads `libnvidia-ml.so.1`
//! when first used, so that nothing of NVIDIA's is needed to build.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use once_cell::sync::OnceCell;

use super::{unavailable, GpuDevice, GpuDriver};
use crate::Result;

/// Why NVML could not start, and the fix.
struct InitFailure {
    reason: String,
    fix: String,
}

/// NVML, started once per process (as NVIDIA recommends; starting loads the library and
/// resolves its symbols) and never shut down. A failure is kept too: the library does not
/// appear while the process runs.
static NVML: OnceCell<std::result::Result<Nvml, InitFailure>> = OnceCell::new();

const OTHER_SOURCES: &str = "or use --source rapl / estimate";

/// The library `nvml-wrapper` loads.
const LIBRARY: &str = if cfg!(windows) {
    "nvml.dll"
} else {
    "libnvidia-ml.so.1"
};

fn init_failure(e: NvmlError) -> InitFailure {
    let (reason, fix) = match e {
        NvmlError::LibloadingError(e) => (
            format!("the NVIDIA driver library {LIBRARY} cannot be loaded ({e})"),
            format!(
                "install the NVIDIA driver (it provides {LIBRARY}; `nvidia-smi` \
                 works once it is installed; in a container, run it with the NVIDIA container \
                 toolkit, e.g. `docker run --gpus all`), {OTHER_SOURCES}"
            ),
        ),
        NvmlError::FailedToLoadSymbol(s) => (
            format!("{LIBRARY} is too old: it lacks a function NVML needs ({s})"),
            format!("update the NVIDIA driver, {OTHER_SOURCES}"),
        ),
        NvmlError::DriverNotLoaded => (
            format!("{LIBRARY} is installed, but the NVIDIA kernel driver is not loaded"),
            format!(
                "load it (`sudo modprobe nvidia`, or reboot after installing the driver; \
                 `nvidia-smi` says what is wrong), {OTHER_SOURCES}"
            ),
        ),
        NvmlError::NoPermission => (
            "NVML may not talk to the NVIDIA driver (no permission)".into(),
            format!(
                "run as a user who may open /dev/nvidia* (check with `nvidia-smi`), \
                 {OTHER_SOURCES}"
            ),
        ),
        NvmlError::LibRmVersionMismatch => (
            format!("{LIBRARY} and the loaded NVIDIA kernel driver are of different versions"),
            format!(
                "reboot (or reload the nvidia module) after the driver update, \
                 {OTHER_SOURCES}"
            ),
        ),
        other => (
            format!("NVML could not start ({other})"),
            format!("check the driver with `nvidia-smi`, {OTHER_SOURCES}"),
        ),
    };
    InitFailure { reason, fix }
}

fn nvml() -> Result<&'static Nvml> {
    if cfg!(target_os = "macos") {
        return Err(unavailable(
            "NVML, the NVIDIA driver's library, does not exist on macOS".into(),
            "use --source powermetrics (Apple GPUs), or estimate".into(),
        ));
    }
    match NVML.get_or_init(|| Nvml::init().map_err(init_failure)) {
        Ok(nvml) => Ok(nvml),
        Err(f) => Err(unavailable(f.reason.clone(), f.fix.clone())),
    }
}

/// The GPUs of this machine through NVML (`libnvidia-ml.so.1`, loaded at run time).
#[derive(Debug, Clone, Copy, Default)]
pub struct NvmlDriver;

impl NvmlDriver {
    /// The driver of this machine. Nothing is loaded until it is used.
    pub fn new() -> NvmlDriver {
        NvmlDriver
    }
}

impl GpuDriver for NvmlDriver {
    fn gpu_count(&self) -> Result<u32> {
        nvml()?.device_count().map_err(|e| {
            unavailable(
                format!("NVML cannot count the GPUs (nvmlDeviceGetCount: {e})"),
                format!("check the driver with `nvidia-smi`, {OTHER_SOURCES}"),
            )
        })
    }

    fn open(&self, index: u32) -> std::result::Result<Box<dyn GpuDevice>, String> {
        let device = nvml()
            .map_err(|e| e.to_string())?
            .device_by_index(index)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(NvmlGpu {
            index,
            name: device.name().ok(),
            uuid: device.uuid().ok(),
            device,
        }))
    }
}

/// One GPU through NVML.
struct NvmlGpu {
    device: Device<'static>,
    index: u32,
    name: Option<String>,
    uuid: Option<String>,
}

impl GpuDevice for NvmlGpu {
    fn index(&self) -> u32 {
        self.index
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn uuid(&self) -> Option<String> {
        self.uuid.clone()
    }

    fn total_energy_mj(&mut self) -> std::result::Result<Option<u64>, String> {
        match self.device.total_energy_consumption() {
            Ok(mj) => Ok(Some(mj)),
            Err(NvmlError::NotSupported) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn power_mw(&mut self) -> std::result::Result<u32, String> {
        self.device.power_usage().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without the NVIDIA driver library, starting NVML fails cleanly (no
    /// panic, no abort) with the library's name and the fix.
    #[test]
    fn without_the_driver_library_nvml_is_unavailable_with_the_fix() {
        match nvml() {
            Ok(n) => eprintln!(
                "NOTICE: skipped: NVML started here (driver {:?}), so its absence cannot be checked",
                n.sys_driver_version()
            ),
            Err(e) => {
                let text = e.to_string();
                eprintln!("NVML here: {text}");
                assert!(text.contains("Fix:"), "{text}");
                if text.contains("cannot be loaded") {
                    assert!(text.contains("libnvidia-ml.so.1"), "{text}");
                    assert!(text.contains("install the NVIDIA driver"), "{text}");
                    assert!(text.contains("--source rapl / estimate"), "{text}");
                }
                // The failure is kept: a second call says the same without reloading.
                assert_eq!(nvml().unwrap_err().to_string(), text);
            }
        }
    }
}
