//! The live figures of a profiled process, in Prometheus' data model: updated by the
//! processor thread as samples arrive and rows are finalized, read by the metrics server
//! at each scrape. The hot path never touches them.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::power::{Domain, PowerSample};

/// A series' labels: `(name, value)` pairs, in order. A `Vec` so that `estimated="true"`
/// is present only where the source estimates.
type Labels = Vec<(&'static str, String)>;

/// The metrics of one profiled process, across all its runs (counters only grow).
pub struct LiveMetrics {
    registry: Registry,
    power: Family<Labels, Gauge<f64, AtomicU64>>,
    energy: Family<Labels, Counter<f64, AtomicU64>>,
    span_energy: Family<Labels, Counter<f64, AtomicU64>>,
    tokens: Counter,
    dropped: Counter,
    /// The last value of the hot path's drop count that was added to `dropped`.
    dropped_seen: AtomicU64,
}

impl Default for LiveMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveMetrics {
    /// Empty metrics, registered under their names.
    pub fn new() -> LiveMetrics {
        let power = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let energy = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let span_energy = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let tokens = Counter::default();
        let dropped = Counter::default();
        let mut registry = Registry::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "tracing_energy_power_watts",
            "Mean power of the latest power window, per domain (W)",
            power.clone(),
        );
        registry.register(
            "tracing_energy_energy_joules",
            "Energy measured (or estimated) by the power source since the profiler started, per domain (J)",
            energy.clone(),
        );
        registry.register(
            "tracing_energy_span_energy_joules",
            "Exclusive energy of finalized sections per span path (layer indices dropped), since the profiler started (J)",
            span_energy.clone(),
        );
        registry.register(
            "tracing_energy_tokens",
            "Tokens finalized since the profiler started",
            tokens.clone(),
        );
        registry.register(
            "tracing_energy_dropped_records",
            "Span records the hot path dropped (its ring was full) since the profiler started",
            dropped.clone(),
        );
        LiveMetrics {
            registry,
            power,
            energy,
            span_energy,
            tokens,
            dropped,
            dropped_seen: AtomicU64::new(0),
        }
    }

    /// Counts new power windows: each domain's energy, and the last window's mean power.
    pub(crate) fn samples(&self, samples: &[PowerSample]) {
        for s in samples {
            for domain in Domain::ALL {
                if let Some(mj) = s.energy.get(domain) {
                    let labels = labels([("domain", domain.name().to_string())], s.estimated);
                    self.energy.get_or_create(&labels).inc_by(mj / 1000.0);
                }
            }
        }
        if let Some(last) = samples.last() {
            for domain in Domain::ALL {
                let labels = labels(
                    [
                        ("domain", domain.name().to_string()),
                        ("source", last.source.to_string()),
                    ],
                    last.estimated,
                );
                match last.power_mw(domain) {
                    Some(mw) => {
                        self.power.get_or_create(&labels).set(mw / 1000.0);
                    }
                    // Not measured in the latest window: no value rather than a stale one.
                    None => {
                        self.power.remove(&labels);
                    }
                }
            }
        }
    }

    /// Counts a span path's exclusive energy (mJ) from finalized sections.
    pub(crate) fn span_energy(&self, path: &str, exclusive_mj: f64, estimated: bool) {
        let labels = labels([("span", path.to_string())], estimated);
        self.span_energy
            .get_or_create(&labels)
            .inc_by(exclusive_mj / 1000.0);
    }

    /// Counts finalized tokens.
    pub(crate) fn tokens(&self, n: u64) {
        self.tokens.inc_by(n);
    }

    /// Brings the dropped-records counter up to the hot path's count `total`.
    pub(crate) fn dropped_up_to(&self, total: u64) {
        let seen = self.dropped_seen.swap(total, Ordering::Relaxed);
        if total > seen {
            self.dropped.inc_by(total - seen);
        }
    }

    /// The metrics in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

fn labels<const N: usize>(base: [(&'static str, String); N], estimated: bool) -> Labels {
    let mut v: Labels = base.into_iter().collect();
    if estimated {
        v.push(("estimated", "true".to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::DomainEnergy;
    use std::sync::Arc;

    fn sample(start_ms: u64, end_ms: u64, cpu: f64, gpu: Option<f64>, est: bool) -> PowerSample {
        let energy = DomainEnergy {
            cpu: Some(cpu),
            gpu,
            ..Default::default()
        };
        let source = if est { "estimate" } else { "rapl" };
        PowerSample::new(
            start_ms * 1_000_000,
            end_ms * 1_000_000,
            energy,
            Arc::from(source),
            est,
        )
        .unwrap()
    }

    /// The value of the series whose line starts with `prefix` (name and labels).
    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn power_is_the_last_window_and_energy_the_sum() {
        let m = LiveMetrics::new();
        // 100 ms windows: 500 mJ = 5 W, then 1000 mJ = 10 W; GPU known in the first only.
        m.samples(&[sample(0, 100, 500.0, Some(200.0), false)]);
        m.samples(&[sample(100, 200, 1000.0, None, false)]);
        let t = m.encode();
        let p = value(
            &t,
            "tracing_energy_power_watts{domain=\"cpu\",source=\"rapl\"}",
        );
        assert_eq!(p, Some(10.0), "{t}");
        let e = value(&t, "tracing_energy_energy_joules_total{domain=\"cpu\"}");
        assert_eq!(e, Some(1.5), "{t}");
        let g = value(&t, "tracing_energy_energy_joules_total{domain=\"gpu\"}");
        assert_eq!(g, Some(0.2), "{t}");
        // The latest window did not measure the GPU: no power value, not a stale one.
        assert!(!t.contains("power_watts{domain=\"gpu\""), "{t}");
        // A domain never measured has no series (unknown is not 0), and nothing is
        // labelled estimated.
        assert!(!t.contains("domain=\"dram\""), "{t}");
        assert!(!t.contains("estimated="), "{t}");
        assert!(t.contains("# TYPE tracing_energy_power_watts gauge"), "{t}");
        assert!(
            t.contains("# TYPE tracing_energy_energy_joules counter"),
            "{t}"
        );
    }

    #[test]
    fn estimates_are_labelled() {
        let m = LiveMetrics::new();
        m.samples(&[sample(0, 100, 300.0, None, true)]);
        m.span_energy("decode;token;layer;mlp", 250.0, true);
        let t = m.encode();
        assert_eq!(
            value(
                &t,
                "tracing_energy_power_watts{domain=\"cpu\",source=\"estimate\",estimated=\"true\"}"
            ),
            Some(3.0),
            "{t}"
        );
        assert_eq!(
            value(
                &t,
                "tracing_energy_span_energy_joules_total{span=\"decode;token;layer;mlp\",estimated=\"true\"}"
            ),
            Some(0.25),
            "{t}"
        );
    }

    #[test]
    fn spans_tokens_and_drops_accumulate() {
        let m = LiveMetrics::new();
        m.span_energy("request", 1500.0, false);
        m.span_energy("request", 500.0, false);
        m.tokens(3);
        m.tokens(2);
        m.dropped_up_to(4);
        m.dropped_up_to(4);
        m.dropped_up_to(7);
        let t = m.encode();
        assert_eq!(
            value(
                &t,
                "tracing_energy_span_energy_joules_total{span=\"request\"}"
            ),
            Some(2.0),
            "{t}"
        );
        assert_eq!(value(&t, "tracing_energy_tokens_total "), Some(5.0), "{t}");
        assert_eq!(
            value(&t, "tracing_energy_dropped_records_total "),
            Some(7.0),
            "{t}"
        );
        assert!(t.trim_end().ends_with("# EOF"), "{t}");
    }
}
