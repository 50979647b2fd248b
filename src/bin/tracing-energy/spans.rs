//! `spans RUN`: a run's energy per span path, most exclusive energy first.

use clap::Args;
use serde::Serialize;
use tracing_energy::store::SpanRollup;

use crate::db::{json, open, resolve, ListFormat, RunArgs};
use crate::table::{num, Table};

/// `spans RUN [--limit N]`.
#[derive(Args, Debug)]
pub struct SpansArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// At most this many paths (the ones with the most exclusive energy).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// One path as printed by `spans --format json`. Unknown values are null.
#[derive(Serialize)]
struct SpanLine<'a> {
    #[serde(flatten)]
    row: &'a SpanRollup,
    /// Exclusive energy over the run's measured energy, in 0..1.
    share_of_run: Option<f64>,
}

/// The share of the run's measured energy, where both are known.
fn share(exclusive_mj: Option<f64>, total_mj: Option<f64>) -> Option<f64> {
    let total = total_mj.filter(|t| t.is_finite() && *t > 0.0)?;
    exclusive_mj.filter(|e| e.is_finite()).map(|e| e / total)
}

pub fn spans(a: SpansArgs) -> anyhow::Result<()> {
    let store = open(&a.run.db.db)?;
    let run = resolve(&store, a.run.run)?;
    let mut rows = store.get_span_rollup(run.run_id)?;
    if let Some(n) = a.limit {
        rows.truncate(n);
    }
    let lines: Vec<SpanLine> = rows
        .iter()
        .map(|row| SpanLine {
            row,
            share_of_run: share(row.exclusive_energy_mj, run.total_energy_mj),
        })
        .collect();
    if let ListFormat::Json = a.run.format {
        return json(&lines);
    }
    if lines.is_empty() {
        eprintln!(
            "run {} has no span paths (no spans were recorded, or the run was recorded by a \
             version of tracing-energy that did not keep them)",
            run.run_id
        );
    } else if lines.iter().all(|l| l.row.exclusive_energy_mj.is_none()) {
        eprintln!(
            "note: run {} has no energy figures (it was recorded without a power source): \
             energies read `-`",
            run.run_id
        );
    }
    let mut t = Table::new([
        "path",
        "calls",
        "busy_ms",
        "energy_mJ",
        "exclusive_mJ",
        "share",
    ]);
    for l in &lines {
        t.row([
            l.row.path.clone(),
            l.row.calls.to_string(),
            num(Some(l.row.busy_ms), 3),
            num(l.row.energy_mj, 3),
            num(l.row.exclusive_energy_mj, 3),
            l.share_of_run
                .map_or_else(|| "-".to_string(), |f| format!("{:.1}%", f * 100.0)),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn share_only_where_known() {
        assert_eq!(share(Some(25.0), Some(100.0)), Some(0.25));
        assert_eq!(share(None, Some(100.0)), None);
        assert_eq!(share(Some(25.0), None), None);
        assert_eq!(share(Some(25.0), Some(0.0)), None);
    }
}
