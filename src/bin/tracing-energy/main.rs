//! The `tracing-energy` command-line tool.
//!
//! Exit codes: 0 success, 1 error, 2 bad usage (also a bad value: a RUN that is neither a
//! run id nor `latest`, an output file that is the database), 3 not found (no database, no
//! such run, an empty database).
//!
//! Errors are one line, `error: ...`, that names the problem and the fix; never a stack
//! backtrace. Text read from a database (prompts, tags, names) is printed with its control
//! characters escaped (`\x1b`), so that it cannot drive the terminal; JSON output keeps it
//! exact. Output into a closed pipe (`| head`) ends the listing commands quietly.

mod compare;
mod db;
mod experiments;
mod export;
mod fit;
mod merge;
#[cfg(feature = "candle")]
mod profile_cmd;
mod serve;
mod spans;
mod summary_text;
mod table;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use crossbeam_channel::RecvTimeoutError;
use serde::Serialize;
use tracing_energy::power::{
    Availability, Domain, PowerSample, SampleBuffer, Sampler, SamplerConfig, SamplerStatus,
    SourceSpec,
};

/// Energy profiles of traced Rust programs.
#[derive(Parser)]
#[command(name = "tracing-energy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print power samples as they arrive.
    Sample(SampleArgs),
    /// Say which power sources work on this machine, and how to fix those that do not.
    Doctor,
    /// List runs, newest first.
    Runs(db::RunsArgs),
    /// A run's metadata.
    Show(db::RunArgs),
    /// A run's energy per phase, layer and component, and its hottest components.
    Summary(db::RunArgs),
    /// A run's tokens.
    Tokens(db::RunArgs),
    /// A run's layers: mean per token, or one token's (--token I).
    Layers(db::LayersArgs),
    /// A run's hottest (layer, component) pairs.
    Hot(db::HotArgs),
    /// A run's energy per span path (span names from the outermost, joined by `;`).
    Spans(spans::SpansArgs),
    /// Runs whose prompt contains TEXT.
    Search(db::SearchArgs),
    /// Delete a run and all its rows.
    Delete(db::DeleteArgs),
    /// Two runs side by side: time and energy per phase, layer and component, with deltas
    /// (two experiments of repeated runs: `compare-experiments`).
    Compare(compare::CompareArgs),
    /// An experiment's repeated runs: mean, standard deviation and 95 % interval of decode
    /// and prefill energy per token and of tokens/s (see `profile --repeat`).
    Stats(experiments::StatsArgs),
    /// Two experiments' repeated runs compared: per metric, both intervals, the difference,
    /// and whether it is beyond the intervals.
    CompareExperiments(experiments::CompareExperimentsArgs),
    /// What each component kind draws while it runs, fitted over a run's power windows
    /// (non-negative least squares), stored on the run; or why the run cannot tell.
    Fit(db::RunArgs),
    /// Write a self-contained HTML report of a run.
    Report(export::ReportArgs),
    /// Export a run: Chrome/Perfetto trace, CSV, JSON or folded stacks (flame graphs), at a
    /// detail level (phases to ops), optionally gzip-compressed.
    Export(export::ExportArgs),
    /// Copy the runs of several databases (e.g. one per machine) into one, every row kept
    /// and run ids renumbered; a run the output holds already is skipped.
    Merge(merge::MergeArgs),
    /// A local, read-only web app over a database: the runs list, each run's report, two
    /// runs compared, a JSON API and Prometheus metrics.
    Serve(serve::ServeArgs),
    /// Profile a llama-family GGUF model (default SmolLM2-135M) generating text.
    #[cfg(feature = "candle")]
    Profile(Box<profile_cmd::ProfileArgs>),
}

#[derive(clap::Args)]
struct SampleArgs {
    /// Power source: auto, powermetrics, rapl, nvml, rapl+nvml, estimate, or replay:PATH (a
    /// `powermetrics -f plist` capture).
    #[arg(long, default_value = "auto")]
    source: String,
    /// NVIDIA GPUs to read with nvml or rapl+nvml, e.g. `0,2` (default: those
    /// CUDA_VISIBLE_DEVICES names, else all).
    #[arg(long)]
    gpus: Option<String>,
    /// Window length in milliseconds, 1 to 600000 (a replay keeps its recorded windows).
    #[arg(long, default_value_t = 100, value_parser = parse_interval_ms)]
    interval_ms: u64,
    /// Stop after this many samples, 1 or more (default: until Ctrl-C, or the end of a
    /// replay).
    #[arg(long, value_parser = parse_count)]
    count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The longest `sample` window: 10 minutes.
const MAX_INTERVAL_MS: u64 = 600_000;

fn parse_interval_ms(text: &str) -> Result<u64, String> {
    let fix = format!("Fix: give a window length from 1 to {MAX_INTERVAL_MS} ms, e.g. 100");
    match text.parse::<u64>() {
        Ok(ms @ 1..=MAX_INTERVAL_MS) => Ok(ms),
        Ok(_) => Err(format!("out of range. {fix}")),
        Err(_) => Err(format!("not a whole number of milliseconds. {fix}")),
    }
}

fn parse_count(text: &str) -> Result<u64, String> {
    let fix = "Fix: give 1 or more, or leave --count out to sample until Ctrl-C";
    match text.parse::<u64>() {
        Ok(n @ 1..) => Ok(n),
        Ok(_) => Err(format!("--count 0 would print nothing. {fix}")),
        Err(_) => Err(format!("not a number of samples for --count. {fix}")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object per line.
    Jsonl,
}

/// One sample as printed by `sample --format jsonl`. Unknown values are null.
#[derive(Serialize)]
struct SampleLine<'a> {
    source: &'a str,
    start_ns: u64,
    end_ns: u64,
    elapsed_ms: f64,
    cpu_mw: Option<f64>,
    gpu_mw: Option<f64>,
    ane_mw: Option<f64>,
    dram_mw: Option<f64>,
    total_mw: f64,
    energy_mj: f64,
    estimated: bool,
}

impl<'a> SampleLine<'a> {
    fn new(s: &'a PowerSample) -> Self {
        SampleLine {
            source: &s.source,
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            elapsed_ms: s.duration_ns() as f64 / 1e6,
            cpu_mw: s.power_mw(Domain::Cpu),
            gpu_mw: s.power_mw(Domain::Gpu),
            ane_mw: s.power_mw(Domain::Ane),
            dram_mw: s.power_mw(Domain::Dram),
            total_mw: s.total_mw(),
            energy_mj: s.total_mj,
            estimated: s.estimated,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Output into a closed pipe (`tracing-energy runs | head -1`) ends the process quietly,
    // as for other command-line tools, instead of a panic with a backtrace. Not for
    // `sample` and `profile`: they stop their power source (and finish the run) first; nor
    // for `serve`, whose clients may go away mid-answer.
    #[cfg(feature = "candle")]
    let keeps_sigpipe = matches!(
        cli.command,
        Command::Sample(_) | Command::Profile(_) | Command::Serve(_)
    );
    #[cfg(not(feature = "candle"))]
    let keeps_sigpipe = matches!(cli.command, Command::Sample(_) | Command::Serve(_));
    if !keeps_sigpipe {
        // SAFETY: restores the default action of one signal, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    #[cfg(feature = "candle")]
    let installs_its_own = matches!(cli.command, Command::Profile(_));
    #[cfg(not(feature = "candle"))]
    let installs_its_own = false;
    if !installs_its_own {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TRACING_ENERGY_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .without_time()
            .init();
    }
    let result = match cli.command {
        Command::Sample(args) => sample(args),
        Command::Doctor => doctor(),
        Command::Runs(a) => db::runs(a).map(|()| ExitCode::SUCCESS),
        Command::Show(a) => db::show(a).map(|()| ExitCode::SUCCESS),
        Command::Summary(a) => db::summary(a).map(|()| ExitCode::SUCCESS),
        Command::Tokens(a) => db::tokens(a).map(|()| ExitCode::SUCCESS),
        Command::Layers(a) => db::layers(a).map(|()| ExitCode::SUCCESS),
        Command::Hot(a) => db::hot(a).map(|()| ExitCode::SUCCESS),
        Command::Spans(a) => spans::spans(a).map(|()| ExitCode::SUCCESS),
        Command::Fit(a) => fit::fit(a).map(|()| ExitCode::SUCCESS),
        Command::Search(a) => db::search(a).map(|()| ExitCode::SUCCESS),
        Command::Delete(a) => db::delete(a).map(|()| ExitCode::SUCCESS),
        Command::Compare(a) => compare::compare(a).map(|()| ExitCode::SUCCESS),
        Command::Stats(a) => experiments::stats(a).map(|()| ExitCode::SUCCESS),
        Command::CompareExperiments(a) => {
            experiments::compare_experiments(a).map(|()| ExitCode::SUCCESS)
        }
        Command::Report(a) => export::report(a).map(|()| ExitCode::SUCCESS),
        Command::Export(a) => export::export(a).map(|()| ExitCode::SUCCESS),
        Command::Merge(a) => merge::merge(a).map(|()| ExitCode::SUCCESS),
        Command::Serve(a) => serve::serve(a).map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "candle")]
        Command::Profile(args) => profile(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => exit_with(&e),
    }
}

/// Prints the error (its chain on one line, `{:#}`: never a backtrace) and picks the exit
/// code.
fn exit_with(e: &anyhow::Error) -> ExitCode {
    let closed_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if closed_pipe {
        // The reader went away (`| head`): nothing to say, nobody to say it to.
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", table::printable_lines(&format!("{e:#}")));
    let unknown_run = matches!(
        e.downcast_ref::<tracing_energy::Error>(),
        Some(tracing_energy::Error::UnknownRun { .. })
    );
    if e.downcast_ref::<db::NotFound>().is_some() || unknown_run {
        ExitCode::from(3)
    } else if e.downcast_ref::<db::Usage>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// How long `sample` waits for a sample (from the start, or since the last one) before it
/// calls the source hung: 5 windows, and at least 5 s.
fn stall_limit(interval: Duration) -> Duration {
    (interval * 5).max(Duration::from_secs(5))
}

fn sample(args: SampleArgs) -> anyhow::Result<ExitCode> {
    let mut spec = SourceSpec::parse(&args.source)?;
    if let Some(gpus) = &args.gpus {
        spec = spec.with_gpus(gpus)?;
    }
    // A replay keeps its recorded windows, however long: it cannot hang.
    let stall = match spec {
        SourceSpec::Replay(_) => None,
        _ => Some(stall_limit(Duration::from_millis(args.interval_ms))),
    };
    let source = spec.build()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = SamplerConfig::new(Duration::from_millis(args.interval_ms))
        .buffer(std::sync::Arc::new(SampleBuffer::new()))
        .tap(tx);
    let sampler = Sampler::start(source, config).context("cannot start sampling")?;
    if sampler.estimated() {
        eprintln!(
            "note: `{}` is an ESTIMATE from CPU time, not a measurement",
            sampler.source_name()
        );
    }
    let mut out = std::io::stdout().lock();
    if let Format::Table = args.format {
        writeln!(
            out,
            "{:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11}  source",
            "end_ms", "window_ms", "cpu_mW", "gpu_mW", "ane_mW", "dram_mW", "total_mW", "energy_mJ"
        )?;
    }
    let mut printed = 0u64;
    let wanted = args.count.unwrap_or(u64::MAX);
    let mut last = Instant::now();
    let mut stalled = None;
    while printed < wanted {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(s) => {
                last = Instant::now();
                if let Err(e) = print_sample(&mut out, &s, args.format) {
                    // Stop the source before leaving (e.g. the reader of a pipe went away).
                    drop(sampler.stop());
                    return Err(e);
                }
                printed += 1;
            }
            Err(RecvTimeoutError::Timeout) => {
                if sampler.status() != SamplerStatus::Running {
                    break;
                }
                if let Some(limit) = stall.filter(|l| last.elapsed() >= *l) {
                    stalled = Some(limit);
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(out);
    let report = sampler.stop();
    if let Some(limit) = stalled {
        bail!(
            "power source `{}` delivered no sample in {} s: it may be hung. Fix: run \
             `tracing-energy doctor`",
            report.source,
            seconds(limit)
        );
    }
    for (kind, n) in &report.rejected {
        eprintln!("note: {n} window(s) dropped ({kind})");
    }
    match report.status {
        SamplerStatus::Failed(reason) => {
            bail!(
                "power source `{}` failed after {printed} samples: {reason}",
                report.source
            )
        }
        _ if printed == 0 => bail!("power source `{}` delivered no sample", report.source),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Seconds as printed in messages: `5`, `7.5`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

fn print_sample(out: &mut impl Write, s: &PowerSample, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Jsonl => {
            serde_json::to_writer(&mut *out, &SampleLine::new(s))?;
            writeln!(out)?;
        }
        Format::Table => {
            let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
            writeln!(
                out,
                "{:>10.1} {:>9.1} {:>10} {:>10} {:>10} {:>10} {:>10.1} {:>11.2}  {}{}",
                s.end_ns as f64 / 1e6,
                s.duration_ns() as f64 / 1e6,
                cell(s.power_mw(Domain::Cpu)),
                cell(s.power_mw(Domain::Gpu)),
                cell(s.power_mw(Domain::Ane)),
                cell(s.power_mw(Domain::Dram)),
                s.total_mw(),
                s.total_mj,
                s.source,
                if s.estimated { " (estimated)" } else { "" }
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(feature = "candle")]
fn profile(args: Box<profile_cmd::ProfileArgs>) -> anyhow::Result<ExitCode> {
    if args.powermetrics_tasks && args.power != "powermetrics" {
        // Bad usage (exit 2), found before anything starts.
        return Err(db::Usage(format!(
            "--powermetrics-tasks measures powermetrics' own power, and --power is `{}`; use --power powermetrics with it, or leave it out",
            args.power
        ))
        .into());
    }
    profile_cmd::main_profile(&args)
}

fn doctor() -> anyhow::Result<ExitCode> {
    use tracing_energy::power::{probe, Probed, PROBE_INTERVAL, PROBE_TIMEOUT};
    let mut out = std::io::stdout().lock();
    for label in ["powermetrics", "rapl", "nvml", "estimate"] {
        let spec = SourceSpec::parse(label)?;
        let source = spec.build()?;
        match source.is_available() {
            Availability::Available(what) => {
                // Found is not working: run it until its first sample.
                let started = std::time::Instant::now();
                match probe(source, PROBE_INTERVAL, PROBE_TIMEOUT) {
                    Ok(Probed {
                        sample: s,
                        counter_update,
                    }) => {
                        let cadence = counter_update.map_or(String::new(), |p| {
                            format!(
                                "; its counter updates every {:.1} ms",
                                p.as_secs_f64() * 1000.0
                            )
                        });
                        writeln!(
                            out,
                            "{label:<14} works        {what}; first sample after {:.0} ms: {:.0} mW{}{cadence}",
                            started.elapsed().as_secs_f64() * 1000.0,
                            s.total_mw(),
                            if s.estimated { " (estimated)" } else { "" }
                        )?
                    }
                    Err(e) => {
                        writeln!(
                            out,
                            "{label:<14} broken       {what}, but it did not work: {e}"
                        )?;
                        writeln!(
                            out,
                            "{:<14}              fix: follow the message above; `tracing-energy sample --source {label} --count 1` tries it again",
                            ""
                        )?;
                    }
                }
            }
            Availability::Unavailable { reason, fix } => {
                writeln!(out, "{label:<14} unavailable  {reason}")?;
                writeln!(out, "{:<14}              fix: {fix}", "")?;
            }
        }
        out.flush()?;
    }
    writeln!(
        out,
        "{:<14} available    any `powermetrics -f plist` capture file: --source replay:PATH",
        "replay:PATH"
    )?;
    writeln!(
        out,
        "{:<14} both read at the same instants, one stream of cpu, dram and gpu, where both work",
        "rapl+nvml"
    )?;
    let auto = SourceSpec::Auto.choose()?;
    writeln!(
        out,
        "\nauto picks: {}{}",
        auto.source.name(),
        if auto.source.estimated() {
            " (an ESTIMATE: no working power sensor found)"
        } else {
            ""
        }
    )?;
    if let Some(note) = auto.note {
        writeln!(out, "{note}")?;
    }
    Ok(ExitCode::SUCCESS)
}
