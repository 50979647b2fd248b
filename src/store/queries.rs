//! Read queries. Every result is serde-serializable.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row as SqlRow};

use super::records::*;
use super::{rfc3339, Store};
use crate::host::{host_name, pid_alive};
use crate::Result;

const RUN_COLUMNS: &str = "run_id, started_at_ms, ended_at_ms, model, prompt, response, experiment,
    power_source, estimated, sample_interval_ms, host_name, host_os, host_cpu, crate_version,
    writer_pid, status, error, total_energy_mj, attributed_energy_mj, unattributed_energy_mj,
    dropped_records, duration_ms, measured_ms, warnings, power_method, counter_update_ms";

fn run_from_row(r: &SqlRow) -> rusqlite::Result<Run> {
    let started_at_ms: i64 = r.get(1)?;
    let status: String = r.get(15)?;
    Ok(Run {
        run_id: r.get(0)?,
        started_at_ms,
        started_at: rfc3339(started_at_ms),
        ended_at_ms: r.get(2)?,
        model: r.get(3)?,
        prompt: r.get(4)?,
        response: r.get(5)?,
        tags: Vec::new(),
        experiment: r.get(6)?,
        power_source: r.get(7)?,
        estimated: r.get(8)?,
        sample_interval_ms: r.get(9)?,
        host: Host {
            name: r.get(10)?,
            os: r.get(11)?,
            cpu: r.get(12)?,
        },
        crate_version: r.get(13)?,
        writer_pid: r.get(14)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Incomplete),
        error: r.get(16)?,
        total_energy_mj: r.get(17)?,
        attributed_energy_mj: r.get(18)?,
        unattributed_energy_mj: r.get(19)?,
        dropped_records: r.get::<_, i64>(20)? as u64,
        duration_ms: r.get(21)?,
        measured_ms: r.get(22)?,
        warnings: r
            .get::<_, Option<String>>(23)?
            .map(|w| serde_json::from_str(&w).unwrap_or_else(|_| vec![w]))
            .unwrap_or_default(),
        power_method: r.get(24)?,
        counter_update_ms: r.get(25)?,
    })
}

/// A `running` run whose writer process is gone (on this host) is incomplete.
fn effective_status(run: &mut Run, this_host: &Option<String>) {
    if run.status == RunStatus::Running
        && run.host.name == *this_host
        && run.writer_pid.is_some_and(|pid| !pid_alive(pid))
    {
        run.status = RunStatus::Incomplete;
    }
}

/// Runs left `running` by processes that no longer exist on this host.
pub(super) fn dead_running_runs(conn: &Connection) -> rusqlite::Result<Vec<RunId>> {
    let this_host = host_name();
    let mut st = conn.prepare(
        "SELECT run_id, writer_pid, host_name FROM profiling_runs WHERE status = 'running'",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, RunId>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut dead = Vec::new();
    for row in rows {
        let (id, pid, host) = row?;
        if host == this_host && pid.is_some_and(|p| !pid_alive(p)) {
            dead.push(id);
        }
    }
    Ok(dead)
}

fn measured_from(r: &SqlRow, at: usize) -> rusqlite::Result<Measured> {
    Ok(Measured {
        start_ns: r.get::<_, i64>(at)? as u64,
        end_ns: r.get::<_, i64>(at + 1)? as u64,
        thread_id: r.get::<_, Option<i64>>(at + 3)?.map(|t| t as u64),
        energy_mj: r.get(at + 4)?,
        exclusive_energy_mj: r.get(at + 5)?,
        cpu_energy_mj: r.get(at + 6)?,
        gpu_energy_mj: r.get(at + 7)?,
        ane_energy_mj: r.get(at + 8)?,
        dram_energy_mj: r.get(at + 9)?,
        energy_method: r.get(at + 10)?,
        energy_uncertainty_mj: r.get(at + 11)?,
        sample_windows: r.get(at + 12)?,
        span_id: r.get::<_, Option<i64>>(at + 13)?.map(|i| i as u64),
    })
}

const TIMED: &str = "start_ns, end_ns, duration_ms, thread_id, energy_mj, exclusive_energy_mj,
    cpu_energy_mj, gpu_energy_mj, ane_energy_mj, dram_energy_mj, energy_method,
    energy_uncertainty_mj, sample_windows, span_id";

impl Store {
    /// Runs `f` on the store's reading connection (so inside a [`Store::read_snapshot`]
    /// when one is open).
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.conn.lock();
        f(&conn).map_err(|e| self.err(e))
    }

    fn fill_runs(&self, conn: &Connection, runs: &mut [Run]) -> rusqlite::Result<()> {
        let this_host = host_name();
        let mut st =
            conn.prepare_cached("SELECT tag FROM run_tags WHERE run_id = ?1 ORDER BY tag")?;
        for run in runs.iter_mut() {
            run.tags = st
                .query_map([run.run_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            effective_status(run, &this_host);
        }
        Ok(())
    }

    /// One run, or `None` when there is no such run.
    pub fn get_run(&self, run: RunId) -> Result<Option<Run>> {
        self.with_conn(|c| {
            let found = c
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM profiling_runs WHERE run_id = ?1"),
                    [run],
                    run_from_row,
                )
                .optional()?;
            let mut runs: Vec<Run> = found.into_iter().collect();
            self.fill_runs(c, &mut runs)?;
            Ok(runs.pop())
        })
    }

    /// The newest run, or `None` in an empty database.
    pub fn latest_run(&self) -> Result<Option<Run>> {
        let latest = self.get_runs(&RunFilter {
            limit: Some(1),
            ..RunFilter::default()
        })?;
        Ok(latest.into_iter().next())
    }

    /// Runs matching `filter`, newest first.
    pub fn get_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        self.with_conn(|c| {
            let mut sql = format!("SELECT {RUN_COLUMNS} FROM profiling_runs r WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(m) = &filter.model {
                arg(&mut sql, " AND model = ?", m.clone().into());
            }
            if let Some(e) = &filter.experiment {
                arg(&mut sql, " AND experiment = ?", e.clone().into());
            }
            if let Some(t) = filter.since_ms {
                arg(&mut sql, " AND started_at_ms >= ?", t.into());
            }
            if let Some(t) = filter.until_ms {
                arg(&mut sql, " AND started_at_ms < ?", t.into());
            }
            for tag in &filter.tags {
                arg(
                    &mut sql,
                    " AND EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.run_id AND t.tag = ?)",
                    tag.clone().into(),
                );
            }
            sql.push_str(" ORDER BY started_at_ms DESC, run_id DESC");
            arg(&mut sql, " LIMIT ?", filter.limit.map_or(-1, |l| l as i64).into());
            arg(&mut sql, " OFFSET ?", (filter.offset as i64).into());
            let mut st = c.prepare(&sql)?;
            let mut runs = st
                .query_map(rusqlite::params_from_iter(args.iter()), run_from_row)?
                .collect::<rusqlite::Result<Vec<Run>>>()?;
            self.fill_runs(c, &mut runs)?;
            Ok(runs)
        })
    }

    /// Runs whose prompt contains `text` (case-insensitive for ASCII), newest first.
    pub fn search_by_prompt(&self, text: &str) -> Result<Vec<Run>> {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM profiling_runs WHERE prompt LIKE ?1 ESCAPE '\\'
                 ORDER BY started_at_ms DESC, run_id DESC"
            ))?;
            let mut runs = st
                .query_map([format!("%{escaped}%")], run_from_row)?
                .collect::<rusqlite::Result<Vec<Run>>>()?;
            self.fill_runs(c, &mut runs)?;
            Ok(runs)
        })
    }

    /// The run's pipeline sections, by start time.
    pub fn get_pipeline_sections(&self, run: RunId) -> Result<Vec<Row<SectionRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, run_id, section_index, parent_index, name, kind, phase, depth, fields,
                    path, polls, busy_ms, {TIMED}
                 FROM pipeline_sections WHERE run_id = ?1 ORDER BY start_ns, section_index"
            ))?;
            let rows = st.query_map([run], |r| {
                let measured = measured_from(r, 12)?;
                Ok(Row {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    duration_ms: measured.duration_ms(),
                    record: SectionRecord {
                        section_index: r.get::<_, i64>(2)? as u64,
                        parent_index: r.get::<_, Option<i64>>(3)?.map(|i| i as u64),
                        name: r.get(4)?,
                        kind: r.get(5)?,
                        phase: r.get(6)?,
                        depth: r.get(7)?,
                        fields: r.get(8)?,
                        path: r.get(9)?,
                        polls: r.get(10)?,
                        busy_ms: r.get(11)?,
                        measured,
                    },
                })
            })?;
            rows.collect()
        })
    }

    /// The run's energy per span path, most exclusive energy first (by time where the
    /// energy is unknown).
    pub fn get_span_rollup(&self, run: RunId) -> Result<Vec<SpanRollup>> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT path, calls, busy_ms, energy_mj, exclusive_energy_mj FROM span_rollup
                 WHERE run_id = ?1
                 ORDER BY exclusive_energy_mj IS NULL, exclusive_energy_mj DESC, busy_ms DESC, path",
            )?;
            let rows = st.query_map([run], |r| {
                Ok(SpanRollup {
                    path: r.get(0)?,
                    calls: r.get::<_, i64>(1)? as u64,
                    busy_ms: r.get(2)?,
                    energy_mj: r.get(3)?,
                    exclusive_energy_mj: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The run's token rows, by index.
    pub fn get_tokens(&self, run: RunId) -> Result<Vec<Row<TokenRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, run_id, token_index, phase, n_tokens, token_id, text, {TIMED}
                 FROM tokens WHERE run_id = ?1 ORDER BY token_index"
            ))?;
            let rows = st.query_map([run], |r| {
                let measured = measured_from(r, 7)?;
                Ok(Row {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    duration_ms: measured.duration_ms(),
                    record: TokenRecord {
                        token_index: r.get::<_, i64>(2)? as u64,
                        phase: r.get(3)?,
                        n_tokens: r.get(4)?,
                        token_id: r.get(5)?,
                        text: r.get(6)?,
                        measured,
                    },
                })
            })?;
            rows.collect()
        })
    }

    /// The layer rows of one token, by layer.
    pub fn get_layer_metrics(&self, run: RunId, token_index: u64) -> Result<Vec<Row<LayerRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, run_id, token_index, layer_index, {TIMED}
                 FROM layer_metrics WHERE run_id = ?1 AND token_index = ?2 ORDER BY layer_index"
            ))?;
            let rows = st.query_map(params![run, token_index as i64], layer_from_row)?;
            rows.collect()
        })
    }

    /// The component rows of one layer row (by the layer row's id), in order.
    pub fn get_component_metrics(&self, layer_row_id: i64) -> Result<Vec<Row<ComponentRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT c.id, c.run_id, c.token_index, c.layer_index, c.component_index, c.component, c.name,
                        {}
                 FROM layer_metrics l JOIN component_metrics c
                   ON c.run_id = l.run_id AND c.token_index = l.token_index AND c.layer_index = l.layer_index
                 WHERE l.id = ?1 ORDER BY c.component_index",
                prefixed("c")
            ))?;
            let rows = st.query_map([layer_row_id], component_from_row)?;
            rows.collect()
        })
    }

    /// The operation rows of one component row (by the component row's id), in order.
    pub fn get_operation_metrics(
        &self,
        component_row_id: i64,
    ) -> Result<Vec<Row<OperationRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT o.id, o.run_id, o.token_index, o.layer_index, o.component_index, o.op_index,
                        o.operation, o.name, {}
                 FROM component_metrics c JOIN deep_operation_metrics o
                   ON o.run_id = c.run_id AND o.token_index = c.token_index
                  AND o.layer_index = c.layer_index AND o.component_index = c.component_index
                 WHERE c.id = ?1 ORDER BY o.op_index",
                prefixed("o")
            ))?;
            let rows = st.query_map([component_row_id], operation_from_row)?;
            rows.collect()
        })
    }

    /// The former name of [`Store::get_operation_metrics`].
    #[deprecated(note = "renamed `get_operation_metrics`")]
    pub fn get_deep_operation_metrics(
        &self,
        component_row_id: i64,
    ) -> Result<Vec<Row<OperationRecord>>> {
        self.get_operation_metrics(component_row_id)
    }

    /// Every layer row of a run, by token and layer.
    pub fn get_run_layers(&self, run: RunId) -> Result<Vec<Row<LayerRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, run_id, token_index, layer_index, {TIMED}
                 FROM layer_metrics WHERE run_id = ?1 ORDER BY token_index, layer_index"
            ))?;
            let rows = st.query_map([run], layer_from_row)?;
            rows.collect()
        })
    }

    /// Every component row of a run (model-level ones included), by token, layer and position.
    pub fn get_run_components(&self, run: RunId) -> Result<Vec<Row<ComponentRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, run_id, token_index, layer_index, component_index, component, name, {TIMED}
                 FROM component_metrics WHERE run_id = ?1
                 ORDER BY token_index, layer_index IS NULL, layer_index, component_index"
            ))?;
            let rows = st.query_map([run], component_from_row)?;
            rows.collect()
        })
    }

    /// Every operation row of a run, by token, layer, component and position.
    pub fn get_run_operations(&self, run: RunId) -> Result<Vec<Row<OperationRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, run_id, token_index, layer_index, component_index, op_index, operation, name, {TIMED}
                 FROM deep_operation_metrics WHERE run_id = ?1
                 ORDER BY token_index, layer_index IS NULL, layer_index, component_index, op_index"
            ))?;
            let rows = st.query_map([run], operation_from_row)?;
            rows.collect()
        })
    }

    /// The run's power samples, by time.
    pub fn get_power_timeline(&self, run: RunId) -> Result<Vec<PowerRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT start_ns, end_ns, duration_ms, cpu_mw, gpu_mw, ane_mw, dram_mw, total_mw,
                        cpu_mj, gpu_mj, ane_mj, dram_mj, total_mj, source, estimated
                 FROM power_samples WHERE run_id = ?1 ORDER BY start_ns",
            )?;
            let rows = st.query_map([run], |r| {
                Ok(PowerRow {
                    start_ns: r.get::<_, i64>(0)? as u64,
                    end_ns: r.get::<_, i64>(1)? as u64,
                    duration_ms: r.get(2)?,
                    cpu_mw: r.get(3)?,
                    gpu_mw: r.get(4)?,
                    ane_mw: r.get(5)?,
                    dram_mw: r.get(6)?,
                    total_mw: r.get(7)?,
                    cpu_mj: r.get(8)?,
                    gpu_mj: r.get(9)?,
                    ane_mj: r.get(10)?,
                    dram_mj: r.get(11)?,
                    total_mj: r.get(12)?,
                    source: r.get(13)?,
                    estimated: r.get(14)?,
                })
            })?;
            rows.collect()
        })
    }

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
            let mut st = c.prepare(
                "SELECT NULLIF(layer_key, -1), component, row_count, duration_ms, energy_mj, energy_rows
                 FROM component_rollup WHERE run_id = ?1",
            )?;
            struct Group {
                layer: Option<u32>,
                component: String,
                count: u64,
                duration_ms: f64,
                energy_mj: Option<f64>,
            }
            let groups = st
                .query_map([run], |r| {
                    let known: i64 = r.get(5)?;
                    Ok(Group {
                        layer: r.get(0)?,
                        component: r.get(1)?,
                        count: r.get::<_, i64>(2)? as u64,
                        duration_ms: r.get(3)?,
                        energy_mj: if known > 0 { r.get(4)? } else { None },
                    })
                })?
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

fn component_from_row(r: &SqlRow) -> rusqlite::Result<Row<ComponentRecord>> {
    let measured = measured_from(r, 7)?;
    Ok(Row {
        id: r.get(0)?,
        run_id: r.get(1)?,
        duration_ms: measured.duration_ms(),
        record: ComponentRecord {
            token_index: r.get::<_, i64>(2)? as u64,
            layer_index: r.get(3)?,
            component_index: r.get(4)?,
            component: r.get(5)?,
            name: r.get(6)?,
            measured,
        },
    })
}

fn operation_from_row(r: &SqlRow) -> rusqlite::Result<Row<OperationRecord>> {
    let measured = measured_from(r, 8)?;
    Ok(Row {
        id: r.get(0)?,
        run_id: r.get(1)?,
        duration_ms: measured.duration_ms(),
        record: OperationRecord {
            token_index: r.get::<_, i64>(2)? as u64,
            layer_index: r.get(3)?,
            component_index: r.get(4)?,
            op_index: r.get(5)?,
            operation: r.get(6)?,
            name: r.get(7)?,
            measured,
        },
    })
}

fn layer_from_row(r: &SqlRow) -> rusqlite::Result<Row<LayerRecord>> {
    let measured = measured_from(r, 4)?;
    Ok(Row {
        id: r.get(0)?,
        run_id: r.get(1)?,
        duration_ms: measured.duration_ms(),
        record: LayerRecord {
            token_index: r.get::<_, i64>(2)? as u64,
            layer_index: r.get(3)?,
            measured,
        },
    })
}

fn prefixed(alias: &str) -> String {
    TIMED
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
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
