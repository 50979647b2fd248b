//! `pipeline_sections`: one row per [`SectionRecord`] (a phase or any other span).

use super::{timed, Binder, Column, Key, Read, Reader, Table, Write};
use crate::store::records::{Row, SectionRecord};

/// The `pipeline_sections` table.
pub(crate) struct Sections;

impl Table for Sections {
    const NAME: &'static str = "pipeline_sections";
    const KEY: Key = Key::Id;
    const COLUMNS: &'static [Column] = &[
        Column::integer("section_index").not_null(),
        Column::integer("parent_index"),
        Column::text("name").not_null(),
        Column::text("kind").not_null(),
        Column::text("phase"),
        Column::integer("depth").not_null(),
        Column::text("fields"),
        Column::text("path"),
        Column::integer("polls"),
        Column::real("busy_ms"),
    ];
    const TIMED: bool = true;
}

impl Write<SectionRecord> for Sections {
    fn bind(b: &mut Binder<'_, '_>, s: &SectionRecord) -> rusqlite::Result<()> {
        b.put(s.section_index as i64)?;
        b.put(s.parent_index.map(|i| i as i64))?;
        b.put(s.name.as_str())?;
        b.put(s.kind.as_str())?;
        b.put(s.phase.as_deref())?;
        b.put(s.depth)?;
        b.put(s.fields.as_deref())?;
        b.put(s.path.as_deref())?;
        b.put(s.polls)?;
        b.put(s.busy_ms)?;
        timed::bind(b, &s.measured)
    }
}

impl Read for Sections {
    type Row = Row<SectionRecord>;

    fn read(r: &mut Reader<'_, '_>) -> rusqlite::Result<Row<SectionRecord>> {
        r.row(
            |r| {
                Ok(SectionRecord {
                    section_index: r.next_u64()?,
                    parent_index: r.next_opt_u64()?,
                    name: r.next()?,
                    kind: r.next()?,
                    phase: r.next()?,
                    depth: r.next()?,
                    fields: r.next()?,
                    path: r.next()?,
                    polls: r.next()?,
                    busy_ms: r.next()?,
                    measured: timed::read(r)?,
                })
            },
            |s| s.measured.duration_ms(),
        )
    }
}
