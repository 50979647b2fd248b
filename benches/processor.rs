//! How many section records per second the processor turns into rows, on one core: one
//! thread enters and exits a span N times as fast as it can (about 40 ns a pair), with no
//! power source, so the wall time from the first record to `guard.finish()` returning is
//! the processor's time to take, attribute and hand over every record (a lower bound on
//! its rate; the producer is 25x faster).
//!
//! A second table does the same with candle-transformers' `quantized_llama` spans, named
//! and nested as the real model enters them (394 per token, 30 layers), so that the cost
//! of a token's tree, its ~400 rows and their writing shows.
//!
//! ```text
//! cargo bench --bench processor            # 2,000,000 records, then 1,000 tokens; 3 runs each
//! ```

use std::time::Instant;

use tracing::info_span;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

const LLAMA: &str = "candle_transformers::models::quantized_llama";

/// `tokens` tokens of candle-shaped spans: per token a `token` span holding one forward
/// (`model`) of 30 layers (`rms-norm`, `attn` with 4 `qmatmul` and 2 `attn-rot`, `attn-mlp`
/// with `rms-norm` and 3 `qmatmul`), then the final `rms-norm` and `output` (`qmatmul`).
fn candle_shaped(tokens: u64) {
    use tracing::{span, Level};
    let model = span!(target: LLAMA, Level::TRACE, "model");
    let layers: Vec<_> = (0..30)
        .map(|_| {
            (
                span!(target: LLAMA, Level::TRACE, "rms-norm"),
                span!(target: LLAMA, Level::TRACE, "attn"),
                [(); 4].map(|_| span!(target: LLAMA, Level::TRACE, "qmatmul")),
                span!(target: LLAMA, Level::TRACE, "attn-rot"),
                span!(target: LLAMA, Level::TRACE, "attn-mlp"),
                span!(target: LLAMA, Level::TRACE, "rms-norm"),
                [(); 3].map(|_| span!(target: LLAMA, Level::TRACE, "qmatmul")),
            )
        })
        .collect();
    let norm = span!(target: LLAMA, Level::TRACE, "rms-norm");
    let output = span!(target: LLAMA, Level::TRACE, "output");
    let head = span!(target: LLAMA, Level::TRACE, "qmatmul");
    let decode = info_span!("decode");
    let _d = decode.enter();
    for index in 0..tokens {
        let token = info_span!("token", index);
        let _t = token.enter();
        let _m = model.enter();
        for (n1, attn, qkvo, rot, mlp, n2, gud) in &layers {
            n1.in_scope(|| ());
            attn.in_scope(|| {
                for q in &qkvo[..3] {
                    q.in_scope(|| ());
                }
                rot.in_scope(|| ());
                rot.in_scope(|| ());
                qkvo[3].in_scope(|| ());
            });
            mlp.in_scope(|| {
                n2.in_scope(|| ());
                for g in gud {
                    g.in_scope(|| ());
                }
            });
        }
        norm.in_scope(|| ());
        output.in_scope(|| head.in_scope(|| ()));
    }
}

/// Runs `work` under a fresh energy layer (no power source); returns the run's report and
/// the wall time from the first record to `finish` returning.
fn measure(work: impl FnOnce()) -> (tracing_energy::RunReport, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (layer, guard) = EnergyLayer::builder()
        .db(dir.path().join("bench.db"))
        .power(None)
        .build()
        .expect("layer");
    let sub = tracing_subscriber::registry().with(layer);
    let t0 = Instant::now();
    tracing::subscriber::with_default(sub, work);
    let report = guard.finish().expect("finish");
    (report, t0.elapsed().as_secs_f64())
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    println!("| run | records | wall (s) | records/s | dropped |");
    println!("|---|---|---|---|---|");
    for run in 1..=3 {
        let (report, wall) = measure(|| {
            let root = info_span!("root");
            let _r = root.enter();
            let child = info_span!("child");
            for _ in 0..n {
                child.in_scope(|| ());
            }
        });
        println!(
            "| {run} | {} | {wall:.2} | {:.0} | {} |",
            report.sections,
            report.sections as f64 / wall,
            report.dropped_records
        );
    }
    let tokens = 1_000;
    println!();
    println!("| run | tokens | records | wall (s) | ms per token | records/s | dropped |");
    println!("|---|---|---|---|---|---|---|");
    for run in 1..=3 {
        let (report, wall) = measure(|| candle_shaped(tokens));
        println!(
            "| {run} | {} | {} | {wall:.2} | {:.3} | {:.0} | {} |",
            report.tokens,
            report.sections,
            wall * 1e3 / tokens as f64,
            report.sections as f64 / wall,
            report.dropped_records
        );
    }
}
