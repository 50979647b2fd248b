//! The main job: profile SmolLM2-135M (or another llama-family GGUF model) generating text.
//!
//! ```text
//! cargo run --release --example profile -- --prompt "What is the capital of France?"
//! ```
//!
//! Fetches the model into `models/` when it is missing, streams the response, then prints
//! where the energy went. Ctrl-C stops generation and keeps the run (as `interrupted`).
//! `--help` lists the options.

use std::process::ExitCode;

use clap::Parser;
use tracing_energy::candle::profile::{print_summary, run, Interrupt, ProfileArgs};

/// Profile the energy of a model generating text.
#[derive(Parser)]
#[command(name = "profile")]
struct Cli {
    #[command(flatten)]
    args: ProfileArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match profile(&cli.args) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}`, never `{:?}`: no stack backtrace for a user's mistake.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn profile(args: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let interrupt = Interrupt::install()?;
    let summary = run(args, Some(interrupt.flag()))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(match interrupt.exit_code() {
        Some(code) if summary.interrupted() => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    })
}
