//! Repeated profiles: the same generation `repeat` times in one process, one stored run
//! each, and the statistics of their figures ([`crate::report::experiment`]).
//!
//! The model loads once. One energy layer is installed, and its guard
//! [rotates](crate::EnergyGuard::rotate) to a new run at each repetition's end, so the
//! runs' energies add up to the whole period's and no window is counted twice. The first
//! run holds the model load and the `warmup` generations: it is stored, tagged
//! [`WARMUP_TAG`], and left out of the statistics (nothing measured is thrown away, and
//! the load, which is no repetition, stays visible). Each measured repetition is one run
//! tagged [`REPEAT_TAG`]. Every run carries the same experiment name: the one given, else
//! [`default_experiment_name`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

use super::profile::{
    generate_once, install_layer, load_generator, outcome_of, read_back, ProfileError,
    ProfileOptions, ProfileOutcome,
};
use super::StopReason;
use crate::report::experiment::{ExperimentStats, RunMetrics, REPEAT_TAG, WARMUP_TAG};
use crate::store::{NewRun, RunId, Store};

/// How many times to generate.
#[derive(Debug, Clone, Copy)]
pub struct Repetitions {
    /// Measured repetitions (at least 1).
    pub repeat: usize,
    /// Warm-up generations before them (not counted).
    pub warmup: usize,
}

/// What [`run_repeated`] reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum RepeatEvent<'a> {
    /// A generation starts: warm-up `index` (from 0), or measured repetition `index`.
    Start {
        /// Its position among the warm-ups or among the repetitions, from 0.
        index: usize,
        /// True for a warm-up.
        warmup: bool,
    },
    /// The text of a generated token, as it comes.
    Token(&'a str),
    /// Live metrics are served at `http://ADDR/metrics` for all the runs (before the
    /// model loads).
    Metrics(std::net::SocketAddr),
    /// A measured repetition ended and its run was read back.
    Done {
        /// Its position, from 0.
        index: usize,
        /// Its outcome.
        outcome: &'a ProfileOutcome,
        /// Its figures as the statistics count them (read from its stored rows).
        metrics: &'a RunMetrics,
    },
}

/// The outcome of a repeated profile (the command line's `--json` prints exactly this).
#[derive(Debug, Clone, Serialize)]
pub struct RepeatOutcome {
    /// The experiment every run carries.
    pub experiment: String,
    /// Measured repetitions asked for.
    pub repeat: usize,
    /// Warm-up generations asked for.
    pub warmup: usize,
    /// The run holding the model load and the warm-ups (tagged `warmup`).
    pub warmup_run_id: RunId,
    /// One outcome per measured repetition that ran, in order.
    pub runs: Vec<ProfileOutcome>,
    /// True when a signal stopped the repetitions early.
    pub interrupted: bool,
    /// The statistics of the measured runs.
    pub statistics: ExperimentStats,
}

/// `repeat-20250612T101530Z`: an experiment name from the current UTC time.
pub fn default_experiment_name() -> String {
    let fmt =
        time::macros::format_description!("repeat-[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "repeat".into())
}

/// Profiles the same generation `reps.warmup + reps.repeat` times with one model load (see
/// the module documentation). `options.experiment`, when set, names the experiment.
/// When `interrupt` is raised, the generation under way stops at its next token, its run
/// is finished as `interrupted`, and no further repetition starts; the statistics are of
/// the complete runs.
pub fn run_repeated(
    options: &ProfileOptions,
    reps: Repetitions,
    interrupt: Option<Arc<AtomicBool>>,
    mut on_event: impl FnMut(RepeatEvent<'_>),
) -> Result<RepeatOutcome, ProfileError> {
    if reps.repeat == 0 {
        return Err(ProfileError::Setting(
            "--repeat 0 measures nothing: give at least 1".into(),
        ));
    }
    if options.no_profile {
        return Err(ProfileError::Setting(
            "--repeat stores one run per repetition: it cannot go with --no-profile".into(),
        ));
    }
    if !options.model.is_file() {
        return Err(super::Error::ModelNotFound {
            path: options.model.clone(),
        }
        .into());
    }
    let experiment = options
        .experiment
        .clone()
        .unwrap_or_else(default_experiment_name);
    let tagged = |tag: &str| {
        let mut tags = options.tags.clone();
        tags.push(tag.to_string());
        tags
    };
    let setup = ProfileOptions {
        tags: tagged(WARMUP_TAG),
        experiment: Some(experiment.clone()),
        ..options.clone()
    };
    let device = options.device.open(0)?;
    let mut guard = install_layer(&setup, &device)?.expect("profiled: no_profile is refused");
    let warmup_run_id = guard.run_id();
    if let Some(addr) = guard.metrics_addr() {
        on_event(RepeatEvent::Metrics(addr));
    }
    let fail = |guard: crate::EnergyGuard, e: super::Error| -> ProfileError {
        let _ = guard.fail(e.to_string());
        e.into()
    };
    let mut generator = match load_generator(options, &device, interrupt, true) {
        Ok(g) => g,
        Err(e) => return Err(fail(guard, e)),
    };
    // The idle baseline, measured before the warm-up run began, is stored on it; each
    // measured run carries it too.
    let baseline = match Store::open_existing(&options.db)?.get_run(warmup_run_id)? {
        Some(run) => run.baseline,
        None => None,
    };
    for index in 0..reps.warmup {
        on_event(RepeatEvent::Start {
            index,
            warmup: true,
        });
        let generated = generate_once(&mut generator, options, &mut |t| {
            on_event(RepeatEvent::Token(&t.text))
        });
        match generated {
            Ok(out) if out.stop_reason == StopReason::Interrupted => {
                guard
                    .interrupt("interrupted by a signal (Ctrl-C or SIGTERM) during the warm-up")?;
                return Err(ProfileError::Setting(
                    "interrupted during the warm-up: no repetition was measured".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(fail(guard, e)),
        }
    }
    let next_run = |baseline| NewRun {
        model: options
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        prompt: Some(options.prompt.clone()),
        tags: tagged(REPEAT_TAG),
        experiment: Some(experiment.clone()),
        baseline,
        ..NewRun::new()
    };
    guard.rotate(next_run(baseline))?;
    let mut runs = Vec::with_capacity(reps.repeat);
    let mut ids = Vec::with_capacity(reps.repeat);
    let mut guard = Some(guard);
    let mut interrupted = false;
    for index in 0..reps.repeat {
        on_event(RepeatEvent::Start {
            index,
            warmup: false,
        });
        let generated = generate_once(&mut generator, options, &mut |t| {
            on_event(RepeatEvent::Token(&t.text))
        });
        let g = guard.take().expect("a guard until the last repetition");
        let out = match generated {
            Ok(out) => out,
            Err(e) => return Err(fail(g, e)),
        };
        g.set_response(out.text.clone());
        let report = if out.stop_reason == StopReason::Interrupted {
            interrupted = true;
            g.interrupt(format!(
                "interrupted by a signal (Ctrl-C or SIGTERM) in repetition {} of {}",
                index + 1,
                reps.repeat
            ))?
        } else if index + 1 == reps.repeat {
            g.finish()?
        } else {
            let mut g = g;
            let report = g.rotate(next_run(baseline))?;
            guard = Some(g);
            report
        };
        let mut outcome = outcome_of(&out);
        outcome.attribution = options.attribution;
        let id = report.run_id;
        ids.push(id);
        read_back(&mut outcome, report)?;
        let store = Store::open_existing(&options.db)?;
        let metrics = store.read_snapshot(|s| -> crate::Result<Option<RunMetrics>> {
            Ok(match s.get_run(id)? {
                Some(run) => Some(RunMetrics::of(&run, &s.get_tokens(id)?)),
                None => None,
            })
        })?;
        let metrics = metrics.ok_or_else(|| {
            ProfileError::Setting(format!("run {id} vanished from {}", options.db.display()))
        })?;
        on_event(RepeatEvent::Done {
            index,
            outcome: &outcome,
            metrics: &metrics,
        });
        runs.push(outcome);
        if interrupted {
            break;
        }
    }
    drop(generator);
    let store = Store::open_existing(&options.db)?;
    let statistics = ExperimentStats::load_runs(&store, &experiment, &ids)?;
    Ok(RepeatOutcome {
        experiment,
        repeat: reps.repeat,
        warmup: reps.warmup,
        warmup_run_id,
        runs,
        interrupted,
        statistics,
    })
}
