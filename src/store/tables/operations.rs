//! `deep_operation_metrics`: one row per [`OperationRecord`] (a matmul, rope, ... inside a
//! component).

use super::{timed, Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::records::{OperationRecord, Row};

/// The `deep_operation_metrics` table.
pub(crate) struct Operations;

impl Table for Operations {
    const NAME: &'static str = "deep_operation_metrics";
    const KEY: Key = Key::Id;
    const COLUMNS: &'static [Column] = &[
        Column::integer("token_index").not_null(),
        Column::integer("layer_index"),
        Column::integer("component_index").not_null(),
        Column::integer("op_index").not_null(),
        Column::text("operation").not_null(),
        Column::text("name").not_null(),
    ];
    const TIMED: bool = true;
}

impl Write<OperationRecord> for Operations {
    fn bind(b: &mut Binder<'_, '_>, o: &OperationRecord) -> rusqlite::Result<()> {
        b.put(o.token_index as i64)?;
        b.put(o.layer_index)?;
        b.put(o.component_index)?;
        b.put(o.op_index)?;
        b.put(o.operation.as_str())?;
        b.put(o.name.as_str())?;
        timed::bind(b, &o.measured)
    }
}

impl Read for Operations {
    type Row = Row<OperationRecord>;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Row<OperationRecord>> {
        r.row(
            |r| {
                Ok(OperationRecord {
                    token_index: r.next_u64()?,
                    layer_index: r.next()?,
                    component_index: r.next()?,
                    op_index: r.next()?,
                    operation: r.next()?,
                    name: r.next()?,
                    measured: timed::read(r)?,
                })
            },
            |o| o.measured.duration_ms(),
        )
    }
}
