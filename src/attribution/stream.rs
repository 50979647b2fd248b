//! The streaming form of the attribution model: the per-thread cumulative energy `F(t)`
//! (see the module docs of [`crate::attribution`]), built forward in time as power samples
//! and activity changes arrive, and pruned behind the oldest section still to be asked
//! about. A section's energy is then two lookups, `F(end) - F(start)`, in O(log n) time,
//! however many sections came before it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::{SectionEnergy, CHANNELS};
use crate::power::{Domain, PowerSample};

/// A breakpoint of `F` and the piece that starts at it.
#[derive(Debug, Clone, Copy)]
struct Point {
    t: u64,
    /// `F(t)`, per channel.
    cum: [f64; CHANNELS],
    /// Nanoseconds before `t` (since the stream began) not covered by any sample.
    uncovered: u64,
    /// Per-thread rate on `[t, next.t)`, mJ per ns.
    rate: [f64; CHANNELS],
    /// Whether `[t, next.t)` is covered by a sample.
    covered: bool,
    /// Whether `[t, next.t)` was merged from finer pieces (inside it, `F` is interpolated).
    coarse: bool,
}

/// A sample window, as integrated.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
    energy: [f64; CHANNELS],
}

/// Energy totals over a stretch of the stream, per channel (the four domains, then all).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Energy of the sample windows, inside the stretch (mJ).
    pub measured: [f64; CHANNELS],
    /// Of that, energy at instants with at least one active thread.
    pub attributed: [f64; CHANNELS],
    /// Of that, energy at instants with no active thread.
    pub unattributed: [f64; CHANNELS],
    /// Nanoseconds of the stretch covered by a sample.
    pub covered_ns: u64,
    /// Nanoseconds of the stretch covered by no sample.
    pub uncovered_ns: u64,
}

/// The per-thread cumulative energy `F(t)`, built forward in time.
///
/// Feed it activity changes ([`EnergyStream::activity`]: +1 when a thread opens its first
/// section, -1 when it closes its last) and power samples ([`EnergyStream::push_sample`],
/// windows in time order, not overlapping), then [`EnergyStream::advance`] it to a time up
/// to which both are complete (the *frontier*). Sections that end at or before the frontier
/// can be asked for their energy with [`EnergyStream::section`]. [`EnergyStream::prune`]
/// forgets what lies before the oldest section still to be asked about; when the kept
/// stretch still grows past `max_points` breakpoints (a section open for a very long time),
/// its oldest half is merged into coarser pieces, and a section that starts or ends inside
/// a merged piece gets that piece's energy added to its uncertainty.
#[derive(Debug, Clone)]
pub struct EnergyStream {
    points: VecDeque<Point>,
    windows: VecDeque<Window>,
    /// Index in `windows` of the first window not yet integrated to its end.
    cursor: usize,
    /// Whether every sample measures each domain.
    known: [bool; 4],
    any_sample: bool,
    active: i64,
    events: BinaryHeap<Reverse<(u64, i64)>>,
    late_events: u64,
    totals: Totals,
    max_points: usize,
}

/// The default bound on kept breakpoints before merging (about 6.5 MB).
pub const DEFAULT_MAX_POINTS: usize = 1 << 16;

impl EnergyStream {
    /// A stream whose frontier starts at `t0`, with no thread active.
    pub fn new(t0: u64) -> EnergyStream {
        EnergyStream {
            points: VecDeque::from([Point {
                t: t0,
                cum: [0.0; CHANNELS],
                uncovered: 0,
                rate: [0.0; CHANNELS],
                covered: false,
                coarse: false,
            }]),
            windows: VecDeque::new(),
            cursor: 0,
            known: [true; 4],
            any_sample: false,
            active: 0,
            events: BinaryHeap::new(),
            late_events: 0,
            totals: Totals::default(),
            max_points: DEFAULT_MAX_POINTS,
        }
    }

    /// Sets the number of breakpoints kept before the oldest are merged (at least 64).
    pub fn with_max_points(mut self, max_points: usize) -> EnergyStream {
        self.max_points = max_points.max(64);
        self
    }

    /// The time up to which `F` is built.
    pub fn frontier(&self) -> u64 {
        self.points.back().expect("never empty").t
    }

    /// The oldest time still kept.
    pub fn horizon(&self) -> u64 {
        self.points.front().expect("never empty").t
    }

    /// Breakpoints and sample windows kept now (about 100 and 60 bytes each). Breakpoints
    /// are bounded by merging; windows grow only with the sample rate while a section stays
    /// open (10 a second at 100 ms).
    pub fn len(&self) -> usize {
        self.points.len() + self.windows.len()
    }

    /// True when nothing but the starting point is kept.
    pub fn is_empty(&self) -> bool {
        self.points.len() == 1 && self.windows.is_empty()
    }

    /// Activity changes that arrived for a time already behind the frontier (applied at
    /// the frontier instead).
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Records that the number of active threads changes by `delta` at `t`. A change
    /// behind the frontier takes effect at the frontier (and is counted as late).
    pub fn activity(&mut self, t: u64, delta: i64) {
        if t < self.frontier() {
            self.late_events += 1;
            self.active += delta;
        } else {
            self.events.push(Reverse((t, delta)));
        }
    }

    /// Adds a sample window. Windows must come in time order and not overlap; a window
    /// that overlaps the previous one is cut to start where that one ended, and one wholly
    /// behind the frontier is ignored.
    pub fn push_sample(&mut self, sample: &PowerSample) {
        let mut start = sample.start_ns;
        if let Some(last) = self.windows.back() {
            start = start.max(last.end);
        }
        if sample.end_ns <= start || sample.end_ns <= self.frontier() {
            return;
        }
        let mut energy = [0.0; CHANNELS];
        let share = (sample.end_ns - start) as f64 / sample.duration_ns().max(1) as f64;
        for (i, d) in Domain::ALL.iter().enumerate() {
            let e = sample.energy.get(*d);
            self.known[i] &= e.is_some();
            energy[i] = e.unwrap_or(0.0) * share;
        }
        energy[4] = sample.total_mj * share;
        self.any_sample = true;
        self.windows.push_back(Window {
            start,
            end: sample.end_ns,
            energy,
        });
    }

    /// Builds `F` up to `to` from the samples and activity changes given so far (time not
    /// covered by a sample contributes nothing and counts as uncovered).
    pub fn advance(&mut self, to: u64) {
        while self.frontier() < to {
            let a = self.frontier();
            while let Some(Reverse((t, d))) = self.events.peek().copied() {
                if t > a {
                    break;
                }
                self.events.pop();
                self.active += d;
            }
            while self.cursor < self.windows.len() && self.windows[self.cursor].end <= a {
                self.cursor += 1;
            }
            let window = self.windows.get(self.cursor).copied();
            let mut b = to;
            if let Some(Reverse((t, _))) = self.events.peek() {
                b = b.min(*t);
            }
            let covering = window.filter(|w| w.start <= a);
            match (covering, window) {
                (Some(w), _) => b = b.min(w.end),
                (None, Some(w)) => b = b.min(w.start),
                (None, None) => {}
            }
            self.piece(a, b, covering);
        }
        self.coarsen_if_needed();
    }

    fn piece(&mut self, a: u64, b: u64, window: Option<Window>) {
        let dt = (b - a) as f64;
        let mut rate = [0.0; CHANNELS];
        if let Some(w) = window {
            let len = (w.end - w.start) as f64;
            for (k, r) in rate.iter_mut().enumerate() {
                let e = w.energy[k] * dt / len;
                self.totals.measured[k] += e;
                if self.active > 0 {
                    *r = e / dt / self.active as f64;
                    self.totals.attributed[k] += e;
                } else {
                    self.totals.unattributed[k] += e;
                }
            }
            self.totals.covered_ns += b - a;
        } else {
            self.totals.uncovered_ns += b - a;
        }
        let last = self.points.back_mut().expect("never empty");
        last.rate = rate;
        last.covered = window.is_some();
        let mut cum = last.cum;
        for k in 0..CHANNELS {
            cum[k] += rate[k] * dt;
        }
        let uncovered = last.uncovered + if window.is_some() { 0 } else { b - a };
        self.points.push_back(Point {
            t: b,
            cum,
            uncovered,
            rate: [0.0; CHANNELS],
            covered: false,
            coarse: false,
        });
    }

    /// Forgets what lies before `t`: sections starting before it can no longer be asked.
    pub fn prune(&mut self, t: u64) {
        let t = t.min(self.frontier());
        while self.points.len() >= 2 && self.points[1].t <= t {
            self.points.pop_front();
        }
        while self.cursor > 0 && self.windows.front().is_some_and(|w| w.end <= t) {
            self.windows.pop_front();
            self.cursor -= 1;
        }
    }

    /// Merges the oldest half of the kept pieces pairwise when more than `max_points` are
    /// kept. `F` stays exact at the kept breakpoints.
    fn coarsen_if_needed(&mut self) {
        if self.points.len() <= self.max_points {
            return;
        }
        let half = self.points.len() / 2;
        let mut merged: VecDeque<Point> = VecDeque::with_capacity(self.points.len());
        let mut i = 0;
        while i < half {
            let (p, q, r) = (self.points[i], self.points[i + 1], self.points[i + 2]);
            let dt = (r.t - p.t) as f64;
            let rate: [f64; CHANNELS] = std::array::from_fn(|k| (r.cum[k] - p.cum[k]) / dt);
            merged.push_back(Point {
                rate,
                covered: p.covered && q.covered,
                coarse: true,
                ..p
            });
            i += 2;
        }
        merged.extend(self.points.drain(i..));
        self.points = merged;
    }

    fn index(&self, t: u64) -> usize {
        self.points.partition_point(|p| p.t <= t).saturating_sub(1)
    }

    /// `F(t)` per channel, `t` clamped to the kept stretch.
    fn at(&self, t: u64) -> [f64; CHANNELS] {
        let t = t.clamp(self.horizon(), self.frontier());
        let p = &self.points[self.index(t)];
        let dt = (t - p.t) as f64;
        let mut v = p.cum;
        for (k, val) in v.iter_mut().enumerate() {
            *val += p.rate[k] * dt;
        }
        v
    }

    fn uncovered_before(&self, t: u64) -> u64 {
        let t = t.clamp(self.horizon(), self.frontier());
        let p = &self.points[self.index(t)];
        p.uncovered + if p.covered { 0 } else { t - p.t }
    }

    fn between(&self, s: u64, e: u64) -> [f64; CHANNELS] {
        let (a, b) = (self.at(s), self.at(e.max(s)));
        let mut d = [0.0; CHANNELS];
        for k in 0..CHANNELS {
            d[k] = b[k] - a[k];
        }
        d
    }

    /// Energy of the coarse piece holding `t`, if `t` falls strictly inside one.
    fn coarse_energy_at(&self, t: u64) -> f64 {
        let i = self.index(t);
        let p = &self.points[i];
        match self.points.get(i + 1) {
            Some(q) if p.coarse && t > p.t && t < q.t => q.cum[4] - p.cum[4],
            _ => 0.0,
        }
    }

    /// The inclusive energy of a section `[s, e]` on a thread that is active throughout it
    /// (with `e` at or before the frontier). Energies are `None` when no sample window
    /// overlaps the section.
    pub fn section(&self, s: u64, e: u64) -> SectionEnergy {
        let e = e.max(s);
        let w0 = self.windows.partition_point(|w| w.end <= s);
        let w1 = self.windows.partition_point(|w| w.start < e.max(s + 1));
        let touched = w1.saturating_sub(w0) as u32;
        if touched == 0 {
            return SectionEnergy::default();
        }
        let total = self.between(s, e);
        // Partially covered windows: the first and the last touched.
        let mut uncertainty = 0.0;
        let mut partial = |w: &Window| {
            let (a, b) = (w.start.max(s), w.end.min(e));
            if b <= a {
                return;
            }
            let f = (b - a) as f64 / (w.end - w.start) as f64;
            uncertainty += self.between(a, b)[4] * (1.0 - f);
        };
        partial(&self.windows[w0]);
        if w1 - 1 > w0 {
            partial(&self.windows[w1 - 1]);
        }
        // Time outside the kept stretch or not covered by a sample.
        let outside = self.horizon().saturating_sub(s).min(e - s)
            + e.saturating_sub(self.frontier()).min(e - s);
        let gap = self.uncovered_before(e) - self.uncovered_before(s) + outside;
        let covered = (e - s).saturating_sub(gap);
        if gap > 0 && covered > 0 {
            uncertainty += total[4] / covered as f64 * gap as f64;
        }
        uncertainty += self.coarse_energy_at(s) + self.coarse_energy_at(e);
        let mut domains = [None; 4];
        for (i, d) in domains.iter_mut().enumerate() {
            if self.known[i] {
                *d = Some(total[i]);
            }
        }
        SectionEnergy {
            total_mj: Some(total[4]),
            domains,
            uncertainty_mj: Some(uncertainty),
            sample_windows: touched,
        }
    }

    /// Energy totals since the stream began or since the last [`EnergyStream::take_totals`].
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Returns the totals and starts new ones (a run boundary).
    pub fn take_totals(&mut self) -> Totals {
        std::mem::take(&mut self.totals)
    }

    /// True when any sample was given.
    pub fn has_samples(&self) -> bool {
        self.any_sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::power::cpu_sample as s;

    #[test]
    fn incremental_advance_equals_one_advance() {
        // The same input, advanced in one step and in many small ones, gives the same F.
        let mk = || {
            let mut st = EnergyStream::new(0);
            st.activity(10, 1);
            st.activity(90, -1);
            st.activity(50, 1);
            st.activity(250, -1);
            st
        };
        let mut one = mk();
        let mut many = mk();
        for (a, b, e) in [(0, 100, 10.0), (100, 200, 40.0), (200, 300, 5.0)] {
            one.push_sample(&s(a, b, e));
            many.push_sample(&s(a, b, e));
        }
        one.advance(300);
        for t in (7..=300).step_by(7) {
            many.advance(t);
        }
        many.advance(300);
        for (a, b) in [(10, 90), (50, 250), (60, 70), (120, 240)] {
            let x = one.section(a, b).total_mj.unwrap();
            let y = many.section(a, b).total_mj.unwrap();
            assert!((x - y).abs() < 1e-9, "{a}-{b}: {x} vs {y}");
        }
        assert!((one.totals().measured[4] - 55.0).abs() < 1e-9);
        let t = many.totals();
        assert!((t.attributed[4] + t.unattributed[4] - t.measured[4]).abs() < 1e-9);
    }

    #[test]
    fn pruning_keeps_later_sections_exact() {
        let mut st = EnergyStream::new(0);
        st.activity(0, 1);
        for k in 0..100u64 {
            st.push_sample(&s(k * 10, k * 10 + 10, 1.0 + k as f64));
        }
        st.advance(1000);
        let before = st.section(500, 700);
        st.prune(400);
        assert!(st.horizon() <= 400);
        assert_eq!(st.section(500, 700), before);
    }

    #[test]
    fn coarsening_bounds_memory_and_reports_the_error() {
        let mut st = EnergyStream::new(0).with_max_points(64);
        st.activity(0, 1);
        for k in 0..1000u64 {
            st.push_sample(&s(k * 10, k * 10 + 10, (k % 7) as f64));
            st.advance(k * 10 + 10);
        }
        assert!(st.points.len() <= 64, "{}", st.points.len());
        // Exact at the whole range, since F is exact at kept breakpoints.
        let all = st.section(0, 10_000);
        let expected: f64 = (0..1000u64).map(|k| (k % 7) as f64).sum();
        assert!((all.total_mj.unwrap() - expected).abs() < 1e-6);
        // A section starting inside a merged piece carries that piece's energy as doubt.
        let inner = st.section(15, 10_000);
        assert!(inner.uncertainty_mj.unwrap() > 0.0);
    }

    #[test]
    fn late_activity_applies_at_the_frontier() {
        let mut st = EnergyStream::new(0);
        st.push_sample(&s(0, 100, 100.0));
        st.advance(50);
        st.activity(20, 1);
        assert_eq!(st.late_events(), 1);
        st.advance(100);
        let t = st.totals();
        assert!((t.unattributed[4] - 50.0).abs() < 1e-9);
        assert!((t.attributed[4] - 50.0).abs() < 1e-9);
    }
}
