//! The RAPL meter on a fake powercap tree, through the real sampler and the CLI.
//!
//! The fake tree is laid out as Linux lays out `/sys/class/powercap`: zone folders under a
//! `devices` tree, sub-zones nested in their package, and every zone also as a flat
//! symlink at the top. A writer thread advances every zone's `energy_uj` every 1 ms of real
//! time at a known power, replacing the file atomically (write a temporary file, rename it
//! over `energy_uj`), as a sysfs read is atomic.
#![cfg(unix)]

#[cfg(feature = "candle")]
mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_energy::power::polled::update_period;
use tracing_energy::power::rapl::{rapl_source, RaplMeter};
use tracing_energy::power::{
    Availability, Meter, PolledSource, PowerSample, PowerSource, SampleBuffer, Sampler,
    SamplerConfig, SamplerStatus,
};

/// A zone of the fake tree: folder name (`control:socket[:sub]`), `name` file, watts.
type Z = (&'static str, &'static str, f64);

/// Two packages (20 W + 15 W = 35 W cpu), DRAM in each (2 W + 1 W = 3 W dram), and zones
/// that must not be added: core and uncore (inside the packages), psys (the platform) and
/// intel-rapl-mmio:0 (package-0 again, through another interface).
const MACHINE: [Z; 8] = [
    ("intel-rapl:0", "package-0", 20.0),
    ("intel-rapl:0:0", "core", 12.0),
    ("intel-rapl:0:1", "dram", 2.0),
    ("intel-rapl:1", "package-1", 15.0),
    ("intel-rapl:1:0", "uncore", 2.0),
    ("intel-rapl:1:1", "dram", 1.0),
    ("intel-rapl:2", "psys", 60.0),
    ("intel-rapl-mmio:0", "package-0", 20.0),
];
const CPU_W: f64 = 35.0;
const DRAM_W: f64 = 3.0;
/// The usual range of a package counter (about 262 kJ).
const REAL_RANGE_UJ: u64 = 262_143_328_850;

/// Timing tests run one at a time: the machine may have 2 cores.
static TIMING: Mutex<()> = Mutex::new(());

fn timing() -> MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(|e| e.into_inner())
}

struct LiveZone {
    dir: PathBuf,
    uj_per_ms: f64,
    offset_uj: u64,
    max_range_uj: u64,
}

impl LiveZone {
    fn value(&self, ms: u64) -> u64 {
        (self.offset_uj + (self.uj_per_ms * ms as f64).round() as u64) % self.max_range_uj
    }
}

/// A powercap tree in a temporary folder, its counters advanced by a writer thread.
struct Fake {
    /// Deleted when the fake is dropped.
    _dir: tempfile::TempDir,
    root: PathBuf,
    zones: Arc<Vec<LiveZone>>,
    gone: Arc<Mutex<HashSet<PathBuf>>>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl Fake {
    /// The tree with counters written once, not advancing.
    fn still(zones: &[Z], range: impl Fn(&Z) -> u64) -> Fake {
        // sysfs lives in memory: so does the fake, where there is a tmpfs.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("class/powercap");
        let devices = dir.path().join("devices/virtual/powercap");
        fs::create_dir_all(&root).unwrap();
        let mut live = Vec::new();
        for zone @ &(id, name, watts) in zones {
            let control_type = id.split(':').next().unwrap();
            let control = devices.join(control_type);
            fs::create_dir_all(&control).unwrap();
            fs::write(control.join("enabled"), "1\n").unwrap();
            let link = root.join(control_type);
            if !link.exists() {
                symlink(&control, link).unwrap();
            }
            // A sub-zone's folder is inside its package's: intel-rapl:0/intel-rapl:0:1.
            let zdir = match id.rsplit_once(':') {
                Some((parent, _)) if parent.contains(':') => control.join(parent).join(id),
                _ => control.join(id),
            };
            fs::create_dir_all(&zdir).unwrap();
            fs::write(zdir.join("name"), format!("{name}\n")).unwrap();
            let max = range(zone);
            fs::write(zdir.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
            symlink(&zdir, root.join(id)).unwrap();
            live.push(LiveZone {
                dir: zdir,
                uj_per_ms: watts * 1000.0,
                offset_uj: max / 3 + 12_345,
                max_range_uj: max,
            });
        }
        for l in &live {
            write_atomically(&l.dir, l.value(0));
        }
        Fake {
            _dir: dir,
            root,
            zones: Arc::new(live),
            gone: Arc::new(Mutex::new(HashSet::new())),
            stop: Arc::new(AtomicBool::new(false)),
            writer: None,
        }
    }

    /// The tree with every counter advancing each 1 ms of real time at its zone's power.
    fn live(zones: &[Z], range: impl Fn(&Z) -> u64) -> Fake {
        let mut fake = Fake::still(zones, range);
        let (zones, gone, stop) = (
            Arc::clone(&fake.zones),
            Arc::clone(&fake.gone),
            Arc::clone(&fake.stop),
        );
        fake.writer = Some(std::thread::spawn(move || {
            realtime_if_allowed();
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let ms = t0.elapsed().as_millis() as u64;
                {
                    let gone = gone.lock().unwrap();
                    for z in zones.iter().filter(|z| !gone.contains(&z.dir)) {
                        write_atomically(&z.dir, z.value(ms));
                    }
                }
                let next = t0 + Duration::from_millis(ms + 1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }));
        fake
    }

    /// Removes a zone (and its sub-zones) as the kernel does when its driver goes away.
    fn vanish(&self, id: &str) {
        let mut gone = self.gone.lock().unwrap();
        let link = self.root.join(id);
        let dir = fs::read_link(&link).unwrap();
        for z in self.zones.iter().filter(|z| z.dir.starts_with(&dir)) {
            gone.insert(z.dir.clone());
            let flat = self.root.join(z.dir.file_name().unwrap());
            fs::remove_file(flat).unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    fn energy_files(&self) -> Vec<PathBuf> {
        self.zones.iter().map(|z| z.dir.join("energy_uj")).collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Hardware updates its counters every 1 ms whatever the load: as root, the writer runs
/// at real-time priority, so that builds running beside the tests do not delay it.
fn realtime_if_allowed() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets the calling thread's scheduling policy; `param` lives across the call.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc != 0 {
        eprintln!(
            "note: the fake counters' writer runs at normal priority (SCHED_FIFO refused: {}); \
             on a busy machine its updates may come late",
            std::io::Error::from_raw_os_error(rc)
        );
    }
}

fn write_atomically(dir: &Path, value: u64) {
    let tmp = dir.join(".energy_uj.tmp");
    fs::write(&tmp, format!("{value}\n")).unwrap();
    fs::rename(&tmp, dir.join("energy_uj")).unwrap();
}

fn real_range(_: &Z) -> u64 {
    REAL_RANGE_UJ
}

/// Runs a RAPL sampler on `root` at `interval` for `run`, through a private buffer and a
/// tap; returns the samples and how the sampler ended.
fn sample(root: &Path, interval: Duration, run: Duration) -> (Vec<PowerSample>, SamplerStatus) {
    let buffer = Arc::new(SampleBuffer::with_capacity(10_000));
    let (tx, rx) = crossbeam_channel::unbounded();
    let source = PolledSource::new(vec![Box::new(RaplMeter::with_root(root))]);
    let config = SamplerConfig::new(interval).buffer(buffer).tap(tx);
    let sampler = Sampler::start(Box::new(source), config).unwrap();
    std::thread::sleep(run);
    let report = sampler.stop();
    (rx.try_iter().collect(), report.status)
}

/// Like [`sample`], again (up to 3 runs) while a window was `longest` or longer: a reader
/// that other work (builds beside the tests) starves for a whole wrap period would miss a
/// wrap, which no counter reader can detect.
fn sample_unstarved(
    root: &Path,
    interval: Duration,
    run: Duration,
    longest: Duration,
) -> Vec<PowerSample> {
    for attempt in 1..=3 {
        let (samples, status) = sample(root, interval, run);
        assert_eq!(status, SamplerStatus::Stopped);
        let worst = samples.iter().map(|s| s.duration_ns()).max().unwrap_or(0);
        if worst < longest.as_nanos() as u64 {
            return samples;
        }
        eprintln!(
            "note: run {attempt} had a {:.0} ms window (a busy machine); sampling again",
            worst as f64 / 1e6
        );
    }
    panic!("every run had a window of {longest:?} or longer: this machine is too busy");
}

/// Mean power (W) of a domain over all samples: their energy over their time.
fn mean_watts(samples: &[PowerSample], energy: impl Fn(&PowerSample) -> Option<f64>) -> f64 {
    let mj: f64 = samples.iter().map(|s| energy(s).unwrap()).sum();
    let ns: u64 = samples.iter().map(|s| s.duration_ns()).sum();
    mj * 1e6 / ns as f64
}

/// A child's stdout and stderr, for a failure message.
fn both(out: &Output) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    format!(
        "stdout:\n{}stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn within(measured: f64, known: f64, tolerance: f64) -> bool {
    ((measured - known) / known).abs() <= tolerance
}

fn check_known_power(samples: &[PowerSample], what: &str) {
    let cpu = mean_watts(samples, |s| s.energy.cpu);
    let dram = mean_watts(samples, |s| s.energy.dram);
    let n = samples.len();
    eprintln!("{what}: {n} samples, cpu {cpu:.3} W, dram {dram:.3} W");
    assert!(within(cpu, CPU_W, 0.01), "{what}: cpu {cpu} W");
    assert!(within(dram, DRAM_W, 0.01), "{what}: dram {dram} W");
    for (k, s) in samples.iter().enumerate() {
        assert_eq!(&*s.source, "rapl");
        assert!(!s.estimated);
        assert_eq!((s.energy.gpu, s.energy.ane), (None, None));
        if k > 0 {
            assert_eq!(s.start_ns, samples[k - 1].end_ns, "windows back to back");
        }
    }
}

#[test]
fn the_sampler_measures_the_known_power_of_packages_and_dram() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, real_range);
    for ms in [10, 50] {
        let interval = Duration::from_millis(ms);
        let (samples, status) = sample(&fake.root, interval, Duration::from_secs(1));
        assert_eq!(status, SamplerStatus::Stopped);
        assert!(samples.len() >= 5, "{} samples", samples.len());
        check_known_power(&samples, &format!("{ms} ms windows"));
        // A single window is off by the counter's 1 ms steps: the median window lies
        // within 1.5 ms worth of energy of the known power.
        let mut cpu: Vec<f64> = samples
            .iter()
            .map(|s| s.power_mw(tracing_energy::power::Domain::Cpu).unwrap() / 1000.0)
            .collect();
        cpu.sort_by(f64::total_cmp);
        let median = cpu[cpu.len() / 2];
        assert!(
            within(median, CPU_W, 1.5 / ms as f64),
            "{ms} ms: median window {median:.2} W"
        );
    }
}

#[test]
fn a_counter_that_wraps_inside_windows_still_gives_the_known_power() {
    let _t = timing();
    // Every counter wraps every 250 ms; windows are 50 ms, so one in five holds a wrap.
    let fake = Fake::live(&MACHINE, |z| (z.2 * 250_000.0) as u64);
    let samples = sample_unstarved(
        &fake.root,
        Duration::from_millis(50),
        Duration::from_millis(1500),
        Duration::from_millis(200),
    );
    assert!(samples.len() >= 12, "{} samples", samples.len());
    check_known_power(&samples, "wrapping every 250 ms");
    for s in &samples {
        let w = s.energy.cpu.unwrap() * 1e6 / s.duration_ns() as f64;
        assert!(w > CPU_W * 0.5 && w < CPU_W * 1.5, "a window read {w} W");
    }
}

#[test]
fn read_is_cumulative_and_never_decreases_across_wraps() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, |z| (z.2 * 100_000.0) as u64); // wraps every 100 ms
    for attempt in 1..=3 {
        let mut meter = RaplMeter::with_root(&fake.root);
        let first = meter.read().unwrap();
        assert_eq!(
            (first.cpu, first.dram, first.gpu),
            (Some(0.0), Some(0.0), None)
        );
        let start = Instant::now();
        let (mut last, mut last_t, mut longest_gap) = (first, start, Duration::ZERO);
        while start.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(3));
            let now = meter.read().unwrap();
            assert!(
                now.cpu >= last.cpu && now.dram >= last.dram,
                "{last:?} -> {now:?}"
            );
            longest_gap = longest_gap.max(last_t.elapsed());
            (last, last_t) = (now, Instant::now());
        }
        if longest_gap >= Duration::from_millis(80) {
            eprintln!("note: attempt {attempt}: reads {longest_gap:?} apart; again");
            continue;
        }
        let secs = last_t.duration_since(start).as_secs_f64();
        let watts = |mj: Option<f64>| mj.unwrap() / secs / 1e3;
        assert!(within(watts(last.cpu), CPU_W, 0.05), "{last:?} in {secs} s");
        assert!(
            within(watts(last.dram), DRAM_W, 0.05),
            "{last:?} in {secs} s"
        );
        return;
    }
    panic!("this machine is too busy: reads came more than 80 ms apart in 3 attempts");
}

#[test]
fn a_zone_that_vanishes_fails_the_sampler_and_keeps_the_samples_before() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, real_range);
    let buffer = Arc::new(SampleBuffer::with_capacity(1000));
    let source = PolledSource::new(vec![Box::new(RaplMeter::with_root(&fake.root))]);
    let config = SamplerConfig::new(Duration::from_millis(20)).buffer(Arc::clone(&buffer));
    let sampler = Sampler::start(Box::new(source), config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sampler.samples() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    fake.vanish("intel-rapl:1");
    while sampler.status() == SamplerStatus::Running && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let SamplerStatus::Failed(message) = sampler.status() else {
        panic!("status {:?}", sampler.status());
    };
    assert!(
        message.contains("RAPL zone intel-rapl:1 (package-1)")
            && message.contains("intel-rapl:1/energy_uj")
            && message.contains("Fix:"),
        "{message}"
    );
    let kept = buffer.overlapping(0, u64::MAX / 2);
    assert!(kept.len() >= 5, "{} samples kept", kept.len());
    let cpu = mean_watts(&kept, |s| s.energy.cpu);
    assert!(within(cpu, CPU_W, 0.1), "{cpu} W before the zone vanished");
}

#[test]
fn the_update_period_of_the_fake_counters_is_about_1_ms() {
    let _t = timing();
    // One zone: zones are replaced one after the other, so a reader of several zones may
    // see a pass of the writer half done, and the total change twice in 1 ms.
    let fake = Fake::live(&MACHINE[..1], real_range);
    let mut meter = RaplMeter::with_root(&fake.root);
    // The shortest of three bursts: a reader delayed by other work sees fewer changes.
    let p = (0..3)
        .map(|_| {
            update_period(&mut meter, Duration::from_millis(600))
                .unwrap()
                .expect("the counters change")
        })
        .min()
        .unwrap();
    eprintln!("update period {p:?}");
    assert!(
        p >= Duration::from_micros(800) && p <= Duration::from_micros(2500),
        "{p:?}"
    );
    // A still tree has no update period.
    let still = Fake::still(&MACHINE, real_range);
    let mut meter = RaplMeter::with_root(&still.root);
    assert_eq!(
        update_period(&mut meter, Duration::from_millis(50)).unwrap(),
        None
    );
}

#[test]
fn availability_names_the_zones_read_and_those_left_out() {
    let fake = Fake::still(&MACHINE, real_range);
    let meter = RaplMeter::with_root(&fake.root);
    assert_eq!(meter.name(), "rapl");
    assert_eq!(meter.method(), "energy counter (powercap energy_uj)");
    let Availability::Available(text) = meter.is_available() else {
        panic!("{:?}", meter.is_available());
    };
    let want = format!(
        "will read package-0, package-1 (cpu) and 2 dram zones (dram) under {}",
        fake.root.display()
    );
    assert!(text.starts_with(&want), "{text}");
    let rest = "; not added: core (inside the package), uncore (inside the package), psys (the \
                whole platform, which contains the package); powercap only (the perf_event \
                interface is not read)";
    assert_eq!(&text[want.len()..], rest);
    assert_eq!(
        rapl_source().method().as_deref(),
        Some("rapl: energy counter (powercap energy_uj)")
    );
}

#[test]
fn dram_as_a_top_level_zone_and_amd_naming_are_read() {
    let zones: [Z; 2] = [
        ("amd-rapl:0", "package-0", 20.0),
        ("intel-rapl:1", "dram", 3.0),
    ];
    let fake = Fake::still(&zones, real_range);
    let meter = RaplMeter::with_root(&fake.root);
    let Availability::Available(text) = meter.is_available() else {
        panic!("{:?}", meter.is_available());
    };
    let want = "will read package-0 (cpu) and dram (dram)";
    assert!(text.starts_with(want), "{text}");
}

#[test]
fn no_powercap_tree_or_no_package_zone_is_unavailable_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    for root in [dir.path().join("missing"), dir.path().to_path_buf()] {
        let Availability::Unavailable { reason, fix } = RaplMeter::with_root(&root).is_available()
        else {
            panic!("{} is available", root.display());
        };
        assert!(
            reason.starts_with(&format!("no RAPL zones under {}", root.display()))
                && reason.contains("intel_rapl/amd module not loaded"),
            "{reason}"
        );
        let named = fix.contains("modprobe intel_rapl_msr") && fix.contains("estimate");
        assert!(named, "{fix}");
        let e = RaplMeter::with_root(&root).read().unwrap_err().to_string();
        assert!(e.contains("no RAPL zones") && e.contains("Fix:"), "{e}");
    }
    let only_psys = Fake::still(&[("intel-rapl:0", "psys", 9.0)], real_range);
    let Availability::Unavailable { reason, .. } =
        RaplMeter::with_root(&only_psys.root).is_available()
    else {
        panic!("psys alone is not a CPU measurement");
    };
    assert!(reason.contains("found only: psys"), "{reason}");
}

/// The check run as another user (see the test below): prints the meter's availability.
#[test]
#[ignore = "a helper run by unreadable_energy_uj_is_unavailable_with_the_cve_and_the_fix"]
fn availability_as_this_user() {
    let root = std::env::var_os("RAPL_TEST_ROOT").expect("RAPL_TEST_ROOT");
    let a = RaplMeter::with_root(PathBuf::from(root)).is_available();
    println!("AVAILABILITY={}", serde_json::to_string(&a).unwrap());
}

#[test]
fn unreadable_energy_uj_is_unavailable_with_the_cve_and_the_fix() {
    let fake = Fake::still(&MACHINE, real_range);
    let readable = RaplMeter::with_root(&fake.root).is_available();
    assert!(readable.is_available(), "{readable:?}");
    for f in fake.energy_files() {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o400)).unwrap();
    }
    // Root reads a mode-0400 file anyway, so as root the check runs in a child process
    // as `nobody` (uid 65534), who gets the kernel's real EACCES; as another user here.
    let (reason, fix) = if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["availability_as_this_user", "--exact", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env("RAPL_TEST_ROOT", &fake.root)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", both(&out));
        let json = stdout
            .lines()
            .find_map(|l| l.split_once("AVAILABILITY=").map(|(_, json)| json))
            .unwrap_or_else(|| panic!("no result in {stdout}"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let u = &v["Unavailable"];
        assert!(u.is_object(), "{v}");
        (
            u["reason"].as_str().unwrap().to_string(),
            u["fix"].as_str().unwrap().to_string(),
        )
    } else {
        for f in fake.energy_files() {
            fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
        }
        match RaplMeter::with_root(&fake.root).is_available() {
            Availability::Unavailable { reason, fix } => (reason, fix),
            a => panic!("{a:?}"),
        }
    };
    assert!(
        reason.ends_with(
            "/energy_uj is readable by root only (since Linux 5.10, CVE-2020-8694 'Platypus')"
        ) && reason.contains("intel-rapl:0"),
        "{reason}"
    );
    assert_eq!(
        fix,
        "run as root, or run `sudo scripts/setup_rapl.sh` once (it gives the group `powercap` \
         read access to energy_uj), then log in again"
    );
}

#[test]
fn cli_sample_reads_rapl_from_the_powercap_variable() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, real_range);
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["sample", "--source", "rapl", "--format", "jsonl"])
        .args(["--count", "3", "--interval-ms", "50"])
        .env("TRACING_ENERGY_POWERCAP", &fake.root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", both(&out));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let (mut cpu_mj, mut dram_mj, mut ms) = (0.0, 0.0, 0.0);
    for v in &lines {
        assert_eq!(v["source"], "rapl", "{v}");
        assert_eq!(v["estimated"], false, "{v}");
        assert!(v["gpu_mw"].is_null() && v["ane_mw"].is_null(), "{v}");
        let number = |key: &str| v[key].as_f64().unwrap_or_else(|| panic!("{key}: {v}"));
        let (cpu, dram, elapsed) = (number("cpu_mw"), number("dram_mw"), number("elapsed_ms"));
        // One window may be long or short when the sampler waits for a busy CPU.
        assert!(within(cpu, CPU_W * 1000.0, 0.5), "cpu {cpu} mW");
        assert!(within(dram, DRAM_W * 1000.0, 0.5), "dram {dram} mW");
        cpu_mj += cpu * elapsed / 1000.0;
        dram_mj += dram * elapsed / 1000.0;
        ms += elapsed;
    }
    // Over the three windows: the known power (core, uncore, psys and the mmio zone not
    // added; any of them would add 34 % or more).
    let (cpu, dram) = (cpu_mj / ms, dram_mj / ms);
    assert!(within(cpu, CPU_W, 0.1), "cpu {cpu} W over {ms} ms");
    assert!(within(dram, DRAM_W, 0.1), "dram {dram} W over {ms} ms");
}

/// Where RAPL can be read, `doctor` says it works and `auto` takes it; a profile then records
/// the source, how it measured and its counter's update period on the run.
#[cfg(feature = "candle")]
#[test]
fn auto_picks_rapl_and_the_run_records_method_and_cadence() {
    let _t = timing();
    let fake = Fake::live(&MACHINE, real_range);
    let doctor = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .arg("doctor")
        .env("TRACING_ENERGY_POWERCAP", &fake.root)
        .env_remove("TRACING_ENERGY_POWERMETRICS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("rapl           works"), "{}", both(&doctor));
    assert!(text.contains("auto picks: rapl\n"), "{text}");
    let model = common::model::default_model();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["profile", "--power", "auto", "--max-tokens", "3", "--json"])
        .args(["--requant", "q8_0", "--db", db.to_str().unwrap()])
        .arg("--model")
        .arg(&model)
        .env("TRACING_ENERGY_POWERCAP", &fake.root)
        .env_remove("TRACING_ENERGY_POWERMETRICS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", both(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["power_source"], "rapl");
    assert_eq!(s["estimated"], false);
    assert!(s["total_energy_mj"].as_f64().unwrap() > 0.0);
    let c = rusqlite::Connection::open(&db).unwrap();
    let (method, cadence): (String, f64) = c
        .query_row(
            "SELECT power_method, counter_update_ms FROM profiling_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(method.contains("powercap energy_uj"), "{method}");
    assert!(cadence > 0.0 && cadence < 20.0, "{cadence} ms");
}
