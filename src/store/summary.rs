//! The run summary and the grouped sums of the HTML report: aggregates over a run's rows.

use std::collections::HashMap;

use super::records::*;
use super::tables::components::ComponentRollup;
use super::tables::{read, Sql};
use super::Store;
use crate::Result;

impl Store {
    /// A run with its per-phase, per-layer and per-component aggregates. `None` when there
    /// is no such run.
    pub fn get_run_summary(&self, run: RunId) -> Result<Option<RunSummary>> {
        let Some(run_row) = self.get_run(run)? else {
            return Ok(None);
        };
        self.with_conn(|c| {
            // Phases: sections of kind `phase`, in order of first appearance.
            let mut st = c.prepare(
                "SELECT name, COUNT(*), SUM(duration_ms), SUM(energy_mj), COUNT(energy_mj), MIN(start_ns)
                 FROM pipeline_sections WHERE run_id = ?1 AND kind = 'phase'
                 GROUP BY name ORDER BY MIN(start_ns)",
            )?;
            let phases = st
                .query_map([run], |r| {
                    let duration_ms: f64 = r.get(2)?;
                    let known: i64 = r.get(4)?;
                    let energy_mj: Option<f64> = if known > 0 { r.get(3)? } else { None };
                    Ok(PhaseSummary {
                        phase: r.get(0)?,
                        sections: r.get::<_, i64>(1)? as u64,
                        duration_ms,
                        energy_mj,
                        mean_power_mw: energy_mj.filter(|_| duration_ms > 0.0).map(|e| e / duration_ms * 1000.0),
                        dynamic_energy_mj: super::dynamic_mj(run_row.baseline.as_ref(), energy_mj, duration_ms),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;

            let mut st = c.prepare(
                "SELECT layer_index, COUNT(*), AVG(duration_ms), AVG(energy_mj), SUM(energy_mj), COUNT(energy_mj)
                 FROM layer_metrics WHERE run_id = ?1 GROUP BY layer_index ORDER BY layer_index",
            )?;
            let layers = st
                .query_map([run], |r| {
                    let known: i64 = r.get(5)?;
                    Ok(LayerSummary {
                        layer_index: r.get(0)?,
                        tokens: r.get::<_, i64>(1)? as u64,
                        mean_duration_ms: r.get(2)?,
                        mean_energy_mj: if known > 0 { r.get(3)? } else { None },
                        total_energy_mj: if known > 0 { r.get(4)? } else { None },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;

            // Per (layer, component) totals, kept by the writer (component_rollup); the
            // per-component figures and the hottest list are folded from those groups.
            let groups = c
                .prepare(&format!("{} WHERE run_id = ?1", Sql::of::<ComponentRollup>().select))?
                .query_map([run], read::<ComponentRollup>)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut by_component: HashMap<&str, (u64, f64, Option<f64>)> = HashMap::new();
            for g in &groups {
                let e = by_component.entry(&g.component).or_insert((0, 0.0, None));
                e.0 += g.count;
                e.1 += g.duration_ms;
                if let Some(mj) = g.energy_mj {
                    e.2 = Some(e.2.unwrap_or(0.0) + mj);
                }
            }
            let mut components: Vec<ComponentSummary> = by_component
                .into_iter()
                .map(|(name, (count, dur, energy))| ComponentSummary {
                    component: name.to_string(),
                    count,
                    mean_duration_ms: dur / count.max(1) as f64,
                    mean_energy_mj: energy.map(|e| e / count.max(1) as f64),
                    total_energy_mj: energy,
                })
                .collect();
            components.sort_by(|a, b| {
                b.total_energy_mj
                    .unwrap_or(0.0)
                    .total_cmp(&a.total_energy_mj.unwrap_or(0.0))
                    .then(b.mean_duration_ms.total_cmp(&a.mean_duration_ms))
                    .then(a.component.cmp(&b.component))
            });
            let mut hottest: Vec<HotComponent> = groups
                .iter()
                .filter_map(|g| {
                    g.energy_mj.map(|mj| HotComponent {
                        layer_index: g.layer,
                        component: g.component.clone(),
                        count: g.count,
                        duration_ms: g.duration_ms,
                        energy_mj: mj,
                        share_of_run: run_row.total_energy_mj.filter(|t| *t > 0.0).map(|t| mj / t),
                    })
                })
                .collect();
            hottest.sort_by(|a, b| {
                b.energy_mj
                    .total_cmp(&a.energy_mj)
                    .then(a.layer_index.cmp(&b.layer_index))
                    .then(a.component.cmp(&b.component))
            });
            hottest.truncate(10);

            let tokens: i64 = c.query_row("SELECT COUNT(*) FROM tokens WHERE run_id = ?1", [run], |r| r.get(0))?;
            let power_samples: i64 =
                c.query_row("SELECT COUNT(*) FROM power_samples WHERE run_id = ?1", [run], |r| r.get(0))?;
            Ok(Some(RunSummary {
                run: run_row,
                phases,
                layers,
                components,
                hottest,
                tokens: tokens as u64,
                power_samples: power_samples as u64,
            }))
        })
    }
}

/// The grouped sums of the HTML report (read by `report::data`, which names the fields).
impl Store {
    /// The run's component rows summed per (token phase, layer, component kind), in order
    /// of first appearance: one tuple `(phase, layer, component, energy_mj, duration_ms,
    /// token_rows, tokens)` per group, where `phase` is the tokens' phase (`unknown` for a
    /// row without its token), `layer` is `None` for model-level components, `energy_mj`
    /// is `None` when no row of the group has one, `duration_ms` is the summed duration,
    /// `token_rows` the token rows the group covers and `tokens` the tokens those rows
    /// processed (the prompt length for the prefill).
    #[allow(clippy::type_complexity)]
    pub(crate) fn get_component_groups(
        &self,
        run: RunId,
    ) -> Result<Vec<(String, Option<u32>, String, Option<f64>, f64, u64, u64)>> {
        self.with_conn(|conn| {
            // Per token first, so that a kind appearing twice in a layer counts its token once.
            let mut st = conn.prepare(
                "SELECT COALESCE(t.phase, 'unknown'), g.layer_index, g.component,
                        SUM(g.e), SUM(g.known), SUM(g.d), COUNT(*), SUM(COALESCE(t.n_tokens, 1))
                 FROM (SELECT token_index, layer_index, component, SUM(energy_mj) AS e,
                              COUNT(energy_mj) AS known, SUM(duration_ms) AS d
                       FROM component_metrics WHERE run_id = ?1
                       GROUP BY token_index, layer_index, component) g
                 LEFT JOIN tokens t ON t.run_id = ?1 AND t.token_index = g.token_index
                 GROUP BY 1, 2, 3
                 ORDER BY MIN(g.token_index), 2, 3",
            )?;
            let rows = st.query_map([run], |r| {
                let known: i64 = r.get(4)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    if known > 0 { r.get(3)? } else { None },
                    r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
                    r.get::<_, i64>(6)?.max(0) as u64,
                    r.get::<_, i64>(7)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        })
    }

    /// The run's layer rows summed per (token phase, layer), in order of first appearance:
    /// one tuple `(phase, layer, energy_mj)` per group, where `phase` is `unknown` for a
    /// row without its token and `energy_mj` is `None` when no row of the group has one.
    pub(crate) fn get_layer_groups(&self, run: RunId) -> Result<Vec<(String, u32, Option<f64>)>> {
        self.with_conn(|conn| {
            let mut st = conn.prepare(
                "SELECT COALESCE(t.phase, 'unknown'), l.layer_index, SUM(l.energy_mj),
                        COUNT(l.energy_mj)
                 FROM layer_metrics l
                 LEFT JOIN tokens t ON t.run_id = l.run_id AND t.token_index = l.token_index
                 WHERE l.run_id = ?1
                 GROUP BY 1, 2 ORDER BY MIN(l.token_index), 2",
            )?;
            let rows = st.query_map([run], |r| {
                let known: i64 = r.get(3)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    if known > 0 { r.get(2)? } else { None },
                ))
            })?;
            rows.collect()
        })
    }
}
