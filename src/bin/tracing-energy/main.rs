//! The `tracing-energy` command-line tool.
//!
//! Exit codes: 0 success, 1 error, 2 bad usage, 3 not found (no database, no such run, an
//! empty database).

mod db;
mod spans;
mod table;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use crossbeam_channel::RecvTimeoutError;
use serde::Serialize;
use tracing_energy::power::{
    Availability, Domain, EstimateSource, PowerSample, PowerSource, PowermetricsSource,
    SampleBuffer, Sampler, SamplerConfig, SamplerStatus, SourceSpec,
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
    /// Two runs side by side: time and energy per phase, layer and component, with deltas.
    Compare(db::CompareArgs),
    /// Write a self-contained HTML report of a run.
    Report(db::ReportArgs),
    /// Export a run: Chrome/Perfetto trace, CSV, JSON or folded stacks (flame graphs).
    Export(db::ExportArgs),
    /// Profile a llama-family GGUF model (default SmolLM2-135M) generating text.
    #[cfg(feature = "candle")]
    Profile(Box<tracing_energy::candle::profile::ProfileArgs>),
}

#[derive(clap::Args)]
struct SampleArgs {
    /// Power source: auto, powermetrics, estimate, or replay:PATH (a `powermetrics -f plist`
    /// capture).
    #[arg(long, default_value = "auto")]
    source: String,
    /// Window length in milliseconds (a replay keeps its recorded windows).
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Stop after this many samples (default: until Ctrl-C, or the end of a replay).
    #[arg(long)]
    count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
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
        Command::Search(a) => db::search(a).map(|()| ExitCode::SUCCESS),
        Command::Delete(a) => db::delete(a).map(|()| ExitCode::SUCCESS),
        Command::Compare(a) => db::compare(a).map(|()| ExitCode::SUCCESS),
        Command::Report(a) => db::report(a).map(|()| ExitCode::SUCCESS),
        Command::Export(a) => db::export(a).map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "candle")]
        Command::Profile(args) => profile(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<db::NotFound>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn sample(args: SampleArgs) -> anyhow::Result<ExitCode> {
    let spec = SourceSpec::parse(&args.source)?;
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
    while printed < wanted {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(s) => {
                print_sample(&mut out, &s, args.format)?;
                printed += 1;
            }
            Err(RecvTimeoutError::Timeout) => {
                if sampler.status() != SamplerStatus::Running {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(out);
    let report = sampler.stop();
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
fn profile(args: Box<tracing_energy::candle::profile::ProfileArgs>) -> anyhow::Result<ExitCode> {
    use tracing_energy::candle::profile::{print_summary, run};
    let summary = run(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn doctor() -> anyhow::Result<ExitCode> {
    let sources: Vec<(&str, Box<dyn PowerSource>)> = vec![
        ("powermetrics", Box::new(PowermetricsSource::new())),
        ("estimate", Box::new(EstimateSource::new())),
    ];
    for (label, source) in &sources {
        match source.is_available() {
            Availability::Available(what) => {
                println!("{label:<14} available    {what}");
            }
            Availability::Unavailable { reason, fix } => {
                println!("{label:<14} unavailable  {reason}");
                println!("{:<14}              fix: {fix}", "");
            }
        }
    }
    println!(
        "{:<14} available    any `powermetrics -f plist` capture file: --source replay:PATH",
        "replay:PATH"
    );
    let auto = SourceSpec::Auto.build()?;
    println!(
        "\nauto picks: {}{}",
        auto.name(),
        if auto.estimated() {
            " (an ESTIMATE: no power sensor found)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
