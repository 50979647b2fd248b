//! The sampler's own process (a source's child, such as powermetrics) where the source can
//! tell what it costs: per window, its CPU time and its estimated energy, added up on the
//! sampler thread and read by whoever needs them over a span of time (the processor, over
//! a run: the totals at the run's end less those at its start).
//!
//! Nothing here touches the traced threads: the source reports once per window, on the
//! sampler thread, before it emits the window's sample (so a reader that has seen a sample
//! sees its window counted).

use std::sync::Arc;

use parking_lot::Mutex;

/// What one window says about the sampler's own process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerProcessWindow {
    /// Its CPU time in the window (ns), as the source measured it.
    pub cpu_ns: u64,
    /// Its estimated energy in the window (mJ): its CPU-time share of all tasks times the
    /// window's measured CPU energy.
    pub energy_mj: f64,
    /// The window's measured CPU energy (mJ), of which `energy_mj` is a share.
    pub cpu_energy_mj: f64,
    /// The window's length (ns).
    pub window_ns: u64,
}

/// The windows reported so far, added up. Subtract an earlier total
/// ([`SamplerProcessTotals::since`]) for the windows in between.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplerProcessTotals {
    /// Windows with a figure.
    pub windows: u64,
    /// Windows whose figure could not be told (the process not found in the window's
    /// task list, or no CPU energy).
    pub windows_unknown: u64,
    /// The sampler process's CPU time over the windows with a figure (ns).
    pub cpu_ns: u64,
    /// Its estimated energy over them (mJ).
    pub energy_mj: f64,
    /// The measured CPU energy of the same windows (mJ).
    pub cpu_energy_mj: f64,
    /// Their total length (ns).
    pub window_ns: u64,
}

impl SamplerProcessTotals {
    /// Adds one window: `None` for a window whose figure could not be told.
    pub fn add(&mut self, window: Option<SamplerProcessWindow>) {
        match window {
            Some(w) => {
                self.windows += 1;
                self.cpu_ns += w.cpu_ns;
                self.energy_mj += w.energy_mj;
                self.cpu_energy_mj += w.cpu_energy_mj;
                self.window_ns += w.window_ns;
            }
            None => self.windows_unknown += 1,
        }
    }

    /// The windows counted since `earlier` (a total read before this one).
    pub fn since(&self, earlier: &SamplerProcessTotals) -> SamplerProcessTotals {
        SamplerProcessTotals {
            windows: self.windows.saturating_sub(earlier.windows),
            windows_unknown: self.windows_unknown.saturating_sub(earlier.windows_unknown),
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            energy_mj: (self.energy_mj - earlier.energy_mj).max(0.0),
            cpu_energy_mj: (self.cpu_energy_mj - earlier.cpu_energy_mj).max(0.0),
            window_ns: self.window_ns.saturating_sub(earlier.window_ns),
        }
    }
}

/// The running totals of one sampler, shared between its thread and readers. `None` until
/// the source reports a first window: a source that cannot tell never does.
#[derive(Debug, Clone, Default)]
pub struct SamplerProcessTally(Arc<Mutex<Option<SamplerProcessTotals>>>);

impl SamplerProcessTally {
    /// Adds one window (see [`SamplerProcessTotals::add`]).
    pub fn add(&self, window: Option<SamplerProcessWindow>) {
        self.0
            .lock()
            .get_or_insert_with(Default::default)
            .add(window);
    }

    /// The totals so far; `None` when the source never reported.
    pub fn totals(&self) -> Option<SamplerProcessTotals> {
        *self.0.lock()
    }

    /// The windows counted between two readings of [`totals`](Self::totals): `None` when
    /// the source had not reported by the later one. A source that had not reported by the
    /// earlier one had counted nothing yet.
    pub fn between(
        earlier: Option<&SamplerProcessTotals>,
        later: Option<&SamplerProcessTotals>,
    ) -> Option<SamplerProcessTotals> {
        let later = later?;
        Some(match earlier {
            Some(e) => later.since(e),
            None => *later,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(cpu_ns: u64, energy_mj: f64) -> Option<SamplerProcessWindow> {
        Some(SamplerProcessWindow {
            cpu_ns,
            energy_mj,
            cpu_energy_mj: 10.0 * energy_mj,
            window_ns: 100,
        })
    }

    #[test]
    fn adds_and_subtracts_windows() {
        let tally = SamplerProcessTally::default();
        assert_eq!(tally.totals(), None, "nothing reported: unknown, not 0");
        tally.add(w(5, 1.0));
        let start = tally.totals();
        tally.add(w(7, 2.0));
        tally.add(None);
        tally.add(w(11, 4.0));
        let end = tally.totals();
        let d = SamplerProcessTally::between(start.as_ref(), end.as_ref()).unwrap();
        assert_eq!((d.windows, d.windows_unknown, d.cpu_ns), (2, 1, 18));
        assert_eq!(
            (d.energy_mj, d.cpu_energy_mj, d.window_ns),
            (6.0, 60.0, 200)
        );
        let whole = SamplerProcessTally::between(None, end.as_ref()).unwrap();
        assert_eq!((whole.windows, whole.energy_mj), (3, 7.0));
        assert_eq!(SamplerProcessTally::between(start.as_ref(), None), None);
    }
}
