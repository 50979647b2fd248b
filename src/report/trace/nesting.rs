//! Times that nest for a viewer: a trace's `ts` and `dur` (microseconds, `f64`) from the
//! rows' integer nanoseconds, such that the nesting of the nanoseconds survives a viewer's
//! floating point (see [the trace's docs](super)).
//!
//! Every time is written on a grid of 1/1024 µs (0.977 ns): a multiple of a power of two,
//! which `f64` holds exactly up to 2^53 grid steps (101 days). So `ts + dur` is the event's
//! end exactly, and it stays so after a viewer subtracts another event's `ts` to rebase the
//! timeline (speedscope subtracts each thread's first `ts`). A step is shorter than a
//! nanosecond, so rounding to the grid keeps distinct nanoseconds distinct and in order: a
//! child that ends before its parent (or with it) in nanoseconds does so for the viewer.

/// Grid steps per microsecond.
const STEPS_PER_MICRO: u64 = 1024;

/// Nanoseconds (since the origin) as grid steps, rounded to the nearest: `ns` x 128 / 125.
/// Strictly increasing in `ns`, since a step is shorter than a nanosecond.
fn steps(ns: u64) -> u64 {
    let steps = (u128::from(ns) * 128 + 62) / 125;
    u64::try_from(steps).unwrap_or(u64::MAX)
}

/// Grid steps as microseconds: exact below 2^53 steps.
fn steps_micros(steps: u64) -> f64 {
    steps as f64 / STEPS_PER_MICRO as f64
}

/// Nanoseconds since the origin as microseconds on the grid (an event's `ts`).
pub(super) fn micros(ns: u64) -> f64 {
    steps_micros(steps(ns))
}

/// The `dur` of an event from `start` to `end` (nanoseconds since the origin): on the grid,
/// so that `micros(start) + dur` is `micros(end)` exactly; 0 where `end <= start`.
pub(super) fn duration_micros(start: u64, end: u64) -> f64 {
    steps_micros(steps(end).saturating_sub(steps(start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: reproducible pseudo-random numbers.
    fn numbers() -> impl FnMut() -> u64 {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn the_grid_keeps_nanoseconds_in_order_and_within_half_a_step() {
        let mut next = numbers();
        for i in 0..200_000u64 {
            // Up to 2^46 ns (19.5 hours), and the neighbour of each.
            let ns = next() >> (18 + i % 30);
            assert!(steps(ns + 1) > steps(ns), "{ns}");
            let back = micros(ns) * 1000.0;
            assert!((back - ns as f64).abs() <= 0.5, "{ns}: {back}");
        }
        assert_eq!(micros(0), 0.0);
        assert_eq!(micros(1_000), 1.0);
        assert_eq!(micros(1_500), 1.5);
        assert_eq!(duration_micros(2_000, 1_000), 0.0);
    }

    #[test]
    fn ends_are_exact_even_after_a_viewer_rebases() {
        let mut next = numbers();
        let mut plain_passed = 0;
        for i in 0..200_000 {
            // Runs of a second to a day, events from 0 ns to the whole run, a child ending
            // with its parent.
            let span = 1_000_000_000u64 << (i % 17);
            let a = next() % span;
            let b = a + next() % (span - a + 1);
            let child = a + next() % (b - a + 1);
            let base = next() % (a + 1);
            let (ts, dur, end) = (micros(a), duration_micros(a, b), micros(b));
            assert_eq!(ts + dur, end, "{a} {b}");
            // speedscope subtracts the thread's first `ts` before adding `dur`.
            let rebased = micros(base);
            assert_eq!((ts - rebased) + dur, end - rebased, "{a} {b} {base}");
            let child_end = (micros(child) - rebased) + duration_micros(child, b);
            assert!(child_end <= end - rebased, "{a} {b} {child} {base}");
            // Nanosecond decimals and the plain duration pass the parent's end at times.
            let plain = |ns: u64| ns as f64 / 1000.0;
            let (p_base, p_end) = (plain(base), plain(a) - plain(base) + plain(b - a));
            plain_passed += usize::from(plain(child) - p_base + plain(b - child) > p_end);
        }
        assert!(plain_passed > 0, "{plain_passed}");
    }
}
