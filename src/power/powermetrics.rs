//! The `powermetrics` source (macOS): CPU, GPU and Neural Engine energy from Apple's tool.
//!
//! Runs `sudo -n powermetrics --samplers cpu_power,gpu_power -i <ms> -f plist -b 0`
//! (without `sudo` when already root) and reads its output through a pipe:
//! - `-b 0` turns output buffering off, so each sample arrives when its window ends;
//! - `sudo -n` fails at once instead of prompting when no sudoers rule allows it
//!   (`scripts/setup_powermetrics.sh` installs one that allows only powermetrics);
//! - documents are split at `</plist>` ([`super::plist_stream::PlistSplitter`]) and read
//!   with `plist::Value` (strict structs fail on the repeated keys of the `gpu` dictionary);
//! - windows are chained back to back by `elapsed_ns` from a monotonic anchor (see
//!   `chain.rs`), because powermetrics' own timestamps have 1-second resolution.
//!
//! With [`PowermetricsSource::tasks`] it also asks for the `tasks` sampler, whose per-task
//! CPU times tell powermetrics' own share of each window: its estimated power (CPU-time
//! share x measured CPU energy) is reported with every window
//! ([`SourceContext::report_own_process`]; see `powermetrics_tasks.rs`). Off by default: the
//! task list makes each document about 20 times larger to write and to parse.
//!
//! The environment variable `TRACING_ENERGY_POWERMETRICS` replaces the executable's path
//! (for a powermetrics elsewhere, or a test double).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::Mutex;

use super::chain::WindowChain;
use super::plist_stream::{parse_document_for, PlistSplitter};
use super::{Availability, PowerSample, PowerSource, SourceContext, SourceEnd};
use crate::{clock, Error, Result};

/// Where macOS installs powermetrics.
pub const DEFAULT_PATH: &str = "/usr/bin/powermetrics";
/// The environment variable that overrides the executable's path.
pub const PATH_ENV: &str = "TRACING_ENERGY_POWERMETRICS";
/// The samplers asked for by default.
pub const DEFAULT_SAMPLERS: &str = "cpu_power,gpu_power";
/// The sampler that lists every task with its CPU time (see [`PowermetricsSource::tasks`]).
pub const TASKS_SAMPLER: &str = "tasks";

/// The most bytes one document may take before the output is taken as not plist.
const MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// The longest a stop waits for powermetrics to exit before killing it.
const MAX_STOP_GRACE: Duration = Duration::from_secs(3);
/// How much of powermetrics' stderr is kept for error messages.
const STDERR_KEEP_BYTES: usize = 16 << 10;

/// Reads power from Apple's `powermetrics`.
#[derive(Debug, Clone)]
pub struct PowermetricsSource {
    program: PathBuf,
    overridden: bool,
    samplers: String,
    tasks: bool,
}

impl Default for PowermetricsSource {
    fn default() -> Self {
        PowermetricsSource::new()
    }
}

impl PowermetricsSource {
    /// The system's powermetrics, or the one `TRACING_ENERGY_POWERMETRICS` names.
    pub fn new() -> PowermetricsSource {
        match std::env::var_os(PATH_ENV).filter(|v| !v.is_empty()) {
            Some(p) => PowermetricsSource {
                program: PathBuf::from(p),
                overridden: true,
                samplers: DEFAULT_SAMPLERS.into(),
                tasks: false,
            },
            None => PowermetricsSource {
                program: PathBuf::from(DEFAULT_PATH),
                overridden: false,
                samplers: DEFAULT_SAMPLERS.into(),
                tasks: false,
            },
        }
    }

    /// Runs the executable at `program` instead.
    pub fn with_program(program: impl Into<PathBuf>) -> PowermetricsSource {
        PowermetricsSource {
            program: program.into(),
            overridden: true,
            samplers: DEFAULT_SAMPLERS.into(),
            tasks: false,
        }
    }

    /// Asks for other samplers (comma-separated, as powermetrics' `--samplers`). Asking for
    /// a sampler the OS lacks makes powermetrics exit with an error.
    pub fn samplers(mut self, samplers: impl Into<String>) -> PowermetricsSource {
        self.samplers = samplers.into();
        self
    }

    /// Also asks for the `tasks` sampler (`true`), so that every window tells
    /// powermetrics' own CPU time and its estimated power: its CPU-time share of all tasks
    /// times the window's measured CPU energy, stored on the run with the profiler's own
    /// cost. Each document grows from ~7-65 KB to up to ~550 KB, which powermetrics writes
    /// and the sampler thread parses (see BENCHMARKS.md for the parse cost). A document
    /// that lists tasks is read the same way when `tasks` is asked for with
    /// [`samplers`](Self::samplers).
    pub fn tasks(mut self, tasks: bool) -> PowermetricsSource {
        self.tasks = tasks;
        self
    }

    /// The samplers powermetrics is asked for (`--samplers`).
    pub fn samplers_asked(&self) -> String {
        let asked = self.samplers.split(',').any(|s| s.trim() == TASKS_SAMPLER);
        if self.tasks && !asked {
            format!("{},{TASKS_SAMPLER}", self.samplers)
        } else {
            self.samplers.clone()
        }
    }

    /// The executable that will run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The full command line for a given interval: program first.
    pub fn command_line(&self, interval: Duration) -> Vec<String> {
        let mut argv = Vec::new();
        if !is_root() {
            argv.extend(["sudo".to_string(), "-n".to_string()]);
        }
        argv.push(self.program.display().to_string());
        let ms = interval.as_millis().max(1).to_string();
        let samplers = self.samplers_asked();
        argv.extend(
            ["--samplers", &samplers, "-i", &ms, "-f", "plist", "-b", "0"].map(String::from),
        );
        argv
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const SETUP_FIX: &str = "run `scripts/setup_powermetrics.sh` once (it allows only powermetrics to run as root without a password), or run as root";

impl PowerSource for PowermetricsSource {
    fn name(&self) -> String {
        "powermetrics".into()
    }

    fn estimated(&self) -> bool {
        false
    }

    fn is_available(&self) -> Availability {
        if !self.overridden && !cfg!(target_os = "macos") {
            return Availability::Unavailable {
                reason: format!(
                    "powermetrics exists only on macOS, and this is {}",
                    std::env::consts::OS
                ),
                fix: format!(
                    "use the `estimate` source here (or `replay:FILE` with a recorded capture); on a Mac with powermetrics elsewhere, set {PATH_ENV}"
                ),
            };
        }
        let meta = match std::fs::metadata(&self.program) {
            Ok(m) => m,
            Err(e) => {
                return Availability::Unavailable {
                    reason: format!("{} cannot be found ({e})", self.program.display()),
                    fix: format!(
                        "powermetrics ships with macOS at {DEFAULT_PATH}; set {PATH_ENV} to its path if it is elsewhere"
                    ),
                }
            }
        };
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Availability::Unavailable {
                reason: format!("{} is not an executable file", self.program.display()),
                fix: format!("point {PATH_ENV} at the powermetrics executable"),
            };
        }
        if !is_root() {
            let check = Command::new("sudo")
                .arg("-n")
                .arg("-l")
                .arg(&self.program)
                .stdin(Stdio::null())
                .output();
            match check {
                Err(e) => {
                    return Availability::Unavailable {
                        reason: format!("powermetrics needs root and `sudo` cannot be run ({e})"),
                        fix: "run as root".into(),
                    }
                }
                Ok(out) if !out.status.success() => {
                    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    return Availability::Unavailable {
                        reason: format!(
                            "powermetrics needs root, and `sudo -n` may not run it without a password{}",
                            if said.is_empty() { String::new() } else { format!(" (sudo said: {said})") }
                        ),
                        fix: SETUP_FIX.into(),
                    };
                }
                Ok(_) => {}
            }
        }
        Availability::Available(format!(
            "will run `{}`",
            self.command_line(Duration::from_millis(100)).join(" ")
        ))
    }

    fn run(&mut self, ctx: &mut SourceContext) -> Result<SourceEnd> {
        let argv = self.command_line(ctx.interval());
        let spawn_ns = clock::now_ns();
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|cause| Error::Spawn {
                program: argv[0].clone(),
                fix: if cause.kind() == std::io::ErrorKind::NotFound {
                    format!("check that {} exists (or set {PATH_ENV})", argv[0])
                } else {
                    "check its permissions".into()
                },
                cause,
            })?;
        let child_pid = child.id();
        let mut child = ChildGuard::new(child);
        let stdout = child.stdout().expect("stdout is piped");
        let stderr_text = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = spawn_stderr_collector(
            child.stderr().expect("stderr is piped"),
            Arc::clone(&stderr_text),
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader = spawn_reader(stdout, tx, ctx.stop_flag(), ctx.helper_cpu());

        let name = ctx.source_name();
        let mut chain = WindowChain::new(spawn_ns);
        let mut delivered = 0u64;
        let outcome = pump(ctx, &rx, &mut chain, &name, child_pid, &mut delivered);

        if let Pumped::Stop = outcome {
            child.terminate((ctx.interval() * 2 + Duration::from_secs(2)).min(MAX_STOP_GRACE));
            let _ = reader.join();
            join_with_timeout(stderr_thread, Duration::from_millis(500));
            return Ok(SourceEnd::Stopped);
        }
        // The output ended or broke: the process is exiting (or is made to).
        let status = child.wait_for_exit(Duration::from_secs(3));
        let _ = reader.join();
        join_with_timeout(stderr_thread, Duration::from_millis(500));
        let stderr = String::from_utf8_lossy(&stderr_text.lock())
            .trim()
            .to_string();
        let (partial, read_error) = match outcome {
            Pumped::Eof { partial } => (partial, None),
            Pumped::ReadError(e) => (0, Some(e)),
            Pumped::Stop => unreachable!(),
        };
        // powermetrics samples until it is stopped: ending on its own after samples is the
        // end of its data (a capture played back); ending before any is a failure.
        if read_error.is_none()
            && partial == 0
            && delivered > 0
            && status.is_some_and(|s| s.success())
        {
            return Ok(SourceEnd::Finished);
        }
        let mut reason = match (&read_error, status) {
            (Some(e), _) => format!("reading its output failed: {e}"),
            (None, Some(s)) => format!("{} {}", argv[0], describe_exit(s)),
            (None, None) => format!("{} closed its output but did not exit", argv[0]),
        };
        reason.push_str(&format!(" after {delivered} samples"));
        if partial > 0 {
            reason.push_str(&format!(
                "; an incomplete last document ({partial} bytes) was discarded"
            ));
        }
        if stderr.is_empty() {
            reason.push_str("; it printed nothing on stderr");
        } else {
            reason.push_str(&format!("; it printed on stderr: {stderr}"));
        }
        if stderr.contains("superuser") || stderr.contains("password") {
            reason.push_str(&format!(". Fix: {SETUP_FIX}"));
        }
        Err(Error::SourceFailed {
            source_name: name.to_string(),
            reason,
        })
    }
}

enum ReaderMsg {
    Doc(Vec<u8>, u64),
    Eof { partial: usize },
    Error(std::io::Error),
}

enum Pumped {
    Stop,
    Eof { partial: usize },
    ReadError(std::io::Error),
}

fn pump(
    ctx: &mut SourceContext,
    rx: &Receiver<ReaderMsg>,
    chain: &mut WindowChain,
    name: &Arc<str>,
    child_pid: u32,
    delivered: &mut u64,
) -> Pumped {
    let stop = ctx.stop_channel().clone();
    loop {
        let msg = select! {
            recv(rx) -> msg => msg,
            recv(stop) -> _ => return Pumped::Stop,
        };
        match msg {
            Ok(ReaderMsg::Doc(doc, arrival_ns)) => {
                match parse_document_for(&doc, Some(child_pid)) {
                    Ok(reading) => {
                        let (start, end) = chain.place(reading.elapsed_ns, arrival_ns);
                        match PowerSample::new(start, end, reading.energy, Arc::clone(name), false)
                        {
                            Some(sample) => {
                                // Before the sample: whoever sees it sees its window counted.
                                if let Some(task) = &reading.sampler_task {
                                    let own = task.window(reading.energy.cpu, sample.duration_ns());
                                    ctx.report_own_process(own);
                                }
                                ctx.emit(sample);
                                *delivered += 1;
                            }
                            None => {
                                ctx.reject("unusable window", "empty window or non-finite value")
                            }
                        }
                    }
                    Err(problem) => {
                        chain.break_chain();
                        ctx.reject(problem.kind(), &problem.to_string());
                    }
                }
            }
            Ok(ReaderMsg::Eof { partial }) => return Pumped::Eof { partial },
            Ok(ReaderMsg::Error(e)) => return Pumped::ReadError(e),
            Err(_) => return Pumped::Eof { partial: 0 },
        }
    }
}

/// Reads stdout, splits documents, stamps each with its arrival time. Polls so that a
/// stop request closes the pipe even when powermetrics cannot be signalled (it runs as
/// root under sudo): powermetrics then dies of SIGPIPE at its next write.
fn spawn_reader(
    mut stdout: ChildStdout,
    tx: Sender<ReaderMsg>,
    stop: Arc<AtomicBool>,
    cpu: crate::cpu_time::CpuSlot,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("tracing-energy-powermetrics-reader".into())
        .spawn(move || {
            // Its CPU time counts in the sampler's (the profiler's own cost).
            let cpu = cpu.publish_on_drop();
            let mut splitter = PlistSplitter::new();
            let mut buf = vec![0u8; 64 << 10];
            let fd = stdout.as_raw_fd();
            loop {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, owned by this frame, for the fd of `stdout`.
                let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
                if ready == 0 {
                    continue;
                }
                if ready < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    let _ = tx.send(ReaderMsg::Error(e));
                    return;
                }
                match stdout.read(&mut buf) {
                    Ok(0) => {
                        let partial = splitter.pending().len();
                        let _ = tx.send(ReaderMsg::Eof { partial });
                        return;
                    }
                    Ok(n) => {
                        let arrival = clock::now_ns();
                        cpu.publish();
                        for doc in splitter.push(&buf[..n]) {
                            if tx.send(ReaderMsg::Doc(doc, arrival)).is_err() {
                                return;
                            }
                        }
                        if splitter.pending().len() > MAX_DOCUMENT_BYTES {
                            let _ = tx.send(ReaderMsg::Error(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!(
                                    "more than {} MB without `</plist>`: the output is not `-f plist` documents",
                                    MAX_DOCUMENT_BYTES >> 20
                                ),
                            )));
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(ReaderMsg::Error(e));
                        return;
                    }
                }
            }
        })
        .expect("spawn the powermetrics reader thread")
}

fn spawn_stderr_collector(mut stderr: ChildStderr, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("tracing-energy-powermetrics-stderr".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut kept = into.lock();
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > STDERR_KEEP_BYTES {
                    let cut = kept.len() - STDERR_KEEP_BYTES;
                    kept.drain(..cut);
                }
            }
        })
        .expect("spawn the powermetrics stderr thread")
}

fn join_with_timeout(handle: JoinHandle<()>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
        _ => format!("ended ({status})"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        _ => "",
    }
}

/// Owns the child process: never leaves it running, also when unwinding.
struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    fn stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }

    /// Asks the process to end (SIGTERM; the reader closing the pipe covers a process we
    /// may not signal), then SIGKILL after `grace`.
    fn terminate(&mut self, grace: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: plain kill(2) on our own child's pid; failure (EPERM) is harmless.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if self.wait_for_exit(grace).is_none() {
            self.kill_and_reap();
        }
    }

    fn kill_and_reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // Reap in the background: a process we may not signal must not block us.
            let _ = std::thread::Builder::new()
                .name("tracing-energy-reaper".into())
                .spawn(move || {
                    let _ = child.wait();
                });
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate(Duration::from_millis(500));
        }
    }
}
