//! A generic traced program under the energy layer: a tokio runtime with 2 worker threads,
//! `#[instrument]` async request handlers that burn CPU between awaits (about 1 ms of work
//! per request), the CPU-time estimate as power source. For each request count it reports
//! the work time, the time from work done to `guard.finish()` returning (finish latency),
//! the peak RSS of the process and the records dropped.
//!
//! ```text
//! cargo bench --bench generic                 # 5k, 10k, 20k, 100k requests
//! cargo bench --bench generic -- 20000        # chosen counts
//! ```
//!
//! Two ways of issuing the requests: `all` spawns every request at once (the program itself
//! then holds every task and its spans until it runs), `64` keeps 64 in flight, as a service
//! does. Each is also run without the profiler (`off`), so that the profiler's own share of
//! the memory shows. Each run is a fresh child process (the same executable), so that peak
//! RSS is the run's own.

use std::time::{Duration, Instant};

use tracing::{info_span, instrument, Instrument};
use tracing_energy::power::SourceSpec;
use tracing_energy::EnergyLayer;
use tracing_subscriber::prelude::*;

fn burn(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[instrument]
fn parse(id: u64) -> u64 {
    burn(Duration::from_micros(100));
    id ^ 0x5a
}

#[instrument]
fn compute(x: u64) -> u64 {
    burn(Duration::from_micros(300));
    x.wrapping_mul(31)
}

#[instrument(skip_all, fields(id))]
async fn handle_request(id: u64) -> u64 {
    let mut x = parse(id);
    for _ in 0..3 {
        tokio::task::yield_now().await;
        x = compute(x);
    }
    x
}

fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

/// Runs the workload: `requests` requests, `in_flight` at a time (0: all at once).
fn child(requests: u64, in_flight: u64, profiled: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let guard = profiled.then(|| {
        let (layer, guard) = EnergyLayer::builder()
            .db(dir.path().join("bench.db"))
            .power(Some(SourceSpec::Estimate))
            .build()
            .expect("layer");
        tracing_subscriber::registry().with(layer).init();
        guard
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..requests {
            if in_flight > 0 && tasks.len() as u64 >= in_flight {
                tasks.join_next().await.expect("a task").expect("task");
            }
            tasks.spawn(handle_request(id).instrument(info_span!("request", id)));
        }
        while let Some(t) = tasks.join_next().await {
            t.expect("task");
        }
    });
    let work = t0.elapsed();
    let t1 = Instant::now();
    let report = guard.map(|g| g.finish().expect("finish"));
    let finish = t1.elapsed();
    println!(
        "{{\"work_s\":{:.2},\"finish_s\":{:.3},\"peak_rss_mb\":{:.1},\"dropped\":{},\"sections\":{},\"peak_processor_mb\":{:.1}}}",
        work.as_secs_f64(),
        finish.as_secs_f64(),
        peak_rss_mb(),
        report.as_ref().map_or(0, |r| r.dropped_records),
        report.as_ref().map_or(0, |r| r.sections),
        report.as_ref().map_or(0.0, |r| r.peak_processor_bytes as f64 / 1048576.0),
    );
}

fn run(exe: &std::path::Path, n: u64, in_flight: u64, profiled: bool) -> Option<serde_json::Value> {
    let out = std::process::Command::new(exe)
        .env("GENERIC_BENCH_CHILD", format!("{n},{in_flight},{profiled}"))
        .output()
        .expect("child run");
    let line = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str(line.trim()) {
        Ok(v) => Some(v),
        Err(_) => {
            eprintln!(
                "run of {n} requests failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("GENERIC_BENCH_CHILD") {
        let v: Vec<&str> = spec.split(',').collect();
        child(
            v[0].parse().expect("request count"),
            v[1].parse().expect("in flight"),
            v[2] == "true",
        );
        return;
    }
    let counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![5_000, 10_000, 20_000, 100_000]
    } else {
        counts
    };
    let exe = std::env::current_exe().expect("own path");
    println!("| in flight | requests | work (s) | finish latency (s) | peak RSS (MB) | peak RSS off (MB) | processor peak (MB) | sections | dropped |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for in_flight in [64, 0] {
        for &n in &counts {
            let (Some(on), Some(off)) = (
                run(&exe, n, in_flight, true),
                run(&exe, n, in_flight, false),
            ) else {
                continue;
            };
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} | {} | {} |",
                if in_flight == 0 {
                    "all".to_string()
                } else {
                    in_flight.to_string()
                },
                on["work_s"],
                on["finish_s"],
                on["peak_rss_mb"],
                off["peak_rss_mb"],
                on["peak_processor_mb"],
                on["sections"],
                on["dropped"]
            );
        }
    }
}
