//! A run: its identity, state, host, what starts and ends it, and the filters that find it.

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

/// A new run's metadata, for [`crate::store::Store::create_run`].
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
    pub baseline: Option<crate::store::Baseline>,
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

/// How a run ended, for [`crate::store::Store::finish_run`].
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
    pub profiler: Option<crate::store::ProfilerCost>,
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
    pub baseline: Option<crate::store::Baseline>,
    /// `total_energy_mj` less the baseline's power over the measured time (mJ; may be
    /// negative); `None` without a baseline or a total.
    #[serde(default)]
    pub dynamic_total_energy_mj: Option<f64>,
    /// What profiling cost the process during the run (its threads' CPU time, the hot
    /// path's); `None` when not measured (runs recorded before it was, or still running).
    #[serde(default)]
    pub profiler: Option<crate::store::ProfilerCost>,
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
        crate::store::dynamic_mj(self.baseline.as_ref(), self.total_energy_mj, over)
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

/// Filters for [`crate::store::Store::get_runs`]. Empty filters match every run.
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
