//! The estimate source: CPU power from CPU time, for machines without a power sensor.
//!
//! The model is the TDP-share model that CodeCarbon uses in its `cpu_load` mode: a CPU at
//! full load on every logical core draws its TDP, and power scales with load. Per window:
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
//! Parameters and where the defaults come from:
//! - `tdp_watts` = 85 W: CodeCarbon's `POWER_CONSTANT`, its TDP for a CPU model it cannot
//!   identify. Set your CPU's TDP (the vendor's spec sheet) for a better estimate.
//! - `logical_cpus` = the number of CPUs this process may run on
//!   (`std::thread::available_parallelism`).
//! - `idle_watts` = 0: the estimate covers only power that follows CPU time; static power
//!   is not modelled.
//!
//! Every sample is labelled `estimated`, GPU, ANE and DRAM are `None` (not measured), and the
//! result is a model, not a measurement: relative comparisons between sections of one run
//! follow CPU time, and absolute joules can be off by a large factor.

use std::sync::Arc;
use std::time::Duration;

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
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateParams {
    /// Power of the CPU with every logical CPU busy (W).
    pub tdp_watts: f64,
    /// Logical CPUs the TDP is shared between.
    pub logical_cpus: usize,
    /// Power drawn regardless of load (W).
    pub idle_watts: f64,
    /// Whose CPU time counts.
    pub scope: EstimateScope,
}

impl Default for EstimateParams {
    fn default() -> Self {
        EstimateParams {
            tdp_watts: 85.0,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
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
#[derive(Debug, Clone, Default)]
pub struct EstimateSource {
    params: EstimateParams,
}

impl EstimateSource {
    /// An estimate with the default parameters.
    pub fn new() -> EstimateSource {
        EstimateSource::default()
    }

    /// An estimate with the given parameters.
    pub fn with_params(params: EstimateParams) -> EstimateSource {
        EstimateSource { params }
    }

    /// The parameters in use.
    pub fn params(&self) -> &EstimateParams {
        &self.params
    }
}

/// CPU seconds used so far by this process (user + system).
pub fn process_cpu_seconds() -> std::io::Result<f64> {
    // SAFETY: getrusage writes one rusage struct, which we provide zeroed.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
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
        if let Err(e) = self.params.validate() {
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
                "estimate (not a measurement) from {scope}: {:.1} W per busy logical CPU ({} W TDP / {} CPUs) + {} W idle",
                self.params.watts_per_busy_cpu(),
                self.params.tdp_watts,
                self.params.logical_cpus,
                self.params.idle_watts
            )),
            Err(e) => Availability::Unavailable {
                reason: format!("cannot read {scope}: {e}"),
                fix: "use the process scope (the default), which works on every Unix".into(),
            },
        }
    }

    fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd> {
        self.params.validate()?;
        let name: Arc<str> = ctx.source_name();
        let failed = |e: std::io::Error| Error::SourceFailed {
            source_name: "estimate".into(),
            reason: format!("reading CPU time failed: {e}"),
        };
        let interval_ns = ctx.interval().as_nanos() as u64;
        let mut prev_t = clock::now_ns();
        let mut prev_cpu = self.busy_seconds().map_err(failed)?;
        let mut next = prev_t + interval_ns;
        loop {
            let now = clock::now_ns();
            if ctx.wait(Duration::from_nanos(next.saturating_sub(now))) {
                return Ok(SourceEnd::Stopped);
            }
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
            prev_t = t;
            prev_cpu = cpu;
            next += interval_ns;
            if next <= t {
                // Fell behind (machine suspended or overloaded): do not try to catch up.
                next = t + interval_ns;
            }
        }
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
        while start.elapsed() < Duration::from_millis(50) {
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
}
