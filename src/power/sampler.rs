//! The sampler thread: runs one [`PowerSource`] and feeds a [`SampleBuffer`].

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde::Serialize;

use super::{
    Availability, PowerSample, PowerSource, SampleBuffer, SamplerProcessTally,
    SamplerProcessWindow, SourceId,
};
use crate::{Error, Result};

/// How a sampler runs.
#[derive(Clone)]
pub struct SamplerConfig {
    /// The requested window length. Sources may deliver slightly longer windows
    /// (powermetrics: 1-8 % longer).
    pub interval: Duration,
    /// Where samples go. Defaults to [`SampleBuffer::global`].
    pub buffer: Arc<SampleBuffer>,
    /// An optional channel that receives a copy of every sample as it arrives.
    pub tap: Option<Sender<PowerSample>>,
    /// Log the source's failure as a warning (default true; the status says it anyway).
    pub log_failure: bool,
}

impl SamplerConfig {
    /// Samples every `interval` into the global buffer.
    pub fn new(interval: Duration) -> SamplerConfig {
        SamplerConfig {
            interval,
            buffer: SampleBuffer::global(),
            tap: None,
            log_failure: true,
        }
    }

    /// Feeds `buffer` instead of the global buffer.
    pub fn buffer(mut self, buffer: Arc<SampleBuffer>) -> SamplerConfig {
        self.buffer = buffer;
        self
    }

    /// Also sends every sample to `tap` (sending never blocks the sampler: use an
    /// unbounded channel or one with room).
    pub fn tap(mut self, tap: Sender<PowerSample>) -> SamplerConfig {
        self.tap = Some(tap);
        self
    }
}

/// How [`PowerSource::run`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEnd {
    /// It stopped because it was asked to.
    Stopped,
    /// Its data ended on its own (e.g. a replayed capture reached its end).
    Finished,
}

/// The state of a sampler's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum SamplerStatus {
    /// Delivering samples.
    Running,
    /// Stopped on request.
    Stopped,
    /// Its data ended on its own.
    Finished,
    /// Failed; the text says why. Samples delivered before the failure stay in the buffer.
    Failed(String),
}

struct Shared {
    status: Mutex<SamplerStatus>,
    emitted: AtomicU64,
    rejected: Mutex<Vec<(&'static str, u64)>>,
    /// CPU time of the sampler thread and the source's helper threads.
    cpu: crate::cpu_time::CpuTally,
    /// The source's own process, where the source can tell (see [`SamplerProcessTally`]).
    process: SamplerProcessTally,
}

/// What a source sees while it runs: where to deliver samples and when to stop.
pub struct SourceContext {
    interval: Duration,
    stop_rx: Receiver<()>,
    stop_flag: Arc<AtomicBool>,
    buffer: Arc<SampleBuffer>,
    id: SourceId,
    tap: Option<Sender<PowerSample>>,
    shared: Arc<Shared>,
    source_name: Arc<str>,
    /// The sampler thread's CPU time, published at every window and when it ends.
    cpu: crate::cpu_time::CpuSlot,
}

impl SourceContext {
    /// The requested window length.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The name samples carry.
    pub fn source_name(&self) -> Arc<str> {
        Arc::clone(&self.source_name)
    }

    /// Delivers one sample.
    pub fn emit(&mut self, sample: PowerSample) {
        self.cpu.publish();
        self.buffer.push(self.id, &sample);
        self.shared.emitted.fetch_add(1, Ordering::Relaxed);
        if let Some(tap) = &self.tap {
            let _ = tap.try_send(sample);
        }
    }

    /// Reports what the window about to be emitted says about the source's own process (a
    /// child such as powermetrics): `None` when this window cannot tell. Call it before
    /// [`emit`](Self::emit), and only from a source that can tell at all: a source that
    /// never calls it leaves the figure unknown ([`Sampler::process_tally`]).
    pub fn report_own_process(&mut self, window: Option<SamplerProcessWindow>) {
        self.shared.process.add(window);
    }

    /// Counts a window that could not be used. The first of each `kind` is logged as a
    /// warning with `detail`; the rest are only counted (see [`SamplerReport::rejected`]).
    pub fn reject(&mut self, kind: &'static str, detail: &str) {
        let mut rejected = self.shared.rejected.lock();
        match rejected.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => {
                rejected.push((kind, 1));
                tracing::warn!(
                    source = &*self.source_name,
                    "dropped a power sample ({kind}): {detail}; further ones of this kind are only counted"
                );
            }
        }
    }

    /// True once the sampler has been asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop_flag.load(Ordering::Acquire)
    }

    /// A channel that becomes ready (disconnected) when a stop is requested, for use in
    /// `crossbeam_channel::select!`.
    pub fn stop_channel(&self) -> &Receiver<()> {
        &self.stop_rx
    }

    /// Sleeps for `d`, waking early on a stop request. Returns true if a stop was requested.
    pub fn wait(&self, d: Duration) -> bool {
        self.cpu.publish();
        match self.stop_rx.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => self.stop_requested(),
            _ => true,
        }
    }

    /// A CPU-time slot for a helper thread the source spawns (a reader of a subprocess's
    /// output): the helper calls [`CpuSlot::publish`](crate::cpu_time::CpuSlot::publish)
    /// on every round and before it ends, and its CPU time counts in the sampler's
    /// ([`Sampler::cpu_ns`]), the profiler's own cost.
    pub fn helper_cpu(&self) -> crate::cpu_time::CpuSlot {
        self.shared.cpu.slot()
    }

    /// A flag shared with helper threads of the source: true once a stop is requested.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop_flag)
    }

    /// Calls `window` at the end of every `interval` on a fixed grid that starts at
    /// `start_ns`, with the window's start; `window` reads the source, emits and returns the
    /// window's end, which starts the next. A tick that comes late (a suspended or
    /// overloaded machine) does not try to catch up: the next is an interval after it.
    /// Returns once a stop is requested, or with `window`'s error.
    pub fn every(
        &mut self,
        interval: Duration,
        start_ns: u64,
        mut window: impl FnMut(&mut SourceContext, u64) -> crate::Result<u64>,
    ) -> crate::Result<SourceEnd> {
        let interval_ns = interval.as_nanos() as u64;
        let (mut start, mut next) = (start_ns, start_ns + interval_ns);
        loop {
            if self.wait(Duration::from_nanos(
                next.saturating_sub(crate::clock::now_ns()),
            )) {
                return Ok(SourceEnd::Stopped);
            }
            let end = window(self, start)?;
            start = end;
            next += interval_ns;
            if next <= end {
                next = end + interval_ns;
            }
        }
    }
}

/// What a sampler did, returned by [`Sampler::stop`].
#[derive(Debug, Clone, Serialize)]
pub struct SamplerReport {
    /// The source's name.
    pub source: String,
    /// True when the source estimates.
    pub estimated: bool,
    /// How it ended.
    pub status: SamplerStatus,
    /// Samples delivered.
    pub samples: u64,
    /// Windows that could not be used, counted by kind.
    pub rejected: Vec<(String, u64)>,
}

/// A running power source. Dropping it stops the source (also while unwinding from a
/// panic); [`Sampler::stop`] does the same and reports.
pub struct Sampler {
    stop_tx: Option<Sender<()>>,
    stop_flag: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    name: String,
    estimated: bool,
    buffer: Arc<SampleBuffer>,
    id: SourceId,
    counter_update: Option<Duration>,
    method: Option<String>,
}

impl Sampler {
    /// Checks that `source` can run here, then runs it on its own thread.
    pub fn start(mut source: Box<dyn PowerSource>, config: SamplerConfig) -> Result<Sampler> {
        if config.interval < Duration::from_millis(1) {
            return Err(Error::InvalidSetting {
                name: "interval",
                reason: format!("{:?} is too short; use at least 1 ms", config.interval),
            });
        }
        let name = source.name();
        if let Availability::Unavailable { reason, fix } = source.is_available() {
            return Err(Error::SourceUnavailable {
                source_name: name,
                reason,
                fix,
            });
        }
        crate::clock::init();
        let estimated = source.estimated();
        let counter_update = source.counter_update_period()?;
        let method = source.method();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            status: Mutex::new(SamplerStatus::Running),
            emitted: AtomicU64::new(0),
            rejected: Mutex::new(Vec::new()),
            cpu: crate::cpu_time::CpuTally::default(),
            process: SamplerProcessTally::default(),
        });
        let id = config.buffer.open_source(&name);
        let mut ctx = SourceContext {
            interval: config.interval,
            stop_rx,
            stop_flag: Arc::clone(&stop_flag),
            buffer: Arc::clone(&config.buffer),
            id,
            tap: config.tap,
            shared: Arc::clone(&shared),
            source_name: Arc::from(name.as_str()),
            cpu: shared.cpu.slot(),
        };
        let thread_shared = Arc::clone(&shared);
        let log_failure = config.log_failure;
        let thread = std::thread::Builder::new()
            .name("tracing-energy-sampler".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| source.run(&mut ctx)));
                let status = match result {
                    Ok(Ok(SourceEnd::Stopped)) => SamplerStatus::Stopped,
                    Ok(Ok(SourceEnd::Finished)) => SamplerStatus::Finished,
                    Ok(Err(e)) => SamplerStatus::Failed(e.to_string()),
                    Err(panic) => SamplerStatus::Failed(format!(
                        "the source panicked: {}",
                        panic_message(&panic)
                    )),
                };
                if let (true, SamplerStatus::Failed(reason)) = (log_failure, &status) {
                    tracing::warn!(source = &*ctx.source_name, "power source failed: {reason}");
                }
                *thread_shared.status.lock() = status;
                ctx.buffer.close_source(ctx.id);
                ctx.cpu.publish();
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                config.buffer.close_source(id);
                return Err(Error::Thread(e));
            }
        };
        Ok(Sampler {
            stop_tx: Some(stop_tx),
            stop_flag,
            thread: Some(thread),
            shared,
            name,
            estimated,
            buffer: config.buffer,
            id,
            counter_update,
            method,
        })
    }

    /// The sensor counter's measured update period, where the source knows one (see
    /// [`PowerSource::counter_update_period`]).
    pub fn counter_update(&self) -> Option<Duration> {
        self.counter_update
    }

    /// How the source measures, where it says (see [`PowerSource::method`]).
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.name
    }

    /// True when the source estimates rather than measures.
    pub fn estimated(&self) -> bool {
        self.estimated
    }

    /// The source's registration in the buffer (for [`SampleBuffer::overlapping_source`]).
    pub fn source_id(&self) -> SourceId {
        self.id
    }

    /// The buffer this sampler feeds.
    pub fn buffer(&self) -> &Arc<SampleBuffer> {
        &self.buffer
    }

    /// The source's state now.
    pub fn status(&self) -> SamplerStatus {
        self.shared.status.lock().clone()
    }

    /// Samples delivered so far.
    pub fn samples(&self) -> u64 {
        self.shared.emitted.load(Ordering::Relaxed)
    }

    /// CPU time of the sampler thread and its source's helper threads so far (ns): exact
    /// once the sampler is stopped, otherwise as of each thread's last window (see
    /// [`crate::cpu_time`]); `None` where threads' CPU time cannot be read.
    pub fn cpu_ns(&self) -> Option<u64> {
        self.shared.cpu.total_ns()
    }

    /// The CPU-time slots behind [`Sampler::cpu_ns`], readable after the sampler stopped.
    pub(crate) fn cpu_tally(&self) -> crate::cpu_time::CpuTally {
        self.shared.cpu.clone()
    }

    /// What the source reported about its own process (see
    /// [`SourceContext::report_own_process`]), readable after the sampler stopped.
    pub fn process_tally(&self) -> SamplerProcessTally {
        self.shared.process.clone()
    }

    /// Stops the source (if still running), waits for its thread, and reports.
    pub fn stop(mut self) -> SamplerReport {
        self.shutdown();
        SamplerReport {
            source: self.name.clone(),
            estimated: self.estimated,
            status: self.status(),
            samples: self.samples(),
            rejected: self
                .shared
                .rejected
                .lock()
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
        }
    }

    fn shutdown(&mut self) {
        self.stop_flag.store(true, Ordering::Release);
        drop(self.stop_tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
