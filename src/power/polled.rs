//! Counter sensors read at the sampler's instants: RAPL's `energy_uj`, NVML's total energy.
//!
//! A [`Meter`] reads cumulative energy per domain (mJ since an origin of its own, already
//! unwrapped: it never goes backwards). [`PolledSource`] reads one or several meters at the
//! same instant every interval and emits the differences as windows, so that `rapl+nvml`
//! is one stream whose windows carry `cpu`, `dram` and `gpu` together.
//!
//! Counters update less often than one may read them (RAPL about every 1 ms, NVML's energy
//! counter every 20-100 ms). [`update_period`] measures a meter's real update period with a
//! short burst of reads; the source then samples no faster than that (the effective
//! window), so that a window's energy is what happened in it, and says so on the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Availability, DomainEnergy, PowerSample, PowerSource, SourceContext, SourceEnd};
use crate::{clock, Error, Result};

/// A counter sensor.
pub trait Meter: Send + 'static {
    /// The meter's name: `rapl`, `nvml`.
    fn name(&self) -> String;

    /// Whether it can be read here, with the fix when not.
    fn is_available(&self) -> Availability;

    /// Cumulative energy per domain (mJ) since an origin of the meter's own, read now.
    /// Never decreases (wraparounds are the meter's to undo); a domain it does not measure
    /// is `None`.
    fn read(&mut self) -> Result<DomainEnergy>;

    /// How it measures, for the run: e.g. `energy counter`, or `power x time` for a sensor
    /// that only gives power.
    fn method(&self) -> String;

    /// The raw values of its counters, one per counter in a fixed order, for
    /// [`update_period`] to see how often each changes; `None` for a part that is not a
    /// counter (a power reading the meter integrates itself changes at every read).
    /// Default: the total of [`Meter::read`], as one counter.
    fn counters(&mut self) -> Result<Vec<Option<f64>>> {
        Ok(vec![self.read()?.total()])
    }
}

/// The real update period of a meter's counters, from a burst of reads
/// ([`Meter::counters`]): for each counter, the mean time between its changes over up to 6
/// changes, reading for at most `budget`; the slowest counter's period. `None` when no
/// counter changed twice (idle, very slow, or no counter at all).
pub fn update_period(meter: &mut dyn Meter, budget: Duration) -> Result<Option<Duration>> {
    let start = Instant::now();
    let mut last = meter.counters()?;
    if last.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut changes: Vec<Vec<Instant>> = vec![Vec::new(); last.len()];
    while start.elapsed() < budget {
        let now = meter.counters()?;
        let t = Instant::now();
        let mut moved = false;
        for (i, (a, b)) in last.iter().zip(&now).enumerate() {
            if b.is_some() && a != b {
                changes[i].push(t);
                moved = true;
            }
        }
        let done = now
            .iter()
            .zip(&changes)
            .all(|(v, c)| v.is_none() || c.len() >= 6);
        last = now;
        if done {
            break;
        }
        if !moved {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(changes
        .iter()
        .filter_map(|c| match c.as_slice() {
            [first, .., last] => Some((*last - *first) / (c.len() as u32 - 1)),
            _ => None,
        })
        .max())
}

/// A source that reads meters at the same instants and emits the differences.
pub struct PolledSource {
    name: String,
    meters: Vec<Box<dyn Meter>>,
    period: Option<Duration>,
}

impl PolledSource {
    /// Reads `meters` together; named after them (`rapl`, `rapl+nvml`).
    pub fn new(meters: Vec<Box<dyn Meter>>) -> PolledSource {
        let name = meters
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join("+");
        PolledSource {
            name,
            meters,
            period: None,
        }
    }

    /// Reads every meter now, domains merged (a domain two meters measure is summed).
    fn read_all(&mut self) -> Result<DomainEnergy> {
        let mut sum = DomainEnergy::default();
        for m in &mut self.meters {
            let e = m.read()?;
            let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
            sum = DomainEnergy {
                cpu: add(sum.cpu, e.cpu),
                gpu: add(sum.gpu, e.gpu),
                ane: add(sum.ane, e.ane),
                dram: add(sum.dram, e.dram),
            };
        }
        Ok(sum)
    }

    /// The slowest meter's update period, measured once (see [`update_period`]).
    fn measure_period(&mut self) -> Result<Option<Duration>> {
        let mut slowest: Option<Duration> = None;
        for m in &mut self.meters {
            if let Some(p) = update_period(m.as_mut(), Duration::from_millis(600))? {
                slowest = Some(slowest.map_or(p, |s| s.max(p)));
            }
        }
        Ok(slowest)
    }
}

fn difference(a: DomainEnergy, b: DomainEnergy) -> DomainEnergy {
    let d = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0));
    DomainEnergy {
        cpu: d(a.cpu, b.cpu),
        gpu: d(a.gpu, b.gpu),
        ane: d(a.ane, b.ane),
        dram: d(a.dram, b.dram),
    }
}

impl PowerSource for PolledSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn estimated(&self) -> bool {
        false
    }

    fn is_available(&self) -> Availability {
        let mut what = Vec::new();
        for m in &self.meters {
            match m.is_available() {
                Availability::Available(w) => what.push(w),
                unavailable => return unavailable,
            }
        }
        Availability::Available(what.join("; "))
    }

    fn counter_update_period(&mut self) -> Result<Option<Duration>> {
        if self.period.is_none() {
            self.period = self.measure_period()?;
        }
        Ok(self.period)
    }

    fn method(&self) -> Option<String> {
        Some(
            self.meters
                .iter()
                .map(|m| format!("{}: {}", m.name(), m.method()))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd> {
        let name: Arc<str> = ctx.source_name();
        // Never faster than the counters change: a shorter window would hold either
        // nothing or the energy of several.
        let interval = ctx.interval().max(self.period.unwrap_or_default());
        let start = clock::now_ns();
        let mut prev = self.read_all()?;
        ctx.every(interval, start, |ctx, prev_t| {
            let cur = self.read_all().map_err(|e| match e {
                // A meter that stopped being readable mid-run failed; say it once.
                Error::SourceUnavailable {
                    source_name,
                    reason,
                    fix,
                } => Error::SourceFailed {
                    source_name,
                    reason: format!("{reason}. Fix: {fix}"),
                },
                e @ Error::SourceFailed { .. } => e,
                other => Error::SourceFailed {
                    source_name: self.name.clone(),
                    reason: other.to_string(),
                },
            })?;
            let t = clock::now_ns();
            let energy = difference(prev, cur);
            match PowerSample::new(prev_t, t, energy, Arc::clone(&name), false) {
                Some(sample) => ctx.emit(sample),
                None => ctx.reject("unusable window", "empty window or no domain measured"),
            }
            prev = cur;
            Ok(t)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that advances `step` mJ every `every`, from its creation.
    struct Ticking {
        born: Instant,
        every: Duration,
        step: f64,
    }

    impl Meter for Ticking {
        fn name(&self) -> String {
            "ticking".into()
        }
        fn is_available(&self) -> Availability {
            Availability::Available("test".into())
        }
        fn read(&mut self) -> Result<DomainEnergy> {
            let ticks = (self.born.elapsed().as_nanos() / self.every.as_nanos()) as f64;
            Ok(DomainEnergy {
                cpu: Some(ticks * self.step),
                ..Default::default()
            })
        }
        fn method(&self) -> String {
            "energy counter".into()
        }
    }

    #[test]
    fn the_update_period_is_measured_from_a_burst_of_reads() {
        let mut m = Ticking {
            born: Instant::now(),
            every: Duration::from_millis(20),
            step: 1.0,
        };
        let p = update_period(&mut m, Duration::from_millis(600))
            .unwrap()
            .unwrap();
        assert!(
            p >= Duration::from_millis(18) && p <= Duration::from_millis(30),
            "{p:?}"
        );
    }

    /// Two counters ticking every 10 and 40 ms, and a part that is not a counter: the period
    /// is the slowest counter's.
    struct Mixed {
        born: Instant,
    }

    impl Meter for Mixed {
        fn name(&self) -> String {
            "mixed".into()
        }
        fn is_available(&self) -> Availability {
            Availability::Available("test".into())
        }
        fn read(&mut self) -> Result<DomainEnergy> {
            unreachable!("update_period reads counters()")
        }
        fn method(&self) -> String {
            "test".into()
        }
        fn counters(&mut self) -> Result<Vec<Option<f64>>> {
            let ms = self.born.elapsed().as_millis();
            Ok(vec![Some((ms / 10) as f64), Some((ms / 40) as f64), None])
        }
    }

    #[test]
    fn the_period_is_the_slowest_counters() {
        let mut m = Mixed {
            born: Instant::now(),
        };
        let p = update_period(&mut m, Duration::from_millis(600))
            .unwrap()
            .unwrap();
        assert!(
            p >= Duration::from_millis(36) && p <= Duration::from_millis(50),
            "{p:?}"
        );
    }

    /// A meter whose only part is not a counter has no period, and costs no burst.
    struct PowerOnly;

    impl Meter for PowerOnly {
        fn name(&self) -> String {
            "power".into()
        }
        fn is_available(&self) -> Availability {
            Availability::Available("test".into())
        }
        fn read(&mut self) -> Result<DomainEnergy> {
            unreachable!("update_period reads counters()")
        }
        fn method(&self) -> String {
            "power x time".into()
        }
        fn counters(&mut self) -> Result<Vec<Option<f64>>> {
            Ok(vec![None])
        }
    }

    #[test]
    fn a_meter_without_a_counter_has_no_period() {
        let started = Instant::now();
        assert_eq!(
            update_period(&mut PowerOnly, Duration::from_millis(600)).unwrap(),
            None
        );
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn windows_are_differences_and_domains_merge() {
        let a = DomainEnergy {
            cpu: Some(10.0),
            dram: Some(1.0),
            ..Default::default()
        };
        let b = DomainEnergy {
            cpu: Some(15.0),
            dram: Some(1.5),
            ..Default::default()
        };
        let d = difference(a, b);
        assert_eq!((d.cpu, d.dram, d.gpu), (Some(5.0), Some(0.5), None));
    }
}
