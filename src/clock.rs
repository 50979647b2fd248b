//! The process-wide monotonic timeline.
//!
//! Sections (from spans) and power samples are placed on one timeline: nanoseconds since
//! the *process time origin*, the first time anything in this crate read the clock. The
//! clock is [`quanta`]'s: it reads the CPU's invariant time-stamp counter where that is
//! reliable (a few nanoseconds per read, no system call) and falls back to the operating
//! system's monotonic clock elsewhere.

use once_cell::sync::Lazy;

struct Timeline {
    clock: quanta::Clock,
    origin_raw: u64,
}

static TIMELINE: Lazy<Timeline> = Lazy::new(|| {
    let clock = quanta::Clock::new();
    let origin_raw = clock.raw();
    Timeline { clock, origin_raw }
});

/// Forces the clock's calibration and fixes the process time origin now.
///
/// Calling it is optional: the first reading does the same. Call it early (before the
/// work to be measured) so that the calibration does not land in a measured section.
pub fn init() {
    Lazy::force(&TIMELINE);
}

/// Nanoseconds since the process time origin, on the monotonic timeline.
#[inline]
pub fn now_ns() -> u64 {
    let t = &*TIMELINE;
    t.clock.delta_as_nanos(t.origin_raw, t.clock.raw())
}

/// A raw counter reading: the cheapest possible timestamp, for hot paths.
///
/// Convert it with [`raw_to_ns`] later, off the hot path.
#[inline]
pub fn raw() -> u64 {
    TIMELINE.clock.raw()
}

/// Converts a [`raw`] reading to nanoseconds since the process time origin.
///
/// Readings taken before the origin convert to 0.
#[inline]
pub fn raw_to_ns(raw: u64) -> u64 {
    let t = &*TIMELINE;
    if raw <= t.origin_raw {
        0
    } else {
        t.clock.delta_as_nanos(t.origin_raw, raw)
    }
}

/// Lowers the calling thread's scheduling priority (Linux: nice 10), so that background
/// work (the processor, the store's writer) runs in the gaps of the profiled program instead
/// of taking cores from it. Elsewhere it does nothing.
pub(crate) fn background_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only lowers the
    // priority, which needs no privilege, and failure is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_is_monotonic_and_tracks_wall_time() {
        init();
        let a = now_ns();
        let wall = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now_ns();
        let wall_ns = wall.elapsed().as_nanos() as u64;
        assert!(b > a);
        let diff = (b - a) as i64 - wall_ns as i64;
        assert!(
            diff.abs() < 2_000_000,
            "clock drifted {diff} ns from Instant over 20 ms"
        );
        let r = raw();
        assert!(raw_to_ns(r) >= b);
    }
}
