//! Times that nest for a viewer: a trace's `ts` and `dur` (microseconds, `f64`) from the
//! rows' integer nanoseconds, such that `ts + dur` summed in `f64` never passes the
//! enclosing event's (see [the trace's docs](super)).

use std::collections::HashMap;

use super::Keyed;

/// Nanoseconds since the origin as microseconds: one correctly rounded division, so that
/// the order of the nanoseconds is kept.
pub(super) fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Sets every complete event's `dur` (`events` in trace order) so that nesting survives
/// floating point: `ts + dur`, evaluated in `f64` as a viewer does, is the event's end in
/// microseconds, clamped to its parent's `ts + dur` (the innermost event of its thread still
/// open at its start that ends no earlier). So a child never ends after its parent for the
/// viewer, even where a parent's end is one no `f64` sum reaches exactly. An event that
/// overlaps another without nesting in the recorded nanoseconds is left as recorded.
pub(super) fn set_durations(events: &mut [Keyed]) {
    // Per thread, the open events: (end ns, end as the viewer sums it).
    let mut open: HashMap<u64, Vec<(u64, f64)>> = HashMap::new();
    for e in events.iter_mut() {
        let Some(tid) = e.tid else { continue };
        let stack = open.entry(tid).or_default();
        while stack.last().is_some_and(|&(end, _)| end <= e.start) {
            stack.pop();
        }
        let ts = micros(e.start);
        let mut end = micros(e.end);
        if let Some(&(parent_end, parent_sum)) = stack.last() {
            if e.end <= parent_end {
                end = end.min(parent_sum);
            }
        }
        e.dur = duration_to(ts, end, micros(e.end - e.start));
        stack.push((e.end, ts + e.dur));
    }
}

/// `dur` for an event from `ts` to `end` (microseconds) such that `ts + dur`, evaluated in
/// `f64`, is `end` exactly, or where no `f64` gives exactly `end`, the largest `dur` whose
/// sum stays below it; 0 when `end <= ts`. `plain` (the duration converted on its own) is
/// kept where it works: its text is the shortest.
fn duration_to(ts: f64, end: f64, plain: f64) -> f64 {
    if end <= ts {
        return 0.0;
    }
    if ts + plain == end {
        return plain;
    }
    let mut dur = end - ts;
    // `end - ts` is rounded at most half an ulp of `dur` (<= an ulp of `end`) away, so the
    // sum lands a step or two from `end`: walk `dur` to it.
    for _ in 0..4 {
        let sum = ts + dur;
        if sum == end {
            return dur;
        }
        dur = if sum > end {
            dur.next_down()
        } else {
            dur.next_up()
        };
    }
    // No `dur` gives `end` exactly: the largest below it.
    while dur > 0.0 && ts + dur > end {
        dur = dur.next_down();
    }
    dur.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::super::Source;
    use super::*;

    fn keyed(tid: u64, start: u64, end: u64) -> Keyed {
        Keyed {
            start,
            end,
            rank: 0,
            tid: Some(tid),
            dur: 0.0,
            source: Source::Section(0),
        }
    }

    #[test]
    fn an_end_is_reached_exactly_or_never_passed() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut exact, mut plain_passed, mut plain_kept) = (0, 0, 0);
        for i in 0..200_000 {
            // Runs of a second to a day, events from 0 ns to the whole run.
            let span = 1_000_000_000u64 << (i % 17);
            let a = next() % span;
            let b = a + next() % (span - a + 1);
            let (ts, end, plain) = (micros(a), micros(b), micros(b - a));
            let dur = duration_to(ts, end, plain);
            assert!(dur >= 0.0 && ts + dur <= end, "{a} {b}: {ts} + {dur}");
            exact += usize::from(ts + dur == end);
            plain_passed += usize::from(ts + plain > end);
            plain_kept += usize::from(dur == plain);
        }
        // The plain duration passes the end in some cases; the end is reached in most.
        assert!(plain_passed > 0, "{plain_passed}");
        assert!(plain_kept > 100_000, "{plain_kept}");
        assert!(exact > 190_000, "{exact}");
        assert_eq!(duration_to(5.0, 5.0, 0.0), 0.0);
        assert_eq!(duration_to(5.0, 4.0, 0.0), 0.0);
    }

    #[test]
    fn a_child_never_ends_after_its_parent_for_the_viewer() {
        // No f64 sum from 2254691.934 reaches 7049067.437 exactly: the parent ends just
        // below it, and a child ending at the same nanosecond (which reaches it) is
        // clamped to the parent's sum.
        let (ts, end) = (micros(2_254_691_934), micros(7_049_067_437));
        let d = duration_to(ts, end, micros(7_049_067_437 - 2_254_691_934));
        assert!(ts + d < end, "the case needs an end no sum reaches");
        let mut events = [
            keyed(1, 2_254_691_934, 7_049_067_437),
            keyed(1, 3_000_000_000, 7_049_067_437),
            keyed(1, 7_000_000_000, 7_049_067_437),
            // A sibling after the parent, and another thread's event, are not clamped.
            keyed(1, 7_049_067_437, 8_000_000_000),
            keyed(2, 3_000_000_000, 7_049_067_437),
        ];
        let child_alone = duration_to(micros(3_000_000_000), end, 0.0);
        assert_eq!(micros(3_000_000_000) + child_alone, end, "reached alone");
        set_durations(&mut events);
        let sum = |e: &Keyed| micros(e.start) + e.dur;
        assert!(sum(&events[1]) <= sum(&events[0]));
        assert!(sum(&events[2]) <= sum(&events[1]));
        assert_eq!(sum(&events[3]), micros(8_000_000_000));
        assert_eq!(sum(&events[4]), end);
    }
}
