//! The model-support error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Every message says what failed and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model file does not exist.
    #[error("model file {} not found: run scripts/fetch-model.sh (it puts SmolLM2-135M-Instruct.Q4_1.gguf into models/), or pass the path of another llama-family GGUF file", path.display())]
    ModelNotFound {
        /// The path that was tried.
        path: PathBuf,
    },

    /// The model file exists but could not be opened or read.
    #[error("cannot read model file {}: {cause}. Fix: check that the file is readable", path.display())]
    ModelRead {
        /// The model file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },

    /// The model file is not a GGUF file candle can load, or lacks what a llama model needs.
    #[error("cannot load model {}: {reason}. Fix: use a llama-family GGUF file (e.g. run scripts/fetch-model.sh for SmolLM2-135M-Instruct); if it is the fetched file, run the script again to re-check its hash", path.display())]
    ModelFormat {
        /// The model file.
        path: PathBuf,
        /// What candle reported.
        reason: String,
    },

    /// The GGUF file's tokenizer cannot be rebuilt from its metadata.
    #[error("cannot build the tokenizer from the GGUF metadata: {0}. Fix: use a GGUF file with a BPE (`gpt2`-style) tokenizer, such as SmolLM2's")]
    Tokenizer(String),

    /// Encoding text or decoding token ids failed.
    #[error("tokenizer failed on {what}: {reason}")]
    Tokenize {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The tokenizer's error.
        reason: String,
    },

    /// A device name was not recognised.
    #[error("unknown device `{0}`: expected cpu, metal or cuda")]
    UnknownDevice(String),

    /// A device was asked for whose backend is not compiled into this build.
    #[error("device `{device}` is not compiled into this build. Fix: rebuild with `--features {feature}` (or use --device cpu)")]
    DeviceNotCompiled {
        /// The device asked for.
        device: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },

    /// A compiled-in device could not be opened (no GPU, driver problem, ...).
    #[error("cannot open device `{device}`: {reason}. Fix: check that the GPU and its driver work, or use --device cpu")]
    DeviceOpen {
        /// The device asked for.
        device: &'static str,
        /// What candle reported.
        reason: String,
    },

    /// A re-quantization name was not recognised.
    #[error("unknown re-quantization `{0}`: expected none or q8_0")]
    UnknownRequant(String),

    /// The prompt is empty: there is nothing to run the model on.
    #[error("the prompt has no tokens. Fix: pass a non-empty prompt")]
    EmptyPrompt,

    /// The prompt does not fit in the model's context.
    #[error("the prompt has {tokens} tokens, more than the model's maximum sequence length of {max}. Fix: shorten the prompt")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The most tokens the model can attend to (candle's `MAX_SEQ_LEN`).
        max: usize,
    },

    /// A token id is outside the model's vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab} tokens. Fix: encode prompts with this model's tokenizer")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },

    /// A sampling setting is out of range.
    #[error("invalid sampling setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },

    /// candle failed while running the model.
    #[error("model run failed during {stage}: {source}")]
    Candle {
        /// What was running: `prefill`, `decode`, `sampling`, `synchronize`, `re-quantization`, ...
        stage: &'static str,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
}

impl Error {
    /// Wraps a candle error with the stage it happened in.
    pub(crate) fn candle(stage: &'static str) -> impl FnOnce(candle_core::Error) -> Error {
        move |source| Error::Candle {
            stage,
            source: without_backtrace(source),
        }
    }
}

/// candle's error without the stack backtrace it captures when `RUST_BACKTRACE` is set: a
/// user's mistake (a file that is not GGUF) must read as one line, on the terminal and in a
/// run's stored `error`.
pub(crate) fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        candle_core::Error::Context { inner, context } => candle_core::Error::Context {
            inner: Box::new(without_backtrace(*inner)),
            context,
        },
        other => other,
    }
}

/// `Result` with the model-support [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
