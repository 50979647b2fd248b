//! The library's error type.

use std::path::PathBuf;

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

    /// SQLite reported an error.
    #[error("database {}: {cause}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        cause: rusqlite::Error,
    },

    /// The database writer could not commit.
    #[error("the database writer failed: {0}")]
    WriterFailed(String),

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
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
