//! `tracing-energy profile` and `examples/profile.rs` (which includes this file with
//! `#[path]`): the flags, their conversion into [`ProfileOptions`], fetching the default
//! model, signal handling, and the printed summary. The profiling itself is
//! [`tracing_energy::candle::profile`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tracing_energy::candle::profile::{
    run_with_events, ProfileError, ProfileEvent, ProfileOptions, ProfileOutcome,
};
use tracing_energy::candle::repeat::{run_repeated, RepeatEvent, Repetitions};
use tracing_energy::candle::{DeviceKind, Requant, SMOLLM2_PATH};
use tracing_energy::power::SourceSpec;
use tracing_energy::report::experiment::RunMetrics;
use tracing_energy::SyncPoint;

/// What to profile and how.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArgs {
    /// The prompt (wrapped in the model's chat template unless --raw).
    #[arg(long, default_value = "What is the capital of France?")]
    pub prompt: String,
    /// A system message for the chat template.
    #[arg(long)]
    pub system: Option<String>,
    /// Use the prompt verbatim (special tokens such as <|im_start|> are parsed).
    #[arg(long)]
    pub raw: bool,
    /// Generate at most this many tokens (at least 1: the prefill yields the first).
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub max_tokens: usize,
    /// The GGUF model file (default: SmolLM2-135M-Instruct, fetched into models/ when missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The profile database.
    #[arg(long, default_value = "profiles.db", env = "TRACING_ENERGY_DB")]
    pub db: PathBuf,
    /// Power source: auto, powermetrics, rapl, nvml, rapl+nvml, estimate, replay:PATH or none.
    #[arg(long, default_value = "auto")]
    pub power: String,
    /// NVIDIA GPUs to read with nvml or rapl+nvml, e.g. `0,2` (default: those
    /// CUDA_VISIBLE_DEVICES names, else all).
    #[arg(long)]
    pub gpus: Option<String>,
    /// With --power powermetrics: also ask for its `tasks` sampler, so that the run stores
    /// powermetrics' own power (an estimate: its CPU-time share of the measured CPU power).
    /// Each sample grows ~20x (up to ~550 KB) for powermetrics to write and us to parse.
    #[arg(long)]
    pub powermetrics_tasks: bool,
    /// Power sample interval in milliseconds (1 to 600000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub interval_ms: u64,
    /// Seconds of idle power to sample before the model loads, so that every figure can be
    /// read gross or dynamic (above idle); 0 turns it off. Default: 2 with a sensor
    /// (powermetrics, rapl, nvml, rapl+nvml, replay), none with the estimate or --power none.
    #[arg(long, value_parser = baseline_seconds)]
    pub baseline_s: Option<f64>,
    /// How energy is shared between sections: overlap (time shares of each power window)
    /// or regression (each component kind's power fitted over the run's windows; falls
    /// back to overlap, with a warning, where the windows cannot tell the kinds apart).
    #[arg(long, default_value = "overlap")]
    pub attribution: tracing_energy::Attribution,
    /// Tags for the run (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// An experiment name for the run.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Run the same generation without the profiler (to measure its overhead).
    #[arg(long)]
    pub no_profile: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Sampling temperature; 0 is greedy (deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 299792458)]
    pub seed: u64,
    /// Re-quantize the weights at load: none or q8_0 (much faster decode on CPU).
    #[arg(long, default_value = "none")]
    pub requant: String,
    /// Device: cpu, metal or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Where to synchronize a GPU device: token or layer.
    #[arg(long, default_value = "token")]
    pub sync: String,
    /// Do not print the response as it is generated.
    #[arg(long)]
    pub quiet: bool,
    /// Repeat the same generation N times with one model load (one run each, one
    /// experiment), then print the mean, standard deviation and 95 % interval of decode
    /// and prefill energy per token and of tokens/s.
    #[arg(long, value_parser = at_least_one_repetition)]
    pub repeat: Option<usize>,
    /// With --repeat: generate M times first without counting them (stored in the model
    /// load's run, tagged `warmup`).
    #[arg(long, default_value_t = 0, requires = "repeat")]
    pub warmup: usize,
    /// Serve live Prometheus metrics at http://ADDR/metrics while the profile runs (power,
    /// energy, energy per span path, tokens, dropped records), e.g. 127.0.0.1:9464; port 0
    /// picks a free one. The address is printed on stderr.
    #[arg(long, value_parser = socket_addr, conflicts_with = "no_profile")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn socket_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not an address and port: give IP:PORT, e.g. 127.0.0.1:9464 (this machine only) or 0.0.0.0:9464 (every interface)")
    })
}

/// Says where the live metrics are served (on stderr, so that `--json` stays one object).
fn announce_metrics(addr: std::net::SocketAddr) {
    eprintln!("metrics: http://{addr}/metrics");
    if !addr.ip().is_loopback() {
        eprintln!(
            "metrics: listening on {}, reachable from other machines",
            addr.ip()
        );
    }
}

fn at_least_one_repetition(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => {
            Err("0 repetitions measure nothing: give at least 1 (2 or more for an interval)".into())
        }
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{text}` is not a number of repetitions: {e}")),
    }
}

fn baseline_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Ok(s),
        Ok(_) => Err(format!(
            "`{text}`: give seconds from 0 (no baseline) to 3600"
        )),
        Err(e) => Err(format!("`{text}` is not a number of seconds: {e}")),
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => {
            Err("0 generates nothing: give at least 1 (the prefill yields the first token)".into())
        }
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{text}` is not a token count: {e}")),
    }
}

impl ProfileArgs {
    /// The typed options, with the default model fetched when `--model` is not given.
    pub fn to_options(&self) -> anyhow::Result<ProfileOptions> {
        let quiet = self.quiet || self.json;
        let requant: Requant = self.requant.parse().map_err(ProfileError::from)?;
        let device: DeviceKind = self.device.parse().map_err(ProfileError::from)?;
        let model = match &self.model {
            Some(p) => p.clone(),
            None => ensure_default_model(quiet)?,
        };
        let power = match self.power.as_str() {
            "none" if self.powermetrics_tasks => {
                return Err(ProfileError::Setting(
                    "--powermetrics-tasks measures powermetrics' own power, and --power none runs no source; use --power powermetrics with it, or leave it out".into(),
                )
                .into())
            }
            "none" => None,
            other => {
                let mut spec = SourceSpec::parse(other).map_err(ProfileError::from)?;
                if let Some(gpus) = &self.gpus {
                    spec = spec.with_gpus(gpus).map_err(ProfileError::from)?;
                }
                if self.powermetrics_tasks {
                    spec = spec.with_powermetrics_tasks().map_err(ProfileError::from)?;
                }
                Some(spec)
            }
        };
        let sync = match self.sync.as_str() {
            "token" => SyncPoint::PerToken,
            "layer" => SyncPoint::PerLayer,
            other => {
                return Err(
                    ProfileError::Setting(format!("--sync {other}: use token or layer")).into(),
                )
            }
        };
        Ok(ProfileOptions {
            prompt: self.prompt.clone(),
            system: self.system.clone(),
            raw: self.raw,
            max_tokens: self.max_tokens,
            model,
            db: self.db.clone(),
            power,
            interval: Duration::from_millis(self.interval_ms),
            tags: self.tags.clone(),
            experiment: self.experiment.clone(),
            no_profile: self.no_profile,
            temperature: self.temperature,
            seed: self.seed,
            requant,
            device,
            sync,
            baseline: self.baseline_s.map(Duration::from_secs_f64),
            attribution: self.attribution,
            metrics_addr: self.metrics_addr,
        })
    }
}

/// Runs `scripts/fetch-model.sh` (of this package) when the default model is missing.
pub fn ensure_default_model(quiet: bool) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(SMOLLM2_PATH);
    if path.is_file() {
        return Ok(path);
    }
    if !quiet {
        eprintln!(
            "model {} is missing: fetching it with scripts/fetch-model.sh",
            path.display()
        );
    }
    let fetch_failed = |why: String| {
        anyhow::anyhow!(
            "fetching the model failed: {why}. Fix: run scripts/fetch-model.sh and read its message"
        )
    };
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/fetch-model.sh"))
        .status()
        .map_err(|e| fetch_failed(e.to_string()))?;
    if !status.success() || !path.is_file() {
        return Err(fetch_failed(format!(
            "scripts/fetch-model.sh ended with {status}"
        )));
    }
    Ok(path)
}

/// Ctrl-C and SIGTERM handling for a profile: the first signal raises the flag given to
/// [`run_with_events`] (generation stops at the next token and the run is finished as
/// `interrupted`); a second one exits at once.
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    signal: Arc<std::sync::atomic::AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers (async-signal-safe: they only store to atomics).
    pub fn install() -> std::io::Result<Interrupt> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the previous signal left it.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag))?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(Interrupt { flag, signal })
    }

    /// The flag for [`run_with_events`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// The conventional exit code after the signal that came (130 for SIGINT, 143 for
    /// SIGTERM), `None` when none came.
    pub fn exit_code(&self) -> Option<u8> {
        match self.signal.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            sig => Some((128 + sig).min(255) as u8),
        }
    }
}

/// `profile`: streams the response (unless --quiet or --json), then prints the summary.
/// A run stopped by a signal exits with 128 + the signal, as a shell reports a program a
/// signal stopped.
pub fn main_profile(args: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let options = args.to_options()?;
    if let Some(repeat) = args.repeat {
        return main_repeat(args, &options, repeat, &interrupt);
    }
    let quiet = args.quiet || args.json;
    let outcome = run_with_events(&options, Some(interrupt.flag()), |event| {
        if let ProfileEvent::Metrics(addr) = event {
            return announce_metrics(addr);
        }
        if quiet {
            return;
        }
        match event {
            ProfileEvent::Metrics(_) => {}
            ProfileEvent::Token(text) => {
                print!("{}", terminal_safe(text));
                let _ = std::io::stdout().flush();
            }
            ProfileEvent::Generated => println!(),
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        print_summary(&outcome);
    }
    Ok(match interrupt.exit_code() {
        Some(code) if outcome.interrupted() => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    })
}

/// `profile --repeat N [--warmup M]`: one line per repetition, then the statistics.
fn main_repeat(
    args: &ProfileArgs,
    options: &ProfileOptions,
    repeat: usize,
    interrupt: &Interrupt,
) -> anyhow::Result<ExitCode> {
    let reps = Repetitions {
        repeat,
        warmup: args.warmup,
    };
    let quiet = args.quiet || args.json;
    let mut mid_line = false;
    let outcome = run_repeated(options, reps, Some(interrupt.flag()), |event| {
        if let RepeatEvent::Metrics(addr) = event {
            return announce_metrics(addr);
        }
        if args.json {
            return;
        }
        match event {
            RepeatEvent::Start { index, warmup } if !quiet => {
                if std::mem::take(&mut mid_line) {
                    println!();
                }
                let (what, of) = if warmup {
                    ("warm-up", reps.warmup)
                } else {
                    ("repetition", reps.repeat)
                };
                println!("--- {what} {}/{of} ---", index + 1);
            }
            RepeatEvent::Token(text) if !quiet => {
                print!("{}", terminal_safe(text));
                let _ = std::io::stdout().flush();
                mid_line = true;
            }
            RepeatEvent::Done {
                index,
                outcome,
                metrics,
            } => {
                if std::mem::take(&mut mid_line) {
                    println!();
                }
                println!("{}", repetition_line(index, reps.repeat, outcome, metrics));
            }
            _ => {}
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!();
        print!("{}", terminal_safe(&outcome.statistics.to_string()));
        println!(
            "model load and {} warm-up(s): run {} (tagged warmup, left out)",
            reps.warmup, outcome.warmup_run_id
        );
        println!(
            "again from the database: tracing-energy stats --experiment {} --db {}",
            terminal_safe(&outcome.experiment),
            terminal_safe(&options.db.display().to_string())
        );
        for w in outcome.runs.iter().flat_map(|r| &r.warnings) {
            println!("warning: {w}");
        }
    }
    Ok(match interrupt.exit_code() {
        Some(code) if outcome.interrupted => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    })
}

/// "repetition 2/5  run 14: 31 decode tokens, 24.6 tokens/s, 512.3 mJ/token, prefill
/// 40.1 mJ/prompt token": the figures the statistics count.
fn repetition_line(index: usize, of: usize, s: &ProfileOutcome, m: &RunMetrics) -> String {
    let mj = |v: Option<f64>| v.map_or_else(|| "unknown".to_string(), |v| format!("{v:.1} mJ"));
    let status = if s.interrupted() { " INTERRUPTED" } else { "" };
    let dynamic = m
        .dynamic_decode_mj_per_token
        .map_or_else(String::new, |v| format!(" ({v:.1} mJ above idle)"));
    format!(
        "repetition {}/{of}  run {}{status}: {} decode tokens, {} tokens/s, {}/token{dynamic}, prefill {}/prompt token",
        index + 1,
        m.run_id,
        m.decode_tokens,
        m.decode_tokens_per_s
            .map_or_else(|| "unknown".into(), |t| format!("{t:.1}")),
        mj(m.decode_mj_per_token),
        mj(m.prefill_mj_per_prompt_token),
    )
}

/// Generated text as it may reach a terminal: line breaks and tabs kept, every other control
/// character (ESC starts terminal commands) shown escaped, as `\x1b`.
fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                format!("\\x{:02x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Prints the summary for a person.
pub fn print_summary(s: &ProfileOutcome) {
    let mj = |v: Option<f64>| v.map_or_else(|| "unknown".to_string(), |v| format!("{:.1} mJ", v));
    let source = match (&s.power_source, s.estimated) {
        (Some(src), true) => format!("{src} (ESTIMATED from CPU time, not measured)"),
        (Some(src), false) => src.clone(),
        (None, _) => "none (times only)".into(),
    };
    println!("--- energy profile ---");
    if s.interrupted() {
        println!("status            INTERRUPTED: stopped early, what ran is recorded");
    }
    println!("power source      {source}");
    // A dynamic figure next to its gross one, or why there is none.
    let dynamic = |v: Option<f64>| match (&s.baseline, v) {
        (None, _) => String::new(),
        (Some(_), Some(v)) => format!(", {v:.1} mJ above idle"),
        (Some(_), None) => ", unknown above idle".into(),
    };
    match &s.baseline {
        Some(b) => println!("idle baseline     {}", b.describe()),
        None if s.power_source.is_some() => println!(
            "idle baseline     none ({}: figures are gross)",
            tracing_energy::store::NO_BASELINE
        ),
        None => {}
    }
    println!(
        "total energy      {}{}",
        mj(s.total_energy_mj),
        dynamic(s.dynamic_total_energy_mj)
    );
    if let Some(note) = coverage_note(s) {
        println!("coverage          {note}");
    }
    if s.generated_tokens == 0 {
        println!(
            "prefill           did not run ({} prompt tokens)",
            s.prompt_tokens
        );
    } else {
        println!(
            "prefill           {} prompt tokens, {:.1} tokens/s, {} per prompt token{}",
            s.prompt_tokens,
            s.prefill_tokens_per_s,
            mj(s.prefill_energy_per_prompt_token_mj),
            dynamic(s.dynamic_prefill_energy_per_prompt_token_mj)
        );
    }
    match s.decode_tokens_per_s {
        Some(tps) => println!(
            "decode            {} tokens, {:.1} tokens/s, {} per token{}",
            s.generated_tokens.saturating_sub(1),
            tps,
            mj(s.decode_energy_per_token_mj),
            dynamic(s.dynamic_decode_energy_per_token_mj)
        ),
        None => println!("decode            no decode step"),
    }
    println!(
        "per token         {}{} (all generated tokens)",
        mj(s.energy_per_token_mj),
        dynamic(s.dynamic_energy_per_token_mj)
    );
    if !s.hottest.is_empty() {
        println!("hottest components:");
        for h in s.hottest.iter().take(5) {
            let layer = h
                .layer_index
                .map_or_else(|| "model".to_string(), |l| format!("layer {l:>2}"));
            let share = h.share_of_run.map_or(String::new(), |f| {
                format!(" ({:.1}% of the measured energy)", f * 100.0)
            });
            println!(
                "  {layer} {:<10} {:>9.1} mJ{share}",
                h.component, h.energy_mj
            );
        }
    }
    if let Some(cost) = &s.profiler {
        println!("profiler          {}", cost.describe());
        if let Some(p) = &cost.sampler_process {
            println!(
                "  {}: {}",
                tracing_energy::store::SamplerProcessCost::LABEL,
                p.describe()
            );
        }
    }
    print_fit(s);
    match (&s.run_id, &s.db) {
        (Some(id), Some(db)) => println!("run {id} in {}", db.display()),
        _ => println!("not profiled (--no-profile)"),
    }
    if s.dropped_records > 0 {
        println!("warning: {} records were dropped", s.dropped_records);
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
}

/// The attribution line, and under `regression` the fitted power of each component kind.
fn print_fit(s: &ProfileOutcome) {
    if s.power_source.is_none() {
        return;
    }
    let Some(first) = s.component_power.first() else {
        let why = match s.attribution {
            tracing_energy::Attribution::Overlap => "time shares of each power window",
            tracing_energy::Attribution::Regression => "regression fell back, see the warnings",
        };
        println!("attribution       overlap ({why})");
        return;
    };
    println!(
        "attribution       regression: component power fitted over {} power windows",
        first.windows
    );
    for r in &s.component_power {
        println!(
            "  {:<16} {:>9.1} mW ± {:.1}",
            r.component, r.power_mw, r.stderr_mw
        );
    }
}

/// "energy measured for 0.4 s of 3.1 s (13 %): shares are of the measured part" when the
/// samples did not cover the whole run.
fn coverage_note(s: &ProfileOutcome) -> Option<String> {
    tracing_energy::store::coverage_note(s.measured_ms, s.duration_ms).map(|note| {
        format!("{note}: the rest of the run is unmeasured, and shares are of the measured part")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_reaches_the_terminal_without_control_sequences() {
        assert_eq!(terminal_safe("plain\n\ttext"), "plain\n\ttext");
        assert_eq!(
            terminal_safe("a\u{1b}]0;title\u{7}\u{9b}2J"),
            "a\\x1b]0;title\\x07\\x9b2J"
        );
    }
}
