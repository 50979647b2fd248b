//! A fake Linux powercap tree, and the sampler runs and checks the RAPL tests make on it.
//!
//! The fake tree is laid out as Linux lays out `/sys/class/powercap`: zone folders under a
//! `devices` tree, sub-zones nested in their package, and every zone also as a flat
//! symlink at the top. A writer thread advances every zone's `energy_uj` every 1 ms of real
//! time at a known power, replacing the file atomically (write a temporary file, rename it
//! over `energy_uj`), as a sysfs read is atomic.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_energy::power::rapl::RaplMeter;
use tracing_energy::power::{
    PolledSource, PowerSample, SampleBuffer, Sampler, SamplerConfig, SamplerStatus,
};

/// A zone of the fake tree: folder name (`control:socket[:sub]`), `name` file, watts.
pub type Z = (&'static str, &'static str, f64);

/// Two packages (20 W + 15 W = 35 W cpu), DRAM in each (2 W + 1 W = 3 W dram), and zones
/// that must not be added: core and uncore (inside the packages), psys (the platform) and
/// intel-rapl-mmio:0 (package-0 again, through another interface).
pub const MACHINE: [Z; 8] = [
    ("intel-rapl:0", "package-0", 20.0),
    ("intel-rapl:0:0", "core", 12.0),
    ("intel-rapl:0:1", "dram", 2.0),
    ("intel-rapl:1", "package-1", 15.0),
    ("intel-rapl:1:0", "uncore", 2.0),
    ("intel-rapl:1:1", "dram", 1.0),
    ("intel-rapl:2", "psys", 60.0),
    ("intel-rapl-mmio:0", "package-0", 20.0),
];
pub const CPU_W: f64 = 35.0;
pub const DRAM_W: f64 = 3.0;
/// The usual range of a package counter (about 262 kJ).
pub const REAL_RANGE_UJ: u64 = 262_143_328_850;

/// Timing tests run one at a time: the machine may have 2 cores.
static TIMING: Mutex<()> = Mutex::new(());

pub fn timing() -> MutexGuard<'static, ()> {
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
pub struct Fake {
    /// Deleted when the fake is dropped.
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    zones: Arc<Vec<LiveZone>>,
    gone: Arc<Mutex<HashSet<PathBuf>>>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl Fake {
    /// The tree with counters written once, not advancing.
    pub fn still(zones: &[Z], range: impl Fn(&Z) -> u64) -> Fake {
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
    pub fn live(zones: &[Z], range: impl Fn(&Z) -> u64) -> Fake {
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
    pub fn vanish(&self, id: &str) {
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

    pub fn energy_files(&self) -> Vec<PathBuf> {
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
pub fn realtime_if_allowed() {
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

pub fn write_atomically(dir: &Path, value: u64) {
    let tmp = dir.join(".energy_uj.tmp");
    fs::write(&tmp, format!("{value}\n")).unwrap();
    fs::rename(&tmp, dir.join("energy_uj")).unwrap();
}

pub fn real_range(_: &Z) -> u64 {
    REAL_RANGE_UJ
}

/// Runs a RAPL sampler on `root` at `interval` for `run`, through a private buffer and a
/// tap; returns the samples and how the sampler ended.
pub fn sample(root: &Path, interval: Duration, run: Duration) -> (Vec<PowerSample>, SamplerStatus) {
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
pub fn sample_unstarved(
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
pub fn mean_watts(samples: &[PowerSample], energy: impl Fn(&PowerSample) -> Option<f64>) -> f64 {
    let mj: f64 = samples.iter().map(|s| energy(s).unwrap()).sum();
    let ns: u64 = samples.iter().map(|s| s.duration_ns()).sum();
    mj * 1e6 / ns as f64
}

/// A child's stdout and stderr, for a failure message.
pub fn both(out: &Output) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    format!(
        "stdout:\n{}stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

pub fn within(measured: f64, known: f64, tolerance: f64) -> bool {
    ((measured - known) / known).abs() <= tolerance
}

pub fn check_known_power(samples: &[PowerSample], what: &str) {
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
