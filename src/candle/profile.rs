//! The main job: profile a llama-family GGUF model generating text, from one call.
//!
//! Used by `examples/profile.rs` and by `tracing-energy profile`. The energy layer is
//! installed as the global subscriber *before* the model is built (candle creates its spans
//! then), the generation streams its text through a callback, and the run's summary is read
//! back from the database.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing_subscriber::prelude::*;

use super::{DeviceKind, GenerationOptions, Generator, Model, Requant, SMOLLM2_PATH};
use crate::power::SourceSpec;
use crate::store::{HotComponent, RunSummary, Store};
use crate::{EnergyLayer, SyncPoint};

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
    /// Power sample interval in milliseconds (1 to 600000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub interval_ms: u64,
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

/// The printed summary (`--json` prints exactly this).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileSummary {
    /// The run's id, `None` with --no-profile.
    pub run_id: Option<i64>,
    /// The database, `None` with --no-profile.
    pub db: Option<PathBuf>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (the prefill's included).
    pub generated_tokens: usize,
    /// Prompt tokens per second of the prefill.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second of the decode steps (`None` without any).
    pub decode_tokens_per_s: Option<f64>,
    /// Energy measured over the run (mJ).
    pub total_energy_mj: Option<f64>,
    /// Energy of the generation (prefill + decode token rows) per generated token (mJ).
    pub energy_per_token_mj: Option<f64>,
    /// Prefill energy per prompt token (mJ).
    pub prefill_energy_per_prompt_token_mj: Option<f64>,
    /// Mean energy of one decode step (mJ).
    pub decode_energy_per_token_mj: Option<f64>,
    /// The power source, `None` without one.
    pub power_source: Option<String>,
    /// True when the energy is estimated, not measured.
    pub estimated: bool,
    /// The hottest (layer, component) pairs.
    pub hottest: Vec<HotComponent>,
    /// The generated text.
    pub response: String,
    /// Records dropped while profiling.
    pub dropped_records: u64,
    /// How the run ended: `complete`, `interrupted` or `failed` (`None` with --no-profile).
    pub status: Option<crate::store::RunStatus>,
    /// The run's length (ms).
    pub duration_ms: Option<f64>,
    /// How much of the run power samples covered (ms).
    pub measured_ms: Option<f64>,
    /// What went wrong with the measurement.
    pub warnings: Vec<String>,
}

impl ProfileSummary {
    /// True when the generation was stopped early by the interrupt flag.
    pub fn interrupted(&self) -> bool {
        self.status == Some(crate::store::RunStatus::Interrupted)
    }
}

/// Why profiling failed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] super::Error),
    /// The profiler failed.
    #[error(transparent)]
    Profile(#[from] crate::Error),
    /// A setting is not valid.
    #[error("{0}")]
    Setting(String),
    /// The model could not be fetched.
    #[error(
        "fetching the model failed: {0}. Fix: run scripts/fetch-model.sh and read its message"
    )]
    Fetch(String),
}

/// Ctrl-C and SIGTERM handling for a profile: the first signal raises the flag given to
/// [`run`] (generation stops at the next token and the run is finished as
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

    /// The flag for [`run`].
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

/// Runs `scripts/fetch-model.sh` when the default model is missing.
pub fn ensure_default_model(quiet: bool) -> Result<PathBuf, ProfileError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
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
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/fetch-model.sh"))
        .status()
        .map_err(|e| ProfileError::Fetch(e.to_string()))?;
    if !status.success() || !path.is_file() {
        return Err(ProfileError::Fetch(format!(
            "scripts/fetch-model.sh ended with {status}"
        )));
    }
    Ok(path)
}

/// Profiles one generation. Streams the response to stdout unless `quiet` or `json`.
///
/// When `interrupt` is raised (by a Ctrl-C or SIGTERM handler: see
/// `signal_hook::flag::register`), generation stops at the next token, and the run is
/// finished as `interrupted` with everything recorded so far attributed and written.
pub fn run(
    args: &ProfileArgs,
    interrupt: Option<Arc<AtomicBool>>,
) -> Result<ProfileSummary, ProfileError> {
    let quiet = args.quiet || args.json;
    let requant: Requant = args.requant.parse()?;
    let device_kind: DeviceKind = args.device.parse()?;
    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => ensure_default_model(quiet)?,
    };
    let power = match args.power.as_str() {
        "none" => None,
        other => {
            let spec = SourceSpec::parse(other)?;
            Some(match &args.gpus {
                Some(gpus) => spec.with_gpus(gpus)?,
                None => spec,
            })
        }
    };
    let sync_point = match args.sync.as_str() {
        "token" => SyncPoint::PerToken,
        "layer" => SyncPoint::PerLayer,
        other => {
            return Err(ProfileError::Setting(format!(
                "--sync {other}: use token or layer"
            )))
        }
    };
    if !model_path.is_file() {
        return Err(super::Error::ModelNotFound { path: model_path }.into());
    }
    let device = device_kind.open(0)?;

    // The subscriber goes in before the model is built: candle creates its spans then.
    let guard = if args.no_profile {
        None
    } else {
        let mut builder = EnergyLayer::builder()
            .db(&args.db)
            .power(power)
            .interval(Duration::from_millis(args.interval_ms.max(1)))
            .model(model_path.file_name().map_or_else(
                || model_path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ))
            .prompt(args.prompt.clone())
            .tags(args.tags.clone());
        if let Some(e) = &args.experiment {
            builder = builder.experiment(e.clone());
        }
        if let Some(hook) = super::sync_hook_for(&device) {
            builder = builder.synchronize(
                Arc::new(move || {
                    if let Err(e) = hook() {
                        tracing::warn!("device synchronize failed: {e}");
                    }
                }),
                sync_point,
            );
        }
        let (layer, guard) = builder.build()?;
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .without_time()
            .with_filter(
                tracing_subscriber::EnvFilter::try_from_env("TRACING_ENERGY_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            );
        tracing_subscriber::registry()
            .with(layer)
            .with(log)
            .try_init()
            .map_err(|e| {
                ProfileError::Setting(format!("a global tracing subscriber is already set: {e}"))
            })?;
        Some(guard)
    };

    let generated = (|| -> Result<super::GenerationOutput, super::Error> {
        let model = Model::load(&model_path, &device, requant)?;
        let options = GenerationOptions {
            temperature: args.temperature,
            seed: args.seed,
            ..GenerationOptions::default()
        };
        let mut generator = Generator::new(model, options)?;
        generator.set_interrupt(interrupt.clone());
        if guard.is_some() {
            // The energy layer calls the fence at its sync points instead.
            generator.set_sync_hook(None);
        }
        let mut print = |t: &super::TokenEvent| {
            if !quiet {
                use std::io::Write;
                print!("{}", terminal_safe(&t.text));
                let _ = std::io::stdout().flush();
            }
        };
        if args.raw {
            generator.generate_text(&args.prompt, args.max_tokens, &mut print)
        } else {
            generator.generate_chat(
                args.system.as_deref(),
                &args.prompt,
                args.max_tokens,
                &mut print,
            )
        }
    })();
    let out = match (generated, guard) {
        (Ok(out), guard) => (out, guard),
        (Err(e), Some(guard)) => {
            // Keep what was recorded, and say why the run ended.
            let _ = guard.fail(e.to_string());
            return Err(e.into());
        }
        (Err(e), None) => return Err(e.into()),
    };
    let (out, guard) = out;
    if !quiet {
        println!();
    }
    let prompt_tokens = out.prompt_tokens.len();
    let prefill_tokens_per_s = if out.tokens.is_empty() {
        0.0
    } else {
        prompt_tokens as f64 / out.prefill_time.as_secs_f64().max(1e-9)
    };
    let decode_tokens_per_s = out.decode_ms_per_token().map(|ms| 1000.0 / ms.max(1e-9));
    let mut summary = ProfileSummary {
        run_id: None,
        db: None,
        prompt_tokens,
        generated_tokens: out.tokens.len(),
        prefill_tokens_per_s,
        decode_tokens_per_s,
        total_energy_mj: None,
        energy_per_token_mj: None,
        prefill_energy_per_prompt_token_mj: None,
        decode_energy_per_token_mj: None,
        power_source: None,
        estimated: false,
        hottest: vec![],
        response: out.text.clone(),
        dropped_records: 0,
        status: None,
        duration_ms: None,
        measured_ms: None,
        warnings: Vec::new(),
    };
    let Some(guard) = guard else {
        return Ok(summary);
    };
    guard.set_response(out.text.clone());
    let report = if out.stop_reason == super::StopReason::Interrupted {
        guard.interrupt(format!(
            "interrupted by a signal (Ctrl-C or SIGTERM) after {} generated token(s)",
            out.tokens.len()
        ))?
    } else {
        guard.finish()?
    };
    let store = Store::open_existing(&report.db)?;
    let tokens = store.get_tokens(report.run_id)?;
    let RunSummary { hottest, .. } = store.get_run_summary(report.run_id)?.ok_or_else(|| {
        ProfileError::Setting(format!(
            "run {} vanished from {}",
            report.run_id,
            report.db.display()
        ))
    })?;
    let energies: Vec<f64> = tokens
        .iter()
        .filter_map(|t| t.record.measured.energy_mj)
        .collect();
    let known = energies.len() == tokens.len() && !tokens.is_empty();
    let prefill = tokens.iter().find(|t| t.record.phase == "prefill");
    let decode: Vec<f64> = tokens
        .iter()
        .filter(|t| t.record.phase == "decode")
        .filter_map(|t| t.record.measured.energy_mj)
        .collect();
    summary.run_id = Some(report.run_id);
    summary.db = Some(report.db.clone());
    summary.total_energy_mj = report.total_energy_mj;
    summary.energy_per_token_mj = known.then(|| energies.iter().sum::<f64>() / tokens.len() as f64);
    summary.prefill_energy_per_prompt_token_mj = prefill.and_then(|p| {
        p.record
            .measured
            .energy_mj
            .map(|e| e / p.record.n_tokens.max(1) as f64)
    });
    summary.decode_energy_per_token_mj =
        (!decode.is_empty()).then(|| decode.iter().sum::<f64>() / decode.len() as f64);
    summary.power_source = report.power_source.clone();
    summary.estimated = report.estimated;
    summary.hottest = hottest;
    summary.dropped_records = report.dropped_records;
    summary.status = Some(report.status);
    summary.duration_ms = report.duration_ms;
    summary.measured_ms = report.measured_ms;
    summary.warnings = report.warnings.clone();
    if let Some(e) = &report.source_error {
        summary.warnings.push(e.clone());
    }
    Ok(summary)
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
pub fn print_summary(s: &ProfileSummary) {
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
    println!("total energy      {}", mj(s.total_energy_mj));
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
            "prefill           {} prompt tokens, {:.1} tokens/s, {} per prompt token",
            s.prompt_tokens,
            s.prefill_tokens_per_s,
            mj(s.prefill_energy_per_prompt_token_mj)
        );
    }
    match s.decode_tokens_per_s {
        Some(tps) => println!(
            "decode            {} tokens, {:.1} tokens/s, {} per token",
            s.generated_tokens.saturating_sub(1),
            tps,
            mj(s.decode_energy_per_token_mj)
        ),
        None => println!("decode            no decode step"),
    }
    println!(
        "per token         {} (all generated tokens)",
        mj(s.energy_per_token_mj)
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

/// "energy measured for 0.4 s of 3.1 s (13 %): shares are of the measured part" when the
/// samples did not cover the whole run.
fn coverage_note(s: &ProfileSummary) -> Option<String> {
    let (m, d) = (s.measured_ms?, s.duration_ms?);
    let share = if d > 0.0 {
        (m / d).clamp(0.0, 1.0)
    } else {
        1.0
    };
    (share < 0.995).then(|| {
        format!(
            "energy measured for {:.1} s of {:.1} s ({:.0} %): the rest of the run is unmeasured, and shares are of the measured part",
            m / 1000.0,
            d / 1000.0,
            share * 100.0
        )
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
