//! The library's error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in `tracing-energy`.
///
/// Every message says what failed and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A power source cannot run on this machine.
    #[error("power source `{source_name}` is not available: {reason}. Fix: {fix}")]
    SourceUnavailable {
        /// The source's name, e.g. `powermetrics`.
        source_name: String,
        /// Why it cannot run here.
        reason: String,
        /// What the user can do about it.
        fix: String,
    },

    /// A power source's executable could not be started.
    #[error("could not start `{program}`: {cause}. Fix: {fix}")]
    Spawn {
        /// The program that was started.
        program: String,
        /// The operating system's error.
        cause: std::io::Error,
        /// What the user can do about it.
        fix: String,
    },

    /// A power source stopped with an error while it was running.
    #[error("power source `{source_name}` failed: {reason}")]
    SourceFailed {
        /// The source's name.
        source_name: String,
        /// What happened, including what the source printed on stderr.
        reason: String,
    },

    /// A power source delivered no window during the idle baseline.
    #[error("power source `{source_name}` delivered no power window in the {seconds:.1} s idle baseline. Fix: give a longer baseline (`--baseline-s`, several of the source's windows long) or turn it off with `--baseline-s 0`")]
    NoBaseline {
        /// The source's name.
        source_name: String,
        /// How long the baseline waited (s).
        seconds: f64,
    },

    /// A capture file could not be read.
    #[error("cannot read capture file {}: {cause}. Fix: check the path and that the file is readable", path.display())]
    CaptureRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },

    /// A capture file holds no usable power sample.
    #[error("capture file {} holds no usable powermetrics sample ({detail}). Fix: record one with `powermetrics --samplers cpu_power,gpu_power -f plist -o FILE`", path.display())]
    CaptureEmpty {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },

    /// A configuration value is out of range.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// What is wrong with it and what is accepted.
        reason: String,
    },

    /// A database file cannot be used.
    #[error("database {}: {problem}. Fix: {fix}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// SQLite reported an error. The message gives SQLite's words once and, for the errors
    /// a user can act on (a read-only or damaged file, a lock held by another process, a
    /// full disk), what to do.
    #[error("{}", sqlite_message(path, cause))]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error. Not the error's `source`: its text is in the message already,
        /// and would be printed twice more by a reporter that walks the chain.
        cause: rusqlite::Error,
    },

    /// A change was asked of a database that this process may only read.
    #[error("database {}: {READ_ONLY}. Fix: {}", path.display(), read_only_fix(path))]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },

    /// The database writer could not commit.
    #[error("the database writer failed: {0}")]
    WriterFailed(String),

    /// The run was already finished: there is nothing left to finish or rotate.
    #[error("the energy profile run was already finished. Fix: finish or rotate a run once; build a new layer for a new profile")]
    AlreadyFinished,

    /// A run that is not in the database.
    #[error("database {}: no run `{run}`. Fix: list the runs with `tracing-energy runs`", path.display())]
    UnknownRun {
        /// The file.
        path: PathBuf,
        /// The run as given.
        run: String,
    },

    /// A background thread could not be started.
    #[error("could not start a background thread: {0}")]
    Thread(std::io::Error),

    /// The metrics server could not listen on its address.
    #[error("cannot serve metrics on {addr}: {cause}. Fix: {}", listen_fix(cause))]
    MetricsListen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it could not listen.
        cause: std::io::Error,
    },
}

fn listen_fix(cause: &std::io::Error) -> &'static str {
    match cause.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another program listens there: choose another port, or port 0 for a free one (e.g. `--metrics-addr 127.0.0.1:0`)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: choose a port from 1024 up, e.g. 9464"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is not one of this machine's: use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        }
        _ => "check the address, or use 127.0.0.1:0 for a free local port",
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What [`Error::ReadOnly`] and SQLite's read-only errors say.
const READ_ONLY: &str = "the database is read-only (or its folder is)";

fn read_only_fix(path: &Path) -> String {
    format!(
        "make it writable (`chmod u+w {}` and its folder) or copy it elsewhere",
        path.display()
    )
}

/// The message of [`Error::Sqlite`]: SQLite's words once, with a fix where there is one.
fn sqlite_message(path: &Path, cause: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    let file = path.display();
    let said = match cause {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        rusqlite::Error::SqliteFailure(e, None) => {
            rusqlite::ffi::code_to_str(e.extended_code).to_string()
        }
        other => other.to_string(),
    };
    match cause.sqlite_error_code() {
        Some(C::ReadOnly | C::PermissionDenied) => {
            format!("database {file}: {READ_ONLY}. Fix: {}", read_only_fix(path))
        }
        Some(C::CannotOpen) => format!(
            "database {file}: {said}: {READ_ONLY}. Fix: {}",
            read_only_fix(path)
        ),
        Some(C::DatabaseCorrupt | C::NotADatabase) => format!(
            "database {file}: {said}. Fix: the file is damaged; restore it from a backup, or \
             recover what is readable with `sqlite3 {file} .recover | sqlite3 NEW.db`; \
             tracing-energy has not changed it"
        ),
        Some(C::DatabaseBusy | C::DatabaseLocked) => format!(
            "database {file}: {said}: another process holds its lock. Fix: wait for the other \
             process (e.g. a profile run) to finish, then try again"
        ),
        Some(C::DiskFull) => format!(
            "database {file}: {said}. Fix: free space on its disk, then try again; what was \
             committed before is kept"
        ),
        Some(C::SystemIoFailure) => format!(
            "database {file}: {said}. Fix: check the disk, then the file with \
             `sqlite3 {file} 'PRAGMA integrity_check'`"
        ),
        _ => format!("database {file}: {said}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int, msg: Option<&str>) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), msg.map(String::from))
    }

    #[test]
    fn sqlite_errors_say_their_cause_once_with_a_fix() {
        let path = PathBuf::from("/data/p.db");
        let e = Error::Sqlite {
            path: path.clone(),
            cause: failure(
                rusqlite::ffi::SQLITE_CORRUPT,
                Some("database disk image is malformed"),
            ),
        };
        assert!(std::error::Error::source(&e).is_none());
        let text = e.to_string();
        assert_eq!(text.matches("malformed").count(), 1, "{text}");
        assert!(
            text.contains("/data/p.db .recover") && text.contains("Fix:"),
            "{text}"
        );
        let ro = Error::Sqlite {
            path: path.clone(),
            cause: failure(rusqlite::ffi::SQLITE_READONLY_DIRECTORY, None),
        }
        .to_string();
        assert_eq!(ro, Error::ReadOnly { path }.to_string());
        assert!(
            ro.contains("chmod u+w /data/p.db") && !ro.contains("readonly"),
            "{ro}"
        );
    }
}
