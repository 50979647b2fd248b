//! `component_power`: one row per (run, component kind) of a [`ComponentPower`] fit, the
//! background included.

use super::{Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::component_power::ComponentPower;

/// The `component_power` table.
pub(crate) struct ComponentPowers;

impl Table for ComponentPowers {
    const NAME: &'static str = "component_power";
    const KEY: Key = Key::RunAnd;
    const COLUMNS: &'static [Column] = &[
        Column::text("component").not_null().key(),
        Column::real("power_mw").not_null(),
        Column::real("stderr_mw").not_null(),
        Column::integer("windows").not_null(),
        Column::text("method").not_null(),
    ];
    const TIMED: bool = false;
}

impl Write<ComponentPower> for ComponentPowers {
    fn bind(b: &mut Binder<'_, '_>, r: &ComponentPower) -> rusqlite::Result<()> {
        b.put(r.component.as_str())?;
        b.put(r.power_mw)?;
        b.put(r.stderr_mw)?;
        b.put(r.windows as i64)?;
        b.put(r.method.as_str())
    }
}

impl Read for ComponentPowers {
    type Row = ComponentPower;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<ComponentPower> {
        r.skip();
        Ok(ComponentPower {
            component: r.next()?,
            power_mw: r.next()?,
            stderr_mw: r.next()?,
            windows: r.next_u64()?,
            method: r.next()?,
        })
    }
}
