//! `compare A B`: two runs side by side, with deltas per phase, layer and component.

use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;
use tracing_energy::store::{Run, RunSummary};

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

/// `compare A B`: two runs side by side.
pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let (ra, rb) = (resolve(&store, a.a)?, resolve(&store, a.b)?);
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
