//! CPU time: of the calling thread and of the whole process, for the profiler's own cost
//! (stored on every run, see [`crate::store::ProfilerCost`]).
//!
//! Each of the profiler's threads (the sampler and any helper thread its source spawns, the
//! processor, the store's writer) reads its *own* CPU clock (`CLOCK_THREAD_CPUTIME_ID`)
//! and publishes it in a [`CpuSlot`] at every round (a sample window, a processing round, a
//! committed batch) and when it ends. Another thread reading a thread's clock from outside
//! (`pthread_getcpuclockid` on its `pthread_t`) would be exact at any instant, but only
//! while that thread lives: the sampler is joined before its run's end is written, and a
//! joined thread's `pthread_t` must not be used. A published value outlives its thread, so
//! a figure read after the thread ended is its final one; one read while it runs is at most
//! one round old (a sample window for the sampler).
//!
//! Reading the clock is one `clock_gettime` on a background thread per round, never on the
//! traced threads' hot path. A child process (powermetrics) is not ours: its CPU time is in
//! neither the sampler's figure nor the process's (powermetrics' own, where its `tasks`
//! sampler tells, is stored apart: [`crate::store::SamplerProcessCost`]).
//!
//! On platforms without per-thread CPU clocks everything here reads `None`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// The calling thread's CPU time (user + system, ns), `None` where it cannot be read.
pub fn thread_cpu_ns() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The whole process's CPU time so far (user + system of every thread; child processes
/// not included), from `getrusage(RUSAGE_SELF)`, or the system's error.
pub fn process_cpu() -> std::io::Result<std::time::Duration> {
    #[cfg(unix)]
    {
        // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tv =
            |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
        Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "process CPU time is read with getrusage, which this system lacks",
        ))
    }
}

/// [`process_cpu`] in nanoseconds, `None` where it cannot be read.
pub fn process_cpu_ns() -> Option<u64> {
    process_cpu().ok().map(|d| d.as_nanos() as u64)
}

/// One thread's CPU time as it last published it (ns). Starts at 0: a thread that has not
/// published yet has only just started. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct CpuSlot(Arc<AtomicU64>);

impl CpuSlot {
    /// A slot at 0.
    pub fn new() -> CpuSlot {
        CpuSlot::default()
    }

    /// Stores the calling thread's CPU time now. Call it from the thread the slot is for,
    /// at every round and when it ends.
    pub fn publish(&self) {
        if let Some(ns) = thread_cpu_ns() {
            self.0.store(ns, Ordering::Relaxed);
        }
    }

    /// A guard that publishes when dropped: a thread with many ways out publishes at its
    /// end by holding it.
    pub fn publish_on_drop(self) -> PublishOnDrop {
        PublishOnDrop(self)
    }

    /// The last published value (ns), `None` where threads' CPU time cannot be read.
    pub fn get(&self) -> Option<u64> {
        supported().then(|| self.0.load(Ordering::Relaxed))
    }
}

/// Publishes its slot when dropped (see [`CpuSlot::publish_on_drop`]).
#[derive(Debug)]
pub struct PublishOnDrop(CpuSlot);

impl PublishOnDrop {
    /// Publishes now (the thread goes on).
    pub fn publish(&self) {
        self.0.publish();
    }
}

impl Drop for PublishOnDrop {
    fn drop(&mut self) {
        self.0.publish();
    }
}

/// The slots of a group of threads (a power source's thread and its helpers), summed.
#[derive(Debug, Clone, Default)]
pub struct CpuTally(Arc<Mutex<Vec<CpuSlot>>>);

impl CpuTally {
    /// A new slot for one more thread of the group.
    pub fn slot(&self) -> CpuSlot {
        let slot = CpuSlot::new();
        self.0.lock().push(slot.clone());
        slot
    }

    /// The group's CPU time as last published (ns), `None` where it cannot be read.
    pub fn total_ns(&self) -> Option<u64> {
        supported().then(|| self.0.lock().iter().filter_map(CpuSlot::get).sum())
    }
}

/// Whether threads' CPU time can be read here.
pub fn supported() -> bool {
    cfg!(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(ms: u64) {
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(ms) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn a_spinning_thread_publishes_its_cpu_and_a_sleeping_one_almost_none() {
        if !supported() {
            return;
        }
        let tally = CpuTally::default();
        let (busy, idle) = (tally.slot(), tally.slot());
        let b = std::thread::spawn(move || {
            spin(60);
            busy.publish();
        });
        let i = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(60));
            idle.publish();
        });
        b.join().unwrap();
        i.join().unwrap();
        let total = tally.total_ns().unwrap();
        // On a loaded machine the spinning thread may get less than its wall time.
        assert!(total >= 10_000_000, "{total} ns");
        assert!(total < 2_000_000_000, "{total} ns");
        let before = process_cpu_ns().unwrap();
        spin(20);
        assert!(process_cpu_ns().unwrap() > before);
    }
}
