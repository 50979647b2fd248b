//! Live Prometheus metrics of a profiled process
//! ([`EnergyLayerBuilder::metrics_addr`](crate::EnergyLayerBuilder::metrics_addr),
//! `tracing-energy profile --metrics-addr ADDR`).
//!
//! While the layer's runs last, `GET /metrics` answers in the OpenMetrics text format:
//!
//! | series | type | what |
//! |---|---|---|
//! | `tracing_energy_power_watts{domain,source}` | gauge | the latest power window's mean power |
//! | `tracing_energy_energy_joules_total{domain}` | counter | all energy the source measured |
//! | `tracing_energy_span_energy_joules_total{span}` | counter | exclusive energy of finalized sections per span path |
//! | `tracing_energy_tokens_total` | counter | tokens finalized |
//! | `tracing_energy_dropped_records_total` | counter | span records the hot path dropped |
//!
//! Series from an estimating source (`estimate`) carry `estimated="true"`. A domain the
//! source does not measure has no series (unknown is never 0). Counters count from the
//! layer's start across all its runs (rotations and `--repeat` included). Span paths are
//! those of `tracing-energy spans` (layer indices dropped, e.g.
//! `decode;token;layer;mlp;down_proj` for the candle vocabulary), so their number stays
//! small.
//!
//! The processor thread updates the figures as samples arrive and rows are finalized; the
//! server runs on its own thread and reads them at each scrape. The hot path never touches
//! either.

mod live;
mod server;

pub use live::LiveMetrics;
pub use server::MetricsServer;
