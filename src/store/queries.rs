//! Read queries. Every result is serde-serializable.

use rusqlite::{params, Connection, OptionalExtension};

use super::records::*;
use super::tables::components::Components;
use super::tables::layers::Layers;
use super::tables::operations::Operations;
use super::tables::power::PowerSamples;
use super::tables::runs::{RunTags, Runs};
use super::tables::sections::Sections;
use super::tables::span_rollup::SpanRollups;
use super::tables::tokens::Tokens;
use super::tables::{read, select_list, Sql};
use super::Store;
use crate::host::{host_name, pid_alive};
use crate::Result;

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
        let sql = format!(
            "{} WHERE run_id = ?1 ORDER BY tag",
            Sql::of::<RunTags>().select
        );
        let mut st = conn.prepare_cached(&sql)?;
        for run in runs.iter_mut() {
            run.tags = st
                .query_map([run.run_id], read::<RunTags>)?
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
                    &format!("{} WHERE run_id = ?1", Sql::of::<Runs>().select),
                    [run],
                    read::<Runs>,
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
            let mut sql = format!(
                "SELECT {} FROM profiling_runs r WHERE 1 = 1",
                Sql::of::<Runs>().columns
            );
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
                .query_map(rusqlite::params_from_iter(args.iter()), read::<Runs>)?
                .collect::<rusqlite::Result<Vec<Run>>>()?;
            self.fill_runs(c, &mut runs)?;
            Ok(runs)
        })
    }

    /// For every run, per token phase: its tokens and their energy, in one query (for
    /// `serve`'s `/metrics`), ordered by run and phase.
    pub fn token_totals(&self) -> Result<Vec<TokenTotals>> {
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT run_id, phase, COUNT(*), SUM(n_tokens), SUM(energy_mj), COUNT(energy_mj)
                 FROM tokens GROUP BY run_id, phase ORDER BY run_id, phase",
            )?;
            let rows = st.query_map([], |r| {
                let known: i64 = r.get(5)?;
                Ok(TokenTotals {
                    run_id: r.get(0)?,
                    phase: r.get(1)?,
                    rows: r.get::<_, i64>(2)? as u64,
                    tokens: r.get::<_, i64>(3)? as u64,
                    energy_mj: if known > 0 { r.get(4)? } else { None },
                })
            })?;
            rows.collect()
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
                "{} WHERE prompt LIKE ?1 ESCAPE '\\' ORDER BY started_at_ms DESC, run_id DESC",
                Sql::of::<Runs>().select
            ))?;
            let mut runs = st
                .query_map([format!("%{escaped}%")], read::<Runs>)?
                .collect::<rusqlite::Result<Vec<Run>>>()?;
            self.fill_runs(c, &mut runs)?;
            Ok(runs)
        })
    }

    /// The run's pipeline sections, by start time.
    pub fn get_pipeline_sections(&self, run: RunId) -> Result<Vec<Row<SectionRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "{} WHERE run_id = ?1 ORDER BY start_ns, section_index",
                Sql::of::<Sections>().select
            ))?;
            let rows = st.query_map([run], read::<Sections>)?;
            rows.collect()
        })
    }

    /// The run's energy per span path, most exclusive energy first (by time where the
    /// energy is unknown).
    pub fn get_span_rollup(&self, run: RunId) -> Result<Vec<SpanRollup>> {
        self.with_conn(|c| {
            let sql = format!(
                "{} WHERE run_id = ?1
                 ORDER BY exclusive_energy_mj IS NULL, exclusive_energy_mj DESC, busy_ms DESC, path",
                Sql::of::<SpanRollups>().select
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map([run], read::<SpanRollups>)?;
            rows.collect()
        })
    }

    /// The run's token rows, by index.
    pub fn get_tokens(&self, run: RunId) -> Result<Vec<Row<TokenRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "{} WHERE run_id = ?1 ORDER BY token_index",
                Sql::of::<Tokens>().select
            ))?;
            let rows = st.query_map([run], read::<Tokens>)?;
            rows.collect()
        })
    }

    /// The layer rows of one token, by layer.
    pub fn get_layer_metrics(&self, run: RunId, token_index: u64) -> Result<Vec<Row<LayerRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "{} WHERE run_id = ?1 AND token_index = ?2 ORDER BY layer_index",
                Sql::of::<Layers>().select
            ))?;
            let rows = st.query_map(params![run, token_index as i64], read::<Layers>)?;
            rows.collect()
        })
    }

    /// The component rows of one layer row (by the layer row's id), in order.
    pub fn get_component_metrics(&self, layer_row_id: i64) -> Result<Vec<Row<ComponentRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {}
                 FROM layer_metrics l JOIN component_metrics c
                   ON c.run_id = l.run_id AND c.token_index = l.token_index AND c.layer_index = l.layer_index
                 WHERE l.id = ?1 ORDER BY c.component_index",
                select_list::<Components>(Some("c"))
            ))?;
            let rows = st.query_map([layer_row_id], read::<Components>)?;
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
                "SELECT {}
                 FROM component_metrics c JOIN deep_operation_metrics o
                   ON o.run_id = c.run_id AND o.token_index = c.token_index
                  AND o.layer_index = c.layer_index AND o.component_index = c.component_index
                 WHERE c.id = ?1 ORDER BY o.op_index",
                select_list::<Operations>(Some("o"))
            ))?;
            let rows = st.query_map([component_row_id], read::<Operations>)?;
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
                "{} WHERE run_id = ?1 ORDER BY token_index, layer_index",
                Sql::of::<Layers>().select
            ))?;
            let rows = st.query_map([run], read::<Layers>)?;
            rows.collect()
        })
    }

    /// Every component row of a run (model-level ones included), by token, layer and position.
    pub fn get_run_components(&self, run: RunId) -> Result<Vec<Row<ComponentRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "{} WHERE run_id = ?1
                 ORDER BY token_index, layer_index IS NULL, layer_index, component_index",
                Sql::of::<Components>().select
            ))?;
            let rows = st.query_map([run], read::<Components>)?;
            rows.collect()
        })
    }

    /// Every operation row of a run, by token, layer, component and position.
    pub fn get_run_operations(&self, run: RunId) -> Result<Vec<Row<OperationRecord>>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "{} WHERE run_id = ?1
                 ORDER BY token_index, layer_index IS NULL, layer_index, component_index, op_index",
                Sql::of::<Operations>().select
            ))?;
            let rows = st.query_map([run], read::<Operations>)?;
            rows.collect()
        })
    }

    /// The run's power samples, by time.
    pub fn get_power_timeline(&self, run: RunId) -> Result<Vec<PowerRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "{} WHERE run_id = ?1 ORDER BY start_ns",
                Sql::of::<PowerSamples>().select
            ))?;
            let rows = st.query_map([run], read::<PowerSamples>)?;
            rows.collect()
        })
    }
}
