//! `layer_metrics`: one row per [`LayerRecord`] (a transformer layer during one token).

use super::{timed, Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::records::{LayerRecord, Row};

/// The `layer_metrics` table.
pub(crate) struct Layers;

impl Table for Layers {
    const NAME: &'static str = "layer_metrics";
    const KEY: Key = Key::Id;
    const COLUMNS: &'static [Column] = &[
        Column::integer("token_index").not_null(),
        Column::integer("layer_index").not_null(),
    ];
    const TIMED: bool = true;
}

impl Write<LayerRecord> for Layers {
    fn bind(b: &mut Binder<'_, '_>, l: &LayerRecord) -> rusqlite::Result<()> {
        b.put(l.token_index as i64)?;
        b.put(l.layer_index)?;
        timed::bind(b, &l.measured)
    }
}

impl Read for Layers {
    type Row = Row<LayerRecord>;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Row<LayerRecord>> {
        r.row(
            |r| {
                Ok(LayerRecord {
                    token_index: r.next_u64()?,
                    layer_index: r.next()?,
                    measured: timed::read(r)?,
                })
            },
            |l| l.measured.duration_ms(),
        )
    }
}
