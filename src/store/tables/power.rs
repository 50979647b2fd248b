//! `power_samples`: one row per `PowerSample` written, read back as a [`PowerRow`].

use super::{Binder, Column, Key, Read, Reader, Table, Write};
use crate::power::{Domain, PowerSample};
use crate::store::records::PowerRow;

/// The `power_samples` table.
pub(crate) struct PowerSamples;

impl Table for PowerSamples {
    const NAME: &'static str = "power_samples";
    const KEY: Key = Key::Id;
    const COLUMNS: &'static [Column] = &[
        Column::integer("start_ns").not_null(),
        Column::integer("end_ns").not_null(),
        Column::real("duration_ms").not_null(),
        Column::real("cpu_mw"),
        Column::real("gpu_mw"),
        Column::real("ane_mw"),
        Column::real("dram_mw"),
        Column::real("total_mw").not_null(),
        Column::real("cpu_mj"),
        Column::real("gpu_mj"),
        Column::real("ane_mj"),
        Column::real("dram_mj"),
        Column::real("total_mj").not_null(),
        Column::text("source").not_null(),
        Column::integer("estimated").not_null(),
    ];
    const TIMED: bool = false;
}

impl Write<PowerSample> for PowerSamples {
    fn bind(b: &mut Binder<'_, '_>, s: &PowerSample) -> rusqlite::Result<()> {
        b.put(s.start_ns as i64)?;
        b.put(s.end_ns as i64)?;
        b.put(s.duration_ns() as f64 / 1e6)?;
        // Domain::ALL is cpu, gpu, ane, dram: the columns' order.
        for d in Domain::ALL {
            b.put(s.power_mw(d))?;
        }
        b.put(s.total_mw())?;
        for d in Domain::ALL {
            b.put(s.energy.get(d))?;
        }
        b.put(s.total_mj)?;
        b.put(&*s.source)?;
        b.put(s.estimated)
    }
}

impl Read for PowerSamples {
    type Row = PowerRow;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<PowerRow> {
        r.skip(); // id
        r.skip(); // run_id
        Ok(PowerRow {
            start_ns: r.next_u64()?,
            end_ns: r.next_u64()?,
            duration_ms: r.next()?,
            cpu_mw: r.next()?,
            gpu_mw: r.next()?,
            ane_mw: r.next()?,
            dram_mw: r.next()?,
            total_mw: r.next()?,
            cpu_mj: r.next()?,
            gpu_mj: r.next()?,
            ane_mj: r.next()?,
            dram_mj: r.next()?,
            total_mj: r.next()?,
            source: r.next()?,
            estimated: r.next()?,
        })
    }
}
