//! Component power fitted over a stored run: the run's power windows and the time each
//! component kind ran in them (from its component rows, summed over threads) go to
//! [`attribution::regression::fit`](crate::attribution::regression::fit), which says what
//! each kind draws while it runs, or why the run cannot tell.

use crate::attribution::by_fit::{fit_windows, kind_intervals};
use crate::attribution::regression::{fit, FitRefused, PowerFit, Window};
use crate::store::{ComponentRecord, PowerRow, Row};

/// The method stored with a fit.
pub use crate::store::FIT_METHOD as METHOD;

/// The component kinds of the rows, in order of first appearance, and the power windows
/// that overlap them with the seconds each kind ran in each.
pub fn windows(
    power: &[PowerRow],
    components: &[Row<ComponentRecord>],
) -> (Vec<String>, Vec<Window>) {
    let (kinds, intervals) = kind_intervals(components.iter().map(|c| {
        let m = &c.record.measured;
        (c.record.component.as_str(), m.start_ns, m.end_ns)
    }));
    let power: Vec<(u64, u64, f64)> = power
        .iter()
        .map(|p| (p.start_ns, p.end_ns, p.total_mj))
        .collect();
    let windows = fit_windows(&power, &intervals, kinds.len());
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
