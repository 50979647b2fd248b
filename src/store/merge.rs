//! Merging databases: [`Store::merge_from`] copies the runs of another tracing-energy
//! database (e.g. recorded on another machine) into this one, with every row of every
//! table, so that listings and comparisons work across machines.
//!
//! - A run is known by its `run_uuid`: a source run whose uuid this database already holds
//!   is skipped, so merging a file twice changes nothing.
//! - Copied runs get new `run_id`s (this database's own sequence); every row follows its
//!   run. No other column refers to a row: the other keys are per run (`token_index`,
//!   `section_index`, ...) and `span_id` is a span's id in the recording process, all kept.
//!   Everything else is kept as recorded: host, status, writer process, energies.
//! - The source is attached read-only (`immutable` when no writer is at work on it):
//!   nothing in it changes and nothing is created beside it. A file that is not a
//!   tracing-energy database, or has a newer schema, is refused; so is one with an older
//!   schema (`open::check_merge_source` says why: it is upgraded by opening it once).
//! - One source is one transaction: it is merged whole, or not at all.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

use super::tables::{columns, Key, Table};
use super::tables::{
    component_power::ComponentPowers,
    components::{ComponentRollup, Components},
    layers::Layers,
    operations::Operations,
    power::PowerSamples,
    runs::{RunTags, Runs},
    sections::Sections,
    span_rollup::SpanRollups,
    tokens::Tokens,
};
use super::{open, Store};
use crate::{Error, Result};

/// What [`Store::merge_from`] did with one source database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    /// The source database.
    pub source: PathBuf,
    /// Runs copied (new to this database).
    pub runs_copied: u64,
    /// Runs not copied: this database holds them already (same `run_uuid`).
    pub runs_skipped: u64,
    /// Rows copied per table, `profiling_runs` first (its rows are the runs copied), in the
    /// order they were copied: every table of the schema, 0 where nothing was copied.
    pub rows: Vec<TableRows>,
}

/// Rows copied into one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRows {
    /// The table.
    pub table: String,
    /// Rows copied into it.
    pub rows: u64,
}

impl MergeReport {
    /// Rows copied, every table together (the runs' own rows included).
    pub fn rows_copied(&self) -> u64 {
        self.rows.iter().map(|t| t.rows).sum()
    }
}

/// The schema name the source is attached as.
const SOURCE: &str = "merge_source";

/// Copies one table's rows of the runs being copied; returns how many.
type CopyRows = fn(&Connection) -> rusqlite::Result<usize>;

/// Every table of a run after `profiling_runs`, parents before children (foreign keys are
/// checked as rows go in): `tables_copied_are_the_schema` checks that none is missing.
fn per_run_tables() -> [(&'static str, CopyRows); 10] {
    [
        (RunTags::NAME, copy_rows::<RunTags>),
        (PowerSamples::NAME, copy_rows::<PowerSamples>),
        (Sections::NAME, copy_rows::<Sections>),
        (Tokens::NAME, copy_rows::<Tokens>),
        (Layers::NAME, copy_rows::<Layers>),
        (Components::NAME, copy_rows::<Components>),
        (ComponentRollup::NAME, copy_rows::<ComponentRollup>),
        (Operations::NAME, copy_rows::<Operations>),
        (SpanRollups::NAME, copy_rows::<SpanRollups>),
        (ComponentPowers::NAME, copy_rows::<ComponentPowers>),
    ]
}

impl Store {
    /// Copies every run of the database at `other` that this one does not hold yet (by
    /// `run_uuid`; the others are counted as skipped), with all its rows in every table,
    /// under new run ids; everything else (host, status, energies) is kept. Merging the
    /// same file again copies nothing. `other` is attached read-only and never changed;
    /// the copy is one transaction, whole or nothing.
    ///
    /// Refuses, changing nothing anywhere, a source that is not a tracing-energy database,
    /// has a newer schema than this build (upgrade tracing-energy) or an older one (open it
    /// once with this build to upgrade it, which gives its runs their uuids), or is this
    /// database; fails with [`Error::ReadOnly`] when this database may only be read.
    pub fn merge_from(&self, other: &Path) -> Result<MergeReport> {
        let uri = open::check_merge_source(other)?;
        if same_file(self.path(), other) {
            return Err(Error::Database {
                path: other.to_path_buf(),
                problem: "it is the database merged into".into(),
                fix: "merge into another file; this file was not changed".into(),
            });
        }
        let mut conn = self.writable_conn()?;
        conn.execute(&format!("ATTACH DATABASE ?1 AS {SOURCE}"), [&uri])
            .map_err(|e| self.merge_err(other, e))?;
        let result = merge_attached(&mut conn, other).map_err(|e| match e {
            Merge::Sqlite(e) => self.merge_err(other, e),
            Merge::Refused(e) => e,
        });
        let detached = conn.execute(&format!("DETACH DATABASE {SOURCE}"), []);
        let report = result?;
        detached.map_err(|e| self.err(e))?;
        Ok(report)
    }
}

/// Why a merge stopped.
enum Merge {
    /// SQLite failed, reading the source or writing this database.
    Sqlite(rusqlite::Error),
    /// The source holds what cannot be merged.
    Refused(Error),
}

impl From<rusqlite::Error> for Merge {
    fn from(e: rusqlite::Error) -> Merge {
        Merge::Sqlite(e)
    }
}

/// Merges the attached source in one transaction (rolled back on any error).
fn merge_attached(conn: &mut Connection, other: &Path) -> Result<MergeReport, Merge> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (source_runs, without_uuid): (i64, Option<i64>) = tx.query_row(
        &format!(
            "SELECT COUNT(*), MIN(CASE WHEN run_uuid IS NULL THEN run_id END)
                 FROM {SOURCE}.profiling_runs"
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some(run) = without_uuid {
        return Err(Merge::Refused(Error::Database {
            path: other.to_path_buf(),
            problem: format!("its run {run} has no run_uuid (a row inserted by hand?)"),
            fix: "give the run a uuid, or delete it, with a copy of the file; this file was \
                  not changed"
                .into(),
        }));
    }
    let copied = copy_runs(&tx)?;
    let mut rows = vec![TableRows {
        table: Runs::NAME.into(),
        rows: copied as u64,
    }];
    for (table, copy) in per_run_tables() {
        rows.push(TableRows {
            table: table.into(),
            rows: copy(&tx)? as u64,
        });
    }
    tx.execute_batch("DROP TABLE temp.merge_runs")?;
    tx.commit()?;
    Ok(MergeReport {
        source: other.to_path_buf(),
        runs_copied: copied as u64,
        runs_skipped: (source_runs as u64).saturating_sub(copied as u64),
        rows,
    })
}

/// Copies the source's runs this database does not hold (by `run_uuid`), in their order,
/// and fills `temp.merge_runs` with each one's old and new id. Returns how many.
fn copy_runs(conn: &Connection) -> rusqlite::Result<usize> {
    let names = own_columns::<Runs>().join(", ");
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS merge_runs (old_id INTEGER PRIMARY KEY, new_id INTEGER);
         DELETE FROM temp.merge_runs;
         INSERT INTO temp.merge_runs (old_id)
             SELECT s.run_id FROM {SOURCE}.profiling_runs AS s
             WHERE NOT EXISTS (SELECT 1 FROM main.profiling_runs AS m
                               WHERE m.run_uuid = s.run_uuid);
         INSERT INTO main.profiling_runs ({names})
             SELECT {names} FROM {SOURCE}.profiling_runs
             WHERE run_id IN (SELECT old_id FROM temp.merge_runs) ORDER BY run_id;
         UPDATE temp.merge_runs SET new_id =
             (SELECT m.run_id FROM main.profiling_runs AS m
              JOIN {SOURCE}.profiling_runs AS s ON s.run_uuid = m.run_uuid
              WHERE s.run_id = merge_runs.old_id);"
    ))?;
    conn.query_row("SELECT COUNT(*) FROM temp.merge_runs", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as usize)
}

/// Copies the rows of table `T` that belong to the runs in `temp.merge_runs`, under their
/// new run ids (a row's own `id`, where it has one, is this database's).
fn copy_rows<T: Table>(conn: &Connection) -> rusqlite::Result<usize> {
    let own = own_columns::<T>();
    let (names, values) = (
        own.join(", "),
        own.iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    // Rows in their source order: ids assigned here keep it.
    let order = match T::KEY {
        Key::Id => "ORDER BY m.new_id, s.id",
        Key::Run | Key::RunAnd => "",
    };
    conn.execute(
        &format!(
            "INSERT INTO main.{t} (run_id, {names})
             SELECT m.new_id, {values} FROM {SOURCE}.{t} AS s
             JOIN temp.merge_runs AS m ON m.old_id = s.run_id {order}",
            t = T::NAME
        ),
        [],
    )
}

/// `T`'s columns after its key columns (`run_id`, and `id` where it has one).
fn own_columns<T: Table>() -> Vec<&'static str> {
    let keys = match T::KEY {
        Key::Id => 2,
        Key::Run | Key::RunAnd => 1,
    };
    columns::<T>()
        .iter()
        .skip(keys)
        .map(|(c, _)| c.name)
        .collect()
}

/// True when `a` and `b` are one file (the same path, or links to one file).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

impl Store {
    /// The error of a failed merge of `source`: about this database where SQLite's error
    /// can only be this one's (its lock, a full disk, a read-only file), else naming both.
    fn merge_err(&self, source: &Path, cause: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode as C;
        match cause.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::ReadOnly) => {
                self.err(cause)
            }
            _ => Error::Database {
                path: source.to_path_buf(),
                problem: format!("cannot be merged into {} ({cause})", self.path().display()),
                fix: "check both files with `sqlite3 FILE 'PRAGMA integrity_check'`; nothing \
                      of this one was copied, and neither was changed by the merge"
                    .into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::TABLES;

    /// Every table of the schema is copied, `profiling_runs` first.
    #[test]
    fn tables_copied_are_the_schema() {
        let mut copied: Vec<&str> = vec![Runs::NAME];
        copied.extend(per_run_tables().iter().map(|(t, _)| *t));
        assert_eq!(copied.len(), TABLES.len());
        let mut tables = TABLES.to_vec();
        let mut sorted = copied.clone();
        sorted.sort_unstable();
        tables.sort_unstable();
        assert_eq!(sorted, tables);
    }

    #[test]
    fn own_columns_leave_the_keys_out() {
        let runs = own_columns::<Runs>();
        assert_eq!(runs[0], "started_at_ms");
        assert!(runs.contains(&"run_uuid") && runs.contains(&"host_name"));
        assert_eq!(own_columns::<Tokens>()[0], "token_index");
        assert_eq!(own_columns::<RunTags>(), ["tag"]);
    }
}
