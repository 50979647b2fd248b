//! Which device runs the model, and the synchronize hook for asynchronous devices.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::Device;

use super::{Error, Result};

/// The device a model runs on, as named on a command line: `cpu`, `metal` or `cuda`.
///
/// `metal` and `cuda` exist only when the crate is built with the feature of the same name;
/// parsing their name in a build without it fails with [`Error::DeviceNotCompiled`], whose
/// message says which feature to enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceKind {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// An Apple GPU through Metal (feature `metal`).
    Metal,
    /// An NVIDIA GPU through CUDA (feature `cuda`).
    Cuda,
}

impl DeviceKind {
    /// The device's name: `cpu`, `metal` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Metal => "metal",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// Whether this build has the backend for this device.
    pub fn is_compiled(self) -> bool {
        match self {
            DeviceKind::Cpu => true,
            DeviceKind::Metal => cfg!(feature = "metal"),
            DeviceKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Whether span times on this device need [`Device::synchronize`] to mean compute time
    /// (true for GPUs, whose kernels run asynchronously).
    pub fn is_async(self) -> bool {
        !matches!(self, DeviceKind::Cpu)
    }

    /// The kind of an opened candle device.
    pub fn of(device: &Device) -> DeviceKind {
        if device.is_metal() {
            DeviceKind::Metal
        } else if device.is_cuda() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        }
    }

    fn check_compiled(self) -> Result<()> {
        if self.is_compiled() {
            Ok(())
        } else {
            Err(Error::DeviceNotCompiled {
                device: self.name(),
                feature: self.name(),
            })
        }
    }

    /// Opens the device: GPU number `ordinal` for `metal` and `cuda` (0 for the first);
    /// ignored for `cpu`.
    pub fn open(self, ordinal: usize) -> Result<Device> {
        self.check_compiled()?;
        let device = match self {
            DeviceKind::Cpu => return Ok(Device::Cpu),
            DeviceKind::Metal => Device::new_metal(ordinal),
            DeviceKind::Cuda => Device::new_cuda(ordinal),
        };
        device.map_err(|e| Error::DeviceOpen {
            device: self.name(),
            reason: super::error::without_backtrace(e).to_string(),
        })
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = Error;

    /// Parses `cpu`, `metal` or `cuda` (case-insensitive); a GPU name in a build without its
    /// feature is an error that names the feature.
    fn from_str(s: &str) -> Result<Self> {
        let kind = match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => DeviceKind::Cpu,
            "metal" | "mps" => DeviceKind::Metal,
            "cuda" | "gpu" => DeviceKind::Cuda,
            _ => return Err(Error::UnknownDevice(s.to_string())),
        };
        kind.check_compiled()?;
        Ok(kind)
    }
}

/// A fence the generator calls once after each token's forward pass (the prefill's and every
/// decode step's), inside that token's span.
///
/// On CUDA and Metal, candle only *launches* kernels; without a fence a span ends when its
/// kernels are queued, not when they have run, so span times are launch times and the GPU work
/// lands in whichever later span happens to wait for it. Calling [`Device::synchronize`] once
/// per token makes each token's span cover its own compute. Never synchronize per span:
/// each wait costs ~1-2 ms on Metal, which would distort what is measured.
pub type SyncHook = Arc<dyn Fn() -> candle_core::Result<()> + Send + Sync>;

/// The synchronize hook for `device`: `None` on the CPU (where work is synchronous), else a
/// hook that calls [`Device::synchronize`].
pub fn sync_hook_for(device: &Device) -> Option<SyncHook> {
    if device.is_cpu() {
        return None;
    }
    let device = device.clone();
    Some(Arc::new(move || device.synchronize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_unknown_names() {
        assert_eq!("cpu".parse::<DeviceKind>().unwrap(), DeviceKind::Cpu);
        assert_eq!(" CPU ".parse::<DeviceKind>().unwrap(), DeviceKind::Cpu);
        let err = "tpu".parse::<DeviceKind>().unwrap_err();
        assert!(
            err.to_string().contains("expected cpu, metal or cuda"),
            "{err}"
        );
    }

    #[test]
    fn gpu_names_say_which_feature_is_missing() {
        for (name, kind) in [("metal", DeviceKind::Metal), ("cuda", DeviceKind::Cuda)] {
            match name.parse::<DeviceKind>() {
                Ok(k) => assert!(k.is_compiled() && k == kind),
                Err(e) => {
                    assert!(!kind.is_compiled());
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("--features {name}")), "{msg}");
                }
            }
        }
    }

    #[test]
    fn cpu_needs_no_sync_hook() {
        assert!(sync_hook_for(&Device::Cpu).is_none());
        assert!(!DeviceKind::Cpu.is_async());
        assert_eq!(
            DeviceKind::of(&DeviceKind::Cpu.open(0).unwrap()),
            DeviceKind::Cpu
        );
    }
}
