//! Placing back-to-back measurement windows on the monotonic timeline.
//!
//! powermetrics reports each window's true length (`elapsed_ns`) but no usable time of day
//! (its `timestamp` has 1-second resolution). Its windows are back to back, so window `k`
//! is placed at `[end_{k-1}, end_{k-1} + elapsed_k]`, anchored on the arrival time of the
//! first window (a window is complete when it arrives, so its end is at or before its
//! arrival).
//!
//! Arrival is also an upper bound for every later window's end. When the chain runs ahead
//! of arrival (the first anchor was late), the window is shortened to end at arrival, but
//! never below half its reported length; its energy is unchanged.

/// Places consecutive windows.
#[derive(Debug, Clone)]
pub(crate) struct WindowChain {
    prev_end: Option<u64>,
    floor_ns: u64,
}

impl WindowChain {
    /// A chain whose first window starts no earlier than `floor_ns` (e.g. the time the
    /// measuring process was started).
    pub(crate) fn new(floor_ns: u64) -> WindowChain {
        WindowChain {
            prev_end: None,
            floor_ns,
        }
    }

    /// Places the next window, `elapsed_ns` long, that arrived at `arrival_ns`.
    /// Returns `(start_ns, end_ns)` with `end_ns > start_ns`.
    pub(crate) fn place(&mut self, elapsed_ns: u64, arrival_ns: u64) -> (u64, u64) {
        let elapsed_ns = elapsed_ns.max(1);
        let (start, end) = match self.prev_end {
            None => {
                let end = arrival_ns.max(self.floor_ns + 1);
                let start = end.saturating_sub(elapsed_ns).max(self.floor_ns);
                (start, end)
            }
            Some(prev) => {
                let chained = prev + elapsed_ns;
                let min_end = prev + (elapsed_ns / 2).max(1);
                (prev, chained.min(arrival_ns).max(min_end))
            }
        };
        self.prev_end = Some(end);
        (start, end)
    }

    /// Forgets the chain after a window whose length is unknown: the next window is
    /// re-anchored on its arrival, starting no earlier than the last placed window's end.
    pub(crate) fn break_chain(&mut self) {
        if let Some(prev) = self.prev_end.take() {
            self.floor_ns = prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_chain_back_to_back_from_first_arrival() {
        let mut c = WindowChain::new(0);
        assert_eq!(c.place(100, 1_000), (900, 1_000));
        assert_eq!(c.place(105, 1_200), (1_000, 1_105));
        assert_eq!(c.place(95, 1_300), (1_105, 1_200));
    }

    #[test]
    fn first_window_never_starts_before_floor() {
        let mut c = WindowChain::new(950);
        assert_eq!(c.place(100, 1_000), (950, 1_000));
    }

    #[test]
    fn chain_never_runs_ahead_of_arrival_by_more_than_half_a_window() {
        let mut c = WindowChain::new(0);
        c.place(100, 1_000);
        // Arrived 30 ns earlier than the chain says: end clamps to arrival.
        assert_eq!(c.place(100, 1_070), (1_000, 1_070));
        // Two windows in one read: the second cannot shrink below half its length.
        assert_eq!(c.place(100, 1_070), (1_070, 1_120));
    }

    #[test]
    fn broken_chain_reanchors_on_arrival() {
        let mut c = WindowChain::new(0);
        c.place(100, 1_000);
        c.break_chain();
        assert_eq!(c.place(100, 1_500), (1_400, 1_500));
        c.break_chain();
        assert_eq!(c.place(1_000, 1_600), (1_500, 1_600));
    }
}
