//! Intake: takes records out of the threads' rings into per-thread queues, feeding the
//! activity changes (a thread opening its first section, closing its last) to the energy
//! stream as they arrive. Records wait in their thread's queue, in the order the thread
//! produced them, until the energy stream covers them.

use std::collections::VecDeque;

use crate::attribution::EnergyStream;
use crate::clock;
use crate::layer::hot::{HotRecord, RingEnd, Shared, FLAG_IDLE};

/// A queued record and its time (the end of a section, the instant of an activation or
/// close; ns). The queue keeps beside it the start of the thread's activity it belongs to.
#[derive(Clone, Copy)]
pub(crate) struct Queued {
    pub(crate) record: HotRecord,
    pub(crate) time: u64,
}

struct ThreadIn {
    thread: u32,
    ring: rtrb::Consumer<HotRecord>,
    queue: VecDeque<(Queued, u64)>,
    /// Start of the thread's current activity, while it has a section open.
    open_since: Option<u64>,
    /// Start of the activity the newest queued record belongs to.
    activity: u64,
}

/// All threads' records not yet finalized.
#[derive(Default)]
pub(crate) struct Intake {
    threads: Vec<ThreadIn>,
    queued: usize,
    /// Latest time of any record taken.
    pub(crate) latest: u64,
}

impl Intake {
    /// Takes the rings of threads that started tracing since the last call.
    pub(crate) fn adopt(&mut self, shared: &Shared) {
        let mut new = shared.new_rings.lock();
        for RingEnd { thread, consumer } in new.drain(..) {
            self.threads.push(ThreadIn {
                thread,
                ring: consumer,
                queue: VecDeque::new(),
                open_since: None,
                activity: 0,
            });
        }
    }

    /// Records waiting in the queues.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Moves up to `limit` records from the rings into the queues (all when `limit` is
    /// `usize::MAX`), giving activity changes to `stream`. Returns how many it moved.
    pub(crate) fn drain(&mut self, stream: &mut EnergyStream, limit: usize) -> usize {
        let mut moved = 0;
        for t in &mut self.threads {
            while moved < limit {
                let Ok(record) = t.ring.pop() else { break };
                moved += 1;
                let time = match record {
                    HotRecord::Activate { at_raw } => {
                        let at = clock::raw_to_ns(at_raw);
                        stream.activity(at, 1);
                        t.open_since = Some(at);
                        t.activity = at;
                        at
                    }
                    HotRecord::Section(r) => {
                        let end = clock::raw_to_ns(r.end_raw);
                        if r.flags & FLAG_IDLE != 0 {
                            // A thread whose activation was lost (never the case unless
                            // its ring overflowed) is not counted down below zero.
                            if t.open_since.take().is_some() {
                                stream.activity(end, -1);
                            }
                        }
                        end
                    }
                    HotRecord::Close { at_raw, .. } => clock::raw_to_ns(at_raw),
                };
                self.latest = self.latest.max(time);
                t.queue.push_back((Queued { record, time }, t.activity));
                self.queued += 1;
            }
        }
        // Threads that ended (ring abandoned and empty) with nothing queued are forgotten.
        self.threads
            .retain(|t| !(t.ring.is_abandoned() && t.ring.is_empty() && t.queue.is_empty()));
        moved
    }

    /// Hands every queued record whose time is at or before `upto` to `f`, thread by thread,
    /// each thread's in order.
    pub(crate) fn pop_ready(&mut self, upto: u64, mut f: impl FnMut(u32, Queued)) {
        for t in &mut self.threads {
            while t.queue.front().is_some_and(|(q, _)| q.time <= upto) {
                let (q, _) = t.queue.pop_front().expect("front exists");
                self.queued -= 1;
                f(t.thread, q);
            }
        }
    }

    /// The oldest time a queued or future record may start at: the start of the activity
    /// of each thread's oldest queued record, or of its open activity.
    pub(crate) fn horizon(&self) -> u64 {
        self.threads
            .iter()
            .filter_map(|t| match (t.queue.front(), t.open_since) {
                (Some((_, a)), Some(o)) => Some((*a).min(o)),
                (Some((_, a)), None) => Some(*a),
                (None, o) => o,
            })
            .min()
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::builder::Overflow;
    use crate::layer::hot::SectionRecord;
    use crate::layer::Vocabulary;

    fn section(thread: u32, start: u64, end: u64, flags: u8) -> HotRecord {
        HotRecord::Section(SectionRecord {
            serial: 1,
            parent: 0,
            phase: 0,
            thread,
            depth: 0,
            flags,
            start_raw: start,
            end_raw: end,
        })
    }

    #[test]
    fn activity_reaches_the_stream_and_records_wait_for_the_frontier() {
        clock::init();
        let shared = Shared::new(Vocabulary::new(), None, 1024, 1 << 20, Overflow::Drop);
        let (mut p0, c0) = rtrb::RingBuffer::new(64);
        shared.new_rings.lock().push(RingEnd {
            thread: 0,
            consumer: c0,
        });
        // Raw clock values convert to ns; work in converted times throughout.
        let t = |raw: u64| clock::raw_to_ns(raw);
        let base = clock::raw();
        p0.push(HotRecord::Activate { at_raw: base }).unwrap();
        p0.push(section(0, base, base + 1_000_000, 0)).unwrap();
        p0.push(section(0, base, base + 2_000_000, FLAG_IDLE))
            .unwrap();
        let mut intake = Intake::default();
        intake.adopt(&shared);
        let mut stream = EnergyStream::new(t(base).saturating_sub(1));
        assert_eq!(intake.drain(&mut stream, usize::MAX), 3);
        assert_eq!(intake.queued(), 3);
        // The thread's activity began at the activation: nothing before it may be pruned.
        assert_eq!(intake.horizon(), t(base));
        let mut seen = Vec::new();
        intake.pop_ready(t(base + 1_000_000), |_, q| seen.push(q.time));
        assert_eq!(seen, [t(base), t(base + 1_000_000)]);
        assert_eq!(intake.queued(), 1);
        intake.pop_ready(u64::MAX, |_, q| seen.push(q.time));
        assert_eq!(intake.queued(), 0);
        // Idle again and nothing queued: no constraint on pruning.
        assert_eq!(intake.horizon(), u64::MAX);
        // A thread that ended is forgotten once drained.
        drop(p0);
        intake.drain(&mut stream, usize::MAX);
        assert!(intake.threads.is_empty());
    }
}
