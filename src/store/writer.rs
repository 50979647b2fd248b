//! The writer thread: owns a connection and commits queued records in batched
//! transactions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use rusqlite::{params, Connection, Transaction};

use super::records::{
    ComponentRecord, LayerRecord, Measured, NewRun, OperationRecord, RunEnd, RunId, SectionRecord,
    SpanRollup, TokenRecord,
};
use crate::power::{Domain, PowerSample};
use crate::{Error, Result};

/// Most rows committed in one transaction.
const MAX_ROWS_PER_TRANSACTION: usize = 200_000;

pub(crate) enum Command {
    CreateRun(Box<NewRun>, Sender<Result<RunId>>),
    PowerSamples(RunId, Vec<PowerSample>),
    Sections(RunId, Vec<SectionRecord>),
    Tokens(RunId, Vec<TokenRecord>),
    Layers(RunId, Vec<LayerRecord>),
    Components(RunId, Vec<ComponentRecord>),
    Operations(RunId, Vec<OperationRecord>),
    /// Amounts to add to the run's `span_rollup` rows.
    SpanRollup(RunId, Vec<SpanRollup>),
    FinishRun(RunId, Box<RunEnd>, Sender<Result<()>>),
    Flush(Sender<Result<()>>),
    /// Rows that must be committed in one transaction (a token and everything under it):
    /// a process killed at any moment leaves all of them or none.
    Together(Vec<Command>),
}

impl Command {
    /// Answers a command that waits for a reply with the writer's failure `why`.
    fn fail(&self, why: &str) {
        let err = || Error::WriterFailed(why.to_string());
        match self {
            Command::CreateRun(_, reply) => {
                let _ = reply.send(Err(err()));
            }
            Command::FinishRun(_, _, reply) | Command::Flush(reply) => {
                let _ = reply.send(Err(err()));
            }
            _ => {}
        }
    }

    /// Rows this command writes, and the run they belong to.
    pub(crate) fn rows(&self) -> (Option<RunId>, usize) {
        match self {
            Command::PowerSamples(r, v) => (Some(*r), v.len()),
            Command::Sections(r, v) => (Some(*r), v.len()),
            Command::Tokens(r, v) => (Some(*r), v.len()),
            Command::Layers(r, v) => (Some(*r), v.len()),
            Command::Components(r, v) => (Some(*r), v.len()),
            Command::Operations(r, v) => (Some(*r), v.len()),
            Command::SpanRollup(r, v) => (Some(*r), v.len()),
            Command::Together(v) => (
                v.iter().find_map(|c| c.rows().0),
                v.iter().map(|c| c.rows().1).sum(),
            ),
            _ => (None, 1),
        }
    }
}

/// Rows dropped per run: by a full queue (counted by the sender) or a failed insert.
pub(crate) type DropCounts = Arc<Mutex<HashMap<RunId, u64>>>;

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) state: WriterState,
}

pub(crate) struct WriterState {
    pub(crate) path: PathBuf,
    pub(crate) dropped: DropCounts,
    pub(crate) warned: bool,
}

impl Writer {
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        crate::clock::background_thread();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let mut rows = batch[0].rows().1;
            while rows < MAX_ROWS_PER_TRANSACTION {
                match rx.try_recv() {
                    Ok(c) => {
                        rows += c.rows().1;
                        batch.push(c);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<Command>) {
        let mut replies: Vec<Box<dyn FnOnce(Result<()>)>> = Vec::new();
        let state = &mut self.state;
        let conn = &mut self.conn;
        let outcome = (|| -> Result<()> {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| state.sqlite(e))?;
            for cmd in batch.iter() {
                state.apply(&tx, cmd, &mut replies);
            }
            tx.commit().map_err(|e| state.sqlite(e))
        })();
        let state = &self.state;
        if let Err(e) = &outcome {
            // Nothing of the batch was committed: every row is lost, and counted.
            for cmd in &batch {
                if let (Some(run), n) = cmd.rows() {
                    *state.dropped.lock().entry(run).or_default() += n as u64;
                }
            }
            tracing::error!(path = %state.path.display(), "a batch of records could not be committed: {e}");
        }
        let msg = outcome.as_ref().err().map(|e| e.to_string());
        if let (Some(m), true) = (&msg, replies.is_empty()) {
            // The transaction did not even begin: no command was applied, so none has
            // queued its reply. Answer them here, with the cause.
            for cmd in &batch {
                cmd.fail(m);
            }
        }
        for reply in replies {
            reply(match &msg {
                None => Ok(()),
                Some(m) => Err(Error::WriterFailed(m.clone())),
            });
        }
    }
}

impl WriterState {
    fn sqlite(&self, cause: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    fn apply(
        &mut self,
        tx: &Transaction,
        cmd: &Command,
        replies: &mut Vec<Box<dyn FnOnce(Result<()>)>>,
    ) {
        let result = match cmd {
            Command::Together(v) => {
                for c in v {
                    self.apply(tx, c, replies);
                }
                return;
            }
            Command::CreateRun(meta, reply) => {
                let r = insert_run(tx, meta).map_err(|e| self.sqlite(e));
                let reply = reply.clone();
                match r {
                    Ok(id) => replies.push(Box::new(move |outcome| {
                        let _ = reply.send(outcome.map(|()| id));
                    })),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
                return;
            }
            Command::FinishRun(run, end, reply) => {
                let extra = self.dropped.lock().remove(run).unwrap_or(0);
                let r = finish_run(tx, *run, end, extra).map_err(|e| self.sqlite(e));
                let reply = reply.clone();
                match r {
                    Ok(()) => replies.push(Box::new(move |outcome| {
                        let _ = reply.send(outcome);
                    })),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
                return;
            }
            Command::Flush(reply) => {
                let reply = reply.clone();
                replies.push(Box::new(move |outcome| {
                    let _ = reply.send(outcome);
                }));
                return;
            }
            Command::PowerSamples(run, v) => {
                insert_each(tx, *run, v, &POWER_SQL, bind_power, |_| {})
            }
            Command::Sections(run, v) => {
                insert_each(tx, *run, v, &SECTION_SQL, bind_section, |_| {})
            }
            Command::Tokens(run, v) => insert_each(tx, *run, v, &TOKEN_SQL, bind_token, |_| {}),
            Command::Layers(run, v) => insert_each(tx, *run, v, &LAYER_SQL, bind_layer, |_| {}),
            Command::Components(run, v) => insert_components(tx, *run, v),
            Command::Operations(run, v) => {
                insert_each(tx, *run, v, &OPERATION_SQL, bind_operation, |_| {})
            }
            Command::SpanRollup(run, v) => add_span_rollup(tx, *run, v),
        };
        let (run, failed, first_error) = match result {
            Ok(r) => r,
            Err(e) => {
                let (run, n) = cmd.rows();
                (run.unwrap_or_default(), n, Some(e.to_string()))
            }
        };
        if failed > 0 {
            *self.dropped.lock().entry(run).or_default() += failed as u64;
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    path = %self.path.display(),
                    "{failed} record(s) of run {run} could not be written ({}); they are counted as dropped on the run; further failures are only counted",
                    first_error.unwrap_or_default()
                );
            }
        }
    }
}

/// Binds one record's columns to a prepared statement, from parameter `base + 1` on.
type Bind<T> = fn(&mut rusqlite::CachedStatement<'_>, usize, RunId, &T) -> rusqlite::Result<()>;

/// Rows per multi-row `INSERT` statement.
const ROWS_PER_STATEMENT: usize = 64;

/// The SQL of one table's inserts: one row, and [`ROWS_PER_STATEMENT`] rows.
pub(crate) struct InsertSql {
    one: String,
    many: String,
    params: usize,
}

impl InsertSql {
    fn new(table: &str, columns: &str, params: usize) -> InsertSql {
        let values = |rows: usize| {
            (0..rows)
                .map(|r| {
                    let p: Vec<String> = (1..=params)
                        .map(|i| format!("?{}", r * params + i))
                        .collect();
                    format!("({})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let head = format!("INSERT INTO {table} ({columns})");
        InsertSql {
            one: format!("{head} VALUES {}", values(1)),
            many: format!("{head} VALUES {}", values(ROWS_PER_STATEMENT)),
            params,
        }
    }
}

/// Inserts each record, [`ROWS_PER_STATEMENT`] per statement. A chunk that fails (e.g. one
/// row's parent row was dropped) is retried row by row: the failing rows are skipped and
/// counted, the others kept. Calls `inserted` for every row written. Returns (run, failed
/// rows, first error).
fn insert_each<'a, T>(
    tx: &Transaction,
    run: RunId,
    records: &'a [T],
    sql: &InsertSql,
    bind: Bind<T>,
    mut inserted: impl FnMut(&'a T),
) -> rusqlite::Result<(RunId, usize, Option<String>)> {
    let mut failed = 0;
    let mut first_error = None;
    let one_by_one = |chunk: &'a [T],
                      failed: &mut usize,
                      first_error: &mut Option<String>,
                      inserted: &mut dyn FnMut(&'a T)|
     -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(&sql.one)?;
        for r in chunk {
            match bind(&mut stmt, 0, run, r).and_then(|()| stmt.raw_execute()) {
                Ok(_) => inserted(r),
                Err(e) => {
                    *failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        Ok(())
    };
    let mut chunks = records.chunks_exact(ROWS_PER_STATEMENT);
    for chunk in &mut chunks {
        let mut stmt = tx.prepare_cached(&sql.many)?;
        let result = chunk
            .iter()
            .enumerate()
            .try_for_each(|(k, r)| bind(&mut stmt, k * sql.params, run, r))
            .and_then(|()| stmt.raw_execute());
        match result {
            Ok(_) => chunk.iter().for_each(&mut inserted),
            Err(_) => one_by_one(chunk, &mut failed, &mut first_error, &mut inserted)?,
        }
    }
    one_by_one(
        chunks.remainder(),
        &mut failed,
        &mut first_error,
        &mut inserted,
    )?;
    Ok((run, failed, first_error))
}

/// Inserts component rows and adds the inserted ones to the run's `component_rollup`.
fn insert_components(
    tx: &Transaction,
    run: RunId,
    records: &[ComponentRecord],
) -> rusqlite::Result<(RunId, usize, Option<String>)> {
    // (layer key, component) -> (rows, duration, energy, rows with energy)
    let mut rollup: HashMap<(i64, &str), (i64, f64, f64, i64)> = HashMap::new();
    let outcome = insert_each(tx, run, records, &COMPONENT_SQL, bind_component, |r| {
        let e = rollup
            .entry((r.layer_index.map_or(-1, i64::from), r.component.as_str()))
            .or_default();
        e.0 += 1;
        e.1 += r.measured.duration_ms();
        if let Some(mj) = r.measured.energy_mj {
            e.2 += mj;
            e.3 += 1;
        }
    })?;
    let mut up = tx.prepare_cached(
        "INSERT INTO component_rollup (run_id, layer_key, component, row_count, duration_ms, energy_mj, energy_rows)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (run_id, layer_key, component) DO UPDATE SET
            row_count = row_count + excluded.row_count,
            duration_ms = duration_ms + excluded.duration_ms,
            energy_mj = energy_mj + excluded.energy_mj,
            energy_rows = energy_rows + excluded.energy_rows",
    )?;
    for ((layer, component), (n, dur, mj, n_mj)) in rollup {
        up.execute(params![run, layer, component, n, dur, mj, n_mj])?;
    }
    Ok(outcome)
}

/// Adds amounts to the run's `span_rollup` rows (an unknown energy adds nothing).
fn add_span_rollup(
    tx: &Transaction,
    run: RunId,
    rows: &[SpanRollup],
) -> rusqlite::Result<(RunId, usize, Option<String>)> {
    let mut up = tx.prepare_cached(
        "INSERT INTO span_rollup (run_id, path, calls, busy_ms, energy_mj, exclusive_energy_mj)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (run_id, path) DO UPDATE SET
            calls = calls + excluded.calls,
            busy_ms = busy_ms + excluded.busy_ms,
            energy_mj = CASE WHEN excluded.energy_mj IS NULL THEN energy_mj
                ELSE COALESCE(energy_mj, 0) + excluded.energy_mj END,
            exclusive_energy_mj = CASE WHEN excluded.exclusive_energy_mj IS NULL
                THEN exclusive_energy_mj
                ELSE COALESCE(exclusive_energy_mj, 0) + excluded.exclusive_energy_mj END",
    )?;
    let (mut failed, mut first_error) = (0, None);
    for r in rows {
        if let Err(e) = up.execute(params![
            run,
            r.path,
            r.calls as i64,
            r.busy_ms,
            r.energy_mj,
            r.exclusive_energy_mj
        ]) {
            failed += 1;
            first_error.get_or_insert_with(|| e.to_string());
        }
    }
    Ok((run, failed, first_error))
}

fn insert_run(tx: &Transaction, m: &NewRun) -> rusqlite::Result<RunId> {
    tx.execute(
        "INSERT INTO profiling_runs (started_at_ms, model, prompt, experiment, power_source,
            estimated, sample_interval_ms, host_name, host_os, host_cpu, crate_version,
            writer_pid, status, power_method, counter_update_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'running', ?13, ?14)",
        params![
            m.started_at_ms.unwrap_or_else(super::unix_ms_now),
            m.model,
            m.prompt,
            m.experiment,
            m.power_source,
            m.estimated,
            m.sample_interval_ms,
            m.host.name,
            m.host.os,
            m.host.cpu,
            env!("CARGO_PKG_VERSION"),
            std::process::id() as i64,
            m.power_method,
            m.counter_update_ms,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut tags: Vec<&String> = m.tags.iter().filter(|t| !t.trim().is_empty()).collect();
    tags.sort();
    tags.dedup();
    for t in tags {
        tx.execute(
            "INSERT INTO run_tags (run_id, tag) VALUES (?1, ?2)",
            params![id, t.trim()],
        )?;
    }
    Ok(id)
}

fn finish_run(
    tx: &Transaction,
    run: RunId,
    end: &RunEnd,
    store_dropped: u64,
) -> rusqlite::Result<()> {
    let n = tx.execute(
        "UPDATE profiling_runs SET ended_at_ms = ?2, status = ?3, response = COALESCE(?4, response),
            total_energy_mj = ?5, attributed_energy_mj = ?6, unattributed_energy_mj = ?7,
            dropped_records = dropped_records + ?8, error = ?9, duration_ms = ?10,
            measured_ms = ?11, warnings = ?12
         WHERE run_id = ?1",
        params![
            run,
            super::unix_ms_now(),
            end.status.as_str(),
            end.response,
            end.total_energy_mj,
            end.attributed_energy_mj,
            end.unattributed_energy_mj,
            (end.dropped_records + store_dropped) as i64,
            end.error,
            end.duration_ms,
            end.measured_ms,
            (!end.warnings.is_empty())
                .then(|| serde_json::to_string(&end.warnings).unwrap_or_default()),
        ],
    )?;
    if n == 0 {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    }
    Ok(())
}

static POWER_SQL: Lazy<InsertSql> = Lazy::new(|| {
    InsertSql::new(
        "power_samples",
        "run_id, start_ns, end_ns, duration_ms, cpu_mw, gpu_mw, ane_mw, dram_mw, total_mw,
         cpu_mj, gpu_mj, ane_mj, dram_mj, total_mj, source, estimated",
        16,
    )
});

fn bind_power(
    st: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    run: RunId,
    s: &PowerSample,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(base + 1, run)?;
    st.raw_bind_parameter(base + 2, s.start_ns as i64)?;
    st.raw_bind_parameter(base + 3, s.end_ns as i64)?;
    st.raw_bind_parameter(base + 4, s.duration_ns() as f64 / 1e6)?;
    for (i, d) in Domain::ALL.iter().enumerate() {
        st.raw_bind_parameter(base + 5 + i, s.power_mw(*d))?;
        st.raw_bind_parameter(base + 10 + i, s.energy.get(*d))?;
    }
    st.raw_bind_parameter(base + 9, s.total_mw())?;
    st.raw_bind_parameter(base + 14, s.total_mj)?;
    st.raw_bind_parameter(base + 15, &*s.source)?;
    st.raw_bind_parameter(base + 16, s.estimated)
}

const TIMED_COLUMNS: &str =
    "start_ns, end_ns, duration_ms, thread_id, energy_mj, exclusive_energy_mj,
    cpu_energy_mj, gpu_energy_mj, ane_energy_mj, dram_energy_mj, energy_method,
    energy_uncertainty_mj, sample_windows, span_id";

/// The number of timed columns.
const TIMED_COUNT: usize = 14;

/// Binds the 14 timed columns from parameter `at` on.
fn bind_measured(
    st: &mut rusqlite::CachedStatement<'_>,
    at: usize,
    m: &Measured,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(at, m.start_ns as i64)?;
    st.raw_bind_parameter(at + 1, m.end_ns as i64)?;
    st.raw_bind_parameter(at + 2, m.duration_ms())?;
    st.raw_bind_parameter(at + 3, m.thread_id.map(|t| t as i64))?;
    st.raw_bind_parameter(at + 4, m.energy_mj)?;
    st.raw_bind_parameter(at + 5, m.exclusive_energy_mj)?;
    st.raw_bind_parameter(at + 6, m.cpu_energy_mj)?;
    st.raw_bind_parameter(at + 7, m.gpu_energy_mj)?;
    st.raw_bind_parameter(at + 8, m.ane_energy_mj)?;
    st.raw_bind_parameter(at + 9, m.dram_energy_mj)?;
    st.raw_bind_parameter(at + 10, m.energy_method.as_deref())?;
    st.raw_bind_parameter(at + 11, m.energy_uncertainty_mj)?;
    st.raw_bind_parameter(at + 12, m.sample_windows)?;
    st.raw_bind_parameter(at + 13, m.span_id.map(|i| i as i64))
}

/// Timed tables' inserts: `cols` (`n` parameters) and then the timed columns.
fn timed_sql(table: &str, cols: &str, n: usize) -> InsertSql {
    InsertSql::new(table, &format!("{cols}, {TIMED_COLUMNS}"), n + TIMED_COUNT)
}

static SECTION_SQL: Lazy<InsertSql> = Lazy::new(|| {
    timed_sql(
        "pipeline_sections",
        "run_id, section_index, parent_index, name, kind, phase, depth, fields, path, polls, busy_ms",
        11,
    )
});
static TOKEN_SQL: Lazy<InsertSql> = Lazy::new(|| {
    timed_sql(
        "tokens",
        "run_id, token_index, phase, n_tokens, token_id, text",
        6,
    )
});
static LAYER_SQL: Lazy<InsertSql> =
    Lazy::new(|| timed_sql("layer_metrics", "run_id, token_index, layer_index", 3));
static COMPONENT_SQL: Lazy<InsertSql> = Lazy::new(|| {
    timed_sql(
        "component_metrics",
        "run_id, token_index, layer_index, component_index, component, name",
        6,
    )
});
static OPERATION_SQL: Lazy<InsertSql> = Lazy::new(|| {
    timed_sql(
        "deep_operation_metrics",
        "run_id, token_index, layer_index, component_index, op_index, operation, name",
        7,
    )
});

fn bind_section(
    st: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    run: RunId,
    s: &SectionRecord,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(base + 1, run)?;
    st.raw_bind_parameter(base + 2, s.section_index as i64)?;
    st.raw_bind_parameter(base + 3, s.parent_index.map(|i| i as i64))?;
    st.raw_bind_parameter(base + 4, s.name.as_str())?;
    st.raw_bind_parameter(base + 5, s.kind.as_str())?;
    st.raw_bind_parameter(base + 6, s.phase.as_deref())?;
    st.raw_bind_parameter(base + 7, s.depth)?;
    st.raw_bind_parameter(base + 8, s.fields.as_deref())?;
    st.raw_bind_parameter(base + 9, s.path.as_deref())?;
    st.raw_bind_parameter(base + 10, s.polls)?;
    st.raw_bind_parameter(base + 11, s.busy_ms)?;
    bind_measured(st, base + 12, &s.measured)
}

fn bind_token(
    st: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    run: RunId,
    t: &TokenRecord,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(base + 1, run)?;
    st.raw_bind_parameter(base + 2, t.token_index as i64)?;
    st.raw_bind_parameter(base + 3, t.phase.as_str())?;
    st.raw_bind_parameter(base + 4, t.n_tokens)?;
    st.raw_bind_parameter(base + 5, t.token_id)?;
    st.raw_bind_parameter(base + 6, t.text.as_deref())?;
    bind_measured(st, base + 7, &t.measured)
}

fn bind_layer(
    st: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    run: RunId,
    l: &LayerRecord,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(base + 1, run)?;
    st.raw_bind_parameter(base + 2, l.token_index as i64)?;
    st.raw_bind_parameter(base + 3, l.layer_index)?;
    bind_measured(st, base + 4, &l.measured)
}

fn bind_component(
    st: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    run: RunId,
    c: &ComponentRecord,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(base + 1, run)?;
    st.raw_bind_parameter(base + 2, c.token_index as i64)?;
    st.raw_bind_parameter(base + 3, c.layer_index)?;
    st.raw_bind_parameter(base + 4, c.component_index)?;
    st.raw_bind_parameter(base + 5, c.component.as_str())?;
    st.raw_bind_parameter(base + 6, c.name.as_str())?;
    bind_measured(st, base + 7, &c.measured)
}

fn bind_operation(
    st: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    run: RunId,
    o: &OperationRecord,
) -> rusqlite::Result<()> {
    st.raw_bind_parameter(base + 1, run)?;
    st.raw_bind_parameter(base + 2, o.token_index as i64)?;
    st.raw_bind_parameter(base + 3, o.layer_index)?;
    st.raw_bind_parameter(base + 4, o.component_index)?;
    st.raw_bind_parameter(base + 5, o.op_index)?;
    st.raw_bind_parameter(base + 6, o.operation.as_str())?;
    st.raw_bind_parameter(base + 7, o.name.as_str())?;
    bind_measured(st, base + 8, &o.measured)
}
