//! The timed columns every timed row shares (`pipeline_sections`, `tokens`,
//! `layer_metrics`, `component_metrics`, `deep_operation_metrics`): one [`Measured`].

use super::{Binder, Column, Reader};
use crate::store::records::Measured;

/// The timed columns, in the order [`bind`] and [`read`] take them. The migrations add
/// them after each table's own columns (`span_id` came later, with V2).
pub(crate) const COLUMNS: &[Column] = &[
    Column::integer("start_ns").not_null(),
    Column::integer("end_ns").not_null(),
    Column::real("duration_ms").not_null(),
    Column::integer("thread_id"),
    Column::real("energy_mj"),
    Column::real("exclusive_energy_mj"),
    Column::real("cpu_energy_mj"),
    Column::real("gpu_energy_mj"),
    Column::real("ane_energy_mj"),
    Column::real("dram_energy_mj"),
    Column::text("energy_method"),
    Column::real("energy_uncertainty_mj"),
    Column::integer("sample_windows"),
    Column::integer("span_id"),
];

/// Puts the timed columns of `m`.
pub(crate) fn bind(b: &mut Binder<'_, '_>, m: &Measured) -> rusqlite::Result<()> {
    b.put(m.start_ns as i64)?;
    b.put(m.end_ns as i64)?;
    b.put(m.duration_ms())?;
    b.put(m.thread_id.map(|t| t as i64))?;
    b.put(m.energy_mj)?;
    b.put(m.exclusive_energy_mj)?;
    b.put(m.cpu_energy_mj)?;
    b.put(m.gpu_energy_mj)?;
    b.put(m.ane_energy_mj)?;
    b.put(m.dram_energy_mj)?;
    b.put(m.energy_method.as_deref())?;
    b.put(m.energy_uncertainty_mj)?;
    b.put(m.sample_windows)?;
    b.put(m.span_id.map(|i| i as i64))
}

/// Reads the timed columns (`duration_ms` is `end - start`, so it is passed over).
pub(crate) fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Measured> {
    let start_ns = r.next_u64()?;
    let end_ns = r.next_u64()?;
    r.skip();
    Ok(Measured {
        start_ns,
        end_ns,
        thread_id: r.next_opt_u64()?,
        energy_mj: r.next()?,
        exclusive_energy_mj: r.next()?,
        cpu_energy_mj: r.next()?,
        gpu_energy_mj: r.next()?,
        ane_energy_mj: r.next()?,
        dram_energy_mj: r.next()?,
        energy_method: r.next()?,
        energy_uncertainty_mj: r.next()?,
        sample_windows: r.next()?,
        span_id: r.next_opt_u64()?,
    })
}
