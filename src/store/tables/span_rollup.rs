//! `span_rollup`: one row per (run, span path), the sums of the [`SpanRollup`] amounts
//! added to it (energy per code path, kept by the writer as rows are written).

use super::{Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::records::SpanRollup;

/// The `span_rollup` table.
pub(crate) struct SpanRollups;

impl Table for SpanRollups {
    const NAME: &'static str = "span_rollup";
    const KEY: Key = Key::RunAnd;
    const COLUMNS: &'static [Column] = &[
        Column::text("path").not_null().key(),
        Column::integer("calls").not_null(),
        Column::real("busy_ms").not_null(),
        Column::real("energy_mj"),
        Column::real("exclusive_energy_mj"),
    ];
    const TIMED: bool = false;
    /// Adds to the path's row; an unknown energy adds nothing.
    const ON_CONFLICT: &'static str = "
         ON CONFLICT (run_id, path) DO UPDATE SET
            calls = calls + excluded.calls,
            busy_ms = busy_ms + excluded.busy_ms,
            energy_mj = CASE WHEN excluded.energy_mj IS NULL THEN energy_mj
                ELSE COALESCE(energy_mj, 0) + excluded.energy_mj END,
            exclusive_energy_mj = CASE WHEN excluded.exclusive_energy_mj IS NULL
                THEN exclusive_energy_mj
                ELSE COALESCE(exclusive_energy_mj, 0) + excluded.exclusive_energy_mj END";
}

impl Write<SpanRollup> for SpanRollups {
    fn bind(b: &mut Binder<'_, '_>, r: &SpanRollup) -> rusqlite::Result<()> {
        b.put(r.path.as_str())?;
        b.put(r.calls as i64)?;
        b.put(r.busy_ms)?;
        b.put(r.energy_mj)?;
        b.put(r.exclusive_energy_mj)
    }
}

impl Read for SpanRollups {
    type Row = SpanRollup;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<SpanRollup> {
        r.skip();
        Ok(SpanRollup {
            path: r.next()?,
            calls: r.next_u64()?,
            busy_ms: r.next()?,
            energy_mj: r.next()?,
            exclusive_energy_mj: r.next()?,
        })
    }
}
