//! Opening a database file: what is refused untouched (not SQLite, another program's,
//! written by a newer tracing-energy), how a file this process may only read is opened
//! (nothing created beside it), and the forward migrations.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{schema, BUSY_TIMEOUT, SCHEMA_VERSION};
use crate::{Error, Result};

pub(super) fn open_connection(path: &Path, create: bool) -> Result<Connection> {
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
    let version = check_ours(&conn, path)?;
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

/// Refuses, untouched, a file that is not SQLite, an SQLite database of another program
/// (no schema version, and tables that are not ours) or one written by a newer
/// tracing-energy. Returns its schema version (0: no schema yet).
fn check_ours(conn: &Connection, path: &Path) -> Result<i64> {
    let db_err = |problem: String, fix: &str| Error::Database {
        path: path.to_path_buf(),
        problem,
        fix: fix.to_string(),
    };
    let sql_err = |cause: rusqlite::Error| Error::Sqlite {
        path: path.to_path_buf(),
        cause,
    };
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
        let foreign: Vec<String> = table_names(conn)
            .map_err(sql_err)?
            .into_iter()
            .filter(|n| !schema::TABLES.contains(&n.as_str()))
            .collect();
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
    Ok(version)
}

/// The names of the database's own tables (not SQLite's).
fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )?;
    let names = st.query_map([], |r| r.get::<_, String>(0))?;
    names.collect()
}

/// Checks the database at `path` for a merge, reading it without changing it or creating
/// anything beside it, and returns the `file:` URI to attach it read-only with. Besides
/// what every open refuses ([`check_ours`]), a merge refuses a file without the
/// tracing-energy schema, and one with an older schema: the upgrade gives its runs the
/// uuids by which a merge knows them, and a merge never changes its source (an upgraded
/// temporary copy would give them new uuids at every merge).
pub(super) fn check_merge_source(path: &Path) -> Result<String> {
    check_current(path, "a merge does not upgrade its sources", "merge again")
}

/// Opens the database at `path` only to read it, for a process that must never change it
/// (`tracing-energy serve`): checked first as [`check_current`] says (a file that is not a
/// tracing-energy database of this build's schema is refused, untouched, with nothing
/// created beside it), then opened read-only (`mode=ro`). Other processes may write the
/// file meanwhile (WAL): each read sees what they committed. SQLite creates the `-wal`
/// and `-shm` files a WAL reader needs where the folder allows; where it does not and they
/// are absent, the file is opened `immutable` (nothing created; later writes unseen).
pub(super) fn open_read_only_connection(path: &Path) -> Result<Connection> {
    check_current(
        path,
        "a read-only open does not upgrade it",
        "open it again",
    )?;
    let uri = if may_write(path) {
        file_uri(path, "mode=ro")
    } else {
        read_only_uri(path)
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let sql_err = |cause: rusqlite::Error| Error::Sqlite {
        path: path.to_path_buf(),
        cause,
    };
    let conn = Connection::open_with_flags(&uri, flags).map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    Ok(conn)
}

/// Checks, without changing it or creating anything beside it, that `path` is a
/// tracing-energy database of this build's schema: besides what every open refuses
/// ([`check_ours`]), a file without the schema, one that lacks a table, and one with an
/// older schema (`why_not_older` says why that is not upgraded here, `then` what to do
/// after upgrading it). Returns the `file:` URI it was read through.
fn check_current(path: &Path, why_not_older: &str, then: &str) -> Result<String> {
    let db_err = |problem: String, fix: &str| Error::Database {
        path: path.to_path_buf(),
        problem,
        fix: fix.to_string(),
    };
    if !path.exists() {
        return Err(db_err("no such file".into(), "check the path"));
    }
    if path.is_dir() {
        return Err(db_err(
            "it is a folder, not a file".into(),
            "give the path of a database file",
        ));
    }
    let uri = read_only_uri(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&uri, flags).map_err(|cause| Error::Sqlite {
        path: path.to_path_buf(),
        cause,
    })?;
    let version = check_ours(&conn, path)?;
    let not_ours = "give the path of a tracing-energy database; this file was not changed";
    let missing: Vec<&str> = {
        let names = table_names(&conn).map_err(|cause| Error::Sqlite {
            path: path.to_path_buf(),
            cause,
        })?;
        schema::TABLES
            .iter()
            .copied()
            .filter(|t| !names.iter().any(|n| n == t))
            .collect()
    };
    if version == 0 {
        return Err(db_err(
            "it is not a tracing-energy database (an SQLite file without its schema)".into(),
            not_ours,
        ));
    }
    if version == SCHEMA_VERSION && !missing.is_empty() {
        return Err(db_err(
            format!(
                "it is not a tracing-energy database (schema version {version}, but no table {})",
                missing.join(", ")
            ),
            not_ours,
        ));
    }
    if version < SCHEMA_VERSION {
        return Err(db_err(
            format!(
                "its schema (version {version}) is older than this build's ({SCHEMA_VERSION}), and {why_not_older}"
            ),
            &format!(
                "open it once with this version to upgrade it (e.g. `tracing-energy runs --db {}`), then {then}; this file was not changed",
                path.display()
            ),
        ));
    }
    Ok(uri)
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
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(read_only_uri(path), flags)
}

/// The `file:` URI that reads `path` as [`open_read_only`] says: `immutable` without a
/// `-wal` or `-shm` beside it, else read-only (`mode=ro`) through them.
fn read_only_uri(path: &Path) -> String {
    let wal_empty = std::fs::metadata(side_file(path, "-wal")).map_or(true, |m| m.len() == 0);
    if wal_empty && !side_file(path, "-shm").exists() {
        file_uri(path, "immutable=1")
    } else {
        file_uri(path, "mode=ro")
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
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
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
