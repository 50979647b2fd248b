//! The estimate source: CPU power from CPU time, for machines without a power sensor.
//!
//! The model is the TDP-share model of CodeCarbon's `cpu_load` mode with process tracking
//! (CodeCarbon 3.3.2, `codecarbon/external/hardware.py`, `CPU._get_power_from_cpu_load`):
//! a CPU with every logical CPU busy draws its TDP, and each busy logical CPU draws an equal
//! share. Per window:
//!
//! ```text
//! energy_mJ = 1000 * (tdp_watts / logical_cpus * busy_cpu_seconds + idle_watts * wall_seconds)
//! ```
//!
//! where `busy_cpu_seconds` is the CPU time used during the window, by this process
//! ([`EstimateScope::Process`], the default: `getrusage(RUSAGE_SELF)`, user + system) or
//! by the whole machine ([`EstimateScope::System`], Linux only: `/proc/stat`, all time but
//! idle and iowait).
//!
//! The watts per busy logical CPU (`tdp_watts / logical_cpus`) come from, in this order
//! (details and sources in [`super::tdp`]):
//! 1. **the user**: [`EstimateSource::with_tdp_watts`], [`EstimateSource::with_watts_per_cpu`]
//!    or [`EstimateSource::with_params`] with other figures than the detected ones;
//! 2. **a virtual machine** (the `hypervisor` CPU flag, `/sys/hypervisor/type`, a hypervisor's
//!    or cloud's DMI vendor, macOS's `kern.hv_vmm_present`): Cloud Carbon Footprint's max
//!    watts per vCPU, 3.5 W (AWS) unless the DMI vendor names Google (4.26 W) or Microsoft
//!    (3.76 W);
//! 3. **a CPU model in the table** (`src/power/tdp.csv`: vendor TDP and thread count):
//!    the TDP shared by the package's threads;
//! 4. **otherwise** 85 W (CodeCarbon's `POWER_CONSTANT`) shared by the online logical CPUs.
//!
//! `idle_watts` = 0: the estimate covers only power that follows CPU time; static power is
//! not modelled (CodeCarbon's process mode does the same).
//!
//! The choice is said in words ([`EstimateSource::describe`]), e.g. `3.5 W per busy vCPU:
//! virtual machine (hypervisor flag in /proc/cpuinfo), ...`; it is the source's
//! [`PowerSource::method`], stored on every run as its `power_method`, and part of its
//! availability text.
//!
//! Every sample is labelled `estimated`, GPU, ANE and DRAM are `None` (not measured), and the
//! result is a model, not a measurement: relative comparisons between sections of one run
//! follow CPU time, and absolute joules can be off by a large factor.

use std::sync::Arc;

use super::tdp::{CpuWatts, WattsOrigin};
use super::{Availability, DomainEnergy, PowerSample, PowerSource, SourceContext, SourceEnd};
use crate::{clock, Error, Result};

/// Whose CPU time the estimate follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EstimateScope {
    /// This process's CPU time (user + system), from `getrusage`. Portable.
    #[default]
    Process,
    /// The whole machine's busy CPU time, from `/proc/stat` (Linux only).
    System,
}

/// The estimate's parameters. See the module docs for the model and the defaults' origin.
///
/// [`Default`] gives this machine's detected figures ([`CpuWatts::detected`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateParams {
    /// Power of the CPU with every logical CPU busy (W).
    pub tdp_watts: f64,
    /// Logical CPUs the TDP is shared between (by default: the table's thread count for a
    /// known model, else the machine's online logical CPUs).
    pub logical_cpus: usize,
    /// Power drawn regardless of load (W).
    pub idle_watts: f64,
    /// Whose CPU time counts.
    pub scope: EstimateScope,
}

impl Default for EstimateParams {
    fn default() -> Self {
        let detected = CpuWatts::detected();
        EstimateParams {
            tdp_watts: detected.tdp_watts,
            logical_cpus: detected.logical_cpus,
            idle_watts: 0.0,
            scope: EstimateScope::Process,
        }
    }
}

impl EstimateParams {
    /// Watts attributed to one fully busy logical CPU.
    pub fn watts_per_busy_cpu(&self) -> f64 {
        self.tdp_watts / self.logical_cpus as f64
    }

    /// The estimated energy (mJ) of a window of `wall_s` seconds in which `busy_cpu_s`
    /// seconds of CPU time were used.
    pub fn energy_mj(&self, busy_cpu_s: f64, wall_s: f64) -> f64 {
        1000.0 * (self.watts_per_busy_cpu() * busy_cpu_s + self.idle_watts * wall_s)
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, reason: String| Err(Error::InvalidSetting { name, reason });
        if !(self.tdp_watts.is_finite() && self.tdp_watts > 0.0) {
            return bad(
                "tdp_watts",
                format!("{} W; give the CPU's TDP in watts, > 0", self.tdp_watts),
            );
        }
        if self.logical_cpus == 0 {
            return bad("logical_cpus", "0; give at least 1".into());
        }
        if !(self.idle_watts.is_finite() && self.idle_watts >= 0.0) {
            return bad(
                "idle_watts",
                format!("{} W; give a value >= 0", self.idle_watts),
            );
        }
        Ok(())
    }
}

/// Estimates CPU energy from CPU time. Always labelled `estimated`.
#[derive(Debug, Clone)]
pub struct EstimateSource {
    params: EstimateParams,
    origin: WattsOrigin,
}

impl Default for EstimateSource {
    /// This machine's detected figures (see the module docs).
    fn default() -> Self {
        EstimateSource {
            params: EstimateParams::default(),
            origin: CpuWatts::detected().origin.clone(),
        }
    }
}

impl EstimateSource {
    /// An estimate with this machine's detected figures (see the module docs).
    pub fn new() -> EstimateSource {
        EstimateSource::default()
    }

    /// An estimate with the given parameters. Where `tdp_watts` and `logical_cpus` are the
    /// detected ones (as with `..Default::default()`), the detected origin is kept;
    /// otherwise the figures count as set by the user.
    pub fn with_params(params: EstimateParams) -> EstimateSource {
        let detected = CpuWatts::detected();
        let origin = if params.tdp_watts == detected.tdp_watts
            && params.logical_cpus == detected.logical_cpus
        {
            detected.origin.clone()
        } else {
            WattsOrigin::UserTdp
        };
        EstimateSource { params, origin }
    }

    /// Sets the CPU's TDP (W), shared by the same logical CPUs as before.
    pub fn with_tdp_watts(mut self, tdp_watts: f64) -> EstimateSource {
        self.params.tdp_watts = tdp_watts;
        self.origin = WattsOrigin::UserTdp;
        self
    }

    /// Sets the watts of one fully busy logical CPU directly.
    pub fn with_watts_per_cpu(mut self, watts: f64) -> EstimateSource {
        self.params.tdp_watts = watts * self.params.logical_cpus as f64;
        self.origin = WattsOrigin::UserWattsPerCpu(watts);
        self
    }

    /// Sets whose CPU time counts.
    pub fn with_scope(mut self, scope: EstimateScope) -> EstimateSource {
        self.params.scope = scope;
        self
    }

    /// The parameters in use.
    pub fn params(&self) -> &EstimateParams {
        &self.params
    }

    /// Where the watts per busy CPU come from.
    pub fn origin(&self) -> &WattsOrigin {
        &self.origin
    }

    /// The figures and their origin in words, with the idle power where there is one, e.g.
    /// `TDP 85 W: default for an unknown CPU (CodeCarbon's constant; "X" is not in the
    /// table), shared by 2 logical CPUs: 42.5 W per busy CPU`.
    pub fn describe(&self) -> String {
        let watts = CpuWatts {
            tdp_watts: self.params.tdp_watts,
            logical_cpus: self.params.logical_cpus,
            origin: self.origin.clone(),
        };
        let mut text = watts.describe();
        if self.params.idle_watts != 0.0 {
            text.push_str(&format!(", + {} W idle", self.params.idle_watts));
        }
        text
    }

    fn validate(&self) -> Result<()> {
        if let WattsOrigin::UserWattsPerCpu(w) = self.origin {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::InvalidSetting {
                    name: "watts_per_cpu",
                    reason: format!("{w} W; give the watts of one busy logical CPU, > 0"),
                });
            }
        }
        self.params.validate()
    }
}

/// CPU seconds used so far by this process (user + system).
pub fn process_cpu_seconds() -> std::io::Result<f64> {
    crate::cpu_time::process_cpu().map(|d| d.as_secs_f64())
}

/// Busy CPU seconds of the whole machine since boot, from `/proc/stat` (Linux).
pub fn system_busy_cpu_seconds() -> std::io::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_proc_stat_busy_ticks(&text)
        .map(|ticks| ticks as f64 / clock_ticks_per_second())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no `cpu` line in /proc/stat",
            )
        })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy ticks from the aggregate `cpu` line: everything but idle (4th) and iowait (5th);
/// guest time is already inside user time and is not added twice.
fn parse_proc_stat_busy_ticks(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(total - idle)
}

impl EstimateSource {
    fn busy_seconds(&self) -> std::io::Result<f64> {
        match self.params.scope {
            EstimateScope::Process => process_cpu_seconds(),
            EstimateScope::System => system_busy_cpu_seconds(),
        }
    }
}

impl PowerSource for EstimateSource {
    fn name(&self) -> String {
        "estimate".into()
    }

    fn estimated(&self) -> bool {
        true
    }

    fn is_available(&self) -> Availability {
        if let Err(e) = self.validate() {
            return Availability::Unavailable {
                reason: e.to_string(),
                fix: "correct the estimate's parameters".into(),
            };
        }
        let scope = match self.params.scope {
            EstimateScope::Process => "this process's CPU time",
            EstimateScope::System => "the machine's busy CPU time (/proc/stat)",
        };
        match self.busy_seconds() {
            Ok(_) => Availability::Available(format!(
                "estimate (not a measurement) from {scope}: {}",
                self.describe()
            )),
            Err(e) => Availability::Unavailable {
                reason: format!("cannot read {scope}: {e}"),
                fix: "use the process scope (the default), which works on every Unix".into(),
            },
        }
    }

    fn method(&self) -> Option<String> {
        let scope = match self.params.scope {
            EstimateScope::Process => "",
            EstimateScope::System => "; from the machine's busy CPU time",
        };
        Some(format!("{}{scope}", self.describe()))
    }

    fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd> {
        self.validate()?;
        let name: Arc<str> = ctx.source_name();
        let failed = |e: std::io::Error| Error::SourceFailed {
            source_name: "estimate".into(),
            reason: format!("reading CPU time failed: {e}"),
        };
        let start = clock::now_ns();
        let mut prev_cpu = self.busy_seconds().map_err(failed)?;
        let interval = ctx.interval();
        ctx.every(interval, start, |ctx, prev_t| {
            let t = clock::now_ns();
            let cpu = self.busy_seconds().map_err(failed)?;
            let wall_s = (t - prev_t) as f64 / 1e9;
            let busy = (cpu - prev_cpu).max(0.0);
            let energy = DomainEnergy {
                cpu: Some(self.params.energy_mj(busy, wall_s)),
                ..Default::default()
            };
            if let Some(sample) = PowerSample::new(prev_t, t, energy, Arc::clone(&name), true) {
                ctx.emit(sample);
            }
            prev_cpu = cpu;
            Ok(t)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_follows_the_tdp_share_model() {
        let p = EstimateParams {
            tdp_watts: 80.0,
            logical_cpus: 8,
            idle_watts: 2.0,
            scope: EstimateScope::Process,
        };
        assert_eq!(p.watts_per_busy_cpu(), 10.0);
        // 0.5 CPU-seconds in 0.25 s: 10 W * 0.5 s + 2 W * 0.25 s = 5.5 J.
        assert!((p.energy_mj(0.5, 0.25) - 5500.0).abs() < 1e-9);
    }

    #[test]
    fn proc_stat_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 1 2 3 4\n";
        // user+nice+system+irq+softirq+steal = 100+5+50+3+2+1
        assert_eq!(parse_proc_stat_busy_ticks(text), Some(161));
        assert_eq!(parse_proc_stat_busy_ticks("intr 1 2"), None);
    }

    #[test]
    fn process_cpu_time_grows_with_work() {
        let a = process_cpu_seconds().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = process_cpu_seconds().unwrap();
        assert!(b - a > 0.02, "busy loop of 50 ms counted {} s", b - a);
    }

    #[test]
    fn invalid_parameters_are_refused_with_the_reason() {
        let s = EstimateSource::with_params(EstimateParams {
            tdp_watts: -1.0,
            ..Default::default()
        });
        match s.is_available() {
            Availability::Unavailable { reason, .. } => {
                assert!(reason.contains("tdp_watts"), "{reason}")
            }
            a => panic!("expected unavailable, got {a:?}"),
        }
    }

    #[test]
    fn user_settings_come_first_and_say_so() {
        let s = EstimateSource::new().with_tdp_watts(35.0);
        assert_eq!(s.params().tdp_watts, 35.0);
        assert_eq!(s.origin(), &WattsOrigin::UserTdp);
        let n = s.params().logical_cpus;
        assert!(
            s.method().unwrap().starts_with(&format!(
                "TDP 35 W: set by the user, shared by {n} logical CPUs"
            )),
            "{:?}",
            s.method()
        );
        let w = EstimateSource::new().with_watts_per_cpu(4.0);
        assert_eq!(w.params().watts_per_busy_cpu(), 4.0);
        assert_eq!(w.method().unwrap(), "4 W per busy CPU: set by the user");
        let bad = EstimateSource::new().with_watts_per_cpu(f64::NAN);
        match bad.is_available() {
            Availability::Unavailable { reason, .. } => {
                assert!(reason.contains("watts_per_cpu"), "{reason}")
            }
            a => panic!("expected unavailable, got {a:?}"),
        }
    }

    #[test]
    fn default_params_keep_the_detected_origin() {
        let detected = CpuWatts::detected();
        let s = EstimateSource::with_params(EstimateParams {
            scope: EstimateScope::System,
            ..Default::default()
        });
        assert_eq!(s.origin(), &detected.origin);
        assert_eq!(s.params().watts_per_busy_cpu(), detected.watts_per_cpu());
        let text = match s.is_available() {
            Availability::Available(text) => text,
            a => panic!("{a:?}"),
        };
        assert!(text.contains(&detected.describe()), "{text}");
        assert!(s
            .method()
            .unwrap()
            .ends_with("from the machine's busy CPU time"));
        let custom = EstimateSource::with_params(EstimateParams {
            tdp_watts: detected.tdp_watts + 1.0,
            ..Default::default()
        });
        assert_eq!(custom.origin(), &WattsOrigin::UserTdp);
    }
}
