//! [`RunData`]: a run read once from the store, for the HTML report, the Chrome trace and
//! the JSON and CSV exports.
//!
//! Rows come from the store's run-wide reads, and the grouped sums the HTML report needs
//! from the store's grouped reads (`Store::get_component_groups`, `Store::get_layer_groups`):
//! no SQL is written here.

use crate::store::{
    ComponentRecord, LayerRecord, OperationRecord, PowerRow, Row, Run, RunId, RunSummary,
    SectionRecord, SpanRollup, Store, TokenRecord,
};
use crate::{Error, Result};

/// How much of a run [`RunData::load`] reads, and so what the outputs made from it hold.
///
/// The export levels nest, each holding everything the one before holds: [`Phases`],
/// [`Tokens`], [`Layers`] (the CLI's default), [`Components`] and [`Operations`]
/// (everything). [`Report`] is what the HTML report reads. Every level reads the run, its
/// pipeline sections, its token rows (which fix [`RunData::origin_ns`], so that the time
/// origin is the same at every level) and its power samples; the rows below the level are
/// never read.
///
/// [`Phases`]: Detail::Phases
/// [`Tokens`]: Detail::Tokens
/// [`Layers`]: Detail::Layers
/// [`Components`]: Detail::Components
/// [`Operations`]: Detail::Operations
/// [`Report`]: Detail::Report
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detail {
    /// What the HTML report needs: the span roll-up and the grouped sums of the layer and
    /// component rows, not the rows themselves ([`RunData::rows`] is `None`). Its outputs
    /// hold what [`Detail::Tokens`] holds.
    Report,
    /// The pipeline's sections only: phases (`tokenize`, `prefill`, `decode`, ...) and the
    /// other sections a program marks, with the power samples. No token, layer, component
    /// or operation rows are written ([`RunData::rows`] is `None`).
    Phases,
    /// Also a row per token. [`RunData::rows`] is `None`.
    Tokens,
    /// Also a row per (token, layer): `RunRows::layers`; components and operations are not
    /// read.
    Layers,
    /// Also the component rows (attention, mlp, norm, output, ...); operations are not read.
    Components,
    /// Also the operation rows (`q_proj`, `down_proj`, ...): every row of the run, millions
    /// for a long run.
    Operations,
}

impl Detail {
    /// The export levels, from the least to the most detailed.
    pub const LEVELS: [Detail; 5] = [
        Detail::Phases,
        Detail::Tokens,
        Detail::Layers,
        Detail::Components,
        Detail::Operations,
    ];

    /// The level's name (`report`, `phases`, `tokens`, `layers`, `components`, `ops`), as
    /// the CLI's `--detail` spells it and the JSON export's `detail` member says.
    pub fn name(self) -> &'static str {
        match self {
            Detail::Report => "report",
            Detail::Phases => "phases",
            Detail::Tokens => "tokens",
            Detail::Layers => "layers",
            Detail::Components => "components",
            Detail::Operations => "ops",
        }
    }

    /// How deep the level reaches: 0 sections, 1 tokens, 2 layers, 3 components, 4
    /// operations ([`Detail::Report`] writes what [`Detail::Tokens`] writes).
    fn depth(self) -> u8 {
        match self {
            Detail::Phases => 0,
            Detail::Report | Detail::Tokens => 1,
            Detail::Layers => 2,
            Detail::Components => 3,
            Detail::Operations => 4,
        }
    }

    /// Whether the outputs hold the token rows.
    pub fn has_tokens(self) -> bool {
        self.depth() >= 1
    }

    /// Whether the layer rows are read and written.
    pub fn has_layers(self) -> bool {
        self.depth() >= 2
    }

    /// Whether the component rows are read and written.
    pub fn has_components(self) -> bool {
        self.depth() >= 3
    }

    /// Whether the operation rows are read and written.
    pub fn has_operations(self) -> bool {
        self.depth() >= 4
    }
}

/// One run as read from the store: its summary, sections, tokens and power samples, and
/// what its [`Detail`] adds (the report's grouped sums, or the layer, component and
/// operation rows down to the level).
///
/// Read with [`RunData::load`]; the outputs are pure functions of it
/// ([`html::render_run`](super::html::render_run),
/// [`trace::chrome_trace_of`](super::trace::chrome_trace_of),
/// [`export::json`](super::export::json), [`export::csv`](super::export::csv)), so a
/// caller that wants several outputs reads the run once.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run ([`RunSummary::run`]) with its per-phase, per-layer and per-component
    /// aggregates.
    pub summary: RunSummary,
    /// Pipeline sections (phases and other sections), as [`Store::get_pipeline_sections`].
    pub sections: Vec<Row<SectionRecord>>,
    /// Token rows, by index; read at every level (they fix [`RunData::origin_ns`]), written
    /// by the outputs from [`Detail::Tokens`] on.
    pub tokens: Vec<Row<TokenRecord>>,
    /// Power samples, in time order.
    pub power: Vec<PowerRow>,
    /// Energy per span path ([`Store::get_span_rollup`]); read at [`Detail::Report`] only
    /// (empty at the export levels).
    pub span_rollup: Vec<SpanRollup>,
    /// Component rows summed per (token phase, layer, component kind), in order of first
    /// appearance; read at [`Detail::Report`] only (empty at the export levels).
    pub component_groups: Vec<ComponentGroup>,
    /// Layer rows summed per (token phase, layer); read at [`Detail::Report`] only (empty
    /// at the export levels).
    pub layer_groups: Vec<LayerGroup>,
    /// The layer, component and operation rows down to the level (the lists below it
    /// empty); `None` at [`Detail::Report`], [`Detail::Phases`] and [`Detail::Tokens`].
    pub rows: Option<RunRows>,
    /// How much was read; the outputs write what it holds.
    pub detail: Detail,
    /// The run timeline's origin (ns), time 0 of the HTML report's charts and of the Chrome
    /// trace: the earliest start of any power sample, section or token row; 0 when the run
    /// has none. Layer, component and operation rows are not consulted, so the origin is
    /// the same at every [`Detail`]: in a run the layer recorded, each of them lies inside
    /// its token's row and cannot start earlier (a row that did would be drawn at 0).
    pub origin_ns: u64,
}

/// A run's layer, component and operation rows.
#[derive(Debug, Clone, Default)]
pub struct RunRows {
    /// Layer rows, by token and layer.
    pub layers: Vec<Row<LayerRecord>>,
    /// Component rows.
    pub components: Vec<Row<ComponentRecord>>,
    /// Operation rows.
    pub operations: Vec<Row<OperationRecord>>,
}

/// Energy and time of one (phase, layer, component kind) group of component rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentGroup {
    /// The phase of the tokens (`prefill`, `decode`, ...; `unknown` for rows without their
    /// token).
    pub phase: String,
    /// The layer; `None` for model-level components.
    pub layer: Option<u32>,
    /// The component kind.
    pub component: String,
    /// Total inclusive energy; `None` when no row has one.
    pub energy_mj: Option<f64>,
    /// Total duration.
    pub duration_ms: f64,
    /// Token rows the group covers.
    pub token_rows: u64,
    /// Tokens those rows processed (the prompt length for the prefill).
    pub tokens: u64,
}

/// Energy of one (phase, layer) group of layer rows.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerGroup {
    /// The phase of the tokens (`unknown` for rows without their token).
    pub phase: String,
    /// The layer.
    pub layer: u32,
    /// Total inclusive energy; `None` when no row has one.
    pub energy_mj: Option<f64>,
}

/// The run, or [`Error::UnknownRun`].
pub(super) fn run_or_error(store: &Store, run: RunId) -> Result<Run> {
    store.get_run(run)?.ok_or_else(|| unknown(store, run))
}

fn unknown(store: &Store, run: RunId) -> Error {
    Error::UnknownRun {
        path: store.path().to_path_buf(),
        run: run.to_string(),
    }
}

impl RunData {
    /// Reads the run from `store`, after flushing its write queue (so that queued rows are
    /// included). Every read goes through the store's own connection: read inside
    /// [`Store::read_snapshot`], the whole `RunData` is one consistent snapshot.
    ///
    /// Fails with [`Error::UnknownRun`] when the run is not in the store, and with the
    /// store's errors when it cannot be read.
    pub fn load(store: &Store, run: RunId, detail: Detail) -> Result<RunData> {
        store.flush()?;
        let summary = store
            .get_run_summary(run)?
            .ok_or_else(|| unknown(store, run))?;
        let sections = store.get_pipeline_sections(run)?;
        let tokens = store.get_tokens(run)?;
        let power = store.get_power_timeline(run)?;
        let report = detail == Detail::Report;
        let span_rollup = if report {
            store.get_span_rollup(run)?
        } else {
            Vec::new()
        };
        let component_groups = if report {
            store.get_component_groups(run)?
        } else {
            Vec::new()
        };
        let component_groups = component_groups
            .into_iter()
            .map(
                |(phase, layer, component, energy_mj, duration_ms, token_rows, tokens)| {
                    ComponentGroup {
                        phase,
                        layer,
                        component,
                        energy_mj,
                        duration_ms,
                        token_rows,
                        tokens,
                    }
                },
            )
            .collect();
        let layer_groups = if report {
            store.get_layer_groups(run)?
        } else {
            Vec::new()
        };
        let layer_groups = layer_groups
            .into_iter()
            .map(|(phase, layer, energy_mj)| LayerGroup {
                phase,
                layer,
                energy_mj,
            })
            .collect();
        let rows = if detail.has_layers() {
            Some(RunRows {
                layers: store.get_run_layers(run)?,
                components: if detail.has_components() {
                    store.get_run_components(run)?
                } else {
                    Vec::new()
                },
                operations: if detail.has_operations() {
                    store.get_run_operations(run)?
                } else {
                    Vec::new()
                },
            })
        } else {
            None
        };
        let origin_ns = origin(&power, &sections, &tokens);
        Ok(RunData {
            summary,
            sections,
            tokens,
            power,
            span_rollup,
            component_groups,
            layer_groups,
            rows,
            detail,
            origin_ns,
        })
    }

    /// The run.
    pub fn run(&self) -> &Run {
        &self.summary.run
    }

    /// The layer, component and operation rows: the lists below the level empty.
    pub(super) fn rows_or_empty(&self) -> &RunRows {
        static NONE: RunRows = RunRows {
            layers: Vec::new(),
            components: Vec::new(),
            operations: Vec::new(),
        };
        self.rows.as_ref().unwrap_or(&NONE)
    }
}

/// The earliest start of any power sample, section or token row; 0 when there is none
/// (see [`RunData::origin_ns`]).
fn origin(power: &[PowerRow], sections: &[Row<SectionRecord>], tokens: &[Row<TokenRecord>]) -> u64 {
    power
        .iter()
        .map(|p| p.start_ns)
        .chain(sections.iter().map(|s| s.record.measured.start_ns))
        .chain(tokens.iter().map(|t| t.record.measured.start_ns))
        .min()
        .unwrap_or(0)
}
