//! Two runs side by side: their phases, layers and component kinds, with the deltas.
//!
//! [`compare`] pairs two [`RunSummary`] values by phase name, layer index and component
//! kind. A row present in one run only has its other side unknown (`None`, `null` in
//! JSON, never 0), and so are its deltas; the percentage is also unknown when the first
//! run's energy is 0.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{Run, RunSummary};

/// One run's side of a [`CompareRow`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// The duration (ms): the phase's total, or the layer's or component kind's mean per
    /// row; `None` when the run has no such row.
    pub duration_ms: Option<f64>,
    /// The energy (mJ), total or mean as `duration_ms`; `None` when unknown.
    pub energy_mj: Option<f64>,
}

/// One phase, layer or component kind in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    /// What is compared: the phase's name, `layer N`, or the component kind.
    pub what: String,
    /// The first run.
    pub a: Side,
    /// The second run.
    pub b: Side,
    /// `b - a` of the durations, when both are known.
    pub delta_duration_ms: Option<f64>,
    /// `b - a` of the energies, when both are known.
    pub delta_energy_mj: Option<f64>,
    /// The energy's delta in percent of `a`'s, when both are known and `a`'s is not 0.
    pub delta_energy_pct: Option<f64>,
}

/// Two runs side by side (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The first run.
    pub a: Run,
    /// The second run.
    pub b: Run,
    /// Per phase (total duration and energy), by name.
    pub phases: Vec<CompareRow>,
    /// Per layer (mean per token row), by index.
    pub layers: Vec<CompareRow>,
    /// Per component kind (mean per row), by name.
    pub components: Vec<CompareRow>,
}

/// (duration, energy) of one row of one run.
type Figures = (Option<f64>, Option<f64>);

/// Compares run `a` with run `b`: every phase, layer and component kind of either.
pub fn compare(a: &RunSummary, b: &RunSummary) -> Comparison {
    let phases = |s: &RunSummary| {
        s.phases
            .iter()
            .map(|p| (p.phase.clone(), (Some(p.duration_ms), p.energy_mj)))
            .collect::<BTreeMap<_, _>>()
    };
    let layers = |s: &RunSummary| {
        s.layers
            .iter()
            .map(|l| (l.layer_index, (Some(l.mean_duration_ms), l.mean_energy_mj)))
            .collect::<BTreeMap<_, _>>()
    };
    let comps = |s: &RunSummary| {
        s.components
            .iter()
            .map(|c| {
                (
                    c.component.clone(),
                    (Some(c.mean_duration_ms), c.mean_energy_mj),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    Comparison {
        phases: join(phases(a), phases(b), |k| k.clone()),
        layers: join(layers(a), layers(b), |k| format!("layer {k}")),
        components: join(comps(a), comps(b), |k| k.clone()),
        a: a.run.clone(),
        b: b.run.clone(),
    }
}

fn pair(what: String, a: Figures, b: Figures) -> CompareRow {
    let d = |x: Option<f64>, y: Option<f64>| x.zip(y).map(|(x, y)| y - x);
    CompareRow {
        what,
        delta_duration_ms: d(a.0, b.0),
        delta_energy_mj: d(a.1, b.1),
        delta_energy_pct: a
            .1
            .zip(b.1)
            .filter(|(x, _)| *x != 0.0)
            .map(|(x, y)| (y - x) / x * 100.0),
        a: Side {
            duration_ms: a.0,
            energy_mj: a.1,
        },
        b: Side {
            duration_ms: b.0,
            energy_mj: b.1,
        },
    }
}

/// One row per key of either map, in key order.
fn join<K: Ord + Clone>(
    a: BTreeMap<K, Figures>,
    b: BTreeMap<K, Figures>,
    name: impl Fn(&K) -> String,
) -> Vec<CompareRow> {
    let mut keys: Vec<K> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            pair(
                name(&k),
                a.get(&k).copied().unwrap_or((None, None)),
                b.get(&k).copied().unwrap_or((None, None)),
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{ComponentSummary, Host, LayerSummary, PhaseSummary, RunStatus};

    /// A complete run with nothing measured, for tests to fill in.
    pub(crate) fn run(id: i64) -> Run {
        Run {
            run_id: id,
            started_at_ms: 0,
            started_at: "1970-01-01T00:00:00.000Z".into(),
            ended_at_ms: None,
            model: None,
            prompt: None,
            response: None,
            tags: Vec::new(),
            experiment: None,
            power_source: None,
            estimated: false,
            sample_interval_ms: None,
            power_method: None,
            counter_update_ms: None,
            host: Host::default(),
            crate_version: "0".into(),
            writer_pid: None,
            status: RunStatus::Complete,
            error: None,
            total_energy_mj: None,
            attributed_energy_mj: None,
            unattributed_energy_mj: None,
            dropped_records: 0,
            duration_ms: None,
            measured_ms: None,
            warnings: Vec::new(),
            baseline: None,
            dynamic_total_energy_mj: None,
            profiler: None,
            run_uuid: None,
        }
    }

    fn phase(name: &str, duration_ms: f64, energy_mj: Option<f64>) -> PhaseSummary {
        PhaseSummary {
            phase: name.into(),
            sections: 1,
            duration_ms,
            energy_mj,
            mean_power_mw: None,
            dynamic_energy_mj: None,
        }
    }

    fn summary(id: i64, phases: Vec<PhaseSummary>) -> RunSummary {
        RunSummary {
            run: run(id),
            phases,
            layers: Vec::new(),
            components: Vec::new(),
            hottest: Vec::new(),
            tokens: 0,
            power_samples: 0,
        }
    }

    #[test]
    fn known_deltas_and_percent() {
        let mut a = summary(1, vec![phase("decode", 200.0, Some(50.0))]);
        let mut b = summary(2, vec![phase("decode", 150.0, Some(75.0))]);
        a.layers.push(LayerSummary {
            layer_index: 3,
            tokens: 4,
            mean_duration_ms: 2.0,
            mean_energy_mj: Some(8.0),
            total_energy_mj: Some(32.0),
        });
        b.layers.push(LayerSummary {
            layer_index: 3,
            tokens: 4,
            mean_duration_ms: 1.0,
            mean_energy_mj: Some(6.0),
            total_energy_mj: Some(24.0),
        });
        let c = compare(&a, &b);
        assert_eq!((c.a.run_id, c.b.run_id), (1, 2));
        let p = &c.phases[0];
        assert_eq!(p.what, "decode");
        assert_eq!(p.delta_duration_ms, Some(-50.0));
        assert_eq!(p.delta_energy_mj, Some(25.0));
        assert_eq!(p.delta_energy_pct, Some(50.0));
        let l = &c.layers[0];
        assert_eq!(l.what, "layer 3");
        assert_eq!((l.a.duration_ms, l.b.duration_ms), (Some(2.0), Some(1.0)));
        assert_eq!(l.delta_energy_mj, Some(-2.0));
        assert_eq!(l.delta_energy_pct, Some(-25.0));
        assert!(c.components.is_empty());
    }

    #[test]
    fn a_missing_side_is_null_not_zero() {
        let a = summary(1, vec![phase("prefill", 10.0, Some(5.0))]);
        let mut b = summary(2, vec![phase("decode", 20.0, Some(9.0))]);
        b.components.push(ComponentSummary {
            component: "mlp".into(),
            count: 2,
            mean_duration_ms: 1.5,
            mean_energy_mj: None,
            total_energy_mj: None,
        });
        let c = compare(&a, &b);
        // Both phases, sorted by name; each missing on one side.
        let names: Vec<&str> = c.phases.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(names, ["decode", "prefill"]);
        let decode = &c.phases[0];
        assert_eq!(
            decode.a,
            Side {
                duration_ms: None,
                energy_mj: None
            }
        );
        assert_eq!(decode.b.energy_mj, Some(9.0));
        assert_eq!(decode.delta_energy_mj, None);
        assert_eq!(decode.delta_energy_pct, None);
        assert_eq!(c.phases[1].b.duration_ms, None);
        // An unknown energy stays unknown, and JSON writes null, not 0.
        let mlp = &c.components[0];
        assert_eq!(mlp.b.duration_ms, Some(1.5));
        assert_eq!(mlp.delta_duration_ms, None);
        let v = serde_json::to_value(&c).unwrap();
        assert!(v["phases"][0]["a"]["energy_mj"].is_null());
        assert!(v["phases"][0]["delta_energy_mj"].is_null());
        assert!(v["components"][0]["b"]["energy_mj"].is_null());
    }

    #[test]
    fn a_zero_baseline_gives_a_delta_but_no_percent() {
        let a = summary(1, vec![phase("decode", 0.0, Some(0.0))]);
        let b = summary(2, vec![phase("decode", 4.0, Some(3.0))]);
        let r = &compare(&a, &b).phases[0];
        assert_eq!(r.delta_energy_mj, Some(3.0));
        assert_eq!(r.delta_energy_pct, None);
        assert_eq!(r.delta_duration_ms, Some(4.0));
    }

    #[test]
    fn json_members_in_order() {
        let a = summary(1, vec![phase("decode", 1.0, Some(2.0))]);
        let text = serde_json::to_string(&compare(&a, &a)).unwrap();
        let at = |k: &str| text.find(k).unwrap();
        assert!(at("\"a\":") < at("\"b\":") && at("\"b\":") < at("\"phases\":"));
        assert!(at("\"phases\":") < at("\"layers\":") && at("\"layers\":") < at("\"components\":"));
        let row = &text[at("\"phases\":")..];
        let at = |k: &str| row.find(k).unwrap();
        assert!(at("\"what\"") < at("\"delta_duration_ms\""));
        assert!(at("\"delta_duration_ms\"") < at("\"delta_energy_mj\""));
        assert!(at("\"delta_energy_mj\"") < at("\"delta_energy_pct\""));
    }
}
