//! Running llama-family GGUF models with candle, traced (feature `candle`, on by default).
//!
//! - [`Model::load`] loads a GGUF file with candle-transformers' stock
//!   `quantized_llama::ModelWeights::from_gguf`, so the model's TRACE spans (`model`,
//!   `rms-norm`, `attn`, `attn-rot`, `qmatmul`, `attn-mlp`, `output`) are candle's own;
//!   [`Requant::Q8_0`] re-quantizes the weights in memory first (much faster on CPU than
//!   Q4_1).
//! - [`GgufTokenizer`] rebuilds the byte-level BPE tokenizer from the file's metadata (it
//!   matches llama.cpp's ids for SmolLM2); [`chat_prompt`] writes the ChatML template.
//! - [`Generator`] runs prefill and decode, emitting INFO spans `tokenize`, `prefill`,
//!   `decode` and one `token` per decode step (target [`SPAN_TARGET`]; see [`generate`] for
//!   their fields and how tokens are counted).
//! - [`DeviceKind`] picks `cpu`, `metal` or `cuda`; [`sync_hook_for`] builds the per-token
//!   synchronize fence that makes span times on a GPU mean compute time.
//!
//! The model this project is built on is SmolLM2-135M-Instruct (Apache-2.0), fetched into
//! `models/` by `scripts/fetch-model.sh`:
//!
//! ```no_run
//! use tracing_energy::candle::{DeviceKind, GenerationOptions, Generator, Model, Requant};
//!
//! // Install the tracing subscriber first: candle creates its spans when the model is built.
//! let device = "cpu".parse::<DeviceKind>()?.open(0)?;
//! let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", &device, Requant::Q8_0)?;
//! let mut generator = Generator::new(model, GenerationOptions::default())?;
//! let out = generator.generate_chat(None, "What is the capital of France?", 32, |t| {
//!     print!("{}", t.text);
//! })?;
//! println!("\n{} tokens, {:?} ms/token", out.tokens.len(), out.decode_ms_per_token());
//! # Ok::<(), tracing_energy::candle::Error>(())
//! ```

mod device;
mod error;
pub mod generate;
mod model;
pub mod profile;
pub mod repeat;
mod tokenizer;

pub use device::{sync_hook_for, DeviceKind, SyncHook};
pub use error::{Error, Result};
pub use generate::{
    GenerationOptions, GenerationOutput, Generator, Phase, StopReason, TokenEvent, SPAN_TARGET,
};
pub use model::{Model, ModelInfo, Requant, MAX_SEQ_LEN, SMOLLM2_FILE, SMOLLM2_PATH};
pub use tokenizer::{chat_prompt, GgufTokenizer, TokenStreamDecoder};

/// The candle crates this module is built on, re-exported so that callers use the same
/// versions (e.g. `tracing_energy::candle::candle_core::Device`).
pub use candle_core;
pub use candle_transformers;
