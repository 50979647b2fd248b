//! The main job: profile SmolLM2-135M (or another llama-family GGUF model) generating text.
//!
//! ```text
//! cargo run --release --example profile -- --prompt "What is the capital of France?"
//! ```
//!
//! Fetches the model into `models/` when it is missing, streams the response, then prints
//! where the energy went. Ctrl-C stops generation and keeps the run (as `interrupted`).
//! `--help` lists the options.

#[path = "../src/bin/tracing-energy/profile_cmd.rs"]
mod profile_cmd;

use std::process::ExitCode;

use clap::Parser;
use profile_cmd::{main_profile, ProfileArgs};

/// Profile the energy of a model generating text.
#[derive(Parser)]
#[command(name = "profile")]
struct Cli {
    #[command(flatten)]
    args: ProfileArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match main_profile(&cli.args) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}`, never `{:?}`: no stack backtrace for a user's mistake.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
