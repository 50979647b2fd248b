//! The SQLite store: one file holds every run, its power samples and its timed rows.
//!
//! - [`Store::open`] creates or opens a database; [`Store::open_existing`] refuses to create
//!   one (for readers); [`Store::open_read_only`] never changes the file (no upgrade, for
//!   `serve`). All check the file first and refuse, untouched, a file that is not
//!   SQLite, an SQLite database of another program, or one written by a newer
//!   tracing-energy (schema version in `PRAGMA user_version`).
//! - Writes go through a bounded queue to a writer thread that owns its own connection and
//!   commits in batched transactions (WAL mode, `synchronous=NORMAL`): a process killed
//!   mid-run keeps every committed row. The `add_*` calls never block: when the queue is
//!   full the records are dropped and counted on the run (`dropped_records`).
//! - A run left `running` by a process that no longer exists (same host) reads as
//!   `incomplete`, and is marked so the next time the database is opened for writing.
//! - Several processes may write one file at once: each write transaction takes SQLite's
//!   write lock (`BEGIN IMMEDIATE`) and waits up to the busy timeout for it.
//! - A file (or folder) this process may not write is opened read-only without creating
//!   anything beside it (SQLite's `immutable` mode when it has no `-wal`/`-shm`): reading
//!   works, and writing fails at once with [`Error::ReadOnly`] and the fix.
//! - [`Store::read_snapshot`] reads several queries from one consistent snapshot (one read
//!   transaction), as exports and reports do while other processes write or delete.
//! - Every run has a `run_uuid` (a random UUID version 4); [`Store::merge_from`] copies the
//!   runs of another database (another machine's) that this one does not hold yet, by it.

mod baseline;
mod component_power;
mod merge;
mod open;
mod profiler_cost;
mod queries;
mod records;
mod run_uuid;
mod schema;
mod summary;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use rusqlite::Connection;

pub use baseline::{dynamic_mj, Baseline, NO_BASELINE};
pub use component_power::{ComponentPower, BACKGROUND, FIT_METHOD};
pub use merge::{MergeReport, TableRows};
pub use profiler_cost::{ProfilerCost, SamplerProcessCost};
pub use records::{
    coverage_note, ComponentRecord, ComponentSummary, Host, HotComponent, LayerRecord,
    LayerSummary, Measured, NewRun, OperationRecord, PhaseSummary, PowerRow, Row, Run, RunEnd,
    RunFilter, RunId, RunStatus, RunSummary, SectionRecord, SpanRollup, TokenRecord, TokenTotals,
};
pub use run_uuid::is_run_uuid;
pub use schema::SCHEMA_VERSION;

/// The former name of [`SectionRecord`].
#[deprecated(note = "renamed `SectionRecord`")]
pub type PipelineSection = SectionRecord;

use crate::power::PowerSample;
use crate::{Error, Result};
use open::open_connection;
pub(crate) use writer::Command;
use writer::{DropCounts, Writer};

/// How long a connection waits for another one's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands the write queue holds by default (each a batch of records).
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// A profile database.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    writer: OnceCell<WriterHandle>,
    queue_capacity: usize,
    dropped: DropCounts,
    /// Opened with [`Store::open_read_only`]: no writer thread is ever started.
    read_only: bool,
}

struct WriterHandle {
    tx: Mutex<Option<Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Why the writer thread ended early (a panic), for the errors of later calls.
    died: Arc<Mutex<Option<String>>>,
    /// The writer thread's CPU time, published after every committed batch.
    cpu: crate::cpu_time::CpuSlot,
}

impl Store {
    /// Opens the database at `path`, creating it (and its schema) if the file does not
    /// exist. The folder must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path.as_ref(), true, DEFAULT_QUEUE_CAPACITY)
    }

    /// Opens an existing database; a missing file is an error.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path.as_ref(), false, DEFAULT_QUEUE_CAPACITY)
    }

    /// Opens an existing database only to read it, never changing the file: no schema
    /// upgrade, no WAL switch, no run marked `incomplete` (a dead run still reads so). A
    /// file that is not a tracing-energy database with this build's schema is refused
    /// untouched, with the fix ([`Error::Database`]). Other processes may write the file
    /// meanwhile: every read sees what they have committed. Writing through this store
    /// fails with [`Error::ReadOnly`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(open::open_read_only_connection(path)?),
            writer: OnceCell::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            dropped: DropCounts::default(),
            read_only: true,
        })
    }

    /// Like [`Store::open`], with a write queue of `queue_capacity` commands.
    pub fn open_with_queue(path: impl AsRef<Path>, queue_capacity: usize) -> Result<Store> {
        Store::open_with(path.as_ref(), true, queue_capacity.max(1))
    }

    fn open_with(path: &Path, create: bool, queue_capacity: usize) -> Result<Store> {
        let conn = open_connection(path, create)?;
        let store = Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            writer: OnceCell::new(),
            queue_capacity,
            dropped: DropCounts::default(),
            read_only: false,
        };
        store.mark_dead_runs_incomplete()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, cause: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    fn writer(&self) -> Result<&WriterHandle> {
        self.writer.get_or_try_init(|| {
            if self.read_only {
                return Err(Error::ReadOnly {
                    path: self.path.clone(),
                });
            }
            let conn = open_connection(&self.path, false)?;
            // A file this process may only read: say so now, not at the first commit.
            if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
                return Err(Error::ReadOnly {
                    path: self.path.clone(),
                });
            }
            // Bulk writes: a 64 MB page cache for the writer's connection.
            conn.pragma_update(None, "cache_size", -65536)
                .map_err(|e| self.err(e))?;
            let (tx, rx) = crossbeam_channel::bounded(self.queue_capacity);
            let w = Writer {
                conn,
                state: writer::WriterState {
                    path: self.path.clone(),
                    dropped: Arc::clone(&self.dropped),
                    warned: false,
                },
                cpu: crate::cpu_time::CpuSlot::new(),
            };
            let cpu = w.cpu.clone();
            let died = Arc::new(Mutex::new(None));
            let died_in_thread = Arc::clone(&died);
            let thread = std::thread::Builder::new()
                .name("tracing-energy-store-writer".into())
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(move || w.run(rx));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        *died_in_thread.lock() = Some(what);
                    }
                })
                .map_err(Error::Thread)?;
            Ok(WriterHandle {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                died,
                cpu,
            })
        })
    }

    fn sender(&self) -> Result<Sender<Command>> {
        self.writer()?
            .tx
            .lock()
            .clone()
            .ok_or_else(|| Error::WriterFailed("the store was closed".into()))
    }

    /// Sends a command that waits for its reply (blocks while the queue is full).
    fn call<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        self.sender()?
            .send(make(reply_tx))
            .map_err(|_| self.writer_gone("has stopped"))?;
        reply_rx
            .recv()
            .map_err(|_| self.writer_gone("stopped before replying"))?
    }

    /// The error of a call the writer did not answer, with the cause where it is known.
    fn writer_gone(&self, what: &str) -> Error {
        let died = self.writer.get().and_then(|w| w.died.lock().clone());
        Error::WriterFailed(match died {
            Some(why) => format!(
                "the writer thread of {} {what}: it panicked ({why}); what it committed before is kept",
                self.path.display()
            ),
            None => format!(
                "the writer thread of {} {what}: its transaction could not be committed (the \
                 error logged before this one says why); what it committed before is kept",
                self.path.display()
            ),
        })
    }

    /// Queues records without blocking; when the queue is full they are dropped and
    /// counted on the run. Returns false when dropped.
    fn queue(&self, cmd: Command) -> bool {
        let (run, rows) = cmd.rows();
        if rows == 0 {
            return true;
        }
        let sent = match self.sender() {
            Ok(tx) => match tx.try_send(cmd) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            Err(_) => false,
        };
        if !sent {
            if let Some(run) = run {
                *self.dropped.lock().entry(run).or_default() += rows as u64;
            }
        }
        sent
    }

    /// Creates a run (status `running`, owned by this process) and returns its id. Waits
    /// for the writer.
    pub fn create_run(&self, meta: &NewRun) -> Result<RunId> {
        let meta = Box::new(meta.clone());
        self.call(|reply| Command::CreateRun(meta, reply))
    }

    /// Queues power samples of a run.
    pub fn add_power_samples(&self, run: RunId, samples: Vec<PowerSample>) -> bool {
        self.queue(Command::PowerSamples(run, samples))
    }

    /// Queues one pipeline section.
    pub fn add_pipeline_section(&self, run: RunId, section: SectionRecord) -> bool {
        self.queue(Command::Sections(run, vec![section]))
    }

    /// Queues pipeline sections.
    pub fn add_pipeline_sections(&self, run: RunId, sections: Vec<SectionRecord>) -> bool {
        self.queue(Command::Sections(run, sections))
    }

    /// Queues one token row. A token's row must be queued before its layers'.
    pub fn add_token(&self, run: RunId, token: TokenRecord) -> bool {
        self.queue(Command::Tokens(run, vec![token]))
    }

    /// Queues token rows.
    pub fn add_tokens(&self, run: RunId, tokens: Vec<TokenRecord>) -> bool {
        self.queue(Command::Tokens(run, tokens))
    }

    /// Queues the rows of finished work to be committed in one transaction, so that a
    /// process killed at any moment leaves all of them or none (a token row and its layer,
    /// component and operation rows). Like the other `add_*` calls, it never blocks.
    pub(crate) fn add_together(&self, commands: Vec<Command>) -> bool {
        match commands.len() {
            0 => true,
            1 => self.queue(commands.into_iter().next().expect("one")),
            _ => self.queue(Command::Together(commands)),
        }
    }

    /// Queues layer rows (their token rows first).
    pub fn add_layer_metrics(&self, run: RunId, layers: Vec<LayerRecord>) -> bool {
        self.queue(Command::Layers(run, layers))
    }

    /// Queues component rows (their layer rows first).
    pub fn add_component_metrics(&self, run: RunId, components: Vec<ComponentRecord>) -> bool {
        self.queue(Command::Components(run, components))
    }

    /// Queues operation rows (their component rows first).
    pub fn add_deep_operation_metrics(&self, run: RunId, ops: Vec<OperationRecord>) -> bool {
        self.queue(Command::Operations(run, ops))
    }

    /// Queues amounts to add to a run's energy per span path.
    pub fn add_span_rollup(&self, run: RunId, rows: Vec<SpanRollup>) -> bool {
        self.queue(Command::SpanRollup(run, rows))
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) -> Result<()> {
        if self.writer.get().is_none() {
            return Ok(());
        }
        self.call(Command::Flush)
    }

    /// The writer thread's CPU time so far (ns), as of its last committed batch (after
    /// [`Store::flush`] returns, up to that flush); `None` before the writer started, or
    /// where threads' CPU time cannot be read. The writer serves every run of the store.
    pub fn writer_cpu_ns(&self) -> Option<u64> {
        self.writer.get()?.cpu.get()
    }

    /// Records how a run ended, after everything queued before it is committed. The run's
    /// `dropped_records` becomes the caller's count plus the records the store dropped.
    pub fn finish_run(&self, run: RunId, end: &RunEnd) -> Result<()> {
        let end = Box::new(end.clone());
        self.call(|reply| Command::FinishRun(run, end, reply))
            .map_err(|e| match e {
                Error::Sqlite {
                    cause: rusqlite::Error::QueryReturnedNoRows,
                    ..
                } => Error::UnknownRun {
                    path: self.path.clone(),
                    run: run.to_string(),
                },
                e => e,
            })
    }

    /// Records dropped so far for a run and not yet stored on it.
    pub fn pending_dropped(&self, run: RunId) -> u64 {
        self.dropped.lock().get(&run).copied().unwrap_or(0)
    }

    /// Deletes a run and all its rows. Returns false when there was no such run.
    ///
    /// Fails with [`Error::ReadOnly`], changing nothing, when this process may only read the
    /// file (or its folder).
    pub fn delete_run(&self, run: RunId) -> Result<bool> {
        let conn = self.writable_conn()?;
        let n = conn
            .execute("DELETE FROM profiling_runs WHERE run_id = ?1", [run])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Runs `f` on one consistent snapshot of the database: every query `f` makes through
    /// this store sees the file as it was when `read_snapshot` was called, whatever other
    /// connections or processes commit meanwhile (a run deleted meanwhile is still whole in
    /// it). Use it to read several tables of a run that must agree, e.g. for an export.
    ///
    /// It holds a read transaction (WAL mode: writers go on) on the store's reading
    /// connection until `f` returns. Other threads reading through this store meanwhile see
    /// the same snapshot; a snapshot inside a snapshot is the outer one. Writes made through
    /// this store's reading connection meanwhile (e.g. [`Store::delete_run`]) are part of
    /// the transaction, and kept.
    pub fn read_snapshot<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Store) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        /// Ends the transaction however `f` ends (a panic included).
        struct End<'a>(&'a Store);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                let conn = self.0.conn.lock();
                if !conn.is_autocommit() && conn.execute_batch("COMMIT").is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
        }
        {
            let conn = self.conn.lock();
            if !conn.is_autocommit() {
                drop(conn);
                return f(self);
            }
            // A deferred transaction takes its snapshot at its first read: read now.
            conn.execute_batch("BEGIN")
                .and_then(|()| {
                    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    self.err(e)
                })?;
        }
        let end = End(self);
        let result = f(self);
        let committed = {
            let conn = self.conn.lock();
            if conn.is_autocommit() {
                Ok(())
            } else {
                conn.execute_batch("COMMIT")
            }
        };
        drop(end);
        let value = result?;
        committed.map_err(|e| self.err(e))?;
        Ok(value)
    }

    /// Stops the writer thread after it has committed everything queued.
    pub fn close(&self) -> Result<()> {
        let result = self.flush();
        if let Some(w) = self.writer.get() {
            drop(w.tx.lock().take());
            if let Some(t) = w.thread.lock().take() {
                let _ = t.join();
            }
        }
        result
    }

    /// The reading connection, for a change made directly (not through the writer
    /// thread), after the write queue is flushed; [`Error::ReadOnly`] when this process may
    /// only read the file.
    fn writable_conn(&self) -> Result<parking_lot::MutexGuard<'_, Connection>> {
        self.flush()?;
        let conn = self.conn.lock();
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(conn)
    }

    fn mark_dead_runs_incomplete(&self) -> Result<()> {
        let conn = self.conn.lock();
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Ok(());
        }
        let dead = queries::dead_running_runs(&conn).map_err(|e| self.err(e))?;
        for run in dead {
            conn.execute(
                "UPDATE profiling_runs SET status = 'incomplete' WHERE run_id = ?1 AND status = 'running'",
                [run],
            )
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Unix time now, in milliseconds.
pub(crate) fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Formats Unix milliseconds as RFC 3339 (UTC).
pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
