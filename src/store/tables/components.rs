//! `component_metrics`: one row per [`ComponentRecord`] (attention, MLP, norm, ... of a
//! layer during one token). `component_rollup`: one row per (run, layer, component kind),
//! the running totals of its component rows, kept by the writer as they are inserted so
//! that a run summary does not scan every component row.

use std::collections::HashMap;

use rusqlite::Transaction;

use super::{timed, Binder, Column, Key, Read, Reader, Sql, Table, Write};
use crate::store::records::{ComponentRecord, Row, RunId};

/// The `component_metrics` table.
pub(crate) struct Components;

impl Table for Components {
    const NAME: &'static str = "component_metrics";
    const KEY: Key = Key::Id;
    const COLUMNS: &'static [Column] = &[
        Column::integer("token_index").not_null(),
        Column::integer("layer_index"),
        Column::integer("component_index").not_null(),
        Column::text("component").not_null(),
        Column::text("name").not_null(),
    ];
    const TIMED: bool = true;
}

impl Write<ComponentRecord> for Components {
    fn bind(b: &mut Binder<'_, '_>, c: &ComponentRecord) -> rusqlite::Result<()> {
        b.put(c.token_index as i64)?;
        b.put(c.layer_index)?;
        b.put(c.component_index)?;
        b.put(c.component.as_str())?;
        b.put(c.name.as_str())?;
        timed::bind(b, &c.measured)
    }
}

impl Read for Components {
    type Row = Row<ComponentRecord>;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Row<ComponentRecord>> {
        r.row(
            |r| {
                Ok(ComponentRecord {
                    token_index: r.next_u64()?,
                    layer_index: r.next()?,
                    component_index: r.next()?,
                    component: r.next()?,
                    name: r.next()?,
                    measured: timed::read(r)?,
                })
            },
            |c| c.measured.duration_ms(),
        )
    }
}

/// The `component_rollup` table.
pub(crate) struct ComponentRollup;

impl Table for ComponentRollup {
    const NAME: &'static str = "component_rollup";
    const KEY: Key = Key::RunAnd;
    const COLUMNS: &'static [Column] = &[
        // The layer index, or -1 for model-level components.
        Column::integer("layer_key").not_null().key(),
        Column::text("component").not_null().key(),
        Column::integer("row_count").not_null(),
        Column::real("duration_ms").not_null(),
        Column::real("energy_mj").not_null(),
        // Rows with a known energy (the others add 0 to `energy_mj`).
        Column::integer("energy_rows").not_null(),
    ];
    const TIMED: bool = false;
    const ON_CONFLICT: &'static str = "
         ON CONFLICT (run_id, layer_key, component) DO UPDATE SET
            row_count = row_count + excluded.row_count,
            duration_ms = duration_ms + excluded.duration_ms,
            energy_mj = energy_mj + excluded.energy_mj,
            energy_rows = energy_rows + excluded.energy_rows";
}

/// Amounts of one (layer, component kind) to add to its `component_rollup` row.
#[derive(Debug, Default)]
struct Sums {
    rows: i64,
    duration_ms: f64,
    energy_mj: f64,
    energy_rows: i64,
}

/// One `component_rollup` row to add.
struct Adding<'a> {
    layer_key: i64,
    component: &'a str,
    sums: &'a Sums,
}

impl Write<Adding<'_>> for ComponentRollup {
    fn bind(b: &mut Binder<'_, '_>, a: &Adding<'_>) -> rusqlite::Result<()> {
        b.put(a.layer_key)?;
        b.put(a.component)?;
        b.put(a.sums.rows)?;
        b.put(a.sums.duration_ms)?;
        b.put(a.sums.energy_mj)?;
        b.put(a.sums.energy_rows)
    }
}

/// The totals of the component rows inserted by one command, per (layer key, component
/// kind), to add to the run's `component_rollup`.
#[derive(Default)]
pub(crate) struct Totals<'a>(HashMap<(i64, &'a str), Sums>);

impl<'a> Totals<'a> {
    /// Counts an inserted row.
    pub(crate) fn add(&mut self, r: &'a ComponentRecord) {
        let e = self
            .0
            .entry((r.layer_index.map_or(-1, i64::from), r.component.as_str()))
            .or_default();
        e.rows += 1;
        e.duration_ms += r.measured.duration_ms();
        if let Some(mj) = r.measured.energy_mj {
            e.energy_mj += mj;
            e.energy_rows += 1;
        }
    }

    /// Adds the totals to the run's `component_rollup` rows.
    pub(crate) fn commit(self, tx: &Transaction, run: RunId) -> rusqlite::Result<()> {
        let mut st = tx.prepare_cached(&Sql::of::<ComponentRollup>().insert_one)?;
        for ((layer_key, component), sums) in &self.0 {
            let row = Adding {
                layer_key: *layer_key,
                component,
                sums,
            };
            let mut b = Binder::new(&mut st);
            b.row::<ComponentRollup, _>(run, &row)?;
            b.execute()?;
        }
        Ok(())
    }
}

/// A run's component rows summed per (layer, component kind), as `component_rollup` holds
/// them.
pub(crate) struct ComponentGroup {
    /// The layer; `None` for model-level components.
    pub(crate) layer: Option<u32>,
    /// The component kind.
    pub(crate) component: String,
    /// Rows.
    pub(crate) count: u64,
    /// Summed duration (ms).
    pub(crate) duration_ms: f64,
    /// Summed energy (mJ); `None` when no row has one.
    pub(crate) energy_mj: Option<f64>,
}

impl Read for ComponentRollup {
    type Row = ComponentGroup;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<ComponentGroup> {
        r.skip();
        let layer_key: i64 = r.next()?;
        let layer = match layer_key {
            -1 => None,
            k => {
                Some(u32::try_from(k).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(1, k))?)
            }
        };
        let component = r.next()?;
        let count = r.next_u64()?;
        let duration_ms = r.next()?;
        let energy_mj: f64 = r.next()?;
        let energy_rows: i64 = r.next()?;
        Ok(ComponentGroup {
            layer,
            component,
            count,
            duration_ms,
            energy_mj: (energy_rows > 0).then_some(energy_mj),
        })
    }
}
