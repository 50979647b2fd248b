//! Rows on their way to the store: the per-table batches, the span-path roll-up, and the
//! run's running sum of attributed (exclusive) energy.

use std::collections::HashMap;
use std::sync::Arc;

use crate::attribution::{SectionEnergy, METHOD};
use crate::metrics::LiveMetrics;
use crate::store::{
    ComponentRecord, LayerRecord, Measured, OperationRecord, RunId, SectionRecord, SpanRollup,
    Store, TokenRecord,
};

/// Rows waiting to be handed to the store's writer.
pub(crate) struct Rows {
    pub(crate) tokens: Vec<TokenRecord>,
    pub(crate) layers: Vec<LayerRecord>,
    pub(crate) components: Vec<ComponentRecord>,
    pub(crate) ops: Vec<OperationRecord>,
    pub(crate) sections: Vec<SectionRecord>,
    rollup: HashMap<Arc<str>, SpanRollup>,
    /// Exclusive energy of every row pushed since the run began (mJ).
    pub(crate) attributed_mj: f64,
    /// The method stamped on rows with a known energy when they are written, where it is
    /// not the default (`overlap`, which [`measured`] sets).
    pub(crate) method: &'static str,
}

impl Default for Rows {
    fn default() -> Rows {
        Rows {
            tokens: Vec::new(),
            layers: Vec::new(),
            components: Vec::new(),
            ops: Vec::new(),
            sections: Vec::new(),
            rollup: HashMap::new(),
            attributed_mj: 0.0,
            method: METHOD,
        }
    }
}

impl Rows {
    /// Rows waiting.
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
            + self.layers.len()
            + self.components.len()
            + self.ops.len()
            + self.sections.len()
    }

    /// Counts a row's time and energy under its span path, and its exclusive energy as
    /// attributed.
    pub(crate) fn count(&mut self, path: &Arc<str>, m: &Measured, busy_ms: f64) {
        if let Some(x) = m.exclusive_energy_mj {
            self.attributed_mj += x;
        }
        let e = self
            .rollup
            .entry(Arc::clone(path))
            .or_insert_with(|| SpanRollup {
                path: path.to_string(),
                calls: 0,
                busy_ms: 0.0,
                energy_mj: None,
                exclusive_energy_mj: None,
            });
        e.calls += 1;
        e.busy_ms += busy_ms;
        if let Some(v) = m.energy_mj {
            *e.energy_mj.get_or_insert(0.0) += v;
        }
        if let Some(v) = m.exclusive_energy_mj {
            *e.exclusive_energy_mj.get_or_insert(0.0) += v;
        }
    }

    /// Counts the waiting tokens and each span path's exclusive energy in the live
    /// metrics (before [`write`](Self::write) hands them on).
    pub(crate) fn publish(&self, metrics: &LiveMetrics, estimated: bool) {
        metrics.tokens(self.tokens.len() as u64);
        for r in self.rollup.values() {
            // A counter never goes down: rounding can leave an exclusive energy a hair
            // below 0.
            if let Some(mj) = r.exclusive_energy_mj.filter(|mj| *mj > 0.0) {
                metrics.span_energy(&r.path, mj, estimated);
            }
        }
    }

    /// Hands the rows to the store, to be committed in one transaction: a token row is never
    /// on disk without its layer, component and operation rows.
    pub(crate) fn write(&mut self, store: &Store, run: RunId) {
        use crate::store::Command;
        if self.method != METHOD {
            self.stamp();
        }
        let mut together = Vec::new();
        if !self.tokens.is_empty() {
            together.push(Command::Tokens(run, std::mem::take(&mut self.tokens)));
        }
        if !self.layers.is_empty() {
            together.push(Command::Layers(run, std::mem::take(&mut self.layers)));
        }
        if !self.components.is_empty() {
            together.push(Command::Components(
                run,
                std::mem::take(&mut self.components),
            ));
        }
        if !self.ops.is_empty() {
            together.push(Command::Operations(run, std::mem::take(&mut self.ops)));
        }
        if !self.sections.is_empty() {
            together.push(Command::Sections(run, std::mem::take(&mut self.sections)));
        }
        if !self.rollup.is_empty() {
            let rollup = self.rollup.drain().map(|(_, v)| v).collect();
            together.push(Command::SpanRollup(run, rollup));
        }
        store.add_together(together);
    }
}

impl Rows {
    /// Sets the method of every waiting row whose energy is known to `self.method`.
    fn stamp(&mut self) {
        let method = self.method;
        let all = self
            .tokens
            .iter_mut()
            .map(|r| &mut r.measured)
            .chain(self.layers.iter_mut().map(|r| &mut r.measured))
            .chain(self.components.iter_mut().map(|r| &mut r.measured))
            .chain(self.ops.iter_mut().map(|r| &mut r.measured))
            .chain(self.sections.iter_mut().map(|r| &mut r.measured));
        for m in all {
            if m.energy_method.is_some() {
                m.energy_method = Some(method.to_string());
            }
        }
    }
}

/// A row's time and energy. `exclusive` is ignored where the energy is unknown.
pub(crate) fn measured(
    s: u64,
    e: u64,
    thread: u32,
    en: &SectionEnergy,
    exclusive: Option<f64>,
    span_id: Option<u64>,
) -> Measured {
    let known = en.total_mj.is_some();
    Measured {
        start_ns: s,
        end_ns: e,
        thread_id: Some(thread as u64),
        energy_mj: en.total_mj,
        exclusive_energy_mj: if known { exclusive } else { None },
        cpu_energy_mj: en.domains[0],
        gpu_energy_mj: en.domains[1],
        ane_energy_mj: en.domains[2],
        dram_energy_mj: en.domains[3],
        energy_method: known.then(|| METHOD.to_string()),
        energy_uncertainty_mj: en.uncertainty_mj,
        sample_windows: known.then_some(en.sample_windows),
        span_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn en(mj: Option<f64>) -> SectionEnergy {
        SectionEnergy {
            total_mj: mj,
            domains: [mj, None, None, None],
            uncertainty_mj: mj.map(|_| 0.5),
            sample_windows: u32::from(mj.is_some()),
        }
    }

    #[test]
    fn measured_keeps_unknown_as_unknown() {
        let m = measured(10, 30, 2, &en(None), Some(1.0), Some(5));
        assert_eq!((m.energy_mj, m.exclusive_energy_mj), (None, None));
        assert_eq!((m.energy_method, m.sample_windows), (None, None));
        assert_eq!((m.thread_id, m.span_id), (Some(2), Some(5)));
        let k = measured(10, 30, 2, &en(Some(4.0)), Some(1.0), None);
        assert_eq!((k.energy_mj, k.exclusive_energy_mj), (Some(4.0), Some(1.0)));
        assert_eq!(k.energy_method.as_deref(), Some(METHOD));
    }

    #[test]
    fn roll_up_sums_per_path_and_attributed_sums_exclusive() {
        let mut rows = Rows::default();
        let a: Arc<str> = Arc::from("request;compute");
        let b: Arc<str> = Arc::from("request");
        rows.count(
            &a,
            &measured(0, 10, 0, &en(Some(3.0)), Some(3.0), None),
            1.0,
        );
        rows.count(
            &a,
            &measured(0, 10, 0, &en(Some(2.0)), Some(2.0), None),
            2.0,
        );
        rows.count(
            &b,
            &measured(0, 10, 0, &en(Some(9.0)), Some(4.0), None),
            5.0,
        );
        rows.count(&b, &measured(0, 10, 0, &en(None), None, None), 1.0);
        assert!((rows.attributed_mj - 9.0).abs() < 1e-12);
        let r = &rows.rollup[&a];
        assert_eq!((r.calls, r.busy_ms), (2, 3.0));
        assert_eq!((r.energy_mj, r.exclusive_energy_mj), (Some(5.0), Some(5.0)));
        let r = &rows.rollup[&b];
        assert_eq!((r.calls, r.exclusive_energy_mj), (2, Some(4.0)));
    }
}
