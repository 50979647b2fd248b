//! The layer's builder: where to write, what to sample, and the memory it may use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::guard::EnergyGuard;
use super::hot::{EnergyLayer, Shared, DEFAULT_WAIT};
use super::processor::{Processor, Setup};
use super::{SyncFn, SyncPoint, Vocabulary};
use crate::metrics::{LiveMetrics, MetricsServer};
use crate::power::{PowerSource, SampleBuffer, Sampler, SamplerConfig, SourceSpec};
use crate::store::{NewRun, Store};
use crate::{clock, Result};

/// What the hot path does when a thread's ring is full (the processor fell behind, or
/// the memory budget stopped it from taking more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the record at once and count it on the run.
    Drop,
    /// Yield to the processor for up to this long, then drop and count. The default
    /// (200 ms) means a busy program slows down rather than lose records.
    Wait(Duration),
}

impl Default for Overflow {
    fn default() -> Self {
        Overflow::Wait(DEFAULT_WAIT)
    }
}

/// Builds an [`EnergyLayer`] and its [`EnergyGuard`].
pub struct EnergyLayerBuilder {
    db: Option<PathBuf>,
    store: Option<Arc<Store>>,
    source: Option<SourceSpec>,
    custom_source: Option<Box<dyn PowerSource>>,
    interval: Duration,
    buffer: Option<Arc<SampleBuffer>>,
    run: NewRun,
    sync: Option<(SyncFn, SyncPoint)>,
    vocabulary: Vocabulary,
    ring_records: usize,
    memory_budget: usize,
    overflow: Overflow,
    rotate_every: Option<Duration>,
    finish_wait: Option<Duration>,
    baseline: Option<(Duration, bool)>,
    attribution: crate::Attribution,
    metrics_addr: Option<std::net::SocketAddr>,
}

/// The longest the end of a run waits, by default, for the last power sample: twice the
/// interval plus a second, but never more than this.
pub const MAX_DEFAULT_FINISH_WAIT: Duration = Duration::from_secs(3);

/// How much longer than asked [`EnergyLayerBuilder::sensor_baseline`] waits for a first
/// window when none has ended in its duration (a source with long windows).
pub const SENSOR_BASELINE_GRACE: Duration = Duration::from_secs(10);

/// The default memory budget: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;

impl EnergyLayerBuilder {
    pub(crate) fn new() -> EnergyLayerBuilder {
        EnergyLayerBuilder {
            db: None,
            store: None,
            source: Some(SourceSpec::Auto),
            custom_source: None,
            interval: Duration::from_millis(100),
            buffer: None,
            run: NewRun::new(),
            sync: None,
            vocabulary: Vocabulary::new(),
            ring_records: 1 << 15,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            overflow: Overflow::default(),
            rotate_every: None,
            finish_wait: None,
            baseline: None,
            attribution: crate::Attribution::Overlap,
            metrics_addr: None,
        }
    }

    /// Writes to the database at this path (default `profiles.db`).
    pub fn db(mut self, path: impl Into<PathBuf>) -> Self {
        self.db = Some(path.into());
        self
    }

    /// Writes to an open store.
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The power source (default [`SourceSpec::Auto`]: powermetrics where it works, else the
    /// CPU-time estimate). `None` records times only (energies stay unknown).
    pub fn power(mut self, source: Option<SourceSpec>) -> Self {
        self.source = source;
        self
    }

    /// Uses this power source (e.g. one of your own) instead of a named one.
    pub fn custom_source(mut self, source: Box<dyn PowerSource>) -> Self {
        self.custom_source = Some(source);
        self
    }

    /// The sample interval (default 100 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Samples into this buffer instead of the global one.
    pub fn buffer(mut self, buffer: Arc<SampleBuffer>) -> Self {
        self.buffer = Some(buffer);
        self
    }

    /// The model's name, stored on the run.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.run.model = Some(model.into());
        self
    }

    /// The prompt, stored on the run.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.run.prompt = Some(prompt.into());
        self
    }

    /// Tags, stored on the run.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.run.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The experiment's name, stored on the run.
    pub fn experiment(mut self, name: impl Into<String>) -> Self {
        self.run.experiment = Some(name.into());
        self
    }

    /// Calls `hook` at the chosen boundaries, before the span's end time is read.
    pub fn synchronize(mut self, hook: SyncFn, at: SyncPoint) -> Self {
        self.sync = Some((hook, at));
        self
    }

    /// The span vocabulary (default [`Vocabulary::new`]).
    pub fn vocabulary(mut self, vocabulary: Vocabulary) -> Self {
        self.vocabulary = vocabulary;
        self
    }

    /// Records each thread's ring holds (default 32,768: 2 MiB) before the [`Overflow`]
    /// policy applies. Threads that start tracing once the rings' half of the memory budget
    /// is spent get rings of 1,024 records.
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.ring_records = records;
        self
    }

    /// The memory the profiler may hold for records not yet written (default 64 MiB): half
    /// for the per-thread rings, half for the records the processor holds until the power
    /// samples cover them (queued records and open token trees). When the processor's half
    /// is full it stops taking records, the rings fill, and the [`Overflow`] policy applies
    /// (counted on the run). Open span instances (one small aggregate per span the program
    /// holds open) are not held back: only the program closing its spans frees them.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes.max(1 << 20);
        self
    }

    /// What a thread does when its ring is full (default [`Overflow::Wait`] 200 ms).
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// Closes the run and starts the next (same metadata) every `period`, for programs that
    /// run for a long time. Each run's report is logged; [`super::EnergyGuard::rotate`] does
    /// the same on demand.
    pub fn rotate_every(mut self, period: Duration) -> Self {
        self.rotate_every = Some(period.max(Duration::from_millis(100)));
        self
    }

    /// How long finishing (or rotating) waits at most for the power samples that cover the
    /// run's end; what they do not cover by then is recorded as unmeasured (the run's
    /// `measured_ms` says how much was covered). Default: twice the window length (the
    /// interval, or the source's own windows where longer, as a replayed capture's) plus
    /// 1 s, at most 3 s (`MAX_DEFAULT_FINISH_WAIT`), so a long interval never holds a
    /// program's exit.
    pub fn finish_wait(mut self, wait: Duration) -> Self {
        self.finish_wait = Some(wait);
        self
    }

    /// Measures an idle baseline for `duration` before the run starts (default: none): the
    /// run's own source, started once, runs for `duration` while the program is expected to
    /// do nothing, its windows' mean power per domain is stored on the run, and the run
    /// starts after it ([`build`](Self::build) returns then). Every energy figure can then
    /// be read gross or dynamic (above idle). A zero `duration` means no baseline. Without
    /// a power source there is nothing to measure and no baseline.
    pub fn baseline(mut self, duration: Duration) -> Self {
        self.baseline = (!duration.is_zero()).then_some((duration, false));
        self
    }

    /// As [`baseline`](Self::baseline), but only when the chosen source is a sensor (with
    /// an estimated source, which has no idle power model, there is no baseline), and, when
    /// no window has ended within `duration`, waiting up to `SENSOR_BASELINE_GRACE` (10 s) more
    /// for the first. This is what `tracing-energy profile` does by default, where `auto`
    /// may choose either kind of source.
    pub fn sensor_baseline(mut self, duration: Duration) -> Self {
        self.baseline = (!duration.is_zero()).then_some((duration, true));
        self
    }

    /// How the run's energy is shared between its sections (default
    /// [`Attribution::Overlap`](crate::Attribution::Overlap)). With
    /// [`Attribution::Regression`](crate::Attribution::Regression) the processor keeps the
    /// run's records until it ends (or rotates), fits each component kind's power over the
    /// run's windows, stores the fit in `component_power`, and writes rows whose
    /// `energy_method` is `regression`; where the fit is refused, or the kept records
    /// outgrow half the [`memory_budget`](Self::memory_budget), the run falls back to
    /// `overlap` and says why in its warnings.
    pub fn attribution(mut self, method: crate::Attribution) -> Self {
        self.attribution = method;
        self
    }

    /// Serves live Prometheus metrics at `http://ADDR/metrics` for as long as the guard
    /// lives (see [`crate::metrics`] for the series): power per domain, energy so far,
    /// energy per span path, tokens and dropped records. Port 0 picks a free port
    /// ([`EnergyGuard::metrics_addr`] says which). The address is bound by
    /// [`build`](Self::build), before anything else starts: an address in use is
    /// [`Error::MetricsListen`](crate::Error::MetricsListen) and no run is created.
    /// Listen on `127.0.0.1` unless other machines must scrape it.
    pub fn metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Opens the store, starts the sampler and the processor, and creates the run.
    pub fn build(self) -> Result<(EnergyLayer, EnergyGuard)> {
        clock::init();
        let metrics = match self.metrics_addr {
            Some(addr) => {
                let live = Arc::new(LiveMetrics::new());
                let server = MetricsServer::start(addr, Arc::clone(&live))?;
                Some((live, server))
            }
            None => None,
        };
        // Once per process, before the sampler starts competing for the core.
        let hot_ns_per_pair = super::calibrate::ns_per_pair();
        let store = match self.store {
            Some(s) => s,
            None => Arc::new(Store::open(
                self.db.unwrap_or_else(|| PathBuf::from("profiles.db")),
            )?),
        };
        let buffer = self.buffer.unwrap_or_else(SampleBuffer::global);
        let mut notes = Vec::new();
        let source = match (self.custom_source, &self.source) {
            (Some(custom), _) => Some(custom),
            (None, Some(spec)) => {
                let chosen = spec.build_for_profile()?;
                notes.extend(chosen.note);
                Some(chosen.source)
            }
            (None, None) => None,
        };
        let since_ns = clock::now_ns();
        let sampler = match source {
            None => None,
            Some(source) => Some(Sampler::start(
                source,
                SamplerConfig::new(self.interval).buffer(Arc::clone(&buffer)),
            )?),
        };
        let mut run = self.run;
        if let Some(s) = &sampler {
            run.power_source = Some(s.source_name().to_string());
            run.estimated = s.estimated();
            run.sample_interval_ms = Some(self.interval.as_secs_f64() * 1000.0);
            run.power_method = s.method().map(str::to_string);
            run.counter_update_ms = s.counter_update().map(|p| p.as_secs_f64() * 1000.0);
            if let Some(period) = s.counter_update().filter(|p| *p > self.interval) {
                notes.push(format!(
                    "the sample interval ({:.1} ms) is shorter than `{}`'s counter update period ({:.1} ms, measured): windows are {:.1} ms long instead",
                    self.interval.as_secs_f64() * 1000.0,
                    s.source_name(),
                    period.as_secs_f64() * 1000.0,
                    period.as_secs_f64() * 1000.0,
                ));
            }
        }
        if let (Some(s), Some((duration, sensors_only))) = (&sampler, self.baseline) {
            if !(sensors_only && s.estimated()) {
                // The sampler is dropped (stopped) if this fails: no run is created.
                // The default (sensors only) waits up to 10 s more for a first window
                // longer than `duration`; an explicit baseline is held to its length.
                let grace = if sensors_only {
                    SENSOR_BASELINE_GRACE
                } else {
                    Duration::ZERO
                };
                run.baseline = Some(crate::baseline::wait_for(s, since_ns, duration, grace)?);
            }
        }
        let run_id = store.create_run(&run)?;
        let shared = Arc::new(Shared::new(
            self.vocabulary,
            self.sync,
            self.ring_records,
            self.memory_budget / 2,
            self.overflow,
        ));
        let processor = Processor::spawn(Setup {
            shared: Arc::clone(&shared),
            store: Arc::clone(&store),
            run_id,
            run,
            buffer,
            sampler,
            start_ns: clock::now_ns(),
            interval: self.interval,
            memory_budget: self.memory_budget / 2,
            rotate_every: self.rotate_every,
            notes,
            finish_wait: self.finish_wait,
            hot_ns_per_pair,
            attribution: self.attribution,
            metrics: metrics.as_ref().map(|(live, _)| Arc::clone(live)),
        })?;
        Ok((
            EnergyLayer {
                shared: Arc::clone(&shared),
            },
            EnergyGuard::new(processor, shared, run_id, metrics.map(|(_, server)| server)),
        ))
    }
}

impl EnergyLayer {
    /// A builder with the defaults: `profiles.db`, source `auto`, 100 ms.
    pub fn builder() -> EnergyLayerBuilder {
        EnergyLayerBuilder::new()
    }
}
