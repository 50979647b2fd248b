//! Soak: one long profile of repeated generations with the real model, sampling every
//! 100 ms, checking that the process's memory stays flat once warm.
//!
//! ```text
//! SOAK_MINUTES=30 cargo bench --bench soak     # the figure in BENCHMARKS.md
//! cargo bench --bench soak                     # 2 minutes
//! ```
//!
//! The energy layer records one run (`target/soak/soak.db`) while SmolLM2-135M (q8_0)
//! answers a rotating list of prompts, 48 tokens each, for the whole duration. Every 30 s
//! the resident set size (`/proc/self/statm`), the tokens generated so far and the
//! database's size are printed as a CSV line (also written to `target/soak/rss.csv`). At
//! the end: the RSS after warm-up (the first 20 % of the time, at least 2 minutes when the
//! soak is long enough) as min, median and max, and its change per 10 minutes from a
//! least-squares line.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing_energy::candle::{DeviceKind, GenerationOptions, Generator, Model, Requant};
use tracing_energy::power::SourceSpec;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

#[path = "../tests/common/model.rs"]
mod model;
use model::default_model;

const PROMPTS: [&str; 6] = [
    "What is the capital of France?",
    "Explain how a transformer model generates text.",
    "Write a short poem about the sea.",
    "List three uses of a hash table.",
    "Why is the sky blue?",
    "Describe a sunrise over mountains.",
];

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page / (1 << 20) as f64
}

fn main() {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let total = Duration::from_secs_f64(minutes * 60.0);
    let every = Duration::from_secs(30).min(total / 4);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("soak.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let model_path = default_model();

    let (layer, guard) = EnergyLayer::builder()
        .db(&db)
        .power(Some(SourceSpec::Estimate))
        .interval(Duration::from_millis(100))
        .model("SmolLM2-135M soak")
        .build()
        .expect("the energy layer");
    tracing_subscriber::registry().with(layer).init();
    let device = DeviceKind::Cpu.open(0).unwrap();
    let model = Model::load(&model_path, &device, Requant::Q8_0).expect("the model loads");
    let mut generator = Generator::new(model, GenerationOptions::default()).unwrap();

    let mut csv = std::fs::File::create(dir.join("rss.csv")).unwrap();
    let header = "elapsed_s,rss_mb,tokens,generations,db_mb";
    println!("{header}");
    writeln!(csv, "{header}").unwrap();
    let started = Instant::now();
    let mut next_probe = Duration::ZERO;
    let (mut tokens, mut generations) = (0usize, 0usize);
    let mut points: Vec<(f64, f64)> = Vec::new();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= next_probe {
            let db_mb = std::fs::metadata(&db).map_or(0.0, |m| m.len() as f64 / 1e6)
                + std::fs::metadata(format!("{}-wal", db.display()))
                    .map_or(0.0, |m| m.len() as f64 / 1e6);
            let line = format!(
                "{:.0},{:.1},{tokens},{generations},{db_mb:.1}",
                elapsed.as_secs_f64(),
                rss_mb()
            );
            println!("{line}");
            writeln!(csv, "{line}").unwrap();
            points.push((elapsed.as_secs_f64(), rss_mb()));
            next_probe += every;
        }
        if elapsed >= total {
            break;
        }
        let prompt = PROMPTS[generations % PROMPTS.len()];
        let out = generator
            .generate_chat(None, prompt, 48, |_| {})
            .expect("generation");
        tokens += out.tokens.len();
        generations += 1;
    }
    let report = guard.finish().expect("the run finishes");

    let warm_from = (minutes * 60.0 * 0.2).max(120.0_f64.min(minutes * 60.0 * 0.5));
    let warm: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warm_from)
        .collect();
    let mut rss: Vec<f64> = warm.iter().map(|p| p.1).collect();
    rss.sort_by(f64::total_cmp);
    let n = warm.len() as f64;
    let (mt, mr) = (
        warm.iter().map(|p| p.0).sum::<f64>() / n,
        warm.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let slope = warm.iter().map(|p| (p.0 - mt) * (p.1 - mr)).sum::<f64>()
        / warm.iter().map(|p| (p.0 - mt).powi(2)).sum::<f64>();
    println!(
        "\n{minutes} min, {generations} generations, {tokens} tokens; run {} with {} token rows, {} dropped records, processor peak {:.1} MB",
        report.run_id,
        report.tokens,
        report.dropped_records,
        report.peak_processor_bytes as f64 / 1e6
    );
    if rss.is_empty() {
        println!("too short for a warm-up window");
        return;
    }
    println!(
        "RSS after {warm_from:.0} s: min {:.1} MB, median {:.1} MB, max {:.1} MB; trend {:+.2} MB per 10 min",
        rss[0],
        rss[rss.len() / 2],
        rss[rss.len() - 1],
        slope * 600.0
    );
}
