//! Component power fitted over a stored run: the run's power windows and the time each
//! component kind ran in them (from its component rows, summed over threads) go to
//! [`attribution::regression::fit`](crate::attribution::regression::fit), which says what
//! each kind draws while it runs, or why the run cannot tell.

use crate::attribution::by_fit::{kind_seconds, KindInterval};
use crate::attribution::regression::{fit, FitRefused, PowerFit, Window};
use crate::store::{ComponentPower, ComponentRecord, PowerRow, Row, BACKGROUND};

/// The method stored with a fit.
pub const METHOD: &str = "regression (non-negative least squares over power windows)";

/// The component kinds of the rows, in order of first appearance, and the power windows
/// that overlap them with the seconds each kind ran in each.
pub fn windows(
    power: &[PowerRow],
    components: &[Row<ComponentRecord>],
) -> (Vec<String>, Vec<Window>) {
    let mut kinds: Vec<String> = Vec::new();
    for c in components {
        if !kinds.contains(&c.record.component) {
            kinds.push(c.record.component.clone());
        }
    }
    let first = components.iter().map(|c| c.record.measured.start_ns).min();
    let last = components.iter().map(|c| c.record.measured.end_ns).max();
    let (Some(first), Some(last)) = (first, last) else {
        return (kinds, Vec::new());
    };
    let mut power: Vec<&PowerRow> = power
        .iter()
        .filter(|p| p.end_ns > first && p.start_ns < last)
        .collect();
    power.sort_by_key(|p| p.start_ns);
    let spans: Vec<(u64, u64)> = power.iter().map(|p| (p.start_ns, p.end_ns)).collect();
    let intervals: Vec<KindInterval> = components
        .iter()
        .filter_map(|c| {
            Some(KindInterval {
                start_ns: c.record.measured.start_ns,
                end_ns: c.record.measured.end_ns,
                kind: kinds.iter().position(|k| *k == c.record.component)?,
            })
        })
        .collect();
    let windows = power
        .iter()
        .zip(kind_seconds(&spans, &intervals, kinds.len()))
        .map(|(p, kind_seconds)| Window {
            energy_mj: p.total_mj,
            seconds: p.end_ns.saturating_sub(p.start_ns) as f64 / 1e9,
            kind_seconds,
        })
        .collect();
    (kinds, windows)
}

/// Fits each component kind's power over the run's windows (see [`windows`]).
pub fn fit_components(
    power: &[PowerRow],
    components: &[Row<ComponentRecord>],
) -> Result<PowerFit, FitRefused> {
    let (kinds, windows) = windows(power, components);
    fit(&kinds, &windows)
}

/// The rows to store for a fit: the background first, then each kind.
pub fn rows(fit: &PowerFit) -> Vec<ComponentPower> {
    let row = |component: &str, power_mw: f64, stderr_mw: f64| ComponentPower {
        component: component.to_string(),
        power_mw,
        stderr_mw,
        windows: fit.windows as u64,
        method: METHOD.to_string(),
    };
    std::iter::once(row(BACKGROUND, fit.idle_mw, fit.idle_stderr_mw))
        .chain(
            fit.kinds
                .iter()
                .map(|k| row(&k.kind, k.power_mw, k.stderr_mw)),
        )
        .collect()
}
