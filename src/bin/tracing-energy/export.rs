//! `report` and `export`: a run written to a file or to standard output. Each reads one
//! consistent snapshot of the database ([`Store::read_snapshot`]), and refuses an output
//! path that is the database itself or one of its files.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use flate2::write::GzEncoder;
use flate2::Compression;
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
    std::fs::write(path, bytes).map_err(|e| cannot_write(path, &e))
}

fn cannot_write(path: &Path, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot write {}: {e}. Fix: check that its folder exists and is writable and that \
         the disk has room, or choose another file",
        shown(path)
    )
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
    /// Chrome trace JSON (open in Perfetto, chrome://tracing or speedscope).
    Chrome,
    /// Every timed row as CSV.
    Csv,
    /// The whole run as JSON.
    Json,
    /// Energy per span path as folded stacks (`path microjoules` lines) for
    /// inferno-flamegraph or flamegraph.pl.
    Folded,
}

/// How much of the run a chrome, json or csv export holds; each level holds everything the
/// one before it holds.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DetailArg {
    /// The pipeline's sections (phases such as tokenize, prefill and decode, and the other
    /// sections a program marks) and the power samples.
    Phases,
    /// Also a row per token.
    Tokens,
    /// Also a row per token and layer (the default).
    Layers,
    /// Also each layer's components (attention, mlp, norm, output, ...).
    Components,
    /// Also every operation (q_proj, down_proj, ...): every row of the run, the largest
    /// file (some 170 KB a token for SmolLM2-135M's trace; consider --gzip).
    Ops,
}

impl From<DetailArg> for Detail {
    fn from(d: DetailArg) -> Detail {
        match d {
            DetailArg::Phases => Detail::Phases,
            DetailArg::Tokens => Detail::Tokens,
            DetailArg::Layers => Detail::Layers,
            DetailArg::Components => Detail::Components,
            DetailArg::Ops => Detail::Operations,
        }
    }
}

/// `export RUN --format chrome|csv|json|folded [--detail LEVEL] [--gzip] [-o FILE]`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A run id, or `latest`.
    pub run: RunRef,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// How much of the run a chrome, json or csv export holds (default: layers). Not for
    /// folded stacks, which always hold every span path.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub detail: Option<DetailArg>,
    /// Compress the output with gzip (Perfetto opens a .json.gz trace as it is). Implied by
    /// an output file name ending in .gz.
    #[arg(long)]
    pub gzip: bool,
    /// The file to write (default: standard output; never the database: that is refused).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// What an export reads from its snapshot, to be written after it.
enum Loaded {
    Chrome(RunData),
    Json(RunData),
    Csv(RunData),
    Folded(String),
}

/// `export RUN --format F [--detail LEVEL] [--gzip] [-o FILE]`, read from one snapshot of
/// the database, then streamed to the file or standard output.
pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let ext = match a.format {
        ExportFormat::Chrome | ExportFormat::Json => "json",
        ExportFormat::Csv => "csv",
        ExportFormat::Folded => "folded",
    };
    let gzip = a.gzip
        || a.output
            .as_ref()
            .and_then(|p| p.extension())
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if let (ExportFormat::Folded, Some(d)) = (a.format, a.detail) {
        return Err(Usage(format!(
            "--detail {} does not apply to --format folded: folded stacks always hold every \
             span path. Fix: leave out --detail, or export chrome, json or csv",
            d.to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string())
        ))
        .into());
    }
    let detail = Detail::from(a.detail.unwrap_or(DetailArg::Layers));
    if let Some(path) = &a.output {
        let ext = if gzip {
            format!("{ext}.gz")
        } else {
            ext.to_string()
        };
        refuse_database(path, &a.db.db, "export", &example(a.run, &ext))?;
    }
    let store = open(&a.db.db)?;
    // One snapshot: a run deleted or written meanwhile cannot give a file whose parts
    // disagree (e.g. no power samples but every token). Read first, then write: a run
    // that cannot be read leaves no file.
    let (id, loaded) = store.read_snapshot(|s| -> anyhow::Result<_> {
        let id = resolve(s, a.run)?.run_id;
        let rows = || RunData::load(s, id, detail);
        let loaded = match a.format {
            ExportFormat::Chrome => Loaded::Chrome(rows()?),
            ExportFormat::Json => Loaded::Json(rows()?),
            ExportFormat::Csv => Loaded::Csv(rows()?),
            ExportFormat::Folded => Loaded::Folded(report::folded_stacks(s, id)??),
        };
        Ok((id, loaded))
    })?;
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        if gzip {
            let mut gz = GzEncoder::new(out, Compression::default());
            body(&loaded, &mut gz)?;
            gz.finish()?.flush()
        } else {
            body(&loaded, &mut *out)?;
            out.flush()
        }
    };
    match &a.output {
        Some(path) => {
            let written = std::fs::File::create(path).and_then(|mut f| {
                write(&mut f)?;
                f.sync_all()
            });
            if let Err(e) = written {
                // A partial file is no export: leave none.
                let _ = std::fs::remove_file(path);
                return Err(cannot_write(path, &e));
            }
            let how = if gzip { ", gzip-compressed," } else { "" };
            println!("wrote run {id} as {:?}{how} to {}", a.format, shown(path));
        }
        None => write(&mut std::io::stdout().lock())?,
    }
    Ok(())
}

/// Writes what was read to `out`.
fn body(loaded: &Loaded, out: &mut dyn Write) -> std::io::Result<()> {
    match loaded {
        Loaded::Chrome(data) => report::write_chrome_trace(data, out),
        Loaded::Json(data) => report::export::write_json(data, out),
        Loaded::Csv(data) => report::export::write_csv(data, out),
        Loaded::Folded(text) => out.write_all(text.as_bytes()),
    }
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
