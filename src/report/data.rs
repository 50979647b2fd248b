//! Bulk reads for the reports, through the store's reading connection (one snapshot when
//! the caller holds a [`Store::read_snapshot`]).
//!
//! Rows come from the store's run-wide reads; the grouped sums a report needs are queried
//! here.

use crate::store::{ComponentRecord, LayerRecord, OperationRecord, Row, Run, RunId, Store};
use crate::{Error, Result};

/// Reads of one store, with its write queue flushed first.
pub(super) struct Reader<'a> {
    store: &'a Store,
}

/// The run, or [`Error::UnknownRun`].
pub(super) fn run_or_error(store: &Store, run: RunId) -> Result<Run> {
    store.get_run(run)?.ok_or_else(|| Error::UnknownRun {
        path: store.path().to_path_buf(),
        run: run.to_string(),
    })
}

#[derive(Debug, Clone)]
pub(super) struct ComponentGroup {
    /// The phase of the tokens (`prefill`, `decode`, ...).
    pub phase: String,
    /// The layer; `None` for model-level components.
    pub layer: Option<u32>,
    /// The component kind.
    pub component: String,
    /// Total inclusive energy; `None` when no row has one.
    pub energy_mj: Option<f64>,
    /// Total duration.
    pub duration_ms: f64,
    /// Token rows the group covers.
    pub token_rows: u64,
    /// Tokens those rows processed (the prompt length for the prefill).
    pub tokens: u64,
}

/// Energy and time of one (phase, layer) group of layer rows.
#[derive(Debug, Clone)]
pub(super) struct LayerGroup {
    /// The phase of the tokens.
    pub phase: String,
    /// The layer.
    pub layer: u32,
    /// Total inclusive energy; `None` when no row has one.
    pub energy_mj: Option<f64>,
}

impl<'a> Reader<'a> {
    /// Flushes the store's write queue. Queries go through the store's own connection, so
    /// that a report read inside [`Store::read_snapshot`] is one consistent snapshot.
    pub fn open(store: &'a Store) -> Result<Reader<'a>> {
        store.flush()?;
        Ok(Reader { store })
    }

    /// Every layer row of the run, by token and layer.
    pub fn layers(&self, run: RunId) -> Result<Vec<Row<LayerRecord>>> {
        self.store.get_run_layers(run)
    }

    pub fn components(&self, run: RunId) -> Result<Vec<Row<ComponentRecord>>> {
        self.store.get_run_components(run)
    }

    pub fn operations(&self, run: RunId) -> Result<Vec<Row<OperationRecord>>> {
        self.store.get_run_operations(run)
    }

    pub fn component_groups(&self, run: RunId) -> Result<Vec<ComponentGroup>> {
        self.store.with_conn(|conn| {
            // Per token first, so that a kind appearing twice in a layer counts its token once.
            let mut st = conn.prepare(
                "SELECT COALESCE(t.phase, 'unknown'), g.layer_index, g.component,
                        SUM(g.e), SUM(g.known), SUM(g.d), COUNT(*), SUM(COALESCE(t.n_tokens, 1))
                 FROM (SELECT token_index, layer_index, component, SUM(energy_mj) AS e,
                              COUNT(energy_mj) AS known, SUM(duration_ms) AS d
                       FROM component_metrics WHERE run_id = ?1
                       GROUP BY token_index, layer_index, component) g
                 LEFT JOIN tokens t ON t.run_id = ?1 AND t.token_index = g.token_index
                 GROUP BY 1, 2, 3
                 ORDER BY MIN(g.token_index), 2, 3",
            )?;
            let rows = st.query_map([run], |r| {
                let known: i64 = r.get(4)?;
                Ok(ComponentGroup {
                    phase: r.get(0)?,
                    layer: r.get(1)?,
                    component: r.get(2)?,
                    energy_mj: if known > 0 { r.get(3)? } else { None },
                    duration_ms: r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
                    token_rows: r.get::<_, i64>(6)?.max(0) as u64,
                    tokens: r.get::<_, i64>(7)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Layer rows summed per (token phase, layer).
    pub fn layer_groups(&self, run: RunId) -> Result<Vec<LayerGroup>> {
        self.store.with_conn(|conn| {
            let mut st = conn.prepare(
                "SELECT COALESCE(t.phase, 'unknown'), l.layer_index, SUM(l.energy_mj),
                        COUNT(l.energy_mj)
                 FROM layer_metrics l
                 LEFT JOIN tokens t ON t.run_id = l.run_id AND t.token_index = l.token_index
                 WHERE l.run_id = ?1
                 GROUP BY 1, 2 ORDER BY MIN(l.token_index), 2",
            )?;
            let rows = st.query_map([run], |r| {
                let known: i64 = r.get(3)?;
                Ok(LayerGroup {
                    phase: r.get(0)?,
                    layer: r.get(1)?,
                    energy_mj: if known > 0 { r.get(2)? } else { None },
                })
            })?;
            rows.collect()
        })
    }
}
