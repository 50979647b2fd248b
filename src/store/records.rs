//! What the store writes and reads.

use serde::{Deserialize, Serialize};

/// A run's identifier (the `run_id` column).
pub type RunId = i64;

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Being recorded by a live process.
    Running,
    /// Finished normally: all records written, energy attributed.
    Complete,
    /// The recording process died before finishing: committed rows are kept.
    Incomplete,
    /// Stopped early on request (Ctrl-C, SIGTERM): everything recorded up to then is kept
    /// and attributed.
    Interrupted,
    /// Finished with an error (see the run's `error`).
    Failed,
}

impl RunStatus {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses a `status` column value.
    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "complete" => RunStatus::Complete,
            "incomplete" => RunStatus::Incomplete,
            "interrupted" => RunStatus::Interrupted,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }
}

/// The machine a run was recorded on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Host name.
    pub name: Option<String>,
    /// Operating system and its release, e.g. `linux 6.1.0`.
    pub os: Option<String>,
    /// CPU or chip model, e.g. `Apple M2 Ultra`.
    pub cpu: Option<String>,
}

impl Host {
    /// Reads this machine's host name, OS release and CPU model.
    pub fn detect() -> Host {
        Host {
            name: crate::host::host_name(),
            os: Some(crate::host::os_release()),
            cpu: crate::host::cpu_model(),
        }
    }
}

/// A new run's metadata, for [`super::Store::create_run`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// The model profiled, e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Option<String>,
    /// Free-form tags, for filtering.
    pub tags: Vec<String>,
    /// An experiment name, for grouping runs.
    pub experiment: Option<String>,
    /// The power source's name, e.g. `powermetrics`.
    pub power_source: Option<String>,
    /// True when the power values are estimated, not measured.
    pub estimated: bool,
    /// The sampler's requested window length.
    pub sample_interval_ms: Option<f64>,
    /// How the source measures, where it says (e.g. `nvml: power x time`).
    pub power_method: Option<String>,
    /// The source counter's measured update period (ms), where it has a counter.
    pub counter_update_ms: Option<f64>,
    /// The idle power measured before the run started, `None` without a baseline.
    pub baseline: Option<super::Baseline>,
    /// The machine. [`NewRun::default`] leaves it empty; [`NewRun::new`] detects it.
    pub host: Host,
    /// Start time (Unix ms); `None` means now.
    pub started_at_ms: Option<i64>,
}

impl NewRun {
    /// Metadata with this machine's [`Host`] filled in and nothing else.
    pub fn new() -> NewRun {
        NewRun {
            host: Host::detect(),
            ..NewRun::default()
        }
    }
}

/// How a run ended, for [`super::Store::finish_run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    /// [`RunStatus::Complete`], [`RunStatus::Interrupted`] or [`RunStatus::Failed`].
    pub status: RunStatus,
    /// The generated text, where there is one.
    pub response: Option<String>,
    /// Energy measured over the run's window (mJ); `None` without a power source.
    pub total_energy_mj: Option<f64>,
    /// Energy attributed to sections (mJ).
    pub attributed_energy_mj: Option<f64>,
    /// Energy not attributed to any section (mJ).
    pub unattributed_energy_mj: Option<f64>,
    /// Records the caller dropped (e.g. a full queue in the layer); added to the records
    /// the store itself dropped.
    pub dropped_records: u64,
    /// Why the run failed, or what interrupted it.
    pub error: Option<String>,
    /// The run's length on the monotonic clock (ms).
    pub duration_ms: Option<f64>,
    /// How much of the run power samples covered (ms); `None` without a power source.
    pub measured_ms: Option<f64>,
    /// What went wrong with the measurement (a stalled or failing source, dropped
    /// windows), for a person to read.
    pub warnings: Vec<String>,
    /// What profiling cost the process during the run; `None` when not measured.
    #[serde(default)]
    pub profiler: Option<super::ProfilerCost>,
}

impl RunEnd {
    /// A complete run with no energy figures.
    pub fn complete() -> RunEnd {
        RunEnd {
            status: RunStatus::Complete,
            response: None,
            total_energy_mj: None,
            attributed_energy_mj: None,
            unattributed_energy_mj: None,
            dropped_records: 0,
            error: None,
            duration_ms: None,
            measured_ms: None,
            warnings: Vec::new(),
            profiler: None,
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its identifier.
    pub run_id: RunId,
    /// Start, Unix time in milliseconds.
    pub started_at_ms: i64,
    /// Start as RFC 3339 (UTC).
    pub started_at: String,
    /// End, Unix time in milliseconds; `None` while running or when the process died.
    pub ended_at_ms: Option<i64>,
    /// The model.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: Option<String>,
    /// The response.
    pub response: Option<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Experiment name.
    pub experiment: Option<String>,
    /// Power source name.
    pub power_source: Option<String>,
    /// True when the power values are estimated.
    pub estimated: bool,
    /// Requested sample window length.
    pub sample_interval_ms: Option<f64>,
    /// How the source measures, where it says.
    pub power_method: Option<String>,
    /// The source counter's measured update period (ms).
    pub counter_update_ms: Option<f64>,
    /// The machine.
    pub host: Host,
    /// The tracing-energy version that recorded it.
    pub crate_version: String,
    /// The recording process.
    pub writer_pid: Option<i64>,
    /// Its state. A run left `running` by a process that no longer exists reads as
    /// [`RunStatus::Incomplete`].
    pub status: RunStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Energy measured over the run (mJ).
    pub total_energy_mj: Option<f64>,
    /// Energy attributed to sections (mJ).
    pub attributed_energy_mj: Option<f64>,
    /// Energy not attributed (mJ).
    pub unattributed_energy_mj: Option<f64>,
    /// Records dropped while recording.
    pub dropped_records: u64,
    /// The run's length on the monotonic clock (ms); `None` until it ends.
    pub duration_ms: Option<f64>,
    /// How much of the run power samples covered (ms); `None` without a power source or
    /// until it ends.
    pub measured_ms: Option<f64>,
    /// What went wrong with the measurement, for a person to read.
    pub warnings: Vec<String>,
    /// The idle power measured before the run started, `None` without a baseline.
    #[serde(default)]
    pub baseline: Option<super::Baseline>,
    /// `total_energy_mj` less the baseline's power over the measured time (mJ; may be
    /// negative); `None` without a baseline or a total.
    #[serde(default)]
    pub dynamic_total_energy_mj: Option<f64>,
    /// What profiling cost the process during the run (its threads' CPU time, the hot
    /// path's); `None` when not measured (runs recorded before it was, or still running).
    #[serde(default)]
    pub profiler: Option<super::ProfilerCost>,
    /// The run's universally unique id (a random UUID version 4), the same in every
    /// database the run is merged into; `None` only for a row inserted by hand.
    #[serde(default)]
    pub run_uuid: Option<String>,
}

impl Run {
    /// `total_energy_mj` less the idle power over the time the samples covered
    /// (`measured_ms`, else `duration_ms`): the run's dynamic energy, `None` without a
    /// baseline.
    pub fn dynamic_total(&self) -> Option<f64> {
        let over = self.measured_ms.or(self.duration_ms)?;
        super::dynamic_mj(self.baseline.as_ref(), self.total_energy_mj, over)
    }

    /// The share of the run that power samples covered (0 to 1), when known.
    pub fn coverage(&self) -> Option<f64> {
        match (self.measured_ms, self.duration_ms) {
            (Some(m), Some(d)) if d > 0.0 => Some((m / d).clamp(0.0, 1.0)),
            _ => None,
        }
    }

    /// "energy measured for 0.4 s of 3.1 s (13 %)" when samples covered less than 99.5 %
    /// of the run, `None` when they covered it (or nothing is known).
    pub fn coverage_note(&self) -> Option<String> {
        coverage_note(self.measured_ms, self.duration_ms)
    }
}

/// "energy measured for 0.4 s of 3.1 s (13 %)" when `measured_ms` is less than 99.5 % of
/// `duration_ms`; `None` when it is not, or when either is unknown or the run has no length.
pub fn coverage_note(measured_ms: Option<f64>, duration_ms: Option<f64>) -> Option<String> {
    let (m, d) = (measured_ms?, duration_ms?);
    let share = (d > 0.0).then(|| (m / d).clamp(0.0, 1.0))?;
    (share < 0.995).then(|| {
        format!(
            "energy measured for {:.1} s of {:.1} s ({:.0} %)",
            m / 1000.0,
            d / 1000.0,
            share * 100.0
        )
    })
}

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

/// Filters for [`super::Store::get_runs`]. Empty filters match every run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Exact model name.
    pub model: Option<String>,
    /// Runs started at or after this Unix time (ms).
    pub since_ms: Option<i64>,
    /// Runs started before this Unix time (ms).
    pub until_ms: Option<i64>,
    /// Runs that carry every one of these tags.
    pub tags: Vec<String>,
    /// Exact experiment name.
    pub experiment: Option<String>,
    /// At most this many runs (default: all).
    pub limit: Option<u64>,
    /// Skip this many runs first (newest first).
    pub offset: u64,
}

/// Time, energy and mean power of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// The phase's name.
    pub phase: String,
    /// How many sections of this phase.
    pub sections: u64,
    /// Their total duration (ms).
    pub duration_ms: f64,
    /// Their total energy (mJ), `None` if unknown.
    pub energy_mj: Option<f64>,
    /// Energy / duration (mW).
    pub mean_power_mw: Option<f64>,
    /// `energy_mj` less the run's idle power over `duration_ms` (mJ; may be negative);
    /// `None` without a baseline.
    #[serde(default)]
    pub dynamic_energy_mj: Option<f64>,
}

/// One layer, averaged over the tokens it ran for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// The layer.
    pub layer_index: u32,
    /// Tokens it ran for.
    pub tokens: u64,
    /// Mean duration per token (ms).
    pub mean_duration_ms: f64,
    /// Mean energy per token (mJ).
    pub mean_energy_mj: Option<f64>,
    /// Total energy over all tokens (mJ).
    pub total_energy_mj: Option<f64>,
}

/// One component kind, averaged over layers and tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentSummary {
    /// The component kind (`attention`, `mlp`, `norm`, ...).
    pub component: String,
    /// Rows counted.
    pub count: u64,
    /// Mean duration per row (ms).
    pub mean_duration_ms: f64,
    /// Mean energy per row (mJ).
    pub mean_energy_mj: Option<f64>,
    /// Total energy (mJ).
    pub total_energy_mj: Option<f64>,
}

/// A component of one layer, ranked by energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotComponent {
    /// The layer; `None` for a model-level component (e.g. the output head).
    pub layer_index: Option<u32>,
    /// The component kind.
    pub component: String,
    /// Tokens counted.
    pub count: u64,
    /// Total duration (ms).
    pub duration_ms: f64,
    /// Total energy (mJ).
    pub energy_mj: f64,
    /// Share of the run's measured energy, when known.
    pub share_of_run: Option<f64>,
}

/// A run with its aggregates, from [`super::Store::get_run_summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    pub run: Run,
    /// Per phase, in order of first appearance.
    pub phases: Vec<PhaseSummary>,
    /// Per layer, by index.
    pub layers: Vec<LayerSummary>,
    /// Per component kind, by total energy (highest first; by time without energy).
    pub components: Vec<ComponentSummary>,
    /// The 10 (layer, component) pairs with the most energy.
    pub hottest: Vec<HotComponent>,
    /// Token rows.
    pub tokens: u64,
    /// Power samples.
    pub power_samples: u64,
}

/// One run's tokens of one phase ([`Store::token_totals`](super::Store::token_totals)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenTotals {
    /// The run.
    pub run_id: RunId,
    /// The tokens' phase (`prefill`, `decode`, ...).
    pub phase: String,
    /// Token rows (a prefill row holds the whole prompt).
    pub rows: u64,
    /// Tokens: the sum of the rows' `n_tokens`.
    pub tokens: u64,
    /// Their energy (mJ); `None` when no row of them has a known energy.
    pub energy_mj: Option<f64>,
}
