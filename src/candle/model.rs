//! Loading a llama-family GGUF model with candle, optionally re-quantized at load.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use candle_transformers::models::quantized_llama::ModelWeights;

use super::tokenizer::GgufTokenizer;
use super::{Error, Result};

/// The SmolLM2 model file's name, as `scripts/fetch-model.sh` writes it into `models/`.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where `scripts/fetch-model.sh` puts SmolLM2, relative to the repository root.
pub const SMOLLM2_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The most positions candle's quantized llama can attend to (`quantized_llama::MAX_SEQ_LEN`).
pub const MAX_SEQ_LEN: usize = candle_transformers::models::quantized_llama::MAX_SEQ_LEN;

/// Re-quantization applied to the weights while loading.
///
/// candle's CPU kernels differ a lot in speed by format: SmolLM2's Q4_1 weights decode at
/// ~40 ms/token on a 2-core VM (no SIMD kernel for Q4_1), the same weights re-quantized to
/// Q8_0 at ~13 ms/token, with the same greedy text. Re-quantization dequantizes every
/// quantized matrix and quantizes it again in memory; the model is then still built by
/// candle's stock `ModelWeights::from_gguf`, so its tracing spans are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Requant {
    /// Keep the file's formats.
    #[default]
    None,
    /// Re-quantize every quantized matrix (not F32/F16 tensors) to Q8_0.
    Q8_0,
}

impl Requant {
    /// The name: `none` or `q8_0`.
    pub fn name(self) -> &'static str {
        match self {
            Requant::None => "none",
            Requant::Q8_0 => "q8_0",
        }
    }

    fn target(self) -> Option<GgmlDType> {
        match self {
            Requant::None => None,
            Requant::Q8_0 => Some(GgmlDType::Q8_0),
        }
    }
}

impl fmt::Display for Requant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Requant {
    type Err = Error;

    /// Parses `none` or `q8_0` (also `q8`, `Q8_0`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Requant::None),
            "q8_0" | "q8" => Ok(Requant::Q8_0),
            _ => Err(Error::UnknownRequant(s.to_string())),
        }
    }
}

/// What was loaded, read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The model file.
    pub path: PathBuf,
    /// `general.name`, if set.
    pub name: Option<String>,
    /// `general.architecture` (`llama` for SmolLM2).
    pub architecture: String,
    /// Transformer blocks (`llama.block_count`; 30 for SmolLM2-135M).
    pub layers: usize,
    /// Embedding width (`llama.embedding_length`; 576 for SmolLM2-135M).
    pub embedding_length: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// The file's matrix formats, e.g. `["Q4_1", "Q8_0"]` (sorted, deduplicated).
    pub file_dtypes: Vec<String>,
    /// The re-quantization applied at load.
    pub requant: Requant,
    /// How many tensors were re-quantized.
    pub requantized_tensors: usize,
    /// The device the weights live on.
    pub device: super::DeviceKind,
    /// Wall time of the whole load (reading, re-quantizing, building the model).
    pub load_time: Duration,
}

/// A loaded model: candle's quantized llama, its tokenizer and its device.
pub struct Model {
    /// candle-transformers' quantized llama, built by the stock `ModelWeights::from_gguf`
    /// (its TRACE spans `model`, `attn`, `qmatmul`, ... are candle's own).
    pub weights: ModelWeights,
    /// The tokenizer rebuilt from the same file's metadata.
    pub tokenizer: GgufTokenizer,
    /// The device the model runs on.
    pub device: Device,
    /// What was loaded.
    pub info: ModelInfo,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.info)
            .field("tokenizer", &self.tokenizer)
            .finish_non_exhaustive()
    }
}

fn md_u32(ct: &Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn md_string(ct: &Content, key: &str) -> Option<String> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
}

impl Model {
    /// Loads a llama-family GGUF model onto `device`, re-quantized as `requant` says.
    ///
    /// Install your tracing subscriber **before** calling this: candle creates its spans once,
    /// here, and a span created while no subscriber is interested stays disabled for good.
    ///
    /// A missing file is [`Error::ModelNotFound`], whose message says to run
    /// `scripts/fetch-model.sh`.
    pub fn load(path: impl AsRef<Path>, device: &Device, requant: Requant) -> Result<Model> {
        let start = Instant::now();
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|cause| {
            if cause.kind() == std::io::ErrorKind::NotFound {
                Error::ModelNotFound { path: path.clone() }
            } else {
                Error::ModelRead {
                    path: path.clone(),
                    cause,
                }
            }
        })?;
        let mut reader = BufReader::new(file);
        let format_err = |e: candle_core::Error| Error::ModelFormat {
            path: path.clone(),
            reason: super::error::without_backtrace(e).to_string(),
        };
        let content = Content::read(&mut reader).map_err(format_err)?;
        let tokenizer = GgufTokenizer::from_gguf(&content)?;

        let mut file_dtypes: Vec<String> = content
            .tensor_infos
            .values()
            .map(|t| format!("{:?}", t.ggml_dtype))
            .collect();
        file_dtypes.sort();
        file_dtypes.dedup();
        let architecture = md_string(&content, "general.architecture").unwrap_or_default();
        let name = md_string(&content, "general.name");
        let layers = md_u32(&content, "llama.block_count").unwrap_or(0) as usize;
        let embedding_length = md_u32(&content, "llama.embedding_length").unwrap_or(0) as usize;

        let (weights, requantized_tensors) = match requant.target() {
            None => {
                let w =
                    ModelWeights::from_gguf(content, &mut reader, device).map_err(format_err)?;
                (w, 0)
            }
            Some(target) => {
                let (content, mut mem, n) =
                    requantize(&content, &mut reader, target).map_err(format_err)?;
                let w = ModelWeights::from_gguf(content, &mut mem, device).map_err(format_err)?;
                (w, n)
            }
        };

        let info = ModelInfo {
            path,
            name,
            architecture,
            layers,
            embedding_length,
            vocab_size: tokenizer.vocab_size(),
            file_dtypes,
            requant,
            requantized_tensors,
            device: super::DeviceKind::of(device),
            load_time: start.elapsed(),
        };
        Ok(Model {
            weights,
            tokenizer,
            device: device.clone(),
            info,
        })
    }
}

/// Whether a tensor of this format is re-quantized to `target`: every block-quantized format
/// other than the target itself; F32/F16/BF16 tensors (norms) stay as they are.
fn needs_requant(dtype: GgmlDType, target: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) && dtype != target
}

/// Builds an in-memory GGUF file with the same metadata as `content` and every quantized
/// tensor re-quantized to `target`, and returns its parsed header, a reader over it, and the
/// number of re-quantized tensors.
fn requantize<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    target: GgmlDType,
) -> candle_core::Result<(Content, Cursor<Vec<u8>>, usize)> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    let mut converted = 0;
    for name in names {
        let info = &content.tensor_infos[name];
        let qt = content.tensor(reader, name, &Device::Cpu)?;
        let last_dim = info.shape.dims().last().copied().unwrap_or(0);
        let qt = if needs_requant(info.ggml_dtype, target) && last_dim % target.block_size() == 0 {
            converted += 1;
            QTensor::quantize(&qt.dequantize(&Device::Cpu)?, target)?
        } else {
            qt
        };
        tensors.push((name.as_str(), qt));
    }
    // `gguf_file::write` aligns tensor data to 32 bytes; a different `general.alignment` in
    // the copied metadata would make the reader look for the data in the wrong place.
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut mem = Cursor::new(Vec::new());
    gguf_file::write(&mut mem, &metadata, &tensor_refs)?;
    drop(tensors);
    mem.set_position(0);
    let content = Content::read(&mut mem)?;
    Ok((content, mem, converted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requant_names() {
        assert_eq!("q8_0".parse::<Requant>().unwrap(), Requant::Q8_0);
        assert_eq!("Q8_0".parse::<Requant>().unwrap(), Requant::Q8_0);
        assert_eq!("none".parse::<Requant>().unwrap(), Requant::None);
        let err = "q5".parse::<Requant>().unwrap_err().to_string();
        assert!(err.contains("expected none or q8_0"), "{err}");
    }

    #[test]
    fn only_quantized_formats_are_requantized() {
        assert!(needs_requant(GgmlDType::Q4_1, GgmlDType::Q8_0));
        assert!(needs_requant(GgmlDType::Q6K, GgmlDType::Q8_0));
        assert!(!needs_requant(GgmlDType::Q8_0, GgmlDType::Q8_0));
        assert!(!needs_requant(GgmlDType::F32, GgmlDType::Q8_0));
        assert!(!needs_requant(GgmlDType::F16, GgmlDType::Q8_0));
    }

    #[test]
    fn missing_model_says_to_fetch_it() {
        let err = Model::load("models/does-not-exist.gguf", &Device::Cpu, Requant::None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not found: run scripts/fetch-model.sh"),
            "{err}"
        );
    }
}
