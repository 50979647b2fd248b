//! The database subcommands: runs, show, summary, tokens, layers, hot, search, delete
//! (`spans`, `compare`, and `report` with `export` are in their own modules), and what
//! they share: the `--db` and RUN arguments, opening the database, the exit-code errors.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tracing_energy::store::{Run, RunFilter, RunId, RunStatus, RunSummary, Store};

use crate::summary_text::{hot_table, summary_text};
use crate::table::{num, printable, short, Table};

/// The database to read.
#[derive(Args, Debug, Clone)]
pub struct DbArg {
    /// The profile database.
    #[arg(long, default_value = "profiles.db", env = "TRACING_ENERGY_DB")]
    pub db: PathBuf,
}

/// How listings are printed.
#[derive(Clone, Copy, Debug, ValueEnum, Default)]
pub enum ListFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// An error that means "not found" (exit code 3).
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// An error that means "bad usage" (exit code 2), found after parsing the arguments.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A run as given on the command line: `latest` (any case) or a run id (1 or more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunRef {
    /// The newest run.
    Latest,
    /// The run with this id.
    Id(RunId),
}

impl std::str::FromStr for RunRef {
    type Err = String;

    /// Parses a RUN argument; clap reports a bad one as bad usage (exit 2).
    fn from_str(text: &str) -> Result<RunRef, String> {
        const FIX: &str =
            "Fix: give a run id (1 or more, as `tracing-energy runs` lists them) or `latest`";
        if text.eq_ignore_ascii_case("latest") {
            return Ok(RunRef::Latest);
        }
        let shown = printable(text);
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<RunId>() {
                Ok(0) => Err(format!("`0` is not a run: run ids start at 1. {FIX}")),
                Ok(id) => Ok(RunRef::Id(id)),
                Err(_) => Err(format!(
                    "`{shown}` is not a run: run ids go up to {}. {FIX}",
                    RunId::MAX
                )),
            };
        }
        Err(format!("`{shown}` is not a run. {FIX}"))
    }
}

impl std::fmt::Display for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunRef::Latest => f.write_str("latest"),
            RunRef::Id(id) => write!(f, "{id}"),
        }
    }
}

/// Opens an existing database (a missing one is [`NotFound`]).
pub fn open(db: &Path) -> anyhow::Result<Store> {
    if !db.exists() {
        return Err(NotFound(format!(
            "database {} does not exist. Fix: record a run first (`cargo run --release --example profile`), or pass --db PATH / set TRACING_ENERGY_DB",
            printable(&db.display().to_string())
        ))
        .into());
    }
    Ok(Store::open_existing(db)?)
}

/// The run `run` names; [`NotFound`] when there is none.
pub fn resolve(store: &Store, run: RunRef) -> anyhow::Result<Run> {
    let path = printable(&store.path().display().to_string()).into_owned();
    match run {
        RunRef::Latest => store.latest_run()?.ok_or_else(|| {
            NotFound(format!(
                "database {path} has no runs yet. Fix: record one with `cargo run --release --example profile`"
            ))
            .into()
        }),
        RunRef::Id(id) => store.get_run(id)?.ok_or_else(|| {
            NotFound(format!(
                "database {path} has no run {id}. Fix: list the runs with `tracing-energy runs`"
            ))
            .into()
        }),
    }
}

/// Prints `v` as pretty JSON on standard output.
pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Unix milliseconds of a date given as YYYY-MM-DD (midnight UTC) or RFC 3339.
pub(crate) fn parse_date(text: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(text, &fmt) {
        return Ok((d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64);
    }
    bail!("`{text}` is not a date: use YYYY-MM-DD or RFC 3339 (2026-11-23T10:00:00Z)")
}

/// `runs` filters.
#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only runs with this tag (repeat for several: all must match).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only this experiment.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Runs started on or after this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Runs started before this date.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Skip this many runs (newest first).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

fn runs_table(runs: &[Run]) -> String {
    let mut t = Table::new([
        "run",
        "started",
        "status",
        "model",
        "source",
        "energy_mJ",
        "dynamic_mJ",
        "tags",
        "prompt",
    ]);
    for r in runs {
        let source = match (&r.power_source, r.estimated) {
            (Some(s), true) => format!("{s} (est.)"),
            (Some(s), false) => s.clone(),
            (None, _) => "-".into(),
        };
        t.row([
            r.run_id.to_string(),
            r.started_at.clone(),
            format!("{:?}", r.status).to_lowercase(),
            short(r.model.as_deref(), 32),
            source,
            num(r.total_energy_mj, 1),
            num(r.dynamic_total_energy_mj, 1),
            r.tags.join(","),
            short(r.prompt.as_deref(), 40),
        ]);
    }
    t.render()
}

pub fn runs(a: RunsArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let filter = RunFilter {
        model: a.model,
        since_ms: a.since.as_deref().map(parse_date).transpose()?,
        until_ms: a.until.as_deref().map(parse_date).transpose()?,
        tags: a.tags,
        experiment: a.experiment,
        limit: Some(a.limit),
        offset: a.offset,
    };
    let runs = store.get_runs(&filter)?;
    match a.format {
        ListFormat::Json => json(&runs),
        ListFormat::Table => {
            if runs.is_empty() {
                eprintln!(
                    "no runs match in {}",
                    printable(&store.path().display().to_string())
                );
            }
            print!("{}", runs_table(&runs));
            Ok(())
        }
    }
}

/// A run selected by id or `latest`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A run id, or `latest`.
    pub run: RunRef,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

pub fn show(a: RunArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, a.run)?;
    if let ListFormat::Json = a.format {
        return json(&run);
    }
    let v = serde_json::to_value(&run)?;
    let mut t = Table::new(["field", "value"]);
    if let serde_json::Value::Object(map) = v {
        for (k, val) in map {
            let text = match val {
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            t.row([k, short(Some(&text), 100)]);
        }
    }
    if run.estimated {
        println!("NOTE: the energy of this run is ESTIMATED from CPU time, not measured.");
    }
    if let Some(note) = run.coverage_note() {
        println!("WARNING: {note}: the rest of the run is unmeasured.");
    }
    print!("{}", t.render());
    Ok(())
}

/// The run's summary (it was just resolved: its absence is an error, not "not found").
pub fn get_summary(store: &Store, run: &Run) -> anyhow::Result<RunSummary> {
    store
        .get_run_summary(run.run_id)?
        .with_context(|| format!("run {} disappeared while reading it", run.run_id))
}

pub fn summary(a: RunArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, a.run)?;
    let s = get_summary(&store, &run)?;
    match a.format {
        ListFormat::Json => json(&s),
        ListFormat::Table => {
            print!("{}", summary_text(&s));
            Ok(())
        }
    }
}

pub fn tokens(a: RunArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, a.run)?;
    let rows = store.get_tokens(run.run_id)?;
    if let ListFormat::Json = a.format {
        return json(&rows);
    }
    let mut t = Table::new([
        "token",
        "phase",
        "n",
        "text",
        "duration_ms",
        "energy_mJ",
        "mJ/token",
        "±mJ",
        "windows",
    ]);
    for r in &rows {
        let m = &r.record.measured;
        t.row([
            r.record.token_index.to_string(),
            r.record.phase.clone(),
            r.record.n_tokens.to_string(),
            format!("{:?}", short(r.record.text.as_deref(), 16)),
            num(Some(r.duration_ms), 2),
            num(m.energy_mj, 1),
            num(m.energy_mj.map(|e| e / r.record.n_tokens.max(1) as f64), 1),
            num(m.energy_uncertainty_mj, 1),
            m.sample_windows
                .map_or_else(|| "-".into(), |w| w.to_string()),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `layers`: one token's layers, or averages over all tokens.
#[derive(Args, Debug)]
pub struct LayersArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// One token's layers (default: the mean over all tokens).
    #[arg(long)]
    pub token: Option<u64>,
}

pub fn layers(a: LayersArgs) -> anyhow::Result<()> {
    let store = open(&a.run.db.db)?;
    let run = resolve(&store, a.run.run)?;
    match a.token {
        Some(tok) => {
            let rows = store.get_layer_metrics(run.run_id, tok)?;
            if rows.is_empty() {
                return Err(NotFound(format!(
                    "run {} has no layer rows for token {tok}: see `tracing-energy tokens {}`",
                    run.run_id, run.run_id
                ))
                .into());
            }
            if let ListFormat::Json = a.run.format {
                return json(&rows);
            }
            let mut t = Table::new(["layer", "duration_ms", "energy_mJ", "exclusive_mJ", "±mJ"]);
            for r in &rows {
                let m = &r.record.measured;
                t.row([
                    r.record.layer_index.to_string(),
                    num(Some(r.duration_ms), 3),
                    num(m.energy_mj, 2),
                    num(m.exclusive_energy_mj, 2),
                    num(m.energy_uncertainty_mj, 2),
                ]);
            }
            print!("{}", t.render());
        }
        None => {
            let s = get_summary(&store, &run)?;
            if let ListFormat::Json = a.run.format {
                return json(&s.layers);
            }
            let mut t = Table::new([
                "layer",
                "tokens",
                "mean_duration_ms",
                "mean_energy_mJ",
                "total_energy_mJ",
            ]);
            for l in &s.layers {
                t.row([
                    l.layer_index.to_string(),
                    l.tokens.to_string(),
                    num(Some(l.mean_duration_ms), 3),
                    num(l.mean_energy_mj, 2),
                    num(l.total_energy_mj, 1),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

/// `hot`: the hottest components.
#[derive(Args, Debug)]
pub struct HotArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// How many.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

pub fn hot(a: HotArgs) -> anyhow::Result<()> {
    let store = open(&a.run.db.db)?;
    let run = resolve(&store, a.run.run)?;
    let s = get_summary(&store, &run)?;
    match a.run.format {
        ListFormat::Json => json(&s.hottest.iter().take(a.limit).collect::<Vec<_>>()),
        ListFormat::Table => {
            if s.hottest.is_empty() {
                eprintln!(
                    "run {} has no component energy (no power source, or no model spans)",
                    run.run_id
                );
            }
            print!("{}", hot_table(&s, a.limit));
            Ok(())
        }
    }
}

/// `search TEXT`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Text to find in prompts.
    pub text: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

pub fn search(a: SearchArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let runs = store.search_by_prompt(&a.text)?;
    match a.format {
        ListFormat::Json => json(&runs),
        ListFormat::Table => {
            if runs.is_empty() {
                eprintln!("no prompt contains \"{}\"", printable(&a.text));
            }
            print!("{}", runs_table(&runs));
            Ok(())
        }
    }
}

/// `delete RUN`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A run id, or `latest`.
    pub run: RunRef,
    /// Delete the run even while it is being recorded (its recorder then fails).
    #[arg(long)]
    pub force: bool,
}

/// `delete RUN [--force]`. A run being recorded (status `running`: its process is alive,
/// or on another host) is kept unless `--force`.
pub fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, a.run)?;
    if run.status == RunStatus::Running && !a.force {
        let by = match (run.writer_pid, &run.host.name) {
            (Some(pid), Some(host)) => format!(", process {pid} on {}", printable(host)),
            (Some(pid), None) => format!(", process {pid}"),
            (None, _) => String::new(),
        };
        bail!(
            "run {} is being recorded (status running{by}). Fix: wait for it to finish, or \
             pass --force to delete it anyway",
            run.run_id
        );
    }
    store.delete_run(run.run_id)?;
    println!(
        "deleted run {} and all its rows from {}",
        run.run_id,
        printable(&store.path().display().to_string())
    );
    Ok(())
}
