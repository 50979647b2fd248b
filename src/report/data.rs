//! Bulk reads for the reports, through the store's reading connection (one snapshot when
//! the caller holds a [`Store::read_snapshot`]).
//!
//! Rows come from the store's run-wide reads, and the grouped sums a report needs from the
//! store's grouped reads (`Store::get_component_groups`, `Store::get_layer_groups`): no SQL
//! is written here.

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

/// Energy and time of one (phase, layer, component kind) group of component rows.
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

    /// Component rows summed per (token phase, layer, component kind), in order of first
    /// appearance ([`Store::get_component_groups`]).
    pub fn component_groups(&self, run: RunId) -> Result<Vec<ComponentGroup>> {
        Ok(self
            .store
            .get_component_groups(run)?
            .into_iter()
            .map(
                |(phase, layer, component, energy_mj, duration_ms, token_rows, tokens)| {
                    ComponentGroup {
                        phase,
                        layer,
                        component,
                        energy_mj,
                        duration_ms,
                        token_rows,
                        tokens,
                    }
                },
            )
            .collect())
    }

    /// Layer rows summed per (token phase, layer) ([`Store::get_layer_groups`]).
    pub fn layer_groups(&self, run: RunId) -> Result<Vec<LayerGroup>> {
        Ok(self
            .store
            .get_layer_groups(run)?
            .into_iter()
            .map(|(phase, layer, energy_mj)| LayerGroup {
                phase,
                layer,
                energy_mj,
            })
            .collect())
    }
}
