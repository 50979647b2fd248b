//! What the RAPL sampler itself costs: CPU time of the process while only the sampler runs,
//! reading a powercap-shaped tree (2 packages with `core`/`uncore` sub-zones, a `dram` zone
//! and `psys`: 6 `energy_uj` files a window) every 10 ms (and 1 ms, 100 ms).
//!
//! ```text
//! cargo bench --bench sampler_cost            # 10 s per interval
//! ```
//!
//! The tree is written once to a temporary folder on the same file system as the system's
//! (sysfs reads are cheaper still: no page cache, a few hundred ns each); the counters do
//! not move, which costs the reader the same. Nothing else runs: the main thread sleeps, so
//! the process's CPU time (`getrusage`) is the sampler's.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_energy::power::rapl::RaplMeter;
use tracing_energy::power::{PolledSource, SampleBuffer, Sampler, SamplerConfig};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn zone(dir: &Path, name: &str, energy_uj: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
    std::fs::write(dir.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    std::fs::write(dir.join("max_energy_range_uj"), "262143328850\n").unwrap();
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for p in 0..2 {
        let pkg = root.join(format!("intel-rapl:{p}"));
        zone(&pkg, &format!("package-{p}"), 1_000_000);
        zone(&pkg.join(format!("intel-rapl:{p}:0")), "core", 500_000);
        zone(&pkg.join(format!("intel-rapl:{p}:1")), "uncore", 100_000);
    }
    zone(&root.join("intel-rapl:0/intel-rapl:0:2"), "dram", 200_000);
    zone(&root.join("intel-rapl:2"), "psys", 3_000_000);

    println!("| interval | windows | sampler CPU | share of one core |");
    println!("|---:|---:|---:|---:|");
    for interval_ms in [1u64, 10, 100] {
        let source = PolledSource::new(vec![Box::new(RaplMeter::with_root(root))]);
        let run_for = Duration::from_secs(10);
        let config = SamplerConfig::new(Duration::from_millis(interval_ms))
            .buffer(Arc::new(SampleBuffer::new()));
        // Starting measures the counter's update period (a burst of reads, once): the
        // steady state is measured from after it.
        let sampler = Sampler::start(Box::new(source), config).expect("the sampler starts");
        let before = cpu_seconds();
        let started = Instant::now();
        std::thread::sleep(run_for);
        let report = sampler.stop();
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - before;
        println!(
            "| {interval_ms} ms | {} | {:.1} ms over {wall:.1} s | {:.3} % |",
            report.samples,
            cpu * 1000.0,
            cpu / wall * 100.0
        );
    }
}
