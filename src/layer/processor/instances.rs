//! Span instances: a span that has rows of its own (a phase, or any span the vocabulary
//! does not know) gets one row per instance, however often it is entered. An async span is
//! entered once per poll: its polls' times and energies are summed, and the row is written
//! when the span closes (or when the run ends or rotates, with what it has so far).

use std::collections::HashMap;
use std::sync::Arc;

use super::rows::{measured, Rows};
use crate::attribution::SectionEnergy;
use crate::layer::hot::SpanData;
use crate::layer::Role;
use crate::store::SectionRecord;

struct Instance {
    data: Arc<SpanData>,
    thread: u32,
    first_start: u64,
    last_end: u64,
    polls: u32,
    busy_ns: u64,
    energy: SectionEnergy,
    exclusive: Option<f64>,
    closed_at: Option<u64>,
    /// The phase row of a token-yielding phase: its energy is in its token row, so it is
    /// left out of the span-path roll-up.
    unit_phase: bool,
}

/// Open span instances, keyed by span serial.
#[derive(Default)]
pub(crate) struct Instances {
    open: HashMap<u64, Instance>,
    closed: Vec<u64>,
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Instances {
    /// Instances held now.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Adds one poll (an enter-to-exit) of a span instance.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_poll(
        &mut self,
        data: &Arc<SpanData>,
        thread: u32,
        start: u64,
        end: u64,
        energy: &SectionEnergy,
        exclusive: Option<f64>,
        unit_phase: bool,
    ) {
        let i = self.open.entry(data.serial).or_insert_with(|| Instance {
            data: Arc::clone(data),
            thread,
            first_start: start,
            last_end: end,
            polls: 0,
            busy_ns: 0,
            energy: SectionEnergy::default(),
            exclusive: None,
            closed_at: None,
            unit_phase,
        });
        i.first_start = i.first_start.min(start);
        i.last_end = i.last_end.max(end);
        i.polls += 1;
        i.busy_ns += end - start;
        i.energy.total_mj = add(i.energy.total_mj, energy.total_mj);
        for (d, e) in i.energy.domains.iter_mut().zip(energy.domains) {
            *d = add(*d, e);
        }
        i.energy.uncertainty_mj = add(i.energy.uncertainty_mj, energy.uncertainty_mj);
        i.energy.sample_windows += energy.sample_windows;
        if energy.total_mj.is_some() {
            i.exclusive = add(i.exclusive, exclusive);
        }
    }

    /// The span closed at `at`: its row is written by [`Instances::emit_closed`]. Returns
    /// false when it has no instance (it was never entered in this run).
    pub(crate) fn close(&mut self, serial: u64, at: u64) -> bool {
        match self.open.get_mut(&serial) {
            Some(i) => {
                i.closed_at = Some(at.max(i.last_end));
                self.closed.push(serial);
                true
            }
            None => false,
        }
    }

    /// Writes the rows of the instances closed so far.
    pub(crate) fn emit_closed(&mut self, rows: &mut Rows) {
        for serial in std::mem::take(&mut self.closed) {
            if let Some(i) = self.open.remove(&serial) {
                emit(i, rows);
            }
        }
    }

    /// Writes every instance's row (closed or not): the run ends or rotates. Polls that
    /// come later start a new row in the next run.
    pub(crate) fn emit_all(&mut self, rows: &mut Rows) {
        self.closed.clear();
        let mut all: Vec<Instance> = self.open.drain().map(|(_, i)| i).collect();
        all.sort_by_key(|i| i.first_start);
        for i in all {
            emit(i, rows);
        }
    }
}

fn emit(i: Instance, rows: &mut Rows) {
    let d = &i.data;
    let end = i.closed_at.unwrap_or(i.last_end);
    let busy_ms = i.busy_ns as f64 / 1e6;
    let (kind, phase) = match &d.role {
        Role::Phase(p) => ("phase", Some(p.clone())),
        _ => ("section", None),
    };
    let m = measured(
        i.first_start,
        end,
        i.thread,
        &i.energy,
        i.exclusive,
        Some(d.serial),
    );
    if !i.unit_phase {
        rows.count(&d.path, &m, busy_ms);
    }
    rows.sections.push(SectionRecord {
        section_index: d.serial,
        parent_index: (d.parent_row != 0).then_some(d.parent_row),
        name: d.name.to_string(),
        kind: kind.to_string(),
        phase,
        depth: d.depth,
        fields: d.fields.lock().to_json(),
        path: Some(d.path.to_string()),
        polls: Some(i.polls),
        busy_ms: Some(busy_ms),
        measured: m,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::vocabulary::Fields;
    use parking_lot::Mutex;

    fn span(serial: u64, role: Role) -> Arc<SpanData> {
        Arc::new(SpanData {
            serial,
            name: "handle",
            role,
            fields: Mutex::new(Fields::default()),
            token_unit: false,
            row: true,
            path: Arc::from("request;handle"),
            parent_row: 3,
            depth: 1,
        })
    }

    fn energy(mj: f64) -> SectionEnergy {
        SectionEnergy {
            total_mj: Some(mj),
            domains: [Some(mj), None, None, None],
            uncertainty_mj: Some(mj / 10.0),
            sample_windows: 1,
        }
    }

    #[test]
    fn polls_are_summed_into_one_row_at_close() {
        let d = span(8, Role::Generic);
        let mut inst = Instances::default();
        let mut rows = Rows::default();
        inst.add_poll(&d, 0, 100, 150, &energy(5.0), Some(4.0), false);
        inst.add_poll(&d, 1, 300, 320, &energy(2.0), Some(2.0), false);
        inst.emit_closed(&mut rows);
        assert!(rows.sections.is_empty(), "not closed yet");
        assert!(inst.close(8, 400));
        inst.emit_closed(&mut rows);
        let r = &rows.sections[0];
        assert_eq!((r.section_index, r.parent_index, r.depth), (8, Some(3), 1));
        assert_eq!(r.polls, Some(2));
        assert_eq!(r.busy_ms, Some(70.0 / 1e6));
        assert_eq!((r.measured.start_ns, r.measured.end_ns), (100, 400));
        assert_eq!(r.measured.energy_mj, Some(7.0));
        assert_eq!(r.measured.exclusive_energy_mj, Some(6.0));
        assert_eq!(r.measured.span_id, Some(8));
        assert!((rows.attributed_mj - 6.0).abs() < 1e-12);
        assert_eq!(inst.len(), 0);
    }

    #[test]
    fn unknown_energy_stays_unknown_and_unclosed_spans_are_written_at_the_end() {
        let d = span(9, Role::Phase("decode".into()));
        let mut inst = Instances::default();
        let mut rows = Rows::default();
        inst.add_poll(&d, 0, 0, 10, &SectionEnergy::default(), None, false);
        assert!(!inst.close(1234, 5), "never entered");
        inst.emit_all(&mut rows);
        let r = &rows.sections[0];
        assert_eq!(r.kind, "phase");
        assert_eq!(r.measured.energy_mj, None);
        assert_eq!(r.measured.exclusive_energy_mj, None);
        assert_eq!(r.measured.end_ns, 10, "last exit when never closed");
    }
}
