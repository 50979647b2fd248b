//! Each table described once: its columns, how a record is bound to them and how a row is
//! read back. The insert SQL and the SELECT column lists are generated from the description
//! (once per table), and a test checks every description against the schema the migrations
//! create (`schema.rs`, which is history and never changes).
//!
//! A description lists every column of its table, in the order the record binds and reads
//! them: the key columns its [`Key`] implies (`id`, `run_id`), the table's own
//! [`Table::COLUMNS`], then, for a timed table, the shared [`timed::COLUMNS`]. It leaves out
//! what only the migrations state: UNIQUE, CHECK and FOREIGN KEY constraints, indexes,
//! `AUTOINCREMENT` and `WITHOUT ROWID`.
//!
//! One file per table:
//!
//! | file | table | record |
//! |---|---|---|
//! | `runs.rs` | `profiling_runs`, `run_tags` | [`NewRun`], [`RunEnd`] → [`Run`] |
//! | `power.rs` | `power_samples` | `PowerSample` → [`PowerRow`] |
//! | `sections.rs` | `pipeline_sections` | [`SectionRecord`] |
//! | `tokens.rs` | `tokens` | [`TokenRecord`] |
//! | `layers.rs` | `layer_metrics` | [`LayerRecord`] |
//! | `components.rs` | `component_metrics`, `component_rollup` | [`ComponentRecord`] |
//! | `operations.rs` | `deep_operation_metrics` | [`OperationRecord`] |
//! | `span_rollup.rs` | `span_rollup` | [`SpanRollup`] |
//! | `component_power.rs` | `component_power` | [`ComponentPower`] |
//!
//! [`NewRun`]: super::NewRun
//! [`RunEnd`]: super::RunEnd
//! [`Run`]: super::Run
//! [`PowerRow`]: super::PowerRow
//! [`SectionRecord`]: super::SectionRecord
//! [`TokenRecord`]: super::TokenRecord
//! [`LayerRecord`]: super::LayerRecord
//! [`ComponentRecord`]: super::ComponentRecord
//! [`OperationRecord`]: super::OperationRecord
//! [`SpanRollup`]: super::SpanRollup
//! [`ComponentPower`]: super::ComponentPower

pub(crate) mod component_power;
pub(crate) mod components;
pub(crate) mod layers;
pub(crate) mod operations;
pub(crate) mod power;
pub(crate) mod runs;
pub(crate) mod sections;
pub(crate) mod span_rollup;
pub(crate) mod timed;
pub(crate) mod tokens;

use std::any::TypeId;
use std::collections::HashMap;

use once_cell::sync::Lazy;
use parking_lot::RwLock;
use rusqlite::types::FromSql;
use rusqlite::{CachedStatement, Row as SqlRow, ToSql, Transaction};

use super::records::{Row, RunId};

/// One column: its name and what the schema declares of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    /// The column's name.
    pub(crate) name: &'static str,
    /// Its declared type: `INTEGER`, `REAL` or `TEXT`.
    pub(crate) ty: &'static str,
    /// Declared `NOT NULL`.
    pub(crate) not_null: bool,
    /// Its `DEFAULT`, as SQLite spells it (`0`, `'running'`).
    pub(crate) default: Option<&'static str>,
    /// Part of the primary key of a table keyed by [`Key::RunAnd`].
    pub(crate) key: bool,
}

impl Column {
    const fn new(name: &'static str, ty: &'static str) -> Column {
        Column {
            name,
            ty,
            not_null: false,
            default: None,
            key: false,
        }
    }

    /// An `INTEGER` column.
    pub(crate) const fn integer(name: &'static str) -> Column {
        Column::new(name, "INTEGER")
    }

    /// A `REAL` column.
    pub(crate) const fn real(name: &'static str) -> Column {
        Column::new(name, "REAL")
    }

    /// A `TEXT` column.
    pub(crate) const fn text(name: &'static str) -> Column {
        Column::new(name, "TEXT")
    }

    /// Declared `NOT NULL`.
    pub(crate) const fn not_null(self) -> Column {
        Column {
            not_null: true,
            ..self
        }
    }

    /// Declared `DEFAULT value` (`value` as SQL: `0`, `'running'`).
    pub(crate) const fn default(self, value: &'static str) -> Column {
        Column {
            default: Some(value),
            ..self
        }
    }

    /// Part of the primary key, after `run_id` (a [`Key::RunAnd`] table).
    pub(crate) const fn key(self) -> Column {
        Column { key: true, ..self }
    }
}

/// How a table's rows are identified: the key columns that come before
/// [`Table::COLUMNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// `run_id INTEGER PRIMARY KEY AUTOINCREMENT`: the runs themselves. An insert leaves
    /// `run_id` to SQLite.
    Run,
    /// `id INTEGER PRIMARY KEY`, then `run_id INTEGER NOT NULL` (the run the row belongs
    /// to). An insert leaves `id` to SQLite and binds `run_id`.
    Id,
    /// `run_id INTEGER NOT NULL` and the columns marked [`Column::key`], in order, are the
    /// primary key. An insert binds `run_id`.
    RunAnd,
}

/// A table: its name and its columns.
pub(crate) trait Table: 'static {
    /// The SQL table.
    const NAME: &'static str;
    /// How its rows are identified (the key columns before [`Table::COLUMNS`]).
    const KEY: Key;
    /// The table's own columns, in the order records bind and read them.
    const COLUMNS: &'static [Column];
    /// Whether the shared timed columns ([`timed::COLUMNS`]) follow.
    const TIMED: bool;
    /// Appended to the one-row insert: an `ON CONFLICT` clause for a table that sums.
    const ON_CONFLICT: &'static str = "";
}

/// A table whose rows are written from `R`s.
pub(crate) trait Write<R: ?Sized>: Table {
    /// Puts the record's values: [`Table::COLUMNS`] then, for a timed table, the timed
    /// columns (the key columns are put by the caller).
    fn bind(b: &mut Binder<'_, '_>, record: &R) -> rusqlite::Result<()>;
}

/// A table whose rows are read back.
pub(crate) trait Read: Table {
    /// What a row reads as.
    type Row;
    /// Reads every column of [`Sql::columns`] in order: the key columns, then
    /// [`Table::COLUMNS`], then the timed ones.
    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Self::Row>;
}

/// Every column of `T`, key columns first, as the schema should declare them, with each
/// column's position in the primary key (1-based; 0 when not part of it).
pub(crate) fn columns<T: Table>() -> Vec<(Column, usize)> {
    let mut all = Vec::new();
    let run_id = Column::integer("run_id");
    match T::KEY {
        Key::Run => all.push((run_id, 1)),
        Key::Id => {
            all.push((Column::integer("id"), 1));
            all.push((run_id.not_null(), 0));
        }
        Key::RunAnd => all.push((run_id.not_null(), 1)),
    }
    let mut pk = 1;
    for c in T::COLUMNS {
        let at = if c.key {
            pk += 1;
            pk
        } else {
            0
        };
        all.push((*c, at));
    }
    if T::TIMED {
        all.extend(timed::COLUMNS.iter().map(|c| (*c, 0)));
    }
    all
}

/// The key columns SQLite assigns on insert (`run_id` of a run, `id` of a row): the
/// first one, or none.
fn assigned<T: Table>() -> usize {
    match T::KEY {
        Key::Run | Key::Id => 1,
        Key::RunAnd => 0,
    }
}

/// Rows per multi-row `INSERT` statement.
pub(crate) const ROWS_PER_STATEMENT: usize = 64;

/// A table's SQL, generated once from its description.
pub(crate) struct Sql {
    /// Inserts one row (with [`Table::ON_CONFLICT`]).
    pub(crate) insert_one: String,
    /// Inserts [`ROWS_PER_STATEMENT`] rows.
    pub(crate) insert_many: String,
    /// The values each row binds.
    pub(crate) params: usize,
    /// Every column, comma-separated: the SELECT list [`Read::read`] reads.
    pub(crate) columns: String,
    /// `SELECT` [`Sql::columns`] `FROM` the table.
    pub(crate) select: String,
}

impl Sql {
    /// `T`'s SQL, generated the first time it is asked for.
    pub(crate) fn of<T: Table>() -> &'static Sql {
        static CACHE: Lazy<RwLock<HashMap<TypeId, &'static Sql>>> = Lazy::new(Default::default);
        let id = TypeId::of::<T>();
        if let Some(&sql) = CACHE.read().get(&id) {
            return sql;
        }
        let mut cache = CACHE.write();
        if let Some(&sql) = cache.get(&id) {
            return sql; // built by another thread meanwhile
        }
        let sql: &'static Sql = Box::leak(Box::new(Sql::new::<T>()));
        cache.insert(id, sql);
        sql
    }

    fn new<T: Table>() -> Sql {
        let all = columns::<T>();
        let inserted: Vec<&str> = all
            .iter()
            .skip(assigned::<T>())
            .map(|(c, _)| c.name)
            .collect();
        let params = inserted.len();
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
        let head = format!("INSERT INTO {} ({})", T::NAME, inserted.join(", "));
        let columns = select_list::<T>(None);
        Sql {
            insert_one: format!("{head} VALUES {}{}", values(1), T::ON_CONFLICT),
            insert_many: format!("{head} VALUES {}", values(ROWS_PER_STATEMENT)),
            params,
            select: format!("SELECT {columns} FROM {}", T::NAME),
            columns,
        }
    }
}

/// Every column of `T` for a SELECT, each prefixed with `alias.` when given (for a join).
pub(crate) fn select_list<T: Table>(alias: Option<&str>) -> String {
    columns::<T>()
        .iter()
        .map(|(c, _)| match alias {
            Some(a) => format!("{a}.{}", c.name),
            None => c.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds values to a statement's parameters in order, numbering them itself.
pub(crate) struct Binder<'s, 'c> {
    st: &'s mut CachedStatement<'c>,
    /// Parameters bound so far.
    at: usize,
}

impl<'s, 'c> Binder<'s, 'c> {
    /// Binds from the first parameter on.
    pub(crate) fn new(st: &'s mut CachedStatement<'c>) -> Binder<'s, 'c> {
        Binder { st, at: 0 }
    }

    /// Binds the next parameter.
    pub(crate) fn put<V: ToSql>(&mut self, value: V) -> rusqlite::Result<()> {
        self.at += 1;
        self.st.raw_bind_parameter(self.at, value)
    }

    /// Binds one row of `T`: `run_id` where the table has one to bind, then the record.
    pub(crate) fn row<T: Write<R>, R: ?Sized>(
        &mut self,
        run: RunId,
        record: &R,
    ) -> rusqlite::Result<()> {
        let start = self.at;
        if T::KEY != Key::Run {
            self.put(run)?;
        }
        T::bind(self, record)?;
        debug_assert_eq!(
            self.at - start,
            Sql::of::<T>().params,
            "{}: bind put another number of values than the table has columns",
            T::NAME
        );
        Ok(())
    }

    /// Runs the statement once every parameter is bound.
    pub(crate) fn execute(self) -> rusqlite::Result<usize> {
        debug_assert_eq!(
            self.at,
            self.st.parameter_count(),
            "parameters left unbound"
        );
        self.st.raw_execute()
    }
}

/// Inserts one row of `T` (upserts, for a table with [`Table::ON_CONFLICT`]); an error is
/// returned, not counted.
pub(crate) fn insert_one<T: Write<R>, R: ?Sized>(
    tx: &Transaction,
    run: RunId,
    record: &R,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(&Sql::of::<T>().insert_one)?;
    let mut b = Binder::new(&mut st);
    b.row::<T, R>(run, record)?;
    b.execute().map(|_| ())
}

/// Reads a row's columns in order, numbering them itself.
pub(crate) struct Reader<'r, 's> {
    row: &'r SqlRow<'s>,
    /// Columns read so far.
    at: usize,
}

impl Reader<'_, '_> {
    /// Reads the next column.
    pub(crate) fn next<V: FromSql>(&mut self) -> rusqlite::Result<V> {
        self.at += 1;
        self.row.get(self.at - 1)
    }

    /// Reads the next column, an INTEGER that holds a `u64`.
    pub(crate) fn next_u64(&mut self) -> rusqlite::Result<u64> {
        Ok(self.next::<i64>()? as u64)
    }

    /// Reads the next column, an INTEGER that holds a `u64`, or NULL.
    pub(crate) fn next_opt_u64(&mut self) -> rusqlite::Result<Option<u64>> {
        Ok(self.next::<Option<i64>>()?.map(|v| v as u64))
    }

    /// Passes over the next column (a key column the record does not hold).
    pub(crate) fn skip(&mut self) {
        self.at += 1;
    }

    /// Reads `id`, `run_id`, then the record: a stored row. `duration` is its length (ms).
    pub(crate) fn row<T>(
        &mut self,
        record: impl FnOnce(&mut Self) -> rusqlite::Result<T>,
        duration: impl FnOnce(&T) -> f64,
    ) -> rusqlite::Result<Row<T>> {
        let id = self.next()?;
        let run_id = self.next()?;
        let record = record(self)?;
        Ok(Row {
            id,
            run_id,
            duration_ms: duration(&record),
            record,
        })
    }
}

/// Reads a row of a query that selects [`Sql::columns`] of `T`.
pub(crate) fn read<T: Read>(row: &SqlRow<'_>) -> rusqlite::Result<T::Row> {
    let mut r = Reader { row, at: 0 };
    let value = T::read(&mut r)?;
    debug_assert_eq!(
        r.at,
        row.as_ref().column_count(),
        "{}: read another number of columns than the query selects",
        T::NAME
    );
    Ok(value)
}

/// Every table's description, by name, for the schema test.
#[cfg(test)]
fn described() -> Vec<(&'static str, Vec<(Column, usize)>)> {
    fn d<T: Table>() -> (&'static str, Vec<(Column, usize)>) {
        (T::NAME, columns::<T>())
    }
    vec![
        d::<runs::Runs>(),
        d::<runs::RunTags>(),
        d::<power::PowerSamples>(),
        d::<sections::Sections>(),
        d::<tokens::Tokens>(),
        d::<layers::Layers>(),
        d::<components::Components>(),
        d::<components::ComponentRollup>(),
        d::<operations::Operations>(),
        d::<span_rollup::SpanRollups>(),
        d::<component_power::ComponentPowers>(),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::schema::TABLES;

    /// (declared type, not null, default, position in the primary key) per column name.
    type Shape = BTreeMap<String, (String, bool, Option<String>, usize)>;

    fn shape(columns: &[(Column, usize)]) -> Shape {
        columns
            .iter()
            .map(|(c, pk)| {
                let v = (
                    c.ty.to_string(),
                    c.not_null,
                    c.default.map(str::to_string),
                    *pk,
                );
                (c.name.to_string(), v)
            })
            .collect()
    }

    fn schema_shape(conn: &rusqlite::Connection, table: &str) -> Shape {
        let mut st = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    (
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)? as usize,
                    ),
                ))
            })
            .unwrap();
        rows.collect::<rusqlite::Result<Shape>>().unwrap()
    }

    /// Every table the migrations create is described, column for column (name, declared
    /// type, NOT NULL, DEFAULT, primary key), and every description is a table of the
    /// schema: a column added to a description without a migration, or to a migration
    /// without its description, fails here.
    #[test]
    fn descriptions_match_the_migrated_schema() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open::open_connection(&dir.path().join("t.db"), true).unwrap();
        let described = described();
        let mut names: Vec<&str> = described.iter().map(|(n, _)| *n).collect();
        let mut tables = TABLES.to_vec();
        names.sort();
        tables.sort();
        assert_eq!(names, tables, "the described tables are the schema's");
        for (name, columns) in &described {
            let (described, migrated) = (shape(columns), schema_shape(&conn, name));
            assert_eq!(
                columns.len(),
                described.len(),
                "{name}: a column described twice"
            );
            let differences: Vec<String> = described
                .keys()
                .chain(migrated.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|c| described.get(*c) != migrated.get(*c))
                .map(|c| {
                    let (d, m) = (described.get(c), migrated.get(c));
                    format!("{c}: described {d:?}, migrated {m:?}")
                })
                .collect();
            assert!(
                differences.is_empty(),
                "table {name}: the description and the migrated schema differ:\n{}",
                differences.join("\n")
            );
        }
    }

    /// The generated SQL of a timed table: `run_id`, its own columns, the timed ones.
    #[test]
    fn insert_sql_is_generated_from_the_description() {
        let sql = Sql::of::<layers::Layers>();
        assert_eq!(sql.params, 1 + 2 + timed::COLUMNS.len());
        assert!(sql
            .insert_one
            .starts_with("INSERT INTO layer_metrics (run_id, token_index, layer_index, start_ns,"));
        assert!(sql.insert_one.ends_with("?16, ?17)"), "{}", sql.insert_one);
        assert!(sql
            .insert_many
            .ends_with(&format!("?{})", 17 * ROWS_PER_STATEMENT)));
        assert!(sql
            .select
            .starts_with("SELECT id, run_id, token_index, layer_index, start_ns"));
        assert!(std::ptr::eq(sql, Sql::of::<layers::Layers>()), "built once");
        let runs = Sql::of::<runs::Runs>();
        assert!(runs
            .insert_one
            .starts_with("INSERT INTO profiling_runs (started_at_ms, ended_at_ms,"));
    }
}
