//! Component power fits stored per run (the `component_power` table): what each component
//! kind draws while it runs, fitted over the run's power windows.

use serde::{Deserialize, Serialize};

use super::tables::component_power::ComponentPowers;
use super::tables::{insert_one, read, Sql};
use super::{RunId, Store};
use crate::attribution::regression::PowerFit;
use crate::Result;

/// The method stored with a fit.
pub const FIT_METHOD: &str = "regression (non-negative least squares over power windows)";

/// The component name the background (power drawn whatever runs) is stored under.
pub const BACKGROUND: &str = "(background)";

/// One kind's fitted power, or the background's ([`BACKGROUND`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentPower {
    /// The component kind (`attention`, `mlp`, ...), or [`BACKGROUND`].
    pub component: String,
    /// The power it adds while it runs (mW); the background's is drawn all the time.
    pub power_mw: f64,
    /// The fit's standard error of `power_mw` (mW).
    pub stderr_mw: f64,
    /// Power windows the fit used.
    pub windows: u64,
    /// How it was fitted, e.g. `regression (non-negative least squares)`.
    pub method: String,
}

impl ComponentPower {
    /// The rows to store for a fit: the background first, then each kind.
    pub fn of_fit(fit: &PowerFit) -> Vec<ComponentPower> {
        let row = |component: &str, power_mw: f64, stderr_mw: f64| ComponentPower {
            component: component.to_string(),
            power_mw,
            stderr_mw,
            windows: fit.windows as u64,
            method: FIT_METHOD.to_string(),
        };
        std::iter::once(row(BACKGROUND, fit.idle_mw, fit.idle_stderr_mw))
            .chain(
                fit.kinds
                    .iter()
                    .map(|k| row(&k.kind, k.power_mw, k.stderr_mw)),
            )
            .collect()
    }
}

impl Store {
    /// Replaces the run's component power fit with `rows` (none: the run has no fit).
    pub fn put_component_power(&self, run: RunId, rows: &[ComponentPower]) -> Result<()> {
        let mut conn = self.writable_conn()?;
        let write = |conn: &mut rusqlite::Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM component_power WHERE run_id = ?1", [run])?;
            for r in rows {
                insert_one::<ComponentPowers, _>(&tx, run, r)?;
            }
            tx.commit()
        };
        write(&mut conn).map_err(|e| self.err(e))
    }

    /// The run's component power fit, the background first, then by power.
    pub fn get_component_power(&self, run: RunId) -> Result<Vec<ComponentPower>> {
        self.with_conn(|c| {
            let sql = format!(
                "{} WHERE run_id = ?1 ORDER BY component <> ?2, power_mw DESC, component",
                Sql::of::<ComponentPowers>().select
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params![run, BACKGROUND], read::<ComponentPowers>)?;
            rows.collect()
        })
    }
}
