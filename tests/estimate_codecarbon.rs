//! The CPU-time estimate against CodeCarbon's process-mode formula on the same run.
//!
//! CodeCarbon 3.3.2, `codecarbon/external/hardware.py`:
//! - `CPU._get_power_from_cpu_load`, branch `tracking_mode == "process"`: with the CPU times
//!   (user + system) of the process and its children from `_get_process_cpu_times`,
//!   `cpu_load = total_cpu_delta / time_delta * 100`, `cpu_load_normalized = cpu_load /
//!   self._cpu_count` (`psutil.cpu_count()`, the online logical CPUs),
//!   `power = self._tdp * cpu_load_normalized / 100`;
//! - `CPU.monitor_power` appends one such power, with the seconds since the previous sample
//!   (`_take_power_sample`), every `measure_power_secs`;
//! - `CPU.total_power` takes a last sample and averages the powers weighted by their
//!   seconds; `BaseHardware.measure_power_and_energy` multiplies that by the seconds measured.
//!
//! The test runs a real busy workload while the estimate samples it through the real
//! sampler, replays those CodeCarbon steps on the same interval with the same TDP and CPU
//! count, reading CPU time the way psutil does on Linux (`/proc/self/stat` utime + stime in
//! clock ticks), and requires the two energies to agree within 5 %.
//!
//! `scripts/codecarbon_crosscheck.sh` does the same against CodeCarbon itself (Python); it
//! runs this file's `child_workload_for_the_codecarbon_script` as the tracked child.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_energy::power::estimate::process_cpu_seconds;
use tracing_energy::power::{
    EstimateParams, EstimateScope, EstimateSource, PowerSource, SampleBuffer, Sampler,
    SamplerConfig, SamplerStatus,
};

/// CodeCarbon 3.3.2's `DEFAULT_POWER_PER_CORE` (`codecarbon/core/cpu.py`): the watts per
/// thread it uses for a CPU model missing from its table, which gives 8 W on a 2-vCPU
/// "AMD EPYC" VM.
const CODECARBON_WATTS_PER_THREAD: f64 = 4.0;

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// psutil's `Process.cpu_times()` user + system on Linux: `/proc/[pid]/stat` fields 14 and
/// 15, in clock ticks. Elsewhere, `getrusage` (psutil's sources differ by platform).
fn psutil_cpu_seconds() -> f64 {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // After the command: state is field 3, so utime (14) and stime (15) are 11 and 12.
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        return ticks / hz;
    }
    process_cpu_seconds().unwrap()
}

/// CodeCarbon's `CPU` object in `cpu_load` mode with `tracking_mode="process"`, step for step.
struct CodeCarbonProcessCpu {
    tdp: f64,
    cpu_count: usize,
    last_measurement_time: Instant,
    last_cpu_time: f64,
    last_sample_time: Instant,
    power_history: Vec<(f64, f64)>,
    started: Instant,
}

impl CodeCarbonProcessCpu {
    /// `CPU.start()`.
    fn start(tdp: f64, cpu_count: usize) -> Self {
        let now = Instant::now();
        CodeCarbonProcessCpu {
            tdp,
            cpu_count,
            last_measurement_time: now,
            last_cpu_time: psutil_cpu_seconds(),
            last_sample_time: now,
            power_history: Vec::new(),
            started: now,
        }
    }

    /// `CPU._get_power_from_cpu_load()`, process branch (W).
    fn power_from_cpu_load(&mut self) -> f64 {
        let current_time = Instant::now();
        let current_cpu_time = psutil_cpu_seconds();
        let time_delta = (current_time - self.last_measurement_time).as_secs_f64();
        let cpu_delta = current_cpu_time - self.last_cpu_time;
        let cpu_load = if time_delta > 0.0 && cpu_delta > 0.0 {
            cpu_delta / time_delta * 100.0
        } else {
            0.0
        };
        self.last_measurement_time = current_time;
        self.last_cpu_time = current_cpu_time;
        let cpu_load_normalized = cpu_load / self.cpu_count as f64;
        self.tdp * cpu_load_normalized / 100.0
    }

    /// `CPU._take_power_sample()`: (power, seconds since the previous sample).
    fn take_power_sample(&mut self) -> (f64, f64) {
        let power = self.power_from_cpu_load();
        let now = Instant::now();
        let duration = (now - self.last_sample_time).as_secs_f64();
        self.last_sample_time = now;
        (power, duration)
    }

    /// `CPU.monitor_power()`.
    fn monitor_power(&mut self) {
        let sample = self.take_power_sample();
        self.power_history.push(sample);
    }

    /// `CPU.measure_power_and_energy(last_duration)` at the end: (`total_power()` in W,
    /// energy in J for the seconds since start).
    fn measure_power_and_energy(mut self) -> (f64, f64) {
        self.monitor_power();
        let total: f64 = self.power_history.iter().map(|(_, d)| d).sum();
        let power = self.power_history.iter().map(|(p, d)| p * d).sum::<f64>() / total;
        let last_duration = self.started.elapsed().as_secs_f64();
        (power, power * last_duration)
    }
}

/// Keeps `threads` threads busy for `how_long`.
fn burn(threads: usize, how_long: Duration) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(move || {
                let start = Instant::now();
                let mut x = 1u64;
                while start.elapsed() < how_long {
                    for _ in 0..1000 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                    }
                }
                std::hint::black_box(x);
            });
        }
    });
}

#[test]
fn estimate_agrees_with_codecarbon_process_mode_within_5_percent() {
    let cpus = online_cpus();
    let tdp = CODECARBON_WATTS_PER_THREAD * cpus as f64;
    let params = EstimateParams {
        tdp_watts: tdp,
        logical_cpus: cpus,
        idle_watts: 0.0,
        scope: EstimateScope::Process,
    };
    let buffer = Arc::new(SampleBuffer::with_capacity(1000));
    let sampler = Sampler::start(
        Box::new(EstimateSource::with_params(params)),
        SamplerConfig::new(Duration::from_millis(50)).buffer(Arc::clone(&buffer)),
    )
    .unwrap();

    let mut codecarbon = CodeCarbonProcessCpu::start(tdp, cpus);
    let cpu0 = process_cpu_seconds().unwrap();
    // Every logical CPU busy, then one, then idle; CodeCarbon samples between phases (its
    // scheduler calls monitor_power every measure_power_secs).
    burn(cpus, Duration::from_millis(800));
    codecarbon.monitor_power();
    burn(1, Duration::from_millis(800));
    codecarbon.monitor_power();
    // Idle for several windows, so the estimate has emitted every busy window.
    std::thread::sleep(Duration::from_millis(300));
    let cpu1 = process_cpu_seconds().unwrap();
    let (cc_power, cc_joules) = codecarbon.measure_power_and_energy();
    let report = sampler.stop();
    assert_eq!(report.status, SamplerStatus::Stopped);

    let samples = buffer.overlapping(0, u64::MAX / 2);
    let ours_joules: f64 = samples.iter().filter_map(|s| s.energy.cpu).sum::<f64>() / 1000.0;
    let ratio = ours_joules / cc_joules;
    println!(
        "TDP {tdp} W over {cpus} CPUs; CPU time {:.3} s; estimate {ours_joules:.3} J in {} windows; \
         CodeCarbon process-mode formula {cc_joules:.3} J (mean {cc_power:.3} W); ratio {ratio:.4}",
        cpu1 - cpu0,
        samples.len()
    );
    // On a loaded machine the threads get less than the wall time they burn.
    assert!(
        cpu1 - cpu0 > 0.3,
        "the workload used only {} CPU-s",
        cpu1 - cpu0
    );
    assert!(
        (ratio - 1.0).abs() < 0.05,
        "estimate {ours_joules} J vs CodeCarbon's formula {cc_joules} J: ratio {ratio}"
    );
}

#[test]
fn the_default_says_where_its_figure_comes_from() {
    let source = EstimateSource::new();
    let method = source
        .method()
        .expect("the estimate always says its method");
    println!("method: {method}");
    let per_cpu = source.params().watts_per_busy_cpu();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flagged = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    if flagged {
        assert!(
            method.contains("W per busy vCPU: virtual machine (hypervisor flag in /proc/cpuinfo)"),
            "{method}"
        );
        assert!((3.5..=4.26).contains(&per_cpu), "{per_cpu} W per vCPU");
    } else {
        assert!(method.contains("TDP "), "{method}");
    }
    match source.is_available() {
        tracing_energy::power::Availability::Available(text) => {
            assert!(text.contains(&method), "{text}")
        }
        a => panic!("{a:?}"),
    }
}

/// Not a check: the workload that `scripts/codecarbon_crosscheck.sh` runs under CodeCarbon.
/// Does nothing unless `TRACING_ENERGY_CODECARBON_CHILD` is set. Then it idles 2.5 s (CodeCarbon
/// takes a child's CPU time when it first sees the child as its baseline, so work done before
/// its next sample would not count), runs the estimate with the TDP in that variable, burns
/// every CPU for 2 s and one for 2 s, prints one JSON line, and waits for stdin to close so
/// that CodeCarbon still sees it at its last measurement.
#[test]
fn child_workload_for_the_codecarbon_script() {
    let Ok(tdp) = std::env::var("TRACING_ENERGY_CODECARBON_CHILD") else {
        return;
    };
    let tdp: f64 = tdp
        .parse()
        .expect("TRACING_ENERGY_CODECARBON_CHILD: a TDP in W");
    let cpus = online_cpus();
    let default = EstimateSource::new();
    let source = EstimateSource::with_params(EstimateParams {
        tdp_watts: tdp,
        logical_cpus: cpus,
        idle_watts: 0.0,
        scope: EstimateScope::Process,
    });
    std::thread::sleep(Duration::from_millis(2500));
    let buffer = Arc::new(SampleBuffer::with_capacity(10_000));
    let cpu0 = process_cpu_seconds().unwrap();
    let sampler = Sampler::start(
        Box::new(source),
        SamplerConfig::new(Duration::from_millis(100)).buffer(Arc::clone(&buffer)),
    )
    .unwrap();
    burn(cpus, Duration::from_secs(2));
    burn(1, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    sampler.stop();
    let cpu1 = process_cpu_seconds().unwrap();
    let joules: f64 = buffer
        .overlapping(0, u64::MAX / 2)
        .iter()
        .filter_map(|s| s.energy.cpu)
        .sum::<f64>()
        / 1000.0;
    let default_joules = joules / (tdp / cpus as f64) * default.params().watts_per_busy_cpu();
    println!(
        "{}",
        serde_json::json!({
            "tdp_w": tdp,
            "cpus": cpus,
            "cpu_s": cpu1 - cpu0,
            "estimate_j": joules,
            "default_estimate_j": default_joules,
            "default_method": default.method(),
        })
    );
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}
