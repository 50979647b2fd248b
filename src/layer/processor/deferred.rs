//! The `regression` attribution ([`Attribution::Regression`](crate::Attribution)): the
//! run's records are kept, in the order the processor took them, until the run ends or
//! rotates. Then ([`Processor::settle`]):
//!
//! 1. the kept records are replayed once into scratch rows, only to learn the component
//!    rows' kinds, threads and times;
//! 2. each kind's power is fitted over the run's power windows
//!    ([`attribution::regression::fit`](crate::attribution::regression::fit));
//! 3. the records are replayed for real, every section's energy taken from the fit
//!    ([`FitAttribution`]) instead of the time shares, and the rows are stamped
//!    `energy_method = 'regression'`; the fit is stored in `component_power`.
//!
//! Where the fit is refused (too few windows, a mix that does not vary), step 3 takes the
//! time shares (`overlap`) and the run's warnings say why. While records are kept, the
//! energy stream is not pruned past the run's start, so the time shares stay available;
//! when the kept records outgrow half the memory budget, the run falls back to `overlap`
//! at once ([`Processor::fall_back`]) and streams from then on.

use std::collections::HashMap;

use super::intake::Queued;
use super::Processor;
use crate::attribution::by_fit::{fit_windows, kind_intervals, FitAttribution, KindInterval};
use crate::attribution::regression::{self, fit, PowerFit};
use crate::attribution::{Activity, EnergyStream, SectionEnergy};
use crate::layer::hot::{HotRecord, FLAG_IDLE};
use crate::power::PowerSample;
use crate::store::{ComponentPower, ComponentRecord};

/// Bytes a kept record holds (the record, its time, its thread, its share of the vector).
const RECORD_BYTES: usize = 64;
/// Bytes a kept power sample holds.
const SAMPLE_BYTES: usize = 112;

/// What a run under `regression` keeps until it ends.
#[derive(Default)]
pub(super) struct Deferred {
    /// The records, in the order the processor took them, with their thread.
    events: Vec<(u32, Queued)>,
    /// The power samples that arrived during the run.
    samples: Vec<PowerSample>,
    /// Each thread's finished activity intervals (a section open) in the run.
    activity: HashMap<u32, Vec<Activity>>,
}

impl Deferred {
    /// A run's keeping, starting with `samples` (those that end inside it).
    pub(super) fn new(samples: Vec<PowerSample>) -> Deferred {
        Deferred {
            samples,
            ..Deferred::default()
        }
    }

    /// Memory held (bytes, estimated).
    pub(super) fn bytes(&self) -> usize {
        self.events.len() * RECORD_BYTES + self.samples.len() * SAMPLE_BYTES
    }

    /// Keeps the samples that arrived.
    pub(super) fn samples(&mut self, new: &[PowerSample]) {
        self.samples.extend_from_slice(new);
    }
}

/// A run's fit, as sections ask it for their energy.
pub(super) struct FitState {
    attribution: FitAttribution,
    /// Thread id -> position in the fit's thread lists.
    threads: HashMap<u32, usize>,
}

/// Where section energies come from: the time shares of the energy stream, or a run's fit.
pub(super) struct Energies<'a> {
    pub(super) stream: &'a EnergyStream,
    pub(super) fit: Option<&'a FitState>,
    /// The part of a section before the run's start belongs to the previous run.
    pub(super) run_start: u64,
}

impl Energies<'_> {
    /// The inclusive energy of section `[s, e]` on `thread`.
    pub(super) fn section(&self, thread: u32, s: u64, e: u64) -> SectionEnergy {
        let s = s.max(self.run_start).min(e);
        match self.fit {
            Some(f) => {
                let at = f.threads.get(&thread).copied().unwrap_or(usize::MAX);
                f.attribution.section(at, s, e)
            }
            None => self.stream.section(s, e),
        }
    }
}

impl Processor {
    /// Notes a thread's activity changing (every run, so that a run starting while a
    /// thread is active knows since when).
    pub(super) fn track_activity(&mut self, thread: u32, q: &Queued) {
        match q.record {
            HotRecord::Activate { .. } => {
                self.open_activity.insert(thread, q.time);
            }
            HotRecord::Section(r) if r.flags & FLAG_IDLE != 0 => {
                if let Some(since) = self.open_activity.remove(&thread) {
                    if let Some(d) = &mut self.deferred {
                        d.activity.entry(thread).or_default().push(Activity {
                            start_ns: since.max(self.run.start_ns),
                            end_ns: q.time,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Keeps a record for the run's end, with the span data its rows will need.
    pub(super) fn defer(&mut self, thread: u32, q: Queued) {
        match q.record {
            HotRecord::Section(r) => {
                self.span(r.serial);
                if r.phase != 0 {
                    self.span(r.phase);
                }
            }
            HotRecord::Close { serial, .. } => self.closed_spans.push(serial),
            HotRecord::Activate { .. } => {}
        }
        let Some(d) = &mut self.deferred else {
            return;
        };
        d.events.push((thread, q));
        if d.bytes() > self.budget / 2 {
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            let why = format!(
                "regression attribution: the run's kept records ({:.1} MiB) outgrew half the memory budget ({:.1} MiB) before it ended; the whole run is attributed by overlap (time shares) instead (raise the budget with `.memory_budget(..)`, or profile a shorter run)",
                mib(d.bytes()),
                mib(self.budget / 2)
            );
            self.fall_back(why);
        }
    }

    /// Gives up the fit for this run: the kept records are turned into rows by time shares
    /// now, and the run streams from here on. `why` goes to the run's warnings.
    fn fall_back(&mut self, why: String) {
        tracing::warn!("{why}");
        self.health.note(why);
        if let Some(d) = self.deferred.take() {
            for (thread, q) in d.events {
                self.apply(thread, q);
            }
        }
    }

    /// Ends the keeping of a run that ends at `end_ns` (see the module docs). Returns the
    /// kept samples that end after `end_ns` (they belong to the next run).
    pub(super) fn settle(&mut self, end_ns: u64) -> Vec<PowerSample> {
        let Some(d) = self.deferred.take() else {
            return Vec::new();
        };
        let components = self.dry_run(&d.events);
        let (kinds, per_thread, threads) = self.intervals(&components, &d.activity);
        let in_run: Vec<PowerSample> = d
            .samples
            .iter()
            .filter(|s| s.end_ns > self.run.start_ns && s.start_ns < end_ns)
            .cloned()
            .collect();
        // A window across the run's start or end holds energy of records another run
        // keeps: it is shared, but not fitted.
        let power: Vec<(u64, u64, f64)> = in_run
            .iter()
            .filter(|s| s.start_ns >= self.run.start_ns && s.end_ns <= end_ns)
            .map(|s| (s.start_ns, s.end_ns, s.total_mj))
            .collect();
        let windows = fit_windows(&power, per_thread.iter().flatten(), kinds.len());
        match fit(&kinds, &windows) {
            Ok(fitted) => self.use_fit(&fitted, &in_run, &d.activity, &threads, per_thread, end_ns),
            Err(why) => {
                let text = format!(
                    "regression attribution refused: {why}; the run is attributed by overlap (time shares)"
                );
                tracing::warn!("{text}");
                self.health.note(text);
            }
        }
        for (thread, q) in d.events {
            self.apply(thread, q);
        }
        d.samples
            .into_iter()
            .filter(|s| s.end_ns > end_ns)
            .collect()
    }

    /// Makes `fitted` the source of section energies for the replay, and stores it.
    fn use_fit(
        &mut self,
        fitted: &PowerFit,
        samples: &[PowerSample],
        activity: &HashMap<u32, Vec<Activity>>,
        threads: &[u32],
        per_thread: Vec<Vec<KindInterval>>,
        end_ns: u64,
    ) {
        let lists: Vec<Vec<Activity>> = threads
            .iter()
            .map(|t| {
                let mut list = activity.get(t).cloned().unwrap_or_default();
                if let Some(&since) = self.open_activity.get(t) {
                    list.push(Activity {
                        start_ns: since.max(self.run.start_ns),
                        end_ns: u64::MAX,
                    });
                }
                list
            })
            .collect();
        let attribution = FitAttribution::new(
            fitted,
            samples,
            &lists,
            &per_thread,
            self.run.start_ns,
            end_ns,
        );
        self.fit = Some(FitState {
            attribution,
            threads: threads.iter().enumerate().map(|(i, t)| (*t, i)).collect(),
        });
        self.rows.method = regression::METHOD;
        let rows = ComponentPower::of_fit(fitted);
        if let Err(e) = self.store.put_component_power(self.run.id, &rows) {
            self.health
                .note(format!("the component power fit could not be stored: {e}"));
        }
    }

    /// The component kinds (in order of first appearance), each thread's component
    /// intervals (in the order of the returned threads), and the threads: every thread
    /// with activity or components in the run.
    fn intervals(
        &self,
        components: &[ComponentRecord],
        activity: &HashMap<u32, Vec<Activity>>,
    ) -> (Vec<String>, Vec<Vec<KindInterval>>, Vec<u32>) {
        let (kinds, intervals) = kind_intervals(components.iter().map(|c| {
            let m = &c.measured;
            (c.component.as_str(), m.start_ns, m.end_ns)
        }));
        let mut threads: Vec<u32> = Vec::new();
        let mut per_thread: Vec<Vec<KindInterval>> = Vec::new();
        let all_threads = activity.keys().chain(self.open_activity.keys()).copied();
        let component_threads = components
            .iter()
            .map(|c| c.measured.thread_id.unwrap_or(0) as u32);
        for t in all_threads.chain(component_threads) {
            if !threads.contains(&t) {
                threads.push(t);
                per_thread.push(Vec::new());
            }
        }
        for (c, interval) in components.iter().zip(intervals) {
            let thread = c.measured.thread_id.unwrap_or(0) as u32;
            let at = threads
                .iter()
                .position(|t| *t == thread)
                .expect("listed above");
            per_thread[at].push(interval);
        }
        (kinds, per_thread, threads)
    }

    /// Replays `events` into scratch rows and returns their component rows; the
    /// processor's state is left as it was.
    fn dry_run(&mut self, events: &[(u32, Queued)]) -> Vec<ComponentRecord> {
        let rows = std::mem::take(&mut self.rows);
        let instances = std::mem::take(&mut self.instances);
        let children = std::mem::take(&mut self.children);
        let units = self.units.clone();
        let unit_closes = self.unit_closes.clone();
        let token = self.run.next_token;
        for (thread, q) in events {
            self.apply(*thread, *q);
        }
        let found = std::mem::take(&mut self.rows.components);
        self.rows = rows;
        self.instances = instances;
        self.children = children;
        self.units = units;
        self.unit_closes = unit_closes;
        self.run.next_token = token;
        found
    }
}
