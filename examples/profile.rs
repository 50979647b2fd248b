//! The main job: profile SmolLM2-135M (or another llama-family GGUF model) generating text.
//!
//! ```text
//! cargo run --release --example profile -- --prompt "What is the capital of France?"
//! ```
//!
//! Fetches the model into `models/` when it is missing, streams the response, then prints
//! where the energy went. `--help` lists the options.

use clap::Parser;
use tracing_energy::candle::profile::{print_summary, run, ProfileArgs};

/// Profile the energy of a model generating text.
#[derive(Parser)]
#[command(name = "profile")]
struct Cli {
    #[command(flatten)]
    args: ProfileArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let summary = run(&cli.args)?;
    if cli.args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}
