//! `stats --experiment NAME` (the statistics of an experiment's repeated runs) and
//! `compare-experiments A B` (two experiments, metric by metric).

use clap::Args;
use tracing_energy::report::experiment::{ExperimentComparison, ExperimentStats};
use tracing_energy::store::Store;

use crate::db::{json, open, DbArg, ListFormat, NotFound};
use crate::table::{printable, printable_lines};

/// `stats --experiment NAME`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The experiment (as `tracing-energy runs` lists them).
    #[arg(long)]
    pub experiment: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

/// `compare-experiments A B`.
#[derive(Args, Debug)]
pub struct CompareExperimentsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The first experiment.
    pub a: String,
    /// The second experiment.
    pub b: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

/// The statistics of `experiment`; [`NotFound`] when it has no runs.
fn load(store: &Store, experiment: &str) -> anyhow::Result<ExperimentStats> {
    ExperimentStats::load(store, experiment)?.ok_or_else(|| {
        NotFound(format!(
            "database {} has no run in experiment `{}`. Fix: list the runs and their experiments with `tracing-energy runs`",
            printable(&store.path().display().to_string()),
            printable(experiment)
        ))
        .into()
    })
}

/// `stats --experiment NAME`.
pub fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let stats = load(&store, &a.experiment)?;
    match a.format {
        ListFormat::Json => json(&stats),
        ListFormat::Table => {
            print!("{}", printable_lines(&stats.to_string()));
            Ok(())
        }
    }
}

/// `compare-experiments A B`.
pub fn compare_experiments(a: CompareExperimentsArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let cmp = ExperimentComparison::between(load(&store, &a.a)?, load(&store, &a.b)?);
    match a.format {
        ListFormat::Json => json(&cmp),
        ListFormat::Table => {
            print!("{}", printable_lines(&cmp.to_string()));
            Ok(())
        }
    }
}
