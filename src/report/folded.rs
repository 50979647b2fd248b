//! A run's energy per span path as folded stacks, the text format that
//! [inferno](https://github.com/jonhoo/inferno) (`inferno-flamegraph`) and Brendan Gregg's
//! `flamegraph.pl` turn into a flame graph.
//!
//! One line per span path: the path (span names from the outermost, joined by `;`), a space
//! and the path's exclusive energy in microjoules, rounded to an integer. A flame graph
//! adds the values of a path's descendants to it, so the width of every frame is its
//! inclusive energy.
//!
//! ```text
//! request;handle_request 1500
//! request;handle_request;compute 12000
//! ```
//!
//! ```no_run
//! use tracing_energy::store::Store;
//!
//! let store = Store::open_existing("profiles.db")?;
//! let run = store.latest_run()?.expect("a run").run_id;
//! match tracing_energy::report::folded_stacks(&store, run)? {
//!     Ok(text) => std::fs::write("run.folded", text).expect("write"),
//!     Err(no_energy) => eprintln!("{no_energy}"),
//! }
//! # Ok::<(), tracing_energy::Error>(())
//! ```

use std::fmt::Write as _;

use super::run_data::run_or_error;
use crate::store::{RunId, SpanRollup, Store};

/// The folded stacks of rollup rows: one line `path value` per path whose exclusive energy
/// rounds to at least 1 µJ, sorted by path. Paths with an unknown, zero or negative
/// exclusive energy are left out, so rows without energy give an empty text (see
/// [`folded_checked`] for the error that explains it).
///
/// A `;`-separated path is written as it is; line breaks inside a span name (which would
/// end the line) become spaces.
///
/// ```
/// use tracing_energy::report::folded;
/// use tracing_energy::store::SpanRollup;
///
/// let row = |path: &str, exclusive: Option<f64>| SpanRollup {
///     path: path.into(),
///     calls: 1,
///     busy_ms: 1.0,
///     energy_mj: exclusive,
///     exclusive_energy_mj: exclusive,
/// };
/// let text = folded(&[row("a;b", Some(2.0004)), row("a", Some(0.5)), row("c", None)]);
/// assert_eq!(text, "a 500\na;b 2000\n");
/// ```
pub fn folded(rows: &[SpanRollup]) -> String {
    let mut lines: Vec<(String, u64)> = rows
        .iter()
        .filter_map(|r| {
            let uj = microjoules(r.exclusive_energy_mj?)?;
            Some((r.path.replace(['\n', '\r'], " "), uj))
        })
        .collect();
    lines.sort();
    let mut out = String::with_capacity(lines.len() * 48);
    for (path, uj) in lines {
        let _ = writeln!(out, "{path} {uj}");
    }
    out
}

/// Exclusive energy (mJ) as whole microjoules; `None` below 0.5 µJ or not finite.
fn microjoules(mj: f64) -> Option<u64> {
    let uj = (mj * 1000.0).round();
    (uj.is_finite() && uj >= 1.0).then_some(uj as u64)
}

/// Why a run has no folded stacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoEnergy {
    /// The run has no span rollup rows at all.
    #[error(
        "run {run} has no energy per span path (no spans were recorded, or the run was \
         recorded by a version of tracing-energy that did not keep span paths). Fix: profile \
         again with this version and a power source, e.g. --power estimate"
    )]
    NoPaths {
        /// The run.
        run: RunId,
    },
    /// The run has span paths, but none has an energy figure.
    #[error(
        "run {run} has no energy figures (it was recorded without a power source). Fix: \
         profile with a power source, e.g. --power estimate"
    )]
    Unknown {
        /// The run.
        run: RunId,
    },
}

/// [`folded`], or why there is nothing to fold: [`NoEnergy::NoPaths`] for no rows,
/// [`NoEnergy::Unknown`] when no row has an exclusive energy.
///
/// Rows whose energies are known but all round to 0 µJ give an empty text, not an error.
pub fn folded_checked(run: RunId, rows: &[SpanRollup]) -> Result<String, NoEnergy> {
    if rows.is_empty() {
        return Err(NoEnergy::NoPaths { run });
    }
    if rows.iter().all(|r| r.exclusive_energy_mj.is_none()) {
        return Err(NoEnergy::Unknown { run });
    }
    Ok(folded(rows))
}

/// The folded stacks of a stored run: its [`Store::get_span_rollup`] rows through
/// [`folded_checked`].
///
/// The outer result fails with [`Error::UnknownRun`](crate::Error::UnknownRun) when the run
/// is not in the store and with the store's errors when it cannot be read; the inner one
/// says why a run has no energy to fold.
pub fn folded_stacks(store: &Store, run: RunId) -> crate::Result<Result<String, NoEnergy>> {
    run_or_error(store, run)?;
    store.flush()?;
    let rows = store.get_span_rollup(run)?;
    Ok(folded_checked(run, &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, exclusive: Option<f64>) -> SpanRollup {
        SpanRollup {
            path: path.into(),
            calls: 2,
            busy_ms: 3.0,
            energy_mj: exclusive,
            exclusive_energy_mj: exclusive,
        }
    }

    #[test]
    fn lines_sorted_rounded_and_zeros_left_out() {
        let rows = [
            row("b;c", Some(1.2345)),
            row("a", Some(10.0)),
            row("b", Some(0.0004)),
            row("d", Some(-0.2)),
            row("e", None),
            row("x\ny", Some(0.0015)),
        ];
        assert_eq!(folded(&rows), "a 10000\nb;c 1235\nx y 2\n");
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(folded_checked(3, &[]), Err(NoEnergy::NoPaths { run: 3 }));
        let none = [row("a", None), row("a;b", None)];
        let err = folded_checked(3, &none).unwrap_err();
        assert_eq!(err, NoEnergy::Unknown { run: 3 });
        let text = err.to_string();
        assert!(text.contains("run 3 has no energy figures"), "{text}");
        assert!(text.contains("--power estimate"), "{text}");
        assert_eq!(folded_checked(3, &[row("a", Some(0.0))]).as_deref(), Ok(""));
        assert_eq!(
            folded_checked(3, &[row("a", Some(1.0)), row("b", None)]).as_deref(),
            Ok("a 1000\n")
        );
    }
}
