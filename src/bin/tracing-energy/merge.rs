//! `merge A.db [B.db ...] -o OUT.db`: the runs of several databases (e.g. one per machine)
//! copied into one, so that `runs`, `compare` and the rest work across machines.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tracing_energy::store::{MergeReport, Store};

use crate::export::{refuse_database, shown};

/// `merge A.db [B.db ...] -o OUT.db`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The databases to copy runs from, in order (each is only read, never changed).
    #[arg(required = true, value_name = "DB")]
    pub sources: Vec<PathBuf>,
    /// The database to copy them into; created (with the schema) when missing.
    #[arg(short = 'o', long = "output", value_name = "OUT.db")]
    pub output: PathBuf,
}

/// `merge`: each source in its own transaction, in order. A run the output holds already
/// (same run uuid) is skipped, so merging again copies nothing. A bad source stops the
/// merge: the sources before it stay merged, nothing of it is copied.
pub fn merge(a: MergeArgs) -> anyhow::Result<()> {
    for source in &a.sources {
        refuse_database(&a.output, source, "merged database", "all.db")?;
    }
    let out = shown(&a.output);
    let store = Store::open(&a.output)?;
    let mut total = MergeReport::default();
    for (done, source) in a.sources.iter().enumerate() {
        let report = store.merge_from(source).with_context(|| {
            let kept = match done {
                0 => "nothing was merged".to_string(),
                1 => format!("{} stays merged into {out}", shown(&a.sources[0])),
                n => format!("the {n} databases before it stay merged into {out}"),
            };
            let left = a.sources.len() - done - 1;
            let after = if left > 0 {
                format!(", the {left} after it were not tried")
            } else {
                String::new()
            };
            format!(
                "merge stopped at {} ({kept}{after}; each database is merged whole or not at all)",
                shown(source)
            )
        })?;
        println!("{}: {}", shown(source), counts(&report));
        total.runs_copied += report.runs_copied;
        total.runs_skipped += report.runs_skipped;
        total.rows.extend(report.rows);
    }
    println!("total into {out}: {}", counts(&total));
    Ok(())
}

/// `1 run copied (5,120 rows), 0 skipped`.
fn counts(r: &MergeReport) -> String {
    let runs = |n: u64| if n == 1 { "run" } else { "runs" };
    format!(
        "{} {} copied ({} rows), {} skipped (already there)",
        r.runs_copied,
        runs(r.runs_copied),
        r.rows_copied(),
        r.runs_skipped
    )
}
