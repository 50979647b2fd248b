//! `tokens`: one row per [`TokenRecord`] (the prefill, or one decode step).

use super::{timed, Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::records::{Row, TokenRecord};

/// The `tokens` table.
pub(crate) struct Tokens;

impl Table for Tokens {
    const NAME: &'static str = "tokens";
    const KEY: Key = Key::Id;
    const COLUMNS: &'static [Column] = &[
        Column::integer("token_index").not_null(),
        Column::text("phase").not_null(),
        Column::integer("n_tokens").not_null().default("1"),
        Column::integer("token_id"),
        Column::text("text"),
    ];
    const TIMED: bool = true;
}

impl Write<TokenRecord> for Tokens {
    fn bind(b: &mut Binder<'_, '_>, t: &TokenRecord) -> rusqlite::Result<()> {
        b.put(t.token_index as i64)?;
        b.put(t.phase.as_str())?;
        b.put(t.n_tokens)?;
        b.put(t.token_id)?;
        b.put(t.text.as_deref())?;
        timed::bind(b, &t.measured)
    }
}

impl Read for Tokens {
    type Row = Row<TokenRecord>;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Row<TokenRecord>> {
        r.row(
            |r| {
                Ok(TokenRecord {
                    token_index: r.next_u64()?,
                    phase: r.next()?,
                    n_tokens: r.next()?,
                    token_id: r.next()?,
                    text: r.next()?,
                    measured: timed::read(r)?,
                })
            },
            |t| t.measured.duration_ms(),
        )
    }
}
