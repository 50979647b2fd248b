//! What the store writes and reads: a run ([`run`]), its timed rows and power windows
//! ([`rows`]), and what it adds up to ([`summary`]).

mod rows;
mod run;
mod summary;

pub use rows::{
    ComponentRecord, LayerRecord, Measured, OperationRecord, PowerRow, Row, SectionRecord,
    SpanRollup, TokenRecord,
};
pub use run::{coverage_note, Host, NewRun, Run, RunEnd, RunFilter, RunId, RunStatus};
pub use summary::{
    ComponentSummary, HotComponent, LayerSummary, PhaseSummary, RunSummary, TokenTotals,
};
