//! The powermetrics source end to end: a real subprocess (a fake `powermetrics` streaming
//! real captures with real delays over a pipe) through the same code users run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expected, fake_with_env, independent_docs, local_fixture, shared_fixture, Expected};
use tracing_energy::power::{
    PowerSample, PowermetricsSource, SampleBuffer, Sampler, SamplerConfig, SamplerStatus,
};

fn expected_windows(capture: &Path, limit: usize) -> Vec<Expected> {
    let bytes = std::fs::read(capture).unwrap();
    independent_docs(&bytes)
        .iter()
        .take(limit)
        .filter_map(|d| expected(d))
        .collect()
}

fn start(program: &Path, interval_ms: u64) -> (Sampler, Arc<SampleBuffer>) {
    let buffer = Arc::new(SampleBuffer::with_capacity(1000));
    let sampler = Sampler::start(
        Box::new(PowermetricsSource::with_program(program)),
        SamplerConfig::new(Duration::from_millis(interval_ms)).buffer(Arc::clone(&buffer)),
    )
    .expect("start the sampler");
    (sampler, buffer)
}

fn wait_until_not_running(sampler: &Sampler, timeout: Duration) -> SamplerStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let s = sampler.status();
        if s != SamplerStatus::Running || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn all_samples(buffer: &SampleBuffer) -> Vec<PowerSample> {
    buffer.overlapping(0, u64::MAX / 2)
}

/// Samples equal the capture's windows: exact energies, windows back to back with the
/// capture's lengths, powers = energy / length.
fn assert_samples_match(samples: &[PowerSample], want: &[Expected], spawned_at: u64) {
    assert_eq!(samples.len(), want.len(), "sample count");
    for (k, (s, w)) in samples.iter().zip(want).enumerate() {
        assert_eq!(&*s.source, "powermetrics");
        assert!(!s.estimated);
        assert_eq!(s.energy.cpu, w.cpu_mj, "sample {k} cpu");
        assert_eq!(s.energy.gpu, w.gpu_mj, "sample {k} gpu");
        assert_eq!(s.energy.ane, w.ane_mj, "sample {k} ane");
        assert_eq!(s.energy.dram, None, "sample {k}: DRAM unknown, not 0");
        let total: f64 = [w.cpu_mj, w.gpu_mj, w.ane_mj].iter().flatten().sum();
        assert_eq!(s.total_mj, total, "sample {k} total");
        let len = s.duration_ns() as f64;
        let elapsed = w.elapsed_ns as f64;
        assert!(
            (len - elapsed).abs() <= 0.01 * elapsed,
            "sample {k}: window {len} ns, capture says {elapsed} ns"
        );
        if let (Some(mw), Some(mj)) = (s.power_mw(tracing_energy::power::Domain::Cpu), w.cpu_mj) {
            assert!(
                (mw - mj * 1e9 / len).abs() < 1e-6,
                "sample {k}: power = energy / window"
            );
        }
        if k == 0 {
            assert!(
                s.start_ns >= spawned_at,
                "first window starts after the spawn"
            );
        } else {
            assert_eq!(
                s.start_ns,
                samples[k - 1].end_ns,
                "sample {k}: windows back to back"
            );
        }
    }
}

fn run_stream(capture: &Path, limit: usize, interval_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let argv_out = dir.path().join("argv");
    let fake = fake_with_env(
        dir.path(),
        &[
            ("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap()),
            ("FAKE_POWERMETRICS_LIMIT", &limit.to_string()),
            ("FAKE_POWERMETRICS_ARGV_OUT", argv_out.to_str().unwrap()),
        ],
    );
    let want = expected_windows(capture, limit);
    let spawned_at = tracing_energy::clock::now_ns();
    let (sampler, buffer) = start(&fake, interval_ms);
    let total_s: f64 = want.iter().map(|w| w.elapsed_ns as f64 / 1e9).sum();
    let status = wait_until_not_running(&sampler, Duration::from_secs_f64(total_s * 3.0 + 10.0));
    assert_eq!(
        status,
        SamplerStatus::Finished,
        "the capture ended and the process exited 0"
    );
    let samples = all_samples(&buffer);
    assert_samples_match(&samples, &want, spawned_at);
    let report = sampler.stop();
    assert_eq!(report.samples, want.len() as u64);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    // The command line powermetrics received (we run as root in CI, so no sudo).
    let argv = std::fs::read_to_string(argv_out).unwrap();
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "--samplers",
            "cpu_power,gpu_power",
            "-i",
            &interval_ms.to_string(),
            "-f",
            "plist",
            "-b",
            "0"
        ]
    );
}

#[test]
fn streams_the_29_document_m1_pro_capture_exactly() {
    if let Some(capture) = shared_fixture(common::M1PRO_29) {
        run_stream(&capture, 29, 125);
    }
}

#[test]
fn streams_the_m4_pro_gpu_capture_exactly() {
    // 5-second windows: two of them keep the test short.
    run_stream(&local_fixture(common::M4PRO_GPU_5), 2, 5000);
}

#[test]
fn superuser_error_is_reported_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_env(dir.path(), &[("FAKE_POWERMETRICS_MODE", "superuser")]);
    let (sampler, buffer) = start(&fake, 100);
    let status = wait_until_not_running(&sampler, Duration::from_secs(20));
    let SamplerStatus::Failed(reason) = status else {
        panic!("expected a failure, got {status:?}")
    };
    assert!(
        reason.contains("must be invoked as the superuser"),
        "{reason}"
    );
    assert!(reason.contains("exited with status 1"), "{reason}");
    assert!(
        reason.contains("setup_powermetrics.sh"),
        "the fix is named: {reason}"
    );
    assert!(buffer.is_empty());
    let report = sampler.stop();
    assert_eq!(report.samples, 0);
    assert!(matches!(report.status, SamplerStatus::Failed(_)));
}

#[test]
fn death_mid_stream_keeps_the_samples_so_far() {
    let (capture, before_death) = match shared_fixture(common::M1PRO_29) {
        Some(c) => (c, 5),
        None => (local_fixture(common::M4PRO_GPU_5), 1),
    };
    let dir = tempfile::tempdir().unwrap();
    let mode = format!("die-after:{before_death}");
    let fake = fake_with_env(
        dir.path(),
        &[
            ("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap()),
            ("FAKE_POWERMETRICS_MODE", &mode),
        ],
    );
    let want = expected_windows(&capture, before_death);
    let spawned_at = tracing_energy::clock::now_ns();
    let (sampler, buffer) = start(&fake, 100);
    let status = wait_until_not_running(&sampler, Duration::from_secs(60));
    let SamplerStatus::Failed(reason) = status else {
        panic!("expected a failure, got {status:?}")
    };
    assert!(reason.contains("signal 9"), "{reason}");
    assert!(
        reason.contains(&format!("after {before_death} samples")),
        "{reason}"
    );
    assert!(reason.contains("incomplete last document"), "{reason}");
    assert_samples_match(&all_samples(&buffer), &want, spawned_at);
    // The buffer knows the source is gone: waiting for later samples returns at once.
    let t = Instant::now();
    buffer.wait_for_watermark(u64::MAX, Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(1));
}

fn process_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "the fake never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fake streaming 5-second windows that writes its pid to a file.
fn slow_fake_with_pid(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let capture = local_fixture(common::M4PRO_GPU_5);
    let pid_out = dir.join("pid");
    let fake = fake_with_env(
        dir,
        &[
            ("FAKE_POWERMETRICS_CAPTURE", capture.to_str().unwrap()),
            ("FAKE_POWERMETRICS_PID_OUT", pid_out.to_str().unwrap()),
        ],
    );
    (fake, pid_out)
}

fn wait_for_exit(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stop_ends_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, pid_out) = slow_fake_with_pid(dir.path());
    let (sampler, _buffer) = start(&fake, 5000);
    let pid = read_pid(&pid_out);
    assert!(process_alive(pid));
    let t = Instant::now();
    let report = sampler.stop();
    assert_eq!(report.status, SamplerStatus::Stopped);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    wait_for_exit(pid);
    assert!(!process_alive(pid), "powermetrics still runs after stop");
}

#[test]
fn a_panic_stops_the_source_through_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, pid_out) = slow_fake_with_pid(dir.path());
    let pid_path = pid_out.clone();
    let result = std::thread::spawn(move || {
        let (_sampler, _buffer) = start(&fake, 5000);
        read_pid(&pid_path);
        panic!("user code panics while sampling");
    })
    .join();
    assert!(result.is_err());
    let pid = read_pid(&pid_out);
    wait_for_exit(pid);
    assert!(
        !process_alive(pid),
        "powermetrics still runs after the panic"
    );
}

#[test]
fn missing_executable_is_unavailable_with_a_fix() {
    let err = Sampler::start(
        Box::new(PowermetricsSource::with_program(
            "/nonexistent/powermetrics",
        )),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::new(SampleBuffer::new())),
    )
    .err()
    .expect("must not start");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/powermetrics") && msg.contains("Fix"),
        "{msg}"
    );
}

#[test]
fn unusable_documents_are_dropped_counted_and_the_chain_reanchors() {
    // Real documents around a damaged one (cpu energy removed, cpu power NaN) and a
    // battery-only one.
    let good = &independent_docs(
        &std::fs::read(local_fixture(
            "m1_macbookpro17-1_macos13.3_22E252_cpu_gpu_thermal_b.plist",
        ))
        .unwrap(),
    )[0];
    let text = String::from_utf8(good.clone()).unwrap();
    let damaged = regex::Regex::new(r"<key>cpu_energy</key>\s*<integer>\d+</integer>\s*<key>cpu_power</key>\s*<real>[^<]*</real>")
        .unwrap()
        .replace(&text, "<key>cpu_power</key><real>nan</real>")
        .into_owned();
    assert_ne!(damaged, text);
    let battery = &independent_docs(
        &std::fs::read(local_fixture(
            "m4pro_mac16-8_macos15.5_24F74_battery_3samples.plist",
        ))
        .unwrap(),
    )[0];
    let mut capture = Vec::new();
    for (k, doc) in [good.as_slice(), damaged.as_bytes(), good, battery, good]
        .iter()
        .enumerate()
    {
        if k > 0 {
            capture.push(0);
        }
        capture.extend_from_slice(doc);
        capture.push(b'\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let capture_path = dir.path().join("capture.plist");
    std::fs::write(&capture_path, capture).unwrap();
    let fake = fake_with_env(
        dir.path(),
        &[("FAKE_POWERMETRICS_CAPTURE", capture_path.to_str().unwrap())],
    );
    let (sampler, buffer) = start(&fake, 500);
    assert_eq!(
        wait_until_not_running(&sampler, Duration::from_secs(30)),
        SamplerStatus::Finished
    );
    let report = sampler.stop();
    assert_eq!(report.samples, 3);
    let mut rejected = report.rejected.clone();
    rejected.sort();
    assert_eq!(
        rejected,
        vec![
            ("NaN, negative or overflowing value".to_string(), 1),
            ("no power data".to_string(), 1)
        ]
    );
    let samples = all_samples(&buffer);
    let want = expected(good).unwrap();
    assert!(samples.iter().all(|s| s.energy.cpu == want.cpu_mj));
    // After a dropped window the next one is placed by its arrival, never overlapping.
    for w in samples.windows(2) {
        assert!(w[1].start_ns >= w[0].end_ns);
    }
    assert!(
        samples[1].start_ns > samples[0].end_ns,
        "the damaged window leaves a gap"
    );
}
