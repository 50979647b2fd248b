//! The database subcommands: runs, show, summary, tokens, layers, hot, search, delete,
//! compare, report, export (`spans` is in its own module).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tracing_energy::store::{Run, RunFilter, RunId, RunSummary, Store};

use crate::table::{num, short, Table};

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

pub fn open(db: &Path) -> anyhow::Result<Store> {
    if !db.exists() {
        return Err(NotFound(format!(
            "database {} does not exist. Fix: record a run first (`cargo run --release --example profile`), or pass --db PATH / set TRACING_ENERGY_DB",
            db.display()
        ))
        .into());
    }
    Ok(Store::open_existing(db)?)
}

/// Resolves `latest` or a run id.
pub fn resolve(store: &Store, run: &str) -> anyhow::Result<Run> {
    if run == "latest" {
        return store.latest_run()?.ok_or_else(|| {
            NotFound(format!(
                "database {} has no runs yet. Fix: record one with `cargo run --release --example profile`",
                store.path().display()
            ))
            .into()
        });
    }
    let id: RunId = run.parse().map_err(|_| {
        anyhow::anyhow!(
            "`{run}` is not a run: give a run id (see `tracing-energy runs`) or `latest`"
        )
    })?;
    store.get_run(id)?.ok_or_else(|| {
        NotFound(format!(
            "database {} has no run {id}. Fix: list the runs with `tracing-energy runs`",
            store.path().display()
        ))
        .into()
    })
}

pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn parse_date(text: &str) -> anyhow::Result<i64> {
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
                eprintln!("no runs match in {}", store.path().display());
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
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

pub fn show(a: RunArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, &a.run)?;
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
    print!("{}", t.render());
    Ok(())
}

fn summary_text(s: &RunSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "run {} ({}), {} tokens, {} power samples, source {}{}\n",
        s.run.run_id,
        format!("{:?}", s.run.status).to_lowercase(),
        s.tokens,
        s.power_samples,
        s.run.power_source.as_deref().unwrap_or("none"),
        if s.run.estimated { " (ESTIMATED)" } else { "" }
    ));
    out.push_str(&format!(
        "energy: total {} mJ, attributed {} mJ, unattributed {} mJ\n\nphases\n",
        num(s.run.total_energy_mj, 1),
        num(s.run.attributed_energy_mj, 1),
        num(s.run.unattributed_energy_mj, 1)
    ));
    let mut t = Table::new([
        "phase",
        "sections",
        "duration_ms",
        "energy_mJ",
        "mean_power_mW",
    ]);
    for p in &s.phases {
        t.row([
            p.phase.clone(),
            p.sections.to_string(),
            num(Some(p.duration_ms), 2),
            num(p.energy_mj, 1),
            num(p.mean_power_mw, 0),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nlayers (mean per token)\n");
    let mut t = Table::new(["layer", "tokens", "duration_ms", "energy_mJ"]);
    for l in &s.layers {
        t.row([
            l.layer_index.to_string(),
            l.tokens.to_string(),
            num(Some(l.mean_duration_ms), 3),
            num(l.mean_energy_mj, 2),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\ncomponents (mean per row)\n");
    let mut t = Table::new(["component", "rows", "duration_ms", "energy_mJ", "total_mJ"]);
    for c in &s.components {
        t.row([
            c.component.clone(),
            c.count.to_string(),
            num(Some(c.mean_duration_ms), 3),
            num(c.mean_energy_mj, 3),
            num(c.total_energy_mj, 1),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nhottest\n");
    out.push_str(&hot_table(s, 10));
    out
}

fn hot_table(s: &RunSummary, limit: usize) -> String {
    let mut t = Table::new([
        "layer",
        "component",
        "tokens",
        "duration_ms",
        "energy_mJ",
        "share",
    ]);
    for h in s.hottest.iter().take(limit) {
        t.row([
            h.layer_index
                .map_or_else(|| "model".to_string(), |l| l.to_string()),
            h.component.clone(),
            h.count.to_string(),
            num(Some(h.duration_ms), 2),
            num(Some(h.energy_mj), 1),
            h.share_of_run
                .map_or_else(|| "-".to_string(), |f| format!("{:.1}%", f * 100.0)),
        ]);
    }
    t.render()
}

fn get_summary(store: &Store, run: &Run) -> anyhow::Result<RunSummary> {
    store
        .get_run_summary(run.run_id)?
        .with_context(|| format!("run {} disappeared while reading it", run.run_id))
}

pub fn summary(a: RunArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, &a.run)?;
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
    let run = resolve(&store, &a.run)?;
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
    let run = resolve(&store, &a.run.run)?;
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
    let run = resolve(&store, &a.run.run)?;
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
                eprintln!("no prompt contains {:?}", a.text);
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
    pub run: String,
}

pub fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, &a.run)?;
    store.delete_run(run.run_id)?;
    println!(
        "deleted run {} and all its rows from {}",
        run.run_id,
        store.path().display()
    );
    Ok(())
}

/// `compare A B`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The first run (id or `latest`).
    pub a: String,
    /// The second run.
    pub b: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

#[derive(Serialize)]
struct Side {
    duration_ms: Option<f64>,
    energy_mj: Option<f64>,
}

#[derive(Serialize)]
struct CompareRow {
    what: String,
    a: Side,
    b: Side,
    delta_duration_ms: Option<f64>,
    delta_energy_mj: Option<f64>,
    delta_energy_pct: Option<f64>,
}

#[derive(Serialize)]
struct Comparison {
    a: Run,
    b: Run,
    phases: Vec<CompareRow>,
    layers: Vec<CompareRow>,
    components: Vec<CompareRow>,
}

fn pair(what: String, a: (Option<f64>, Option<f64>), b: (Option<f64>, Option<f64>)) -> CompareRow {
    let d = |x: Option<f64>, y: Option<f64>| x.zip(y).map(|(x, y)| y - x);
    CompareRow {
        what,
        delta_duration_ms: d(a.0, b.0),
        delta_energy_mj: d(a.1, b.1),
        delta_energy_pct: a
            .1
            .zip(b.1)
            .filter(|(x, _)| *x != 0.0)
            .map(|(x, y)| (y - x) / x * 100.0),
        a: Side {
            duration_ms: a.0,
            energy_mj: a.1,
        },
        b: Side {
            duration_ms: b.0,
            energy_mj: b.1,
        },
    }
}

fn join<K: Ord + Clone>(
    a: BTreeMap<K, (Option<f64>, Option<f64>)>,
    b: BTreeMap<K, (Option<f64>, Option<f64>)>,
    name: impl Fn(&K) -> String,
) -> Vec<CompareRow> {
    let mut keys: Vec<K> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            pair(
                name(&k),
                a.get(&k).copied().unwrap_or((None, None)),
                b.get(&k).copied().unwrap_or((None, None)),
            )
        })
        .collect()
}

pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let (ra, rb) = (resolve(&store, &a.a)?, resolve(&store, &a.b)?);
    let (sa, sb) = (get_summary(&store, &ra)?, get_summary(&store, &rb)?);
    let phases = |s: &RunSummary| {
        s.phases
            .iter()
            .map(|p| (p.phase.clone(), (Some(p.duration_ms), p.energy_mj)))
            .collect::<BTreeMap<_, _>>()
    };
    let layers = |s: &RunSummary| {
        s.layers
            .iter()
            .map(|l| (l.layer_index, (Some(l.mean_duration_ms), l.mean_energy_mj)))
            .collect::<BTreeMap<_, _>>()
    };
    let comps = |s: &RunSummary| {
        s.components
            .iter()
            .map(|c| {
                (
                    c.component.clone(),
                    (Some(c.mean_duration_ms), c.mean_energy_mj),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let cmp = Comparison {
        phases: join(phases(&sa), phases(&sb), |k| k.clone()),
        layers: join(layers(&sa), layers(&sb), |k| format!("layer {k}")),
        components: join(comps(&sa), comps(&sb), |k| k.clone()),
        a: ra,
        b: rb,
    };
    if let ListFormat::Json = a.format {
        return json(&cmp);
    }
    println!(
        "A = run {} ({}{}), B = run {} ({}{})",
        cmp.a.run_id,
        cmp.a.model.as_deref().unwrap_or("?"),
        if cmp.a.estimated { ", estimated" } else { "" },
        cmp.b.run_id,
        cmp.b.model.as_deref().unwrap_or("?"),
        if cmp.b.estimated { ", estimated" } else { "" }
    );
    for (title, rows) in [
        ("phases (total)", &cmp.phases),
        ("layers (mean per token)", &cmp.layers),
        ("components (mean per row)", &cmp.components),
    ] {
        println!("\n{title}");
        let mut t = Table::new(["", "A_ms", "B_ms", "Δms", "A_mJ", "B_mJ", "ΔmJ", "Δ%"]);
        for r in rows.iter() {
            t.row([
                r.what.clone(),
                num(r.a.duration_ms, 3),
                num(r.b.duration_ms, 3),
                num(r.delta_duration_ms, 3),
                num(r.a.energy_mj, 2),
                num(r.b.energy_mj, 2),
                num(r.delta_energy_mj, 2),
                num(r.delta_energy_pct, 1),
            ]);
        }
        print!("{}", t.render());
    }
    Ok(())
}

/// `report RUN -o FILE.html`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// A run id, or `latest`.
    pub run: String,
    /// The HTML file to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| {
        format!(
            "cannot write {}: check that its folder exists and is writable",
            path.display()
        )
    })
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, &a.run)?;
    let html = tracing_energy::report::html::render(&store, run.run_id)?;
    write_file(&a.output, html.as_bytes())?;
    println!(
        "wrote the report of run {} to {}",
        run.run_id,
        a.output.display()
    );
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
    pub run: String,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Serialize)]
struct FullRun {
    run: Run,
    sections: Vec<tracing_energy::store::Row<tracing_energy::store::PipelineSection>>,
    tokens: Vec<tracing_energy::store::Row<tracing_energy::store::TokenRecord>>,
    layers: Vec<tracing_energy::store::Row<tracing_energy::store::LayerRecord>>,
    components: Vec<tracing_energy::store::Row<tracing_energy::store::ComponentRecord>>,
    operations: Vec<tracing_energy::store::Row<tracing_energy::store::OperationRecord>>,
    power: Vec<tracing_energy::store::PowerRow>,
}

fn full_run(store: &Store, run: Run) -> anyhow::Result<FullRun> {
    let id = run.run_id;
    Ok(FullRun {
        sections: store.get_pipeline_sections(id)?,
        tokens: store.get_tokens(id)?,
        layers: store.get_run_layers(id)?,
        components: store.get_run_components(id)?,
        operations: store.get_run_operations(id)?,
        power: store.get_power_timeline(id)?,
        run,
    })
}

fn csv_cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

fn csv(full: &FullRun) -> anyhow::Result<String> {
    const COLS: [&str; 22] = [
        "level",
        "id",
        "token_index",
        "layer_index",
        "component_index",
        "op_index",
        "name",
        "kind",
        "phase",
        "thread_id",
        "start_ns",
        "end_ns",
        "duration_ms",
        "energy_mj",
        "exclusive_energy_mj",
        "cpu_energy_mj",
        "gpu_energy_mj",
        "ane_energy_mj",
        "dram_energy_mj",
        "energy_method",
        "energy_uncertainty_mj",
        "sample_windows",
    ];
    let mut out = COLS.join(",");
    out.push('\n');
    let mut push = |level: &str, v: serde_json::Value, name_key: &str| {
        let get = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let cells: Vec<String> = COLS
            .iter()
            .map(|c| match *c {
                "level" => level.to_string(),
                "name" => csv_cell(&get(name_key)),
                "kind" => csv_cell(&get(if level == "component" {
                    "component"
                } else {
                    "kind"
                })),
                other => csv_cell(&get(other)),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    };
    for s in &full.sections {
        push("section", serde_json::to_value(s)?, "name");
    }
    for t in &full.tokens {
        push("token", serde_json::to_value(t)?, "text");
    }
    for l in &full.layers {
        push("layer", serde_json::to_value(l)?, "layer_index");
    }
    for c in &full.components {
        push("component", serde_json::to_value(c)?, "name");
    }
    for o in &full.operations {
        push("operation", serde_json::to_value(o)?, "operation");
    }
    Ok(out)
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let run = resolve(&store, &a.run)?;
    let id = run.run_id;
    let bytes = match a.format {
        ExportFormat::Chrome => {
            tracing_energy::report::trace::chrome_trace_string(&store, id)?.into_bytes()
        }
        ExportFormat::Json => serde_json::to_vec_pretty(&full_run(&store, run)?)?,
        ExportFormat::Csv => csv(&full_run(&store, run)?)?.into_bytes(),
        ExportFormat::Folded => tracing_energy::report::folded_stacks(&store, id)??.into_bytes(),
    };
    match &a.output {
        Some(path) => {
            write_file(path, &bytes)?;
            println!("wrote run {id} as {:?} to {}", a.format, path.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}
