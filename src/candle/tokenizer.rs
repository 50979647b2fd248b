//! A tokenizer rebuilt from a GGUF file's metadata, and the ChatML chat template.
//!
//! candle's own GGUF tokenizer gets SmolLM2 wrong (it does not know the `smollm`
//! pre-tokenizer and adds a space after special tokens). This one is built with the
//! `tokenizers` crate the way the model's original `tokenizer.json` is:
//!
//! - model: byte-level BPE from `tokenizer.ggml.tokens` (the id is the index) and
//!   `tokenizer.ggml.merges` (`"left right"` strings, highest priority first);
//! - pre-tokenizer: `Sequence[Digits(individual_digits = true),
//!   ByteLevel(add_prefix_space = false, use_regex = true)]`;
//! - decoder: `ByteLevel`;
//! - control tokens (`tokenizer.ggml.token_type` 3, e.g. `<|im_start|>`) are special tokens,
//!   recognised in the text and skipped when decoding output text; user-defined tokens
//!   (type 4) are added tokens.
//!
//! No BOS token is added: SmolLM2's chat format starts with `<|im_start|>`.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use super::{Error, Result};

/// GGUF `token_type` of a control token (`<|im_start|>`, `<|im_end|>`, ...).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `token_type` of a user-defined token.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// A byte-level BPE tokenizer built from a GGUF file's metadata.
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    eos_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    special_ids: Vec<u32>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("eos_token_id", &self.eos_token_id)
            .field("bos_token_id", &self.bos_token_id)
            .field("special_tokens", &self.special_ids.len())
            .finish()
    }
}

fn md<'a>(ct: &'a Content, key: &str) -> Result<&'a Value> {
    ct.metadata
        .get(key)
        .ok_or_else(|| Error::Tokenizer(format!("metadata key `{key}` is missing")))
}

fn md_strings(ct: &Content, key: &str) -> Result<Vec<String>> {
    let values = md(ct, key)?
        .to_vec()
        .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))
        })
        .collect()
}

fn md_u32(ct: &Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn md_i32s(ct: &Content, key: &str) -> Result<Option<Vec<i32>>> {
    let Some(v) = ct.metadata.get(key) else {
        return Ok(None);
    };
    let values = v
        .to_vec()
        .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))?;
    values
        .iter()
        .map(|v| match v {
            Value::I32(x) => Ok(*x),
            Value::U32(x) => Ok(*x as i32),
            Value::I8(x) => Ok(*x as i32),
            Value::U8(x) => Ok(*x as i32),
            other => Err(Error::Tokenizer(format!(
                "`{key}` holds {:?}, not integers",
                other.value_type()
            ))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata (`tokenizer.ggml.*`).
    ///
    /// Fails unless `tokenizer.ggml.model` is `gpt2` (byte-level BPE), the tokenizer of
    /// SmolLM2, Llama 3, Qwen and most recent llama-family models.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let model = md(ct, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| Error::Tokenizer(format!("`tokenizer.ggml.model`: {e}")))?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (only `gpt2`, byte-level BPE)"
            )));
        }
        let tokens = md_strings(ct, "tokenizer.ggml.tokens")?;
        let merges = md_strings(ct, "tokenizer.ggml.merges")?;
        let token_types = md_i32s(ct, "tokenizer.ggml.token_type")?;
        if let Some(types) = &token_types {
            if types.len() != tokens.len() {
                return Err(Error::Tokenizer(format!(
                    "{} token types for {} tokens",
                    types.len(),
                    tokens.len()
                )));
            }
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                // As llama.cpp does: split at the first space after the first character.
                let cut = m
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| c == ' ')
                    .map(|(i, _)| i)
                    .ok_or_else(|| Error::Tokenizer(format!("merge `{m}` has no space")))?;
                Ok((m[..cut].to_string(), m[cut + 1..].to_string()))
            })
            .collect::<Result<_>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("BPE: {e}")))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        inner.with_pre_tokenizer(Some(Sequence::new(pre)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let mut special_ids = Vec::new();
        if let Some(types) = &token_types {
            let mut special = Vec::new();
            let mut user = Vec::new();
            for (id, (tok, ty)) in tokens.iter().zip(types).enumerate() {
                match *ty {
                    TOKEN_TYPE_CONTROL => {
                        special.push(AddedToken::from(tok.clone(), true));
                        special_ids.push(id as u32);
                    }
                    TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(tok.clone(), false)),
                    _ => {}
                }
            }
            inner
                .add_special_tokens(special)
                .map_err(|e| Error::Tokenizer(format!("special tokens: {e}")))?;
            inner
                .add_tokens(user)
                .map_err(|e| Error::Tokenizer(format!("added tokens: {e}")))?;
        }

        Ok(GgufTokenizer {
            inner,
            vocab_size: tokens.len(),
            eos_token_id: md_u32(ct, "tokenizer.ggml.eos_token_id"),
            bos_token_id: md_u32(ct, "tokenizer.ggml.bos_token_id"),
            special_ids,
        })
    }

    /// Encodes `text` to token ids. Special tokens written in the text (`<|im_start|>`) become
    /// their single id; no BOS or EOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenize {
                what: "encode",
                reason: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes token ids to text; special tokens are written out (`<|im_end|>`).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_inner(ids, false)
    }

    /// Decodes token ids to text, leaving special tokens out.
    pub fn decode_skip_special(&self, ids: &[u32]) -> Result<String> {
        self.decode_inner(ids, true)
    }

    fn decode_inner(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenize {
                what: "decode",
                reason: e.to_string(),
            })
    }

    /// The id of a token (`"<|im_end|>"` gives 2 for SmolLM2), if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of a token id in the vocabulary (byte-level form: a space shows as `Ġ`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The number of tokens in the GGUF vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// `tokenizer.ggml.eos_token_id`, if the file sets it.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    /// `tokenizer.ggml.bos_token_id`, if the file sets it (not added when encoding).
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    /// The ids of the control tokens, which [`GgufTokenizer::decode_skip_special`] leaves out.
    pub fn special_token_ids(&self) -> &[u32] {
        &self.special_ids
    }

    /// Whether `id` is a control token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// The ChatML prompt SmolLM2-Instruct was trained on, ending where the assistant's answer
/// starts:
///
/// ```text
/// <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n
/// ```
///
/// The system turn is left out when `system` is `None`. No BOS token.
pub fn chat_prompt(system: Option<&str>, prompt: &str) -> String {
    let mut s = String::with_capacity(prompt.len() + system.map_or(0, str::len) + 80);
    if let Some(system) = system {
        s.push_str("<|im_start|>system\n");
        s.push_str(system);
        s.push_str("<|im_end|>\n");
    }
    s.push_str("<|im_start|>user\n");
    s.push_str(prompt);
    s.push_str("<|im_end|>\n<|im_start|>assistant\n");
    s
}

/// Turns generated token ids into text pieces as they arrive.
///
/// Byte-level BPE can split one character (an emoji, say) over several tokens; decoding a lone
/// token then gives a replacement character. This decoder holds text back until it is
/// complete, so the pieces concatenate to exactly the decoded text. Special tokens give an
/// empty piece.
#[derive(Debug, Clone, Default)]
pub struct TokenStreamDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl TokenStreamDecoder {
    /// A decoder with nothing decoded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token and returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &GgufTokenizer, id: u32) -> Result<String> {
        let prev = if self.prefix_offset < self.read_offset {
            tokenizer.decode_skip_special(&self.ids[self.prefix_offset..self.read_offset])?
        } else {
            String::new()
        };
        self.ids.push(id);
        let text = tokenizer.decode_skip_special(&self.ids[self.prefix_offset..])?;
        if text.len() > prev.len() && !text.ends_with('\u{FFFD}') && text.starts_with(&prev) {
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(text[prev.len()..].to_string())
        } else {
            Ok(String::new())
        }
    }

    /// Returns whatever text is still held back (an incomplete character at the very end).
    pub fn flush(&mut self, tokenizer: &GgufTokenizer) -> Result<String> {
        let prev = if self.prefix_offset < self.read_offset {
            tokenizer.decode_skip_special(&self.ids[self.prefix_offset..self.read_offset])?
        } else {
            String::new()
        };
        let text = tokenizer.decode_skip_special(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(text.get(prev.len()..).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_prompt_with_and_without_system() {
        assert_eq!(
            chat_prompt(None, "Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            chat_prompt(Some("Be brief."), "Hi"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
