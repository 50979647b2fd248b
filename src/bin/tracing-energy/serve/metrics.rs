//! `/metrics`: every run's totals in the Prometheus (OpenMetrics) text format, read fresh at
//! each scrape. Series, each labelled with the run (`run_id`, `run_uuid`, `model`, `host`,
//! `source`, `estimated`, `status`):
//!
//! - `tracing_energy_run_energy_joules`: the run's measured energy;
//! - `tracing_energy_run_dynamic_energy_joules`: its energy above the idle baseline;
//! - `tracing_energy_run_duration_seconds`: its duration;
//! - `tracing_energy_run_tokens{phase}`: its tokens per phase;
//! - `tracing_energy_run_token_energy_joules{phase}`: the energy of those tokens;
//! - `tracing_energy_runs`: how many runs the database holds.
//!
//! A figure that is unknown (a run without a power source, a duration not yet known) has
//! no series, never 0. `estimated="true"` marks a run whose energy is an estimate.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tracing_energy::store::{Run, RunFilter, TokenTotals};

use super::app::{with_store, AppState, Failure};

/// A run's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    run_id: String,
    run_uuid: String,
    model: String,
    host: String,
    source: String,
    estimated: String,
    status: String,
}

impl RunLabels {
    fn of(r: &Run) -> RunLabels {
        RunLabels {
            run_id: r.run_id.to_string(),
            run_uuid: r.run_uuid.clone().unwrap_or_default(),
            model: r.model.clone().unwrap_or_default(),
            host: r.host.name.clone().unwrap_or_default(),
            source: r.power_source.clone().unwrap_or_default(),
            estimated: r.estimated.to_string(),
            status: r.status.as_str().to_string(),
        }
    }
}

/// A run's labels and a token phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    #[prometheus(flatten)]
    run: RunLabels,
    phase: String,
}

impl PhaseLabels {
    fn of(r: &RunLabels, phase: &str) -> PhaseLabels {
        PhaseLabels {
            run: r.clone(),
            phase: phase.to_string(),
        }
    }
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The text of `/metrics` for these runs and their token totals (see the module docs).
fn exposition(runs: &[Run], tokens: &[TokenTotals]) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("tracing_energy");
    let energy = Family::<RunLabels, FloatGauge>::default();
    let dynamic = Family::<RunLabels, FloatGauge>::default();
    let duration = Family::<RunLabels, FloatGauge>::default();
    let token_count = Family::<PhaseLabels, Gauge>::default();
    let token_energy = Family::<PhaseLabels, FloatGauge>::default();
    let count: Gauge = Gauge::default();
    registry.register_with_unit(
        "run_energy",
        "Energy measured over the run (estimated=\"true\": an estimate from CPU time)",
        Unit::Joules,
        energy.clone(),
    );
    registry.register_with_unit(
        "run_dynamic_energy",
        "The run's energy above its idle baseline",
        Unit::Joules,
        dynamic.clone(),
    );
    registry.register_with_unit(
        "run_duration",
        "The run's duration",
        Unit::Seconds,
        duration.clone(),
    );
    registry.register(
        "run_tokens",
        "The run's tokens per phase (a prefill row counts every prompt token)",
        token_count.clone(),
    );
    registry.register_with_unit(
        "run_token_energy",
        "The energy of the run's tokens per phase",
        Unit::Joules,
        token_energy.clone(),
    );
    registry.register("runs", "Runs in the database", count.clone());

    count.set(runs.len() as i64);
    let mut labels = HashMap::with_capacity(runs.len());
    for r in runs {
        let l = RunLabels::of(r);
        let known = |v: Option<f64>| v.filter(|v| v.is_finite());
        if let Some(mj) = known(r.total_energy_mj) {
            energy.get_or_create(&l).set(mj / 1000.0);
        }
        if let Some(mj) = known(r.dynamic_total_energy_mj) {
            dynamic.get_or_create(&l).set(mj / 1000.0);
        }
        if let Some(ms) = known(r.duration_ms) {
            duration.get_or_create(&l).set(ms / 1000.0);
        }
        labels.insert(r.run_id, l);
    }
    for t in tokens {
        // A run deleted between the two reads has no labels: left out.
        let Some(l) = labels.get(&t.run_id) else {
            continue;
        };
        let pl = PhaseLabels::of(l, &t.phase);
        token_count
            .get_or_create(&pl)
            .set(i64::try_from(t.tokens).unwrap_or(i64::MAX));
        if let Some(mj) = t.energy_mj.filter(|v| v.is_finite()) {
            token_energy.get_or_create(&pl).set(mj / 1000.0);
        }
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// `/metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let read = with_store(&state, |s| {
        s.read_snapshot(|s| -> Result<_, Failure> {
            Ok((s.get_runs(&RunFilter::default())?, s.token_totals()?))
        })
    })
    .await;
    let text = read.and_then(|(runs, tokens)| {
        exposition(&runs, &tokens)
            .map_err(|_| Failure::internal("the metrics could not be written"))
    });
    match text {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(f) => f.json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_energy::store::{Host, RunStatus};

    fn run(id: i64, energy_mj: Option<f64>, estimated: bool) -> Run {
        Run {
            run_id: id,
            started_at_ms: 0,
            started_at: String::new(),
            ended_at_ms: None,
            model: Some("m\"1".into()),
            prompt: None,
            response: None,
            tags: Vec::new(),
            experiment: None,
            power_source: energy_mj.map(|_| "estimate".into()),
            estimated,
            sample_interval_ms: None,
            power_method: None,
            counter_update_ms: None,
            host: Host::default(),
            crate_version: "0".into(),
            writer_pid: None,
            status: RunStatus::Complete,
            error: None,
            total_energy_mj: energy_mj,
            attributed_energy_mj: None,
            unattributed_energy_mj: None,
            dropped_records: 0,
            duration_ms: Some(1500.0),
            measured_ms: None,
            warnings: Vec::new(),
            baseline: None,
            dynamic_total_energy_mj: None,
            profiler: None,
            run_uuid: None,
        }
    }

    #[test]
    fn known_figures_only_with_the_estimate_labelled() {
        let runs = [run(1, Some(2500.0), true), run(2, None, false)];
        let tokens = [
            TokenTotals {
                run_id: 1,
                phase: "decode".into(),
                rows: 5,
                tokens: 5,
                energy_mj: Some(500.0),
            },
            TokenTotals {
                run_id: 2,
                phase: "decode".into(),
                rows: 3,
                tokens: 3,
                energy_mj: None,
            },
        ];
        let text = exposition(&runs, &tokens).unwrap();
        let energy: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tracing_energy_run_energy_joules{"))
            .collect();
        assert_eq!(energy.len(), 1, "{text}");
        assert!(energy[0].contains("run_id=\"1\"") && energy[0].contains("estimated=\"true\""));
        assert!(energy[0].ends_with(" 2.5"), "{}", energy[0]);
        // The model's quote is escaped, and run 2 has no energy series at all.
        assert!(energy[0].contains("model=\"m\\\"1\""));
        assert!(!text
            .lines()
            .any(|l| l.contains("energy_joules{") && l.contains("run_id=\"2\"")));
        assert!(text.contains("tracing_energy_run_duration_seconds{"));
        assert!(text
            .lines()
            .any(|l| l.starts_with("tracing_energy_run_tokens{")
                && l.contains("run_id=\"2\"")
                && l.ends_with(" 3")));
        assert!(text
            .lines()
            .any(|l| l.starts_with("tracing_energy_runs ") && l.ends_with(" 2")));
        assert!(!text.contains("dynamic_energy_joules{"));
        assert!(text.ends_with("# EOF\n"));
    }
}
