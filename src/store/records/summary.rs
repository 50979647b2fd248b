//! What a run adds up to: per phase, layer and component, its hottest components, and
//! its totals.

use serde::{Deserialize, Serialize};

use super::{Run, RunId};

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

/// A run with its aggregates, from [`crate::store::Store::get_run_summary`].
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

/// One run's tokens of one phase ([`Store::token_totals`](crate::store::Store::token_totals)).
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
