//! The writer thread: owns a connection and commits queued records in batched
//! transactions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::{Connection, Transaction};

use super::records::{
    ComponentRecord, LayerRecord, NewRun, OperationRecord, RunEnd, RunId, SectionRecord,
    SpanRollup, TokenRecord,
};
use super::tables::components::{Components, Totals};
use super::tables::layers::Layers;
use super::tables::operations::Operations;
use super::tables::power::PowerSamples;
use super::tables::runs;
use super::tables::sections::Sections;
use super::tables::span_rollup::SpanRollups;
use super::tables::tokens::Tokens;
use super::tables::{Binder, Sql, Write, ROWS_PER_STATEMENT};
use crate::power::PowerSample;
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
    /// This thread's CPU time, published after every batch (before its replies).
    pub(crate) cpu: crate::cpu_time::CpuSlot,
}

pub(crate) struct WriterState {
    pub(crate) path: PathBuf,
    pub(crate) dropped: DropCounts,
    pub(crate) warned: bool,
}

impl Writer {
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        crate::clock::background_thread();
        self.cpu.publish();
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
        // Before the replies: a caller that waited for this batch reads its cost.
        self.cpu.publish();
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
                let r = runs::create(tx, meta).map_err(|e| self.sqlite(e));
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
                let r = runs::finish(tx, *run, end, extra).map_err(|e| self.sqlite(e));
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
            Command::PowerSamples(run, v) => insert_each::<PowerSamples, _>(tx, *run, v, |_| {}),
            Command::Sections(run, v) => insert_each::<Sections, _>(tx, *run, v, |_| {}),
            Command::Tokens(run, v) => insert_each::<Tokens, _>(tx, *run, v, |_| {}),
            Command::Layers(run, v) => insert_each::<Layers, _>(tx, *run, v, |_| {}),
            Command::Components(run, v) => insert_components(tx, *run, v),
            Command::Operations(run, v) => insert_each::<Operations, _>(tx, *run, v, |_| {}),
            // Sums: each row adds to the path's row.
            Command::SpanRollup(run, v) => insert_each::<SpanRollups, _>(tx, *run, v, |_| {}),
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

/// What inserting a command's rows came to: the run, the rows that failed (skipped and
/// counted as dropped), and the first failure.
type Outcome = (RunId, usize, Option<String>);

/// Inserts each record as a row of `T`, [`ROWS_PER_STATEMENT`] per statement (one per
/// statement for a table that sums, with `ON CONFLICT`). A chunk that fails (e.g. one
/// row's parent row was dropped) is retried row by row: the failing rows are skipped and
/// counted, the others kept. Calls `inserted` for every row written.
fn insert_each<'a, T: Write<R>, R>(
    tx: &Transaction,
    run: RunId,
    records: &'a [R],
    mut inserted: impl FnMut(&'a R),
) -> rusqlite::Result<Outcome> {
    let sql = Sql::of::<T>();
    let mut failed = 0;
    let mut first_error = None;
    let mut one_by_one = |rows: &'a [R], inserted: &mut dyn FnMut(&'a R)| -> rusqlite::Result<()> {
        let mut st = tx.prepare_cached(&sql.insert_one)?;
        for r in rows {
            let mut b = Binder::new(&mut st);
            match b.row::<T, R>(run, r).and_then(|()| b.execute()) {
                Ok(_) => inserted(r),
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        Ok(())
    };
    let chunked = if T::ON_CONFLICT.is_empty() {
        records.len() - records.len() % ROWS_PER_STATEMENT
    } else {
        0
    };
    let (chunked, rest) = records.split_at(chunked);
    for chunk in chunked.chunks_exact(ROWS_PER_STATEMENT) {
        let mut st = tx.prepare_cached(&sql.insert_many)?;
        let mut b = Binder::new(&mut st);
        let result = chunk
            .iter()
            .try_for_each(|r| b.row::<T, R>(run, r))
            .and_then(|()| b.execute());
        match result {
            Ok(_) => chunk.iter().for_each(&mut inserted),
            Err(_) => one_by_one(chunk, &mut inserted)?,
        }
    }
    one_by_one(rest, &mut inserted)?;
    Ok((run, failed, first_error))
}

/// Inserts component rows and adds the inserted ones to the run's `component_rollup`.
fn insert_components(
    tx: &Transaction,
    run: RunId,
    records: &[ComponentRecord],
) -> rusqlite::Result<Outcome> {
    let mut totals = Totals::default();
    let outcome = insert_each::<Components, _>(tx, run, records, |r| totals.add(r))?;
    totals.commit(tx, run)?;
    Ok(outcome)
}
