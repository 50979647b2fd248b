//! `report` and `export`: a run written to a file or to standard output. Each reads one
//! consistent snapshot of the database ([`Store::read_snapshot`]), and refuses an output
//! path that is the database itself or one of its files.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tracing_energy::report::{self, Detail, RunData};

use crate::db::{open, resolve, DbArg, RunRef, Usage};
use crate::table::printable;

/// `report RUN -o FILE.html`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A run id, or `latest`.
    pub run: RunRef,
    /// The HTML file to write (never the database: that is refused).
    #[arg(short, long)]
    pub output: PathBuf,
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| {
        anyhow::anyhow!(
            "cannot write {}: {e}. Fix: check that its folder exists and is writable, or \
             choose another file",
            shown(path)
        )
    })
}

/// A path as printed: control characters escaped.
pub(crate) fn shown(path: &Path) -> String {
    printable(&path.display().to_string()).into_owned()
}

/// `report RUN -o FILE`: the run's HTML report, read from one snapshot of the database.
pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    refuse_database(&a.output, &a.db.db, "report", &example(a.run, "html"))?;
    let store = open(&a.db.db)?;
    let (id, html) = store.read_snapshot(|s| -> anyhow::Result<_> {
        let id = resolve(s, a.run)?.run_id;
        Ok((
            id,
            report::render_run(&RunData::load(s, id, Detail::Report)?),
        ))
    })?;
    write_file(&a.output, html.as_bytes())?;
    println!("wrote the report of run {id} to {}", shown(&a.output));
    Ok(())
}

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// Chrome trace JSON (open in Perfetto or chrome://tracing).
    Chrome,
    /// Every timed row as CSV.
    Csv,
    /// The whole run as JSON.
    Json,
    /// Energy per span path as folded stacks (`path microjoules` lines) for
    /// inferno-flamegraph or flamegraph.pl.
    Folded,
}

/// `export RUN --format chrome|csv|json|folded [-o FILE]`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A run id, or `latest`.
    pub run: RunRef,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write (default: standard output; never the database: that is refused).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// `export RUN --format F [-o FILE]`, read from one snapshot of the database.
pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let ext = match a.format {
        ExportFormat::Chrome | ExportFormat::Json => "json",
        ExportFormat::Csv => "csv",
        ExportFormat::Folded => "folded",
    };
    if let Some(path) = &a.output {
        refuse_database(path, &a.db.db, "export", &example(a.run, ext))?;
    }
    let store = open(&a.db.db)?;
    // One snapshot: a run deleted or written meanwhile cannot give a file whose parts
    // disagree (e.g. no power samples but every token).
    let (id, bytes) = store.read_snapshot(|s| -> anyhow::Result<_> {
        let id = resolve(s, a.run)?.run_id;
        let rows = || RunData::load(s, id, Detail::Rows);
        let bytes = match a.format {
            ExportFormat::Chrome => report::chrome_trace_of(&rows()?).to_string().into_bytes(),
            ExportFormat::Json => report::export::json(&rows()?)?,
            ExportFormat::Csv => report::export::csv(&rows()?)?.into_bytes(),
            ExportFormat::Folded => report::folded_stacks(s, id)??.into_bytes(),
        };
        Ok((id, bytes))
    })?;
    match &a.output {
        Some(path) => {
            write_file(path, &bytes)?;
            println!("wrote run {id} as {:?} to {}", a.format, shown(path));
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// An output file name to suggest instead of the database.
fn example(run: RunRef, ext: &str) -> String {
    match run {
        RunRef::Id(id) => format!("run-{id}.{ext}"),
        RunRef::Latest => format!("run-latest.{ext}"),
    }
}

/// Refuses (bad usage, exit 2) to write `what` to the database `db` or to one of its
/// `-wal`, `-shm` and `-journal` files, whatever the path says: relative or absolute,
/// through `..`, a symbolic link (at the output itself or in its folders) or a hard link.
/// Checked before the database is opened, so nothing is written.
pub(crate) fn refuse_database(
    output: &Path,
    db: &Path,
    what: &str,
    example: &str,
) -> anyhow::Result<()> {
    let out = resolved(output);
    let out_file = file_id(output);
    let mut bases = vec![normalized(db), resolved(db)];
    bases.dedup();
    for base in bases.into_iter().flatten() {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = base.as_os_str().to_owned();
            name.push(suffix);
            let candidate = PathBuf::from(name);
            let same_path = out.as_ref() == Some(&candidate);
            let same_file = out_file.is_some() && out_file == file_id(&candidate);
            if same_path || same_file {
                let which = if suffix.is_empty() {
                    String::new()
                } else {
                    format!(" (its {suffix} file)")
                };
                return Err(Usage(format!(
                    "refusing to write the {what} to {}: it is the database {}{which}. Fix: \
                     choose another output file, e.g. {example}",
                    shown(output),
                    shown(db)
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// `path` with its folder made absolute and free of `..` and symbolic links; the file
/// name itself is kept (not followed). `None` when the folder does not exist.
fn normalized(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(std::fs::canonicalize(folder).ok()?.join(name))
}

/// Like [`normalized`], after following a symbolic link at `path` itself (also one whose
/// target does not exist yet, e.g. a database's `-wal` file).
fn resolved(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(target) => p = p.parent().unwrap_or(Path::new("")).join(target),
            Err(_) => break,
        }
    }
    normalized(&p)
}

/// The device and inode of the file at `path` (links followed), where it exists.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
