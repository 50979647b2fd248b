//! Text generation with tracing spans for every phase and every token.
//!
//! # Spans
//!
//! All at INFO level with target [`SPAN_TARGET`] (`tracing_energy::generate`):
//!
//! | span | around | fields |
//! |---|---|---|
//! | `tokenize` | encoding the prompt text (only in [`Generator::generate_text`] and [`Generator::generate_chat`]) | `chars`, `tokens` |
//! | `prefill` | the forward pass over the whole prompt, sampling its output and decoding it: it yields generated token **index 0** | `prompt_tokens`, `index` (always 0), `text` |
//! | `decode` | the whole decode loop (absent when no decode step runs: `max_tokens` 1, an end of sequence from the prefill, or a full context) | `tokens` (decode steps run) |
//! | `token` | one decode step inside `decode`: the forward pass of the previous token, sampling and decoding the next one | `index` (1, 2, ...), `text` |
//!
//! So `index` counts generated tokens from 0 over `prefill` and the `token` spans together:
//! the prefill's cost is the cost of the first token (time to first token), and each `token`
//! span is exactly one single-position forward pass. `text` is the decoded piece, recorded
//! with `Span::record` once known (empty for an end-of-sequence token, and for a token that
//! only starts a multi-token character, whose text then comes with the token completing it).
//!
//! candle's own spans (`model`, `attn`, `qmatmul`, ... at TRACE level) are entered inside
//! `prefill` and inside each `token`.
//!
//! # GPUs
//!
//! On CUDA and Metal the generator calls its [`SyncHook`] once after each forward pass, inside
//! the `prefill` or `token` span, so that the span ends when the GPU has finished its work
//! (see [`super::sync_hook_for`]). On the CPU there is no hook and no cost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tracing::field::Empty;

use super::device::{sync_hook_for, SyncHook};
use super::model::{Model, MAX_SEQ_LEN};
use super::tokenizer::{chat_prompt, GgufTokenizer, TokenStreamDecoder};
use super::{Error, Result};

/// The target of the generator's spans.
pub const SPAN_TARGET: &str = "tracing_energy::generate";

/// How tokens are chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    /// Softmax temperature; 0 means greedy (always the most likely token: deterministic,
    /// whatever the seed).
    pub temperature: f64,
    /// Nucleus sampling: sample only from the most likely tokens whose probabilities add up to
    /// `top_p` (in `(0, 1]`); `None` samples from all. Ignored when greedy.
    pub top_p: Option<f64>,
    /// Seed of the sampler's random numbers; every call to `generate` starts from it again,
    /// so equal inputs give equal outputs.
    pub seed: u64,
    /// Stop at an end-of-sequence token (`<|im_end|>` or the file's EOS id). When false,
    /// generation runs to `max_tokens`.
    pub stop_at_eos: bool,
}

impl Default for GenerationOptions {
    /// Greedy, seed 299792458, stopping at end of sequence.
    fn default() -> Self {
        GenerationOptions {
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
            stop_at_eos: true,
        }
    }
}

impl GenerationOptions {
    fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::InvalidSetting {
                name: "temperature",
                reason: format!("{} is not a number >= 0 (0 = greedy)", self.temperature),
            });
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::InvalidSetting {
                    name: "top_p",
                    reason: format!("{p} is not in (0, 1]"),
                });
            }
        }
        Ok(())
    }

    fn logits_processor(&self) -> LogitsProcessor {
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match self.top_p {
                Some(p) if p < 1.0 => Sampling::TopP {
                    p,
                    temperature: self.temperature,
                },
                _ => Sampling::All {
                    temperature: self.temperature,
                },
            }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

/// Which phase produced a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The prompt's forward pass (token index 0).
    Prefill,
    /// A single-token decode step (token index 1 and up).
    Decode,
}

/// One generated token, handed to the `on_token` callback as soon as it is known.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// 0-based over generated tokens; 0 comes from the prefill.
    pub index: usize,
    /// The token id.
    pub id: u32,
    /// The text this token completes (see [`TokenStreamDecoder`]); empty for an
    /// end-of-sequence token.
    pub text: String,
    /// Whether this is an end-of-sequence token (generation stops after it).
    pub is_eos: bool,
    /// The phase that produced it.
    pub phase: Phase,
    /// Wall time of its span's work: forward pass, synchronize, sampling and decoding.
    pub elapsed: Duration,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// An end-of-sequence token was generated (it is the last of
    /// [`GenerationOutput::tokens`]).
    Eos,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The model's context (candle's `MAX_SEQ_LEN`, 4096 positions) is full.
    ContextFull,
    /// The interrupt flag ([`Generator::set_interrupt`]) was raised; the tokens generated
    /// before it are kept.
    Interrupted,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    /// The prompt's token ids.
    pub prompt_tokens: Vec<u32>,
    /// The generated ids, including a final end-of-sequence token if one was generated.
    pub tokens: Vec<u32>,
    /// The generated text, without special tokens: the concatenated [`TokenEvent::text`]
    /// pieces, plus the bytes of a character left incomplete when `max_tokens` cut it.
    pub text: String,
    /// Time spent tokenizing the prompt text, when the generator did it.
    pub tokenize_time: Option<Duration>,
    /// Time of the prefill (prompt forward pass producing token 0).
    pub prefill_time: Duration,
    /// Time of each decode step, for tokens 1, 2, ...
    pub decode_times: Vec<Duration>,
    /// Why generation stopped.
    pub stop_reason: StopReason,
}

impl GenerationOutput {
    /// Total time of the decode steps.
    pub fn decode_time(&self) -> Duration {
        self.decode_times.iter().sum()
    }

    /// Mean milliseconds per decode step, if there was one.
    pub fn decode_ms_per_token(&self) -> Option<f64> {
        if self.decode_times.is_empty() {
            None
        } else {
            Some(self.decode_time().as_secs_f64() * 1e3 / self.decode_times.len() as f64)
        }
    }
}

/// Generates text with a loaded [`Model`], emitting the spans described in the
/// [module documentation](self).
pub struct Generator {
    model: Model,
    options: GenerationOptions,
    sync: Option<SyncHook>,
    eos_ids: Vec<u32>,
    interrupt: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("model", &self.model)
            .field("options", &self.options)
            .field("sync_hook", &self.sync.is_some())
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

impl Generator {
    /// A generator for `model`. On a GPU device it synchronizes once per token with
    /// [`sync_hook_for`]; replace that with [`Generator::set_sync_hook`].
    ///
    /// End of sequence is the file's `tokenizer.ggml.eos_token_id` and `<|im_end|>` (the end
    /// of a ChatML turn), where the vocabulary has them.
    pub fn new(model: Model, options: GenerationOptions) -> Result<Self> {
        options.validate()?;
        let mut eos_ids = Vec::new();
        eos_ids.extend(model.tokenizer.eos_token_id());
        eos_ids.extend(model.tokenizer.token_to_id("<|im_end|>"));
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let sync = sync_hook_for(&model.device);
        Ok(Generator {
            model,
            options,
            sync,
            eos_ids,
            interrupt: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Gives the model back.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.model.tokenizer
    }

    /// The sampling options.
    pub fn options(&self) -> &GenerationOptions {
        &self.options
    }

    /// Replaces the sampling options.
    pub fn set_options(&mut self, options: GenerationOptions) -> Result<()> {
        options.validate()?;
        self.options = options;
        Ok(())
    }

    /// Stops generation at the next token boundary once `flag` is true (a Ctrl-C handler
    /// sets it): the tokens generated so far are returned, with
    /// [`StopReason::Interrupted`].
    pub fn set_interrupt(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.interrupt = flag;
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Replaces the synchronize hook (see [`super::sync_hook_for`]).
    pub fn set_sync_hook(&mut self, hook: Option<SyncHook>) {
        self.sync = hook;
    }

    /// The token ids that end generation.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Encodes `text` inside a `tokenize` span (special tokens in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "tokenize",
            chars = text.chars().count() as u64,
            tokens = Empty
        );
        let _enter = span.enter();
        let ids = self.model.tokenizer.encode(text)?;
        span.record("tokens", ids.len() as u64);
        Ok(ids)
    }

    /// Encodes `prompt` (in a `tokenize` span) and generates up to `max_tokens` tokens.
    pub fn generate_text(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        on_token: impl FnMut(&TokenEvent),
    ) -> Result<GenerationOutput> {
        let start = Instant::now();
        let ids = self.encode(prompt)?;
        let tokenize_time = start.elapsed();
        let mut out = self.generate(&ids, max_tokens, on_token)?;
        out.tokenize_time = Some(tokenize_time);
        Ok(out)
    }

    /// Wraps `prompt` (and `system`) in the ChatML template ([`chat_prompt`]), encodes it in a
    /// `tokenize` span and generates the assistant's answer, up to `max_tokens` tokens.
    pub fn generate_chat(
        &mut self,
        system: Option<&str>,
        prompt: &str,
        max_tokens: usize,
        on_token: impl FnMut(&TokenEvent),
    ) -> Result<GenerationOutput> {
        self.generate_text(&chat_prompt(system, prompt), max_tokens, on_token)
    }

    /// Generates up to `max_tokens` tokens after `prompt_tokens`, calling `on_token` for each
    /// (outside the token's span, so the callback's own work is not counted in it).
    ///
    /// Each call starts from an empty KV cache and from the options' seed. Stops at an
    /// end-of-sequence token (when [`GenerationOptions::stop_at_eos`]), at `max_tokens`, or
    /// when the context (4096 positions) is full. A prompt longer than the context is
    /// [`Error::PromptTooLong`].
    pub fn generate(
        &mut self,
        prompt_tokens: &[u32],
        max_tokens: usize,
        mut on_token: impl FnMut(&TokenEvent),
    ) -> Result<GenerationOutput> {
        let n = prompt_tokens.len();
        if n == 0 {
            return Err(Error::EmptyPrompt);
        }
        if n > MAX_SEQ_LEN {
            return Err(Error::PromptTooLong {
                tokens: n,
                max: MAX_SEQ_LEN,
            });
        }
        let vocab = self.model.tokenizer.vocab_size();
        if let Some(&id) = prompt_tokens.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id, vocab });
        }
        let mut out = GenerationOutput {
            prompt_tokens: prompt_tokens.to_vec(),
            tokens: Vec::new(),
            text: String::new(),
            tokenize_time: None,
            prefill_time: Duration::ZERO,
            decode_times: Vec::new(),
            stop_reason: StopReason::MaxTokens,
        };
        if max_tokens == 0 {
            return Ok(out);
        }
        if self.interrupted() {
            out.stop_reason = StopReason::Interrupted;
            return Ok(out);
        }

        let mut logits_processor = self.options.logits_processor();
        let mut stream = TokenStreamDecoder::new();
        self.model.weights.clear_kv_cache();

        // Prefill: the prompt's forward pass, yielding token 0.
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "prefill",
            prompt_tokens = n as u64,
            index = 0u64,
            text = Empty
        );
        let start = Instant::now();
        let (id, text) = {
            let _enter = span.enter();
            let id = self.step(prompt_tokens, 0, &mut logits_processor, "prefill")?;
            let text = self.piece(&mut stream, id)?;
            span.record("text", text.as_str());
            (id, text)
        };
        let elapsed = start.elapsed();
        out.prefill_time = elapsed;
        drop(span);
        if self.finish_token(
            &mut out,
            0,
            id,
            text,
            Phase::Prefill,
            elapsed,
            &mut on_token,
        ) {
            return self.finish(out, stream);
        }

        // Decode: one forward pass per further token.
        let (steps, context_limited) = decode_budget(n, max_tokens);
        out.stop_reason = if context_limited {
            StopReason::ContextFull
        } else {
            StopReason::MaxTokens
        };
        if steps == 0 {
            return self.finish(out, stream);
        }
        let decode_span = tracing::info_span!(target: SPAN_TARGET, "decode", tokens = Empty);
        {
            let _decode = decode_span.enter();
            for index in 1..=steps {
                if self.interrupted() {
                    out.stop_reason = StopReason::Interrupted;
                    break;
                }
                // The previous token goes in at position n + index - 1 (< MAX_SEQ_LEN).
                let pos = n + index - 1;
                let prev = *out.tokens.last().expect("prefill produced a token");
                let span = tracing::info_span!(
                    target: SPAN_TARGET,
                    "token",
                    index = index as u64,
                    text = Empty
                );
                let start = Instant::now();
                let (id, text) = {
                    let _enter = span.enter();
                    let id = self.step(&[prev], pos, &mut logits_processor, "decode")?;
                    let text = self.piece(&mut stream, id)?;
                    span.record("text", text.as_str());
                    (id, text)
                };
                let elapsed = start.elapsed();
                drop(span);
                out.decode_times.push(elapsed);
                if self.finish_token(
                    &mut out,
                    index,
                    id,
                    text,
                    Phase::Decode,
                    elapsed,
                    &mut on_token,
                ) {
                    break;
                }
            }
            decode_span.record("tokens", out.decode_times.len() as u64);
        }
        self.finish(out, stream)
    }

    /// One forward pass over `input` at position `pos`, the synchronize hook, and sampling.
    fn step(
        &mut self,
        input: &[u32],
        pos: usize,
        logits_processor: &mut LogitsProcessor,
        stage: &'static str,
    ) -> Result<u32> {
        let x = Tensor::new(input, &self.model.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(Error::candle(stage))?;
        let logits = self
            .model
            .weights
            .forward(&x, pos)
            .map_err(Error::candle(stage))?;
        if let Some(sync) = &self.sync {
            sync().map_err(Error::candle("synchronize"))?;
        }
        let logits = logits
            .squeeze(0)
            .and_then(|l| l.to_dtype(DType::F32))
            .map_err(Error::candle("sampling"))?;
        logits_processor
            .sample(&logits)
            .map_err(Error::candle("sampling"))
    }

    /// The text a new token completes; empty for end-of-sequence tokens.
    fn piece(&self, stream: &mut TokenStreamDecoder, id: u32) -> Result<String> {
        if self.is_stop(id) {
            Ok(String::new())
        } else {
            stream.push(&self.model.tokenizer, id)
        }
    }

    fn is_stop(&self, id: u32) -> bool {
        self.options.stop_at_eos && self.eos_ids.contains(&id)
    }

    /// Records a token, calls the callback; returns whether generation ends here (EOS).
    #[allow(clippy::too_many_arguments)]
    fn finish_token(
        &self,
        out: &mut GenerationOutput,
        index: usize,
        id: u32,
        text: String,
        phase: Phase,
        elapsed: Duration,
        on_token: &mut impl FnMut(&TokenEvent),
    ) -> bool {
        let is_eos = self.is_stop(id);
        out.tokens.push(id);
        out.text.push_str(&text);
        on_token(&TokenEvent {
            index,
            id,
            text,
            is_eos,
            phase,
            elapsed,
        });
        if is_eos {
            out.stop_reason = StopReason::Eos;
        }
        is_eos
    }

    fn finish(
        &self,
        mut out: GenerationOutput,
        mut stream: TokenStreamDecoder,
    ) -> Result<GenerationOutput> {
        // An incomplete character at the very end (max_tokens cut it) is written as decoded.
        out.text.push_str(&stream.flush(&self.model.tokenizer)?);
        Ok(out)
    }
}

/// How many decode steps may follow the prefill of an `n`-token prompt (`1 <= n <=
/// MAX_SEQ_LEN`) when `max_tokens >= 1` tokens are asked for, and whether the context, rather
/// than `max_tokens`, is the limit. Decode step `i` feeds the previous token at position
/// `n + i - 1`, which must stay below `MAX_SEQ_LEN`.
fn decode_budget(n: usize, max_tokens: usize) -> (usize, bool) {
    let wanted = max_tokens.saturating_sub(1);
    let room = MAX_SEQ_LEN.saturating_sub(n);
    (wanted.min(room), room < wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_budget_respects_max_tokens_and_context() {
        assert_eq!(decode_budget(10, 1), (0, false));
        assert_eq!(decode_budget(10, 8), (7, false));
        assert_eq!(decode_budget(MAX_SEQ_LEN - 3, 8), (3, true));
        assert_eq!(decode_budget(MAX_SEQ_LEN, 8), (0, true));
        assert_eq!(decode_budget(MAX_SEQ_LEN, 1), (0, false));
        // The last decode step's position is the last one there is.
        let (steps, _) = decode_budget(MAX_SEQ_LEN - 3, 100);
        assert_eq!(MAX_SEQ_LEN - 3 + steps - 1, MAX_SEQ_LEN - 1);
    }

    #[test]
    fn options_are_validated() {
        assert!(GenerationOptions::default().validate().is_ok());
        for (t, p) in [
            (-1.0, None),
            (f64::NAN, None),
            (0.8, Some(0.0)),
            (0.8, Some(1.5)),
        ] {
            let o = GenerationOptions {
                temperature: t,
                top_p: p,
                ..Default::default()
            };
            assert!(o.validate().is_err(), "{t} {p:?}");
        }
    }
}
