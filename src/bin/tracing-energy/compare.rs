//! `compare A B`: two runs side by side, with deltas per phase, layer and component.

use clap::Args;
use tracing_energy::report::compare as compare_runs;

use crate::db::{get_summary, json, open, resolve, DbArg, ListFormat, RunRef};
use crate::table::{num, printable, Table};

/// `compare A B`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The first run (id or `latest`).
    pub a: RunRef,
    /// The second run.
    pub b: RunRef,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
}

/// `compare A B`: two runs side by side.
pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    // One snapshot: both runs as they were at one moment.
    let cmp = store.read_snapshot(|s| -> anyhow::Result<_> {
        let (ra, rb) = (resolve(s, a.a)?, resolve(s, a.b)?);
        let (sa, sb) = (get_summary(s, &ra)?, get_summary(s, &rb)?);
        Ok(compare_runs(&sa, &sb))
    })?;
    if let ListFormat::Json = a.format {
        return json(&cmp);
    }
    println!(
        "A = run {} ({}{}), B = run {} ({}{})",
        cmp.a.run_id,
        printable(cmp.a.model.as_deref().unwrap_or("?")),
        if cmp.a.estimated { ", estimated" } else { "" },
        cmp.b.run_id,
        printable(cmp.b.model.as_deref().unwrap_or("?")),
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
