//! The replay and estimate sources through the sampler thread.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expected, independent_docs, local_fixture};
use tracing_energy::power::{
    Domain, EstimateParams, EstimateScope, EstimateSource, ReplaySource, SampleBuffer, Sampler,
    SamplerConfig, SamplerStatus,
};

fn wait_done(s: &Sampler, timeout: Duration) -> SamplerStatus {
    let deadline = Instant::now() + timeout;
    while s.status() == SamplerStatus::Running && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.status()
}

#[test]
fn replay_plays_a_capture_at_its_own_pace() {
    let path = local_fixture("m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_b.plist");
    let want = expected(&independent_docs(&std::fs::read(&path).unwrap())[0]).unwrap();
    let buffer = Arc::new(SampleBuffer::with_capacity(100));
    let wall = Instant::now();
    let t0 = tracing_energy::clock::now_ns();
    let sampler = Sampler::start(
        Box::new(ReplaySource::new(&path)),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::clone(&buffer)),
    )
    .unwrap();
    assert_eq!(
        wait_done(&sampler, Duration::from_secs(10)),
        SamplerStatus::Finished
    );
    // The window is played in real time: it cannot finish before its recorded length.
    assert!(wall.elapsed().as_nanos() as u64 >= want.elapsed_ns);
    let samples = buffer.overlapping(0, u64::MAX / 2);
    assert_eq!(samples.len(), 1);
    let s = &samples[0];
    assert_eq!(&*s.source, format!("replay:{}", path.display()));
    assert!(!s.estimated);
    assert_eq!(s.duration_ns(), want.elapsed_ns);
    assert!(s.start_ns >= t0);
    assert_eq!(s.energy.cpu, want.cpu_mj);
    assert_eq!(s.energy.gpu, want.gpu_mj);
}

#[test]
fn replay_of_a_file_without_power_data_is_refused() {
    let path = local_fixture("m4pro_mac16-8_macos15.5_24F74_battery_3samples.plist");
    let err = Sampler::start(
        Box::new(ReplaySource::new(&path)),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::new(SampleBuffer::new())),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("no usable powermetrics sample") && err.contains("no energy or power"),
        "{err}"
    );
    let missing = Sampler::start(
        Box::new(ReplaySource::new("/nonexistent/capture.plist")),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::new(SampleBuffer::new())),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(missing.contains("/nonexistent/capture.plist"), "{missing}");
}

#[test]
fn estimate_follows_cpu_time_and_is_labelled_estimated() {
    let params = EstimateParams {
        tdp_watts: 40.0,
        logical_cpus: 4,
        idle_watts: 1.0,
        scope: EstimateScope::Process,
    };
    let buffer = Arc::new(SampleBuffer::with_capacity(1000));
    let cpu0 = tracing_energy::power::estimate::process_cpu_seconds().unwrap();
    let t0 = tracing_energy::clock::now_ns();
    let sampler = Sampler::start(
        Box::new(EstimateSource::with_params(params.clone())),
        SamplerConfig::new(Duration::from_millis(50)).buffer(Arc::clone(&buffer)),
    )
    .unwrap();
    // Keep one core busy for a while.
    let start = Instant::now();
    let mut x = 1u64;
    while start.elapsed() < Duration::from_millis(600) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::hint::black_box(x);
    let report = sampler.stop();
    let t1 = tracing_energy::clock::now_ns();
    let cpu1 = tracing_energy::power::estimate::process_cpu_seconds().unwrap();
    assert_eq!(report.status, SamplerStatus::Stopped);
    assert!(report.estimated);
    let samples = buffer.overlapping(0, u64::MAX / 2);
    assert!(
        samples.len() >= 8,
        "{} samples in 600 ms at 50 ms",
        samples.len()
    );
    for (k, s) in samples.iter().enumerate() {
        assert!(s.estimated);
        assert_eq!(&*s.source, "estimate");
        assert!(s.energy.cpu.is_some());
        assert_eq!(
            (s.energy.gpu, s.energy.ane, s.energy.dram),
            (None, None, None)
        );
        assert!(s.start_ns >= t0 && s.end_ns <= t1);
        if k > 0 {
            assert_eq!(s.start_ns, samples[k - 1].end_ns, "windows back to back");
        }
    }
    // The model, checked against CPU time read around the run: energy lies between the
    // idle floor and idle + TDP share of all the CPU time used from t0 to t1.
    let total: f64 = samples.iter().map(|s| s.total_mj).sum();
    let covered_s: f64 = samples.iter().map(|s| s.duration_ns() as f64 / 1e9).sum();
    let max = params.energy_mj(cpu1 - cpu0, covered_s);
    let busy_min = 0.5 * params.watts_per_busy_cpu() * 1000.0 * 0.4; // at least 0.4 s of the busy loop
    assert!(total <= max + 1e-6, "{total} mJ > bound {max} mJ");
    assert!(
        total >= 1000.0 * params.idle_watts * covered_s + busy_min,
        "{total} mJ is too low for a busy core"
    );
    // Mean CPU power of a window = energy / window length.
    let s = &samples[0];
    assert!(
        (s.power_mw(Domain::Cpu).unwrap() - s.energy.cpu.unwrap() * 1e9 / s.duration_ns() as f64)
            .abs()
            < 1e-9
    );
}

#[test]
fn system_scope_reads_proc_stat() {
    let src = EstimateSource::with_params(EstimateParams {
        scope: EstimateScope::System,
        ..Default::default()
    });
    use tracing_energy::power::PowerSource;
    assert!(
        src.is_available().is_available(),
        "{:?}",
        src.is_available()
    );
    let buffer = Arc::new(SampleBuffer::with_capacity(100));
    let sampler = Sampler::start(
        Box::new(src),
        SamplerConfig::new(Duration::from_millis(50)).buffer(Arc::clone(&buffer)),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let report = sampler.stop();
    assert!(report.samples >= 3, "{report:?}");
    assert!(buffer
        .overlapping(0, u64::MAX / 2)
        .iter()
        .all(|s| s.estimated && s.total_mj >= 0.0));
}

#[test]
fn a_looping_replay_covers_a_run_longer_than_its_capture() {
    let path = local_fixture("m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_b.plist");
    let buffer = Arc::new(SampleBuffer::with_capacity(100));
    let sampler = Sampler::start(
        Box::new(ReplaySource::new(&path).looping(true)),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::clone(&buffer)),
    )
    .unwrap();
    // The capture is one 526 ms window: after 1.2 s it has played at least twice.
    std::thread::sleep(Duration::from_millis(1200));
    let report = sampler.stop();
    assert_eq!(
        report.status,
        SamplerStatus::Stopped,
        "a looping replay runs until stopped"
    );
    let samples = buffer.overlapping(0, u64::MAX / 2);
    assert!(samples.len() >= 2, "{} windows", samples.len());
    assert_eq!(samples[1].start_ns, samples[0].end_ns);
    assert_eq!(samples[0].energy, samples[1].energy);
}
