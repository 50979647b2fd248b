//! The span vocabulary: how a span becomes a phase, a token, a forward pass, a layer, a
//! component or an operation.
//!
//! # Built in
//!
//! - Phases: spans named `tokenize`, `prefill`, `decode` (and any added with
//!   [`Vocabulary::phase`]).
//! - Tokens: spans named `token` (fields: `index`, `text`, `token_id`; all optional).
//! - candle-transformers' `quantized_llama` spans, as they are: `model` is one forward pass;
//!   inside it, a `rms-norm` followed by `attn` starts a layer (the k-th `attn` of a forward
//!   is layer k), whose components are that norm (`norm`), `attn` (`attention`) and
//!   `attn-mlp` (`mlp`); the `rms-norm` after the last layer is the model-level `final_norm`
//!   and `output` the model-level `output` head. Operations are named by position: in
//!   `attn`, the `qmatmul`s are `q_proj`, `k_proj`, `v_proj`, `o_proj` and the `attn-rot`s
//!   `rope_q`, `rope_k`; in `attn-mlp`, the `rms-norm` is `ffn_norm` and the `qmatmul`s are
//!   `gate_proj`, `up_proj`, `down_proj`; in `output`, the `qmatmul` is `lm_head`.
//! - candle-transformers' `llama` spans: `block` is a layer, `attn` and `mlp` its
//!   components, `rms-norm` a norm, `linear` and `attn-rot` operations.
//!
//! # Your own spans
//!
//! Mark any span with one of these fields (with `#[instrument(fields(...))]` or
//! `info_span!(..., field = value)`):
//!
//! | field | the span is | example |
//! |---|---|---|
//! | `phase = "NAME"` | a phase | `info_span!("generate_answer", phase = "decode")` |
//! | `token = I` | a token (one forward pass) | `#[instrument(fields(token = i))]` |
//! | `forward = true` | a forward pass (one token row, when not inside a token span) | |
//! | `layer = I` | layer I | `#[instrument(fields(layer = i))]` |
//! | `component = "KIND"` | a component (`attention`, `mlp`, `norm`, ...) | |
//! | `op = "NAME"` | an operation | `info_span!("matmul", op = "q_proj")` |
//!
//! Any other span becomes a generic section (stored in `pipeline_sections` with its fields):
//! nothing is dropped.

use tracing::field::{Field, Visit};

/// What a span is, decided when it is created.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// A phase of the pipeline.
    Phase(String),
    /// A token: one forward pass of a generation.
    Token,
    /// A forward pass (candle's `model`).
    Forward,
    /// A layer; `Some(i)` when the span says which.
    Layer(Option<u32>),
    /// A component of a layer (or of the model, outside layers).
    Component(String),
    /// A norm: a component of a layer, or an operation inside one, by position.
    Norm,
    /// A matrix multiplication, named by its position in its component.
    Matmul,
    /// Rotary position embedding, named by its position.
    Rope,
    /// An operation with a given name.
    Op(String),
    /// Anything else.
    Generic,
}

/// One span field value, as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// An integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text (also `Debug`-formatted values).
    Str(String),
}

impl FieldValue {
    /// The value as an unsigned integer, when it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            FieldValue::UInt(u) => Some(*u),
            FieldValue::Int(i) => u64::try_from(*i).ok(),
            FieldValue::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The value as text.
    pub fn as_text(&self) -> String {
        match self {
            FieldValue::Str(s) => s.clone(),
            FieldValue::Int(i) => i.to_string(),
            FieldValue::UInt(u) => u.to_string(),
            FieldValue::Float(f) => f.to_string(),
            FieldValue::Bool(b) => b.to_string(),
        }
    }
}

/// Collects a span's fields.
#[derive(Debug, Default)]
pub(crate) struct Fields(pub Vec<(&'static str, FieldValue)>);

impl Fields {
    pub(crate) fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    fn set(&mut self, name: &'static str, v: FieldValue) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = v,
            None => self.0.push((name, v)),
        }
    }

    pub(crate) fn to_json(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        Some(serde_json::Value::Object(map).to_string())
    }
}

impl Visit for Fields {
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.set(f.name(), FieldValue::Int(v));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.set(f.name(), FieldValue::UInt(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.set(f.name(), FieldValue::Float(v));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.set(f.name(), FieldValue::Bool(v));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.set(f.name(), FieldValue::Str(v.to_string()));
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.set(f.name(), FieldValue::Str(format!("{v:?}")));
    }
}

/// Maps spans to roles. See the module docs.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    phases: Vec<String>,
    token_names: Vec<String>,
    candle: bool,
}

impl Default for Vocabulary {
    fn default() -> Self {
        Vocabulary {
            phases: ["tokenize", "prefill", "decode"].map(String::from).to_vec(),
            token_names: vec!["token".into()],
            candle: true,
        }
    }
}

impl Vocabulary {
    /// The built-in vocabulary (phases, tokens, candle-transformers' llama models).
    pub fn new() -> Vocabulary {
        Vocabulary::default()
    }

    /// Also treats spans with this name as a phase.
    pub fn phase(mut self, name: impl Into<String>) -> Vocabulary {
        self.phases.push(name.into());
        self
    }

    /// Also treats spans with this name as tokens.
    pub fn token_span(mut self, name: impl Into<String>) -> Vocabulary {
        self.token_names.push(name.into());
        self
    }

    /// Turns the candle-transformers names off (only fields and phase/token names count).
    pub fn without_candle(mut self) -> Vocabulary {
        self.candle = false;
        self
    }

    /// The role of a span with this name, target and fields.
    pub(crate) fn classify(&self, name: &str, target: &str, fields: &Fields) -> Role {
        if let Some(p) = fields.get("phase") {
            return Role::Phase(p.as_text());
        }
        if fields.get("token").is_some() {
            return Role::Token;
        }
        if fields.get("forward").is_some() {
            return Role::Forward;
        }
        if let Some(l) = fields.get("layer") {
            return Role::Layer(l.as_u64().and_then(|v| u32::try_from(v).ok()));
        }
        if let Some(c) = fields.get("component") {
            return Role::Component(c.as_text());
        }
        if let Some(o) = fields.get("op") {
            return Role::Op(o.as_text());
        }
        if self.phases.iter().any(|p| p == name) {
            return Role::Phase(name.to_string());
        }
        if self.token_names.iter().any(|t| t == name) {
            return Role::Token;
        }
        if self.candle && target.starts_with("candle_transformers") {
            let quantized = target.contains("quantized_llama");
            return match name {
                "model" if quantized => Role::Forward,
                "block" => Role::Layer(None),
                "attn" => Role::Component("attention".into()),
                "attn-mlp" | "mlp" => Role::Component("mlp".into()),
                "output" if quantized => Role::Component("output".into()),
                "rms-norm" => Role::Norm,
                "qmatmul" | "linear" => Role::Matmul,
                "attn-rot" => Role::Rope,
                _ => Role::Generic,
            };
        }
        Role::Generic
    }
}

/// The name of the `ordinal`-th matmul in a component of this kind.
pub(crate) fn matmul_name(component: &str, ordinal: usize) -> Option<&'static str> {
    match component {
        "attention" => ["q_proj", "k_proj", "v_proj", "o_proj"]
            .get(ordinal)
            .copied(),
        "mlp" => ["gate_proj", "up_proj", "down_proj"].get(ordinal).copied(),
        "output" => ["lm_head"].get(ordinal).copied(),
        _ => None,
    }
}

/// The name of the `ordinal`-th rope in a component of this kind.
pub(crate) fn rope_name(ordinal: usize) -> &'static str {
    ["rope_q", "rope_k"].get(ordinal).copied().unwrap_or("rope")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_and_convention_names() {
        let v = Vocabulary::new();
        let none = Fields::default();
        let q = "candle_transformers::models::quantized_llama";
        assert_eq!(v.classify("model", q, &none), Role::Forward);
        assert_eq!(
            v.classify("attn", q, &none),
            Role::Component("attention".into())
        );
        assert_eq!(
            v.classify("attn-mlp", q, &none),
            Role::Component("mlp".into())
        );
        assert_eq!(v.classify("qmatmul", q, &none), Role::Matmul);
        assert_eq!(v.classify("rms-norm", q, &none), Role::Norm);
        assert_eq!(
            v.classify("output", q, &none),
            Role::Component("output".into())
        );
        assert_eq!(
            v.classify("block", "candle_transformers::models::llama", &none),
            Role::Layer(None)
        );
        assert_eq!(v.classify("model", "my_app", &none), Role::Generic);
        assert_eq!(
            v.classify("decode", "my_app", &none),
            Role::Phase("decode".into())
        );
        let mut f = Fields::default();
        f.set("layer", FieldValue::UInt(3));
        assert_eq!(v.classify("anything", "my_app", &f), Role::Layer(Some(3)));
        let mut f = Fields::default();
        f.set("op", FieldValue::Str("q_proj".into()));
        assert_eq!(v.classify("mm", "my_app", &f), Role::Op("q_proj".into()));
        assert_eq!(matmul_name("attention", 3), Some("o_proj"));
        assert_eq!(matmul_name("mlp", 2), Some("down_proj"));
        assert_eq!(matmul_name("mlp", 3), None);
    }
}
