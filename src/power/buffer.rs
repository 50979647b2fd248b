//! The sample buffer: bounded, thread-safe, ordered by window end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};

use super::{DomainEnergy, PowerSample};

/// A compact stored sample: 64 bytes, so that a 10-hour run at 100 ms (360,000 samples)
/// takes about 23 MB.
#[derive(Clone, Copy)]
struct Stored {
    start_ns: u64,
    end_ns: u64,
    /// Per-domain energy in mJ, NaN where not measured.
    energy: [f64; 4],
    total_mj: f64,
    source: u16,
    estimated: bool,
}

struct SourceEntry {
    name: Arc<str>,
    /// End of the latest window this source delivered.
    latest_end_ns: Option<u64>,
    /// True while a sampler runs this source.
    open: bool,
}

struct Inner {
    samples: VecDeque<Stored>,
    capacity: usize,
    sources: Vec<SourceEntry>,
    pushed: u64,
    evicted: u64,
    /// Longest window ever stored: bounds the overlap scan.
    max_window_ns: u64,
}

/// Process-wide store of power samples, ordered by window end.
///
/// Memory is bounded: when `capacity` samples are stored, the oldest is evicted (and
/// counted, see [`SampleBuffer::evicted`]). The default capacity,
/// [`SampleBuffer::DEFAULT_CAPACITY`], holds about 13.9 hours of 100 ms samples in
/// about 32 MB.
///
/// The *watermark* is the time up to which samples are complete: the earliest
/// latest-window-end over the sources that are still running (a section that ends before
/// the watermark has all the samples it will ever get). With no running source it is the
/// end of the last stored window.
pub struct SampleBuffer {
    inner: Mutex<Inner>,
    changed: Condvar,
}

static GLOBAL: Lazy<Arc<SampleBuffer>> = Lazy::new(|| Arc::new(SampleBuffer::new()));

/// A handle to a source registered in a [`SampleBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceId(u16);

impl SampleBuffer {
    /// Default capacity: 500,000 samples (13.9 h at 100 ms, about 32 MB).
    pub const DEFAULT_CAPACITY: usize = 500_000;

    /// A new buffer with the default capacity.
    pub fn new() -> SampleBuffer {
        SampleBuffer::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A new buffer that holds at most `capacity` samples (at least 1).
    pub fn with_capacity(capacity: usize) -> SampleBuffer {
        let capacity = capacity.max(1);
        SampleBuffer {
            inner: Mutex::new(Inner {
                samples: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
                sources: Vec::new(),
                pushed: 0,
                evicted: 0,
                max_window_ns: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// The process-wide buffer that samplers feed by default.
    pub fn global() -> Arc<SampleBuffer> {
        Arc::clone(&GLOBAL)
    }

    /// Registers a running source. Its samples hold the watermark back until
    /// [`SampleBuffer::close_source`].
    pub fn open_source(&self, name: &str) -> SourceId {
        let mut inner = self.inner.lock();
        inner.sources.push(SourceEntry {
            name: Arc::from(name),
            latest_end_ns: None,
            open: true,
        });
        let id = inner.sources.len() - 1;
        SourceId(u16::try_from(id).expect("more than 65,535 power sources in one buffer"))
    }

    /// Marks a source as no longer running: it no longer holds the watermark back.
    pub fn close_source(&self, id: SourceId) {
        let mut inner = self.inner.lock();
        if let Some(s) = inner.sources.get_mut(id.0 as usize) {
            s.open = false;
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// The name a source was registered under.
    pub fn source_name(&self, id: SourceId) -> Arc<str> {
        Arc::clone(&self.inner.lock().sources[id.0 as usize].name)
    }

    /// Stores a sample from a registered source.
    pub fn push(&self, id: SourceId, sample: &PowerSample) {
        let stored = Stored {
            start_ns: sample.start_ns,
            end_ns: sample.end_ns,
            energy: sample.energy.to_array(),
            total_mj: sample.total_mj,
            source: id.0,
            estimated: sample.estimated,
        };
        let mut inner = self.inner.lock();
        if inner.samples.len() == inner.capacity {
            inner.samples.pop_front();
            inner.evicted += 1;
        }
        // Almost always appended; a second source may deliver slightly out of order.
        let pos = inner
            .samples
            .iter()
            .rposition(|s| s.end_ns <= stored.end_ns)
            .map_or(0, |i| i + 1);
        inner.samples.insert(pos, stored);
        inner.pushed += 1;
        inner.max_window_ns = inner.max_window_ns.max(stored.end_ns - stored.start_ns);
        let entry = &mut inner.sources[id.0 as usize];
        entry.latest_end_ns = Some(
            entry
                .latest_end_ns
                .map_or(stored.end_ns, |e| e.max(stored.end_ns)),
        );
        drop(inner);
        self.changed.notify_all();
    }

    /// Samples whose window overlaps `[t0_ns, t1_ns]`, ordered by window end.
    pub fn overlapping(&self, t0_ns: u64, t1_ns: u64) -> Vec<PowerSample> {
        self.collect_overlapping(t0_ns, t1_ns, None)
    }

    /// Samples of one registered source whose window overlaps `[t0_ns, t1_ns]`.
    pub fn overlapping_source(&self, id: SourceId, t0_ns: u64, t1_ns: u64) -> Vec<PowerSample> {
        self.collect_overlapping(t0_ns, t1_ns, Some(&[id.0]))
    }

    /// The time up to which one source's samples are complete: the end of its latest
    /// window, or `None` before its first.
    pub fn source_watermark_ns(&self, id: SourceId) -> Option<u64> {
        self.inner
            .lock()
            .sources
            .get(id.0 as usize)
            .and_then(|s| s.latest_end_ns)
    }

    fn collect_overlapping(&self, t0: u64, t1: u64, sources: Option<&[u16]>) -> Vec<PowerSample> {
        let inner = self.inner.lock();
        // Windows are half-open [start, end): overlap means end > t0 and start < t1.
        let first = inner.samples.partition_point(|s| s.end_ns <= t0);
        let scan_limit = t1.saturating_add(inner.max_window_ns);
        inner
            .samples
            .range(first..)
            .take_while(|s| s.end_ns <= scan_limit)
            .filter(|s| {
                s.start_ns < t1.max(t0 + 1) && sources.is_none_or(|ids| ids.contains(&s.source))
            })
            .map(|s| inner.to_sample(s))
            .collect()
    }

    /// The time (ns since the process origin) up to which samples are complete, or `None`
    /// when a running source has not delivered anything yet (or nothing was ever stored).
    pub fn watermark_ns(&self) -> Option<u64> {
        self.inner.lock().watermark()
    }

    /// Waits until the watermark reaches `t_ns` or no source is running any more, for at
    /// most `timeout`. Returns the watermark reached (`None` as in
    /// [`SampleBuffer::watermark_ns`]).
    pub fn wait_for_watermark(&self, t_ns: u64, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.inner.lock();
        loop {
            let wm = inner.watermark();
            let any_open = inner.sources.iter().any(|s| s.open);
            if wm.is_some_and(|w| w >= t_ns) || !any_open {
                return wm;
            }
            if self.changed.wait_until(&mut inner, deadline).timed_out() {
                return inner.watermark();
            }
        }
    }

    /// Number of samples stored now.
    pub fn len(&self) -> usize {
        self.inner.lock().samples.len()
    }

    /// True when no sample is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of samples ever pushed.
    pub fn pushed(&self) -> u64 {
        self.inner.lock().pushed
    }

    /// Number of samples evicted because the buffer was full.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().evicted
    }

    /// The maximum number of samples held.
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// Removes every sample (registered sources stay registered).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.samples.clear();
        inner.max_window_ns = 0;
    }
}

impl Default for SampleBuffer {
    fn default() -> Self {
        SampleBuffer::new()
    }
}

impl Inner {
    fn to_sample(&self, s: &Stored) -> PowerSample {
        PowerSample {
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            energy: DomainEnergy::from_array(s.energy),
            total_mj: s.total_mj,
            source: Arc::clone(&self.sources[s.source as usize].name),
            estimated: s.estimated,
        }
    }

    fn watermark(&self) -> Option<u64> {
        let open: Vec<Option<u64>> = self
            .sources
            .iter()
            .filter(|s| s.open)
            .map(|s| s.latest_end_ns)
            .collect();
        if open.is_empty() {
            self.samples.iter().map(|s| s.end_ns).max()
        } else {
            open.into_iter()
                .try_fold(u64::MAX, |acc, e| e.map(|e| acc.min(e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::power::cpu_sample as sample;

    #[test]
    fn stored_sample_is_compact() {
        assert!(
            std::mem::size_of::<Stored>() <= 64,
            "{}",
            std::mem::size_of::<Stored>()
        );
    }

    #[test]
    fn overlap_query_is_half_open_and_ordered() {
        let b = SampleBuffer::with_capacity(100);
        let id = b.open_source("test");
        for k in 0..10u64 {
            b.push(id, &sample(k * 100, (k + 1) * 100, k as f64));
        }
        let got: Vec<u64> = b.overlapping(250, 420).iter().map(|s| s.start_ns).collect();
        assert_eq!(got, vec![200, 300, 400]);
        // Touching at an edge is not overlap.
        let got: Vec<u64> = b.overlapping(300, 400).iter().map(|s| s.start_ns).collect();
        assert_eq!(got, vec![300]);
        // A point query returns the window containing it.
        let got: Vec<u64> = b.overlapping(350, 350).iter().map(|s| s.start_ns).collect();
        assert_eq!(got, vec![300]);
        assert!(b.overlapping(5000, 6000).is_empty());
        assert_eq!(b.overlapping(0, 1000).last().unwrap().end_ns, 1000);
    }

    #[test]
    fn capacity_bounds_memory_and_counts_evictions() {
        let b = SampleBuffer::with_capacity(3);
        let id = b.open_source("test");
        for k in 0..5u64 {
            b.push(id, &sample(k * 10, k * 10 + 10, 1.0));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.evicted(), 2);
        assert_eq!(b.pushed(), 5);
        assert_eq!(b.overlapping(0, 100)[0].start_ns, 20);
    }

    #[test]
    fn out_of_order_push_keeps_order() {
        let b = SampleBuffer::with_capacity(10);
        let a = b.open_source("a");
        let c = b.open_source("c");
        b.push(a, &sample(0, 100, 1.0));
        b.push(a, &sample(100, 200, 1.0));
        b.push(c, &sample(50, 150, 2.0));
        let ends: Vec<u64> = b.overlapping(0, 300).iter().map(|s| s.end_ns).collect();
        assert_eq!(ends, vec![100, 150, 200]);
        assert_eq!(&*b.overlapping(120, 130)[0].source, "c");
    }

    #[test]
    fn watermark_follows_slowest_open_source() {
        let b = SampleBuffer::with_capacity(10);
        assert_eq!(b.watermark_ns(), None);
        let a = b.open_source("a");
        let c = b.open_source("c");
        b.push(a, &sample(0, 100, 1.0));
        assert_eq!(b.watermark_ns(), None, "c has delivered nothing yet");
        b.push(c, &sample(0, 80, 1.0));
        assert_eq!(b.watermark_ns(), Some(80));
        b.close_source(c);
        assert_eq!(b.watermark_ns(), Some(100));
        b.close_source(a);
        assert_eq!(b.watermark_ns(), Some(100));
    }

    #[test]
    fn wait_for_watermark_wakes_on_push() {
        let b = Arc::new(SampleBuffer::with_capacity(10));
        let id = b.open_source("a");
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            b2.push(id, &sample(0, 500, 1.0));
        });
        let wm = b.wait_for_watermark(400, Duration::from_secs(10));
        assert_eq!(wm, Some(500));
        t.join().unwrap();
        // Times out honestly when nothing arrives.
        assert_eq!(
            b.wait_for_watermark(10_000, Duration::from_millis(20)),
            Some(500)
        );
    }

    #[test]
    fn unknown_domains_stay_unknown() {
        let b = SampleBuffer::with_capacity(10);
        let id = b.open_source("test");
        b.push(id, &sample(0, 100, 5.0));
        let s = b.overlapping(0, 100).pop().unwrap();
        assert_eq!(s.energy.cpu, Some(5.0));
        assert_eq!(s.energy.gpu, None);
        assert_eq!(s.energy.dram, None);
    }
}
