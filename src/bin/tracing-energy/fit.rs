//! `fit RUN`: what each component kind draws while it runs, fitted over the run's power
//! windows and stored on the run (the `component_power` table).

use serde::Serialize;
use tracing_energy::report::component_power::fit_components;
use tracing_energy::store::ComponentPower;

use crate::db::{json, open, resolve, ListFormat, RunArgs};
use crate::table::{num, printable, Table};

/// `fit --format json`: the run, and the fit or why there is none.
#[derive(Serialize)]
struct FitLine {
    run_id: i64,
    /// The fitted rows (background first); empty without a fit.
    component_power: Vec<ComponentPower>,
    /// Why the run cannot tell its components' power apart; null with a fit.
    refused: Option<String>,
}

/// `fit RUN`: fits, stores (replacing an earlier fit of the run) and prints.
pub fn fit(a: RunArgs) -> anyhow::Result<()> {
    let store = open(&a.db.db)?;
    let (run, power, components) = store.read_snapshot(|s| -> anyhow::Result<_> {
        let run = resolve(s, a.run)?;
        Ok((
            run.run_id,
            s.get_power_timeline(run.run_id)?,
            s.get_run_components(run.run_id)?,
        ))
    })?;
    let (fitted, refused) = match fit_components(&power, &components) {
        Ok(f) => (ComponentPower::of_fit(&f), None),
        Err(why) => (Vec::new(), Some(why.to_string())),
    };
    store.put_component_power(run, &fitted)?;
    if let ListFormat::Json = a.format {
        return json(&FitLine {
            run_id: run,
            component_power: fitted,
            refused,
        });
    }
    match refused {
        Some(why) => println!(
            "run {run}: no component power fit: {}; its rows keep their time-share (overlap) energy",
            printable(&why)
        ),
        None => {
            println!(
                "run {run}: component power fitted over {} power windows ({})",
                fitted.first().map_or(0, |r| r.windows),
                fitted.first().map_or("", |r| r.method.as_str())
            );
            let mut t = Table::new(["component", "power_mW", "stderr_mW", ""]);
            for r in &fitted {
                t.row([
                    printable(&r.component).into_owned(),
                    num(Some(r.power_mw), 1),
                    num(Some(r.stderr_mw), 1),
                    // The windows hardly tell this one: too little of its time in them.
                    if r.stderr_mw > r.power_mw.abs() {
                        "not determined (stderr above the power)".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            print!("{}", t.render());
            println!(
                "stored in the run's component_power table; a kind's power is what it adds while it runs, the background's is drawn all the time"
            );
        }
    }
    Ok(())
}
