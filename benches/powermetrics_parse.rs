//! What one powermetrics document costs the sampler thread to parse (`parse_document_for`:
//! the plist, the energies and, where the document lists tasks, powermetrics' own task),
//! with and without the `tasks` sampler's list: the price of `--powermetrics-tasks`.
//!
//! ```text
//! cargo bench --bench powermetrics_parse      # each capture's documents for ~2 s
//! ```
//!
//! Captures: the copied ones in `tests/fixtures/powermetrics/`, and those that stay in
//! `../shared/fixtures/powermetrics/` (their licences do not allow copying) when present;
//! a missing one is skipped with a notice.

use std::time::{Duration, Instant};

use tracing_energy::power::plist_stream::{parse_document_for, PlistSplitter};

#[allow(dead_code)]
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
use fixtures::{local_fixture, shared_fixture, M1PRO_29};

fn main() {
    let captures = [
        (
            "cpu_power,gpu_power,thermal (M2 Ultra)",
            Some(local_fixture(
                "m2ultra_mac14-14_macos14.4_23E224_cpu_gpu_thermal.plist",
            )),
        ),
        (
            "cpu_power,gpu_power,thermal (M1)",
            Some(local_fixture(
                "m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_a.plist",
            )),
        ),
        (
            "+ tasks, flat list (M4 Max)",
            Some(local_fixture(
                "m4max_mac16-5_macos26.2_25C56_cpu_gpu_thermal_tasks_disk.plist",
            )),
        ),
        (
            "default + process flags, coalitions (M1 Pro, 29 docs)",
            shared_fixture(M1PRO_29),
        ),
        (
            "all samplers (M1)",
            shared_fixture("m1_macbookair10-1_macos14.3.1_23D56_all_samplers.plist"),
        ),
    ];
    println!("| capture | KB per document | task list | us per document | MB/s |");
    println!("|---|---:|---|---:|---:|");
    for (label, path) in captures {
        let Some(path) = path else { continue };
        let bytes = std::fs::read(&path).expect("read the capture");
        let docs = PlistSplitter::new().push(&bytes);
        assert!(!docs.is_empty(), "{}: no document", path.display());
        let doc_bytes: usize = docs.iter().map(Vec::len).sum();
        // Warm up, and check every document parses.
        let mut with_tasks = false;
        for d in &docs {
            let r = parse_document_for(d, Some(1)).expect("a usable document");
            with_tasks |= r.sampler_task.is_some();
        }
        let run_for = Duration::from_secs(2);
        let started = Instant::now();
        let mut parsed = 0usize;
        while started.elapsed() < run_for {
            for d in &docs {
                std::hint::black_box(parse_document_for(std::hint::black_box(d), Some(1)).ok());
            }
            parsed += docs.len();
        }
        let per_doc = started.elapsed().as_secs_f64() / parsed as f64;
        let mean_bytes = doc_bytes as f64 / docs.len() as f64;
        println!(
            "| {label} | {:.0} | {} | {:.0} | {:.0} |",
            mean_bytes / 1e3,
            if with_tasks { "yes" } else { "no" },
            per_doc * 1e6,
            mean_bytes / per_doc / 1e6,
        );
    }
}
