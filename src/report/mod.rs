//! Reports of a stored run: a self-contained HTML page, a Chrome trace and folded stacks.
//!
//! - [`render`] writes one HTML file with the run's metadata and inline SVG charts: the
//!   power timeline per domain with the phases behind it, the energy of every token, a
//!   layer x component heatmap, a sankey of where the run's energy went (phases, layers,
//!   components), the hottest components and a flame graph of the energy per span path,
//!   plus a table of the phases. The page needs no network and no JavaScript: no scripts,
//!   fonts, style sheets or images are loaded (its Content-Security-Policy forbids them),
//!   and every text that comes from the run (prompt, response, tags, model, span names) is
//!   escaped with [`escape_html`]. Estimated energy is announced by a banner; unknown
//!   energy (no power source) reads `unknown`, never 0.
//! - [`chrome_trace`] turns the run's sections, tokens, layers, components and operations
//!   into the Chrome trace event format (complete events with their energy in `args`,
//!   power counters per domain, thread names), which Perfetto (<https://ui.perfetto.dev>)
//!   and `chrome://tracing` open.
//! - [`folded()`] writes the run's energy per span path as folded stacks (`path value` lines,
//!   exclusive microjoules), the input of `inferno-flamegraph` and `flamegraph.pl`;
//!   [`folded_stacks`] reads them from the store and says why a run has none.
//!
//! ```no_run
//! use tracing_energy::store::Store;
//!
//! let store = Store::open_existing("profiles.db")?;
//! let run = store.latest_run()?.expect("a run").run_id;
//! std::fs::write("report.html", tracing_energy::report::render(&store, run)?)
//!     .expect("write");
//! std::fs::write("trace.json", tracing_energy::report::chrome_trace_string(&store, run)?)
//!     .expect("write");
//! # Ok::<(), tracing_energy::Error>(())
//! ```
//!
//! Both read the rows through the [`Store`](crate::store::Store) and, for the bulk of layer,
//! component and operation rows, through a read-only connection of their own to the same
//! file (after [`Store::flush`](crate::store::Store::flush), so that queued rows are
//! included).

/// Appends formatted text to a `String` (writing to a `String` cannot fail); for the
/// chart modules below, which `use std::fmt::Write`.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

mod data;
mod flame;
pub mod folded;
mod format;
pub mod html;
pub mod trace;

pub use folded::{folded, folded_checked, folded_stacks, NoEnergy};
pub use format::escape_html;
pub use html::render;
pub use trace::{chrome_trace, chrome_trace_string};
