//! The SQLite store: one file holds every run, its power samples and its timed rows.
//!
//! - [`Store::open`] creates or opens a database; [`Store::open_existing`] refuses to create
//!   one (for readers). Both check the file first and refuse, untouched, a file that is not
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

mod host;
mod queries;
mod records;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use records::{
    ComponentRecord, ComponentSummary, Host, HotComponent, LayerRecord, LayerSummary, Measured,
    NewRun, OperationRecord, PhaseSummary, PipelineSection, PowerRow, Row, Run, RunEnd, RunFilter,
    RunId, RunStatus, RunSummary, SpanRollup, TokenRecord,
};
pub use schema::SCHEMA_VERSION;

use crate::power::PowerSample;
use crate::{Error, Result};
use writer::{Command, DropCounts, Writer};

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
}

struct WriterHandle {
    tx: Mutex<Option<Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Why the writer thread ended early (a panic), for the errors of later calls.
    died: Arc<Mutex<Option<String>>>,
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
            };
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
    pub fn add_pipeline_section(&self, run: RunId, section: PipelineSection) -> bool {
        self.queue(Command::Sections(run, vec![section]))
    }

    /// Queues pipeline sections.
    pub fn add_pipeline_sections(&self, run: RunId, sections: Vec<PipelineSection>) -> bool {
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
        self.flush()?;
        let conn = self.conn.lock();
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
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

fn open_connection(path: &Path, create: bool) -> Result<Connection> {
    let db_err = |problem: String, fix: &str| Error::Database {
        path: path.to_path_buf(),
        problem,
        fix: fix.to_string(),
    };
    let exists = path.exists();
    if !exists {
        if !create {
            return Err(db_err(
                "no such file".into(),
                "check the path (or --db / TRACING_ENERGY_DB); a profile run creates the database",
            ));
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(db_err(
                format!("the folder {} does not exist", parent.display()),
                "create the folder first, or choose a database path in an existing folder",
            ));
        }
    } else if path.is_dir() {
        return Err(db_err(
            "it is a folder, not a file".into(),
            "give the path of a database file",
        ));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI
        | if create {
            OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::empty()
        };
    let opened = if exists && !may_write(path) {
        // Read-only file or folder: read it without creating anything beside it.
        open_read_only(path)
    } else {
        Connection::open_with_flags(path, flags)
    };
    let conn = match opened {
        Ok(c) => c,
        Err(e) => {
            // Read-only file or folder: open read-only so that it can still be read.
            match Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ) {
                Ok(c) if exists => c,
                _ => {
                    return Err(db_err(
                        format!("cannot be opened for writing ({e})"),
                        "check that the folder is writable, or choose another database path",
                    ))
                }
            }
        }
    };
    let sql_err = |cause: rusqlite::Error| Error::Sqlite {
        path: path.to_path_buf(),
        cause,
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    // Reading the version is the first access to the file's content.
    let version: i64 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::NotADatabase => {
            return Err(db_err(
                "the file is not an SQLite database".into(),
                "give the path of a tracing-energy database, or a new file name; this file was not changed",
            ))
        }
        Err(e) => return Err(sql_err(e)),
    };
    if version > SCHEMA_VERSION {
        return Err(db_err(
            format!(
                "it was written by a newer tracing-energy (schema version {version}; this build knows up to {SCHEMA_VERSION})"
            ),
            "upgrade tracing-energy to read it; the file was not changed",
        ));
    }
    if version == 0 {
        let foreign: Vec<String> = {
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .map_err(sql_err)?;
            let names = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql_err)?;
            names
                .filter_map(|n| n.ok())
                .filter(|n| !schema::TABLES.contains(&n.as_str()))
                .collect()
        };
        if !foreign.is_empty() {
            return Err(db_err(
                format!(
                    "it is an SQLite database of another program (tables: {})",
                    foreign.join(", ")
                ),
                "give the path of a tracing-energy database, or a new file name; this file was not changed",
            ));
        }
    }
    let read_only = conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true);
    if version < SCHEMA_VERSION && read_only {
        return Err(db_err(
            format!("its schema (version {version}) needs an upgrade, and the file is read-only"),
            "make the file writable once so that tracing-energy can upgrade it",
        ));
    }
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql_err)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql_err)?;
    if version < SCHEMA_VERSION {
        migrate(&conn).map_err(sql_err)?;
    }
    Ok(conn)
}

/// True when this process may change the database at `path`: write the file, and create
/// its `-wal` and `-shm` files (or write them where they exist).
fn may_write(path: &Path) -> bool {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let side = |ext: &str| side_file(path, ext);
    writable(path) && (writable(folder) || (writable(&side("-wal")) && writable(&side("-shm"))))
}

/// True when `path` exists and this process may write it (`access(2)`: a read-only mount,
/// mode bits and root's rights are all taken into account).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// `path` with `ext` appended to its file name (`p.db` → `p.db-wal`).
fn side_file(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(ext);
    PathBuf::from(name)
}

/// Opens a database this process may not change. Opened the ordinary way, SQLite would
/// create its `-wal` and `-shm` files (read-only, like the database) and leave them behind.
/// Without them, everything committed is in the file itself, so it is opened `immutable`:
/// nothing is created or locked (a writer that starts meanwhile is not seen). Where they
/// exist (a writer is at work, or died), they are read, and nothing is created either.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let wal_empty = std::fs::metadata(side_file(path, "-wal")).map_or(true, |m| m.len() == 0);
    if wal_empty && !side_file(path, "-shm").exists() {
        let uri = file_uri(path, "immutable=1");
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
    } else {
        Connection::open_with_flags(path, flags)
    }
}

/// An SQLite `file:` URI for `path` with a query string.
fn file_uri(path: &Path, query: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

/// Applies the migrations the database lacks, each in its own transaction. Safe when
/// several processes open a new file at once: the version is re-read under the lock.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    // A migration may rebuild a parent table: with foreign keys on, dropping it would
    // delete every child row. The pragma has no effect inside a transaction, so it is set
    // here, and set back whatever happens.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = migrate_steps(conn);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    result?;
    let broken: Option<String> = conn
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()?;
    match broken {
        Some(table) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!(
                "the schema upgrade left rows in `{table}` without their parent"
            )),
        )),
        None => Ok(()),
    }
}

fn migrate_steps(conn: &Connection) -> rusqlite::Result<()> {
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= SCHEMA_VERSION {
            conn.execute_batch("COMMIT")?;
            return Ok(());
        }
        let step = schema::MIGRATIONS[version as usize];
        let result = conn
            .execute_batch(step)
            .and_then(|()| conn.pragma_update(None, "user_version", version + 1));
        match result {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}
