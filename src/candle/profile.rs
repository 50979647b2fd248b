//! The main job as a library call: profile a llama-family GGUF model generating text.
//!
//! [`run`] takes typed [`ProfileOptions`] and returns a [`ProfileOutcome`]. The energy
//! layer is installed as the global subscriber *before* the model is built (candle creates
//! its spans then), the generation streams its text through a callback, and the run's
//! summary is read back from the database. Nothing is printed here: the command line
//! (`tracing-energy profile`, `examples/profile.rs`) parses flags, fetches the default
//! model, handles signals and prints.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing_subscriber::prelude::*;

use super::{DeviceKind, GenerationOptions, Generator, Model, Requant};
use crate::power::SourceSpec;
use crate::store::{HotComponent, RunSummary, Store};
use crate::{EnergyLayer, SyncPoint};

/// What to profile and how.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// The prompt (wrapped in the model's chat template unless `raw`).
    pub prompt: String,
    /// A system message for the chat template.
    pub system: Option<String>,
    /// Use the prompt verbatim (special tokens such as `<|im_start|>` are parsed).
    pub raw: bool,
    /// Generate at most this many tokens.
    pub max_tokens: usize,
    /// The GGUF model file (it must exist: nothing is fetched here).
    pub model: PathBuf,
    /// The profile database.
    pub db: PathBuf,
    /// The power source, `None` for times only.
    pub power: Option<SourceSpec>,
    /// The power sample interval (at least 1 ms is used).
    pub interval: Duration,
    /// Tags for the run.
    pub tags: Vec<String>,
    /// An experiment name for the run.
    pub experiment: Option<String>,
    /// Run the same generation without the profiler (to measure its overhead).
    pub no_profile: bool,
    /// Sampling temperature; 0 is greedy (deterministic).
    pub temperature: f64,
    /// Sampling seed.
    pub seed: u64,
    /// Re-quantize the weights at load.
    pub requant: Requant,
    /// The device.
    pub device: DeviceKind,
    /// Where to synchronize a GPU device.
    pub sync: SyncPoint,
    /// The idle baseline sampled before the model loads: `None` for the default
    /// ([`DEFAULT_BASELINE`] when the source is a sensor, none for the estimate), a zero
    /// duration for none.
    pub baseline: Option<Duration>,
    /// How the run's energy is shared between its sections.
    pub attribution: crate::Attribution,
    /// Serve live Prometheus metrics here while the profile runs (see
    /// [`crate::metrics`]); port 0 picks a free port, announced by
    /// [`ProfileEvent::Metrics`].
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The default idle baseline of a profile with a sensor: 2 s. That is 20 windows at the
/// default 100 ms interval (powermetrics' windows are its interval; RAPL counters update
/// every ~1 ms and NVML's every ~20-100 ms, so each window holds many updates), enough for
/// a stable mean, and short beside the model's load and generation. A replayed capture is
/// treated as the sensor that recorded it: its first 2 s are the baseline.
pub const DEFAULT_BASELINE: Duration = Duration::from_secs(2);

/// The outcome of a profile (the command line's `--json` prints exactly this).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileOutcome {
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
    /// The idle baseline, `None` without one.
    pub baseline: Option<crate::store::Baseline>,
    /// `total_energy_mj` less the idle power over the measured time (mJ; may be negative).
    /// This and every `dynamic_*` figure is `None` without a baseline.
    pub dynamic_total_energy_mj: Option<f64>,
    /// `energy_per_token_mj` above idle: each token row less the idle power over its time.
    pub dynamic_energy_per_token_mj: Option<f64>,
    /// `prefill_energy_per_prompt_token_mj` above idle.
    pub dynamic_prefill_energy_per_prompt_token_mj: Option<f64>,
    /// `decode_energy_per_token_mj` above idle.
    pub dynamic_decode_energy_per_token_mj: Option<f64>,
    /// What profiling cost the process during the run (its threads' CPU time, the hot
    /// path's); `None` with --no-profile.
    pub profiler: Option<crate::store::ProfilerCost>,
    /// The attribution asked for.
    pub attribution: crate::Attribution,
    /// The component power fit the run's rows were attributed by (background first);
    /// empty under `overlap`, or where the fit was refused (the warnings say why).
    pub component_power: Vec<crate::store::ComponentPower>,
}

impl ProfileOutcome {
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
}

/// What [`run_with_events`] reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum ProfileEvent<'a> {
    /// The text of a generated token, as it comes.
    Token(&'a str),
    /// The generation ended (the run is finished and read back next).
    Generated,
    /// Live metrics are served at `http://ADDR/metrics` (before the model loads).
    Metrics(std::net::SocketAddr),
}

/// Profiles one generation, streaming the text of each generated token to `on_token`.
///
/// When `interrupt` is raised (by a Ctrl-C or SIGTERM handler: see
/// `signal_hook::flag::register`), generation stops at the next token, and the run is
/// finished as `interrupted` with everything recorded so far attributed and written.
pub fn run(
    options: &ProfileOptions,
    interrupt: Option<Arc<AtomicBool>>,
    mut on_token: impl FnMut(&str),
) -> Result<ProfileOutcome, ProfileError> {
    run_with_events(options, interrupt, |event| {
        if let ProfileEvent::Token(text) = event {
            on_token(text);
        }
    })
}

/// [`run`], also saying when the generation ended ([`ProfileEvent::Generated`]).
pub fn run_with_events(
    options: &ProfileOptions,
    interrupt: Option<Arc<AtomicBool>>,
    mut on_event: impl FnMut(ProfileEvent<'_>),
) -> Result<ProfileOutcome, ProfileError> {
    let model_path = &options.model;
    if !model_path.is_file() {
        return Err(super::Error::ModelNotFound {
            path: model_path.clone(),
        }
        .into());
    }
    let device = options.device.open(0)?;

    // The subscriber goes in before the model is built: candle creates its spans then.
    let guard = install_layer(options, &device)?;
    if let Some(addr) = guard.as_ref().and_then(crate::EnergyGuard::metrics_addr) {
        on_event(ProfileEvent::Metrics(addr));
    }

    let generated =
        load_generator(options, &device, interrupt, guard.is_some()).and_then(|mut generator| {
            generate_once(&mut generator, options, &mut |t| {
                on_event(ProfileEvent::Token(&t.text))
            })
        });
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
    on_event(ProfileEvent::Generated);
    let mut summary = outcome_of(&out);
    summary.attribution = options.attribution;
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
    read_back(&mut summary, report)?;
    Ok(summary)
}

/// Installs the energy layer (and a log layer for warnings) as the global subscriber, as
/// `options` say; `None` with `no_profile`.
pub(super) fn install_layer(
    options: &ProfileOptions,
    device: &candle_core::Device,
) -> Result<Option<crate::EnergyGuard>, ProfileError> {
    if options.no_profile {
        return Ok(None);
    }
    let model_path = &options.model;
    let mut builder = EnergyLayer::builder()
        .db(&options.db)
        .power(options.power.clone())
        .interval(options.interval.max(Duration::from_millis(1)))
        .model(model_path.file_name().map_or_else(
            || model_path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ))
        .prompt(options.prompt.clone())
        .tags(options.tags.clone())
        .attribution(options.attribution);
    if let Some(addr) = options.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    if let Some(e) = &options.experiment {
        builder = builder.experiment(e.clone());
    }
    builder = match options.baseline {
        None => builder.sensor_baseline(DEFAULT_BASELINE),
        Some(d) => builder.baseline(d),
    };
    if let Some(hook) = super::sync_hook_for(device) {
        builder = builder.synchronize(
            Arc::new(move || {
                if let Err(e) = hook() {
                    tracing::warn!("device synchronize failed: {e}");
                }
            }),
            options.sync,
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
    Ok(Some(guard))
}

/// Loads the model and makes its generator (the energy layer, when `profiled`, calls the
/// device fence at its sync points instead of the generator).
pub(super) fn load_generator(
    options: &ProfileOptions,
    device: &candle_core::Device,
    interrupt: Option<Arc<AtomicBool>>,
    profiled: bool,
) -> Result<Generator, super::Error> {
    let model = Model::load(&options.model, device, options.requant)?;
    let generation = GenerationOptions {
        temperature: options.temperature,
        seed: options.seed,
        ..GenerationOptions::default()
    };
    let mut generator = Generator::new(model, generation)?;
    generator.set_interrupt(interrupt);
    if profiled {
        generator.set_sync_hook(None);
    }
    Ok(generator)
}

/// Generates once, as `options` say (chat template or raw prompt).
pub(super) fn generate_once(
    generator: &mut Generator,
    options: &ProfileOptions,
    stream: &mut dyn FnMut(&super::TokenEvent),
) -> Result<super::GenerationOutput, super::Error> {
    if options.raw {
        generator.generate_text(&options.prompt, options.max_tokens, stream)
    } else {
        generator.generate_chat(
            options.system.as_deref(),
            &options.prompt,
            options.max_tokens,
            stream,
        )
    }
}

/// The outcome of a generation, before any energy is read back.
pub(super) fn outcome_of(out: &super::GenerationOutput) -> ProfileOutcome {
    let prompt_tokens = out.prompt_tokens.len();
    let prefill_tokens_per_s = if out.tokens.is_empty() {
        0.0
    } else {
        prompt_tokens as f64 / out.prefill_time.as_secs_f64().max(1e-9)
    };
    let decode_tokens_per_s = out.decode_ms_per_token().map(|ms| 1000.0 / ms.max(1e-9));
    ProfileOutcome {
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
        baseline: None,
        dynamic_total_energy_mj: None,
        dynamic_energy_per_token_mj: None,
        dynamic_prefill_energy_per_prompt_token_mj: None,
        dynamic_decode_energy_per_token_mj: None,
        profiler: None,
        attribution: crate::Attribution::Overlap,
        component_power: Vec::new(),
    }
}

/// Fills `summary`'s energy figures from the finished run `report` and its stored rows.
pub(super) fn read_back(
    summary: &mut ProfileOutcome,
    report: crate::RunReport,
) -> Result<(), ProfileError> {
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
    if let Some(b) = &report.baseline {
        // Each token row less the idle power over its own time.
        let dynamic = |t: &crate::store::Row<crate::store::TokenRecord>| {
            t.record
                .measured
                .energy_mj
                .map(|e| b.dynamic_mj(e, t.record.measured.duration_ms()))
        };
        let all: Vec<f64> = tokens.iter().filter_map(dynamic).collect();
        summary.dynamic_energy_per_token_mj =
            known.then(|| all.iter().sum::<f64>() / tokens.len() as f64);
        summary.dynamic_prefill_energy_per_prompt_token_mj =
            prefill.and_then(|p| dynamic(p).map(|e| e / p.record.n_tokens.max(1) as f64));
        let decode: Vec<f64> = tokens
            .iter()
            .filter(|t| t.record.phase == "decode")
            .filter_map(dynamic)
            .collect();
        summary.dynamic_decode_energy_per_token_mj =
            (!decode.is_empty()).then(|| decode.iter().sum::<f64>() / decode.len() as f64);
    }
    summary.profiler = report.profiler;
    summary.component_power = store.get_component_power(report.run_id)?;
    summary.baseline = report.baseline;
    summary.dynamic_total_energy_mj = report.dynamic_total_energy_mj;
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
    Ok(())
}
