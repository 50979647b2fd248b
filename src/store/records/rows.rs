//! The timed rows of a run (sections, tokens, layers, components, operations) and its power
//! windows.

use serde::{Deserialize, Serialize};

use super::RunId;

/// When and how much: the columns every timed row shares.
///
/// Times are nanoseconds on the recording process's monotonic timeline. Energies are in
/// millijoules; `None` means unknown (no power source, or a domain it does not measure).
/// The attribution's method, uncertainty and sample-window count are defined by the
/// `attribution` module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// The thread the section ran on.
    pub thread_id: Option<u64>,
    /// Inclusive energy (mJ): everything while the section was open.
    pub energy_mj: Option<f64>,
    /// Exclusive energy (mJ): inclusive minus nested sections'.
    pub exclusive_energy_mj: Option<f64>,
    /// Inclusive CPU energy (mJ).
    pub cpu_energy_mj: Option<f64>,
    /// Inclusive GPU energy (mJ).
    pub gpu_energy_mj: Option<f64>,
    /// Inclusive Neural Engine energy (mJ).
    pub ane_energy_mj: Option<f64>,
    /// Inclusive DRAM energy (mJ).
    pub dram_energy_mj: Option<f64>,
    /// How the energy was attributed, e.g. `overlap`.
    pub energy_method: Option<String>,
    /// Uncertainty of `energy_mj` (mJ).
    pub energy_uncertainty_mj: Option<f64>,
    /// Power sample windows the section touched.
    pub sample_windows: Option<u32>,
    /// The span instance the row comes from: a run-unique id, shared by the rows of one
    /// span (e.g. the polls of an async span); `None` for rows that are no span of their
    /// own (a layer grouped from its components).
    pub span_id: Option<u64>,
}

impl Measured {
    /// A section from `start_ns` to `end_ns` with no energy yet.
    pub fn span(start_ns: u64, end_ns: u64) -> Measured {
        Measured {
            start_ns,
            end_ns,
            ..Measured::default()
        }
    }

    /// Length in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

/// A section of the pipeline: a phase (`tokenize`, `prefill`, `decode`) or any other span
/// (a row of the `pipeline_sections` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionRecord {
    /// Its index within the run (assigned by the recorder, unique per run).
    pub section_index: u64,
    /// The enclosing section's index, if any.
    pub parent_index: Option<u64>,
    /// The span's name.
    pub name: String,
    /// `phase` for a generation phase, `section` for any other span.
    pub kind: String,
    /// The phase it belongs to, if any.
    pub phase: Option<String>,
    /// Nesting depth (0 at the top).
    pub depth: u32,
    /// The span's fields as a JSON object, if any.
    pub fields: Option<String>,
    /// The names of the enclosing sections and this one, joined by `;` (e.g.
    /// `request;handle_request;compute`): the key of the run's [`SpanRollup`].
    pub path: Option<String>,
    /// How often the span instance was entered (an async span: once per poll).
    pub polls: Option<u32>,
    /// Time it was entered, summed over its polls (ms). `duration_ms` is first enter to
    /// close.
    pub busy_ms: Option<f64>,
    /// Time and energy: `start_ns` is the first enter, `end_ns` the close (or the last
    /// exit of a span still open when the run ended); energies are summed over the polls.
    #[serde(flatten)]
    pub measured: Measured,
}

/// Energy per span path over a run: "which code path used the energy". Kept by the store's
/// writer as rows are written; also the unit in which rows are added to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRollup {
    /// Span names from the outermost, joined by `;` (the folded-stack form).
    pub path: String,
    /// Span instances (or candle rows: tokens, layers, components, operations) counted.
    pub calls: u64,
    /// Time entered, summed (ms).
    pub busy_ms: f64,
    /// Inclusive energy, summed (mJ); `None` when unknown.
    pub energy_mj: Option<f64>,
    /// Exclusive energy, summed (mJ): what this path used itself, not its children.
    pub exclusive_energy_mj: Option<f64>,
}

/// One token: the prefill (all prompt tokens in one forward) or one decode step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Position in the run: 0 for the prefill, then 1, 2, ... for decode steps.
    pub token_index: u64,
    /// `prefill` or `decode`.
    pub phase: String,
    /// How many tokens the forward processed (the prompt length for the prefill, else 1).
    pub n_tokens: u32,
    /// The generated token's id.
    pub token_id: Option<u32>,
    /// The generated token's text.
    pub text: Option<String>,
    /// Time and energy.
    #[serde(flatten)]
    pub measured: Measured,
}

/// One transformer layer during one token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The token (see [`TokenRecord::token_index`]).
    pub token_index: u64,
    /// The layer, from 0.
    pub layer_index: u32,
    /// Time and energy.
    #[serde(flatten)]
    pub measured: Measured,
}

/// One component (attention, MLP, norm, ...) of a layer during one token, or of the model
/// outside its layers (the final norm, the output head: `layer_index` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// The token.
    pub token_index: u64,
    /// The layer; `None` for a model-level component.
    pub layer_index: Option<u32>,
    /// Position among the layer's components (0, 1, ...).
    pub component_index: u32,
    /// The component's kind: `attention`, `mlp`, `norm`, ...
    pub component: String,
    /// The span's name, e.g. `attn`.
    pub name: String,
    /// Time and energy.
    #[serde(flatten)]
    pub measured: Measured,
}

/// One operation (a matmul, rope, ...) inside a component (a row of the
/// `deep_operation_metrics` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// The token.
    pub token_index: u64,
    /// The layer; `None` inside a model-level component.
    pub layer_index: Option<u32>,
    /// The component (its [`ComponentRecord::component_index`]).
    pub component_index: u32,
    /// Position among the component's operations.
    pub op_index: u32,
    /// What it is: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `rope`, `gate_proj`, `up_proj`,
    /// `down_proj`, `norm`, ...
    pub operation: String,
    /// The span's name, e.g. `qmatmul`.
    pub name: String,
    /// Time and energy.
    #[serde(flatten)]
    pub measured: Measured,
}

/// A stored row: the record plus its database identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row<T> {
    /// The row's `id`.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: RunId,
    /// `end - start` in milliseconds.
    pub duration_ms: f64,
    /// The record.
    #[serde(flatten)]
    pub record: T,
}

/// A stored power sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerRow {
    /// Window start (ns).
    pub start_ns: u64,
    /// Window end (ns).
    pub end_ns: u64,
    /// Window length (ms).
    pub duration_ms: f64,
    /// Mean CPU power (mW), `None` where not measured.
    pub cpu_mw: Option<f64>,
    /// Mean GPU power (mW).
    pub gpu_mw: Option<f64>,
    /// Mean Neural Engine power (mW).
    pub ane_mw: Option<f64>,
    /// Mean DRAM power (mW).
    pub dram_mw: Option<f64>,
    /// Mean power of all measured domains (mW).
    pub total_mw: f64,
    /// CPU energy (mJ).
    pub cpu_mj: Option<f64>,
    /// GPU energy (mJ).
    pub gpu_mj: Option<f64>,
    /// Neural Engine energy (mJ).
    pub ane_mj: Option<f64>,
    /// DRAM energy (mJ).
    pub dram_mj: Option<f64>,
    /// Energy of all measured domains (mJ).
    pub total_mj: f64,
    /// The source's name.
    pub source: String,
    /// True when estimated.
    pub estimated: bool,
}
