//! Reports of a stored run: a self-contained HTML page, a Chrome trace, folded stacks, the
//! run as JSON or CSV, and two runs compared.
//!
//! A run is read from the store once, as a [`RunData`] ([`RunData::load`]) at a [`Detail`]:
//! its summary, sections, tokens and power samples, plus the span rollup and grouped sums
//! at [`Detail::Report`], or the layer, component and operation rows down to an export
//! level ([`Detail::Phases`] to [`Detail::Operations`]), with one time origin
//! ([`RunData::origin_ns`]) shared by the HTML page and the trace. The outputs are pure
//! functions of it, so a caller that wants several reads the run once:
//!
//! - [`render_run`] writes one HTML file with the run's metadata and inline SVG charts: the
//!   power timeline per domain with the phases behind it, the energy of every token, a
//!   layer x component heatmap, a sankey of where the run's energy went (phases, layers,
//!   components), the hottest components and a flame graph of the energy per span path,
//!   plus a table of the phases. The page needs no network and no JavaScript: no scripts,
//!   fonts, style sheets or images are loaded (its Content-Security-Policy forbids them),
//!   and every text that comes from the run (prompt, response, tags, model, span names) is
//!   escaped with [`escape_html`]. Estimated energy is announced by a banner; unknown
//!   energy (no power source) reads `unknown`, never 0. [`render`] reads the run and
//!   renders it.
//! - [`write_chrome_trace`] streams the run's sections, tokens, layers, components and
//!   operations (down to its level) in the Chrome trace event format (complete events with
//!   their energy in `args`, power counters per domain, thread names) into a writer, a
//!   gzip encoder for a compact file; Perfetto (<https://ui.perfetto.dev>),
//!   `chrome://tracing` and speedscope open it, nested as it was recorded.
//!   [`chrome_trace_of`] gives it as a JSON value; [`chrome_trace`] and
//!   [`chrome_trace_string`] read the run first, with every row.
//! - [`export::json`] writes the whole run as one JSON object, [`export::csv`] every timed
//!   row as CSV ([`export::write_json`] and [`export::write_csv`] stream them).
//! - [`folded()`] writes the run's energy per span path as folded stacks (`path value` lines,
//!   exclusive microjoules), the input of `inferno-flamegraph` and `flamegraph.pl`;
//!   [`folded_stacks`] reads them from the store and says why a run has none.
//! - [`compare()`] sets two runs' summaries side by side, with the deltas per phase, layer
//!   and component kind ([`Comparison`]).
//! - [`pages`] holds the other pages of `tracing-energy serve`: the runs list, two runs
//!   compared (from a [`Comparison`]) and a message page, as pure functions.
//! - [`experiment`] gives the statistics of an experiment's repeated runs (mean, standard
//!   deviation, 95 % interval of decode and prefill energy per token and of tokens/s) and
//!   compares two experiments.
//! - [`component_power`] fits what each component kind draws while it runs over a stored
//!   run's power windows (`tracing-energy fit`), or says why the run cannot tell.
//!
//! ```no_run
//! use tracing_energy::report::{self, Detail, RunData};
//! use tracing_energy::store::Store;
//!
//! let store = Store::open_existing("profiles.db")?;
//! let run = store.latest_run()?.expect("a run").run_id;
//! std::fs::write("report.html", report::render(&store, run)?).expect("write");
//! std::fs::write("trace.json", report::chrome_trace_string(&store, run)?).expect("write");
//!
//! // Several outputs of one consistent snapshot:
//! let (page, rows) = store.read_snapshot(|s| {
//!     Ok::<_, tracing_energy::Error>((
//!         RunData::load(s, run, Detail::Report)?,
//!         RunData::load(s, run, Detail::Layers)?,
//!     ))
//! })?;
//! std::fs::write("report.html", report::render_run(&page)).expect("write");
//! let trace = std::fs::File::create("trace.json").expect("create");
//! report::write_chrome_trace(&rows, trace).expect("write");
//! std::fs::write("run.csv", report::export::csv(&rows).expect("csv")).expect("write");
//! # Ok::<(), tracing_energy::Error>(())
//! ```
//!
//! Every read goes through the [`Store`](crate::store::Store)'s own connection, after
//! [`Store::flush`](crate::store::Store::flush) (so that queued rows are included): inside
//! [`Store::read_snapshot`](crate::store::Store::read_snapshot), one consistent snapshot.

/// Appends formatted text to a `String` (writing to a `String` cannot fail); for the
/// chart modules below, which `use std::fmt::Write`.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

pub mod compare;
pub mod component_power;
pub mod experiment;
pub mod export;
mod flame;
pub mod folded;
mod format;
pub mod html;
pub mod pages;
mod run_data;
pub mod trace;

pub use compare::{compare, Comparison};
pub use folded::{folded, folded_checked, folded_stacks, NoEnergy};
pub use format::escape_html;
pub use html::{render, render_run};
pub use run_data::{ComponentGroup, Detail, LayerGroup, RunData, RunRows};
pub use trace::{chrome_trace, chrome_trace_of, chrome_trace_string, write_chrome_trace};
