//! The reports of a real run: `tracing-energy profile` generates text with the real
//! SmolLM2-135M model (fetched when missing) into a real database, with a prompt, tags and
//! an experiment name full of markup; the HTML report must show them as text, load nothing
//! and render in a real browser (headless Chromium, when installed); the Chrome trace must
//! be well formed and complete.
#![cfg(feature = "candle")]

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing_energy::report::{chrome_trace, chrome_trace_string, escape_html, render};
use tracing_energy::store::{
    Measured, NewRun, RunEnd, SectionRecord, SpanRollup, Store, TokenRecord,
};
use tracing_energy::Error;

/// The raw chat prompt: the answer is primed so that the model goes on repeating the
/// script tag, which puts markup in the response too.
const PROMPT: &str =
    "<|im_start|>user\nRepeat this three times: <script>alert(1)</script><|im_end|>\n\
<|im_start|>assistant\n<script>alert(1)</script>\n<script>alert(1)</script>\n";
const TAGS: &str = "<b>tag</b>,plain";
const EXPERIMENT: &str = "\"><img src=x onerror=alert(2)>";

struct Profiled {
    db: PathBuf,
    run: i64,
    summary: Value,
}

/// One real profile per test binary, shared by the tests.
fn profiled() -> &'static Profiled {
    static ONCE: OnceLock<Profiled> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_dirs(tmp);
        let dir = tmp.join(format!("report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("profile.db");
        let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
            .args(["profile", "--db"])
            .arg(&db)
            .args([
                "--power",
                "estimate",
                "--max-tokens",
                "6",
                "--requant",
                "q8_0",
                "--json",
                "--raw",
                "--tags",
                TAGS,
                "--experiment",
                EXPERIMENT,
                "--prompt",
                PROMPT,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "profile failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let run = summary["run_id"].as_i64().expect("run_id");
        Profiled { db, run, summary }
    })
}

/// Removes the folders of earlier test processes that are gone (Linux: no /proc/PID).
fn remove_stale_dirs(tmp: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(pid) = name
            .strip_prefix("report-")
            .and_then(|p| p.parse::<u32>().ok())
        {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The HTML report of the shared run, also written to target/report-artifacts/report.html.
fn report_html() -> &'static String {
    static ONCE: OnceLock<String> = OnceLock::new();
    ONCE.get_or_init(|| {
        let p = profiled();
        let store = Store::open_existing(&p.db).unwrap();
        let html = render(&store, p.run).unwrap();
        std::fs::write(artifacts().join("report.html"), &html).unwrap();
        html
    })
}

/// The part of the page inside `<section ... id="ID">`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

#[test]
fn html_shows_user_text_as_text() {
    let p = profiled();
    let html = report_html();
    let store = Store::open_existing(&p.db).unwrap();
    let run = store.get_run(p.run).unwrap().unwrap();
    let response = run.response.clone().unwrap();
    assert!(
        response.contains('<'),
        "the model was expected to repeat the tag: {response:?}"
    );

    // The prompt, the response, the tags and the experiment are there, escaped.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains(&escape_html(PROMPT)));
    assert!(html.contains(&escape_html(&response)));
    assert!(html.contains("&lt;b&gt;tag&lt;/b&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "a raw script tag");
    assert!(!lower.contains("<img"), "a raw img tag");
    assert!(!lower.contains("<b>tag"), "a raw user tag");
    // The token texts (in tooltips) are escaped too.
    for t in store.get_tokens(p.run).unwrap() {
        if let Some(text) = &t.record.text {
            assert!(
                html.contains(&escape_html(&format!("{text:?}"))),
                "token text {text:?}"
            );
        }
    }
}

#[test]
fn html_loads_nothing() {
    let p = profiled();
    let html = report_html();
    let store = Store::open_existing(&p.db).unwrap();
    let run = store.get_run(p.run).unwrap().unwrap();
    let lower = html.to_ascii_lowercase();
    // No attribute that fetches, no CSS import or url() other than a fragment.
    let fetching =
        regex::Regex::new(r#"(?i)\s(src|href|xlink:href|srcset|action|poster|data)\s*="#).unwrap();
    // User text may contain "src=" (escaped, outside a tag): look inside tags only.
    let tags = regex::Regex::new(r"<[^>]*>").unwrap();
    for tag in tags.find_iter(html) {
        assert!(
            !fetching.is_match(tag.as_str()),
            "a fetching attribute: {}",
            tag.as_str()
        );
    }
    assert!(!lower.contains("@import"));
    for m in regex::Regex::new(r"url\(([^)]*)\)")
        .unwrap()
        .captures_iter(&lower)
    {
        assert!(
            m[1].trim_start_matches(['\'', '"']).starts_with('#'),
            "{}",
            &m[0]
        );
    }
    // http(s) only inside escaped user text: remove that text, and none is left.
    let mut rest = html.clone();
    for text in [run.prompt.as_deref(), run.response.as_deref()]
        .into_iter()
        .flatten()
    {
        rest = rest.replace(&escape_html(text), "");
    }
    let rest = rest.to_ascii_lowercase();
    assert!(!rest.contains("http://") && !rest.contains("https://"));
    assert!(!rest.contains("//fonts") && !rest.contains("<link") && !rest.contains("<iframe"));
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.contains("default-src 'none'"));
}

#[test]
fn html_has_banner_metadata_and_every_chart() {
    let p = profiled();
    let html = report_html();
    let store = Store::open_existing(&p.db).unwrap();
    let run = store.get_run(p.run).unwrap().unwrap();
    assert!(run.estimated);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains("id=\"estimated-banner\""));
    assert!(html.contains("ESTIMATED ENERGY"));
    assert!(!html.contains("id=\"unknown-banner\""));
    for text in [
        escape_html(run.model.as_deref().unwrap()),
        escape_html(&run.crate_version),
        escape_html(run.power_source.as_deref().unwrap()),
        escape_html(&run.started_at),
        escape_html(run.host.name.as_deref().unwrap_or("")),
    ] {
        assert!(html.contains(&text), "{text}");
    }
    // Every chart: an SVG with a title, axis labels with units and tooltips.
    for (id, needles) in [
        (
            "power",
            &["power (mW)", "(ms)", "phase prefill", "phase decode"][..],
        ),
        (
            "tokens",
            &["energy (mJ)", "token 0 (prefill)", "token 1 (decode)"][..],
        ),
        (
            "heatmap",
            &[
                "layer 0",
                "layer 29",
                "model",
                "attention",
                "mlp",
                "norm",
                "output",
                "final_norm",
                "mJ per token",
            ][..],
        ),
        (
            "sankey",
            &["prefill", "decode", "layer", "attention", "mlp", "run"][..],
        ),
        ("hottest", &["energy over the run (mJ)", "layer"][..]),
    ] {
        let s = section(html, id);
        assert!(
            s.contains("<svg class=\"chart\" viewBox=\"0 0 "),
            "{id}: no svg"
        );
        assert!(s.contains("<h2>"), "{id}: no title");
        assert!(s.matches("<title>").count() >= 3, "{id}: too few tooltips");
        assert_eq!(
            s.matches("<svg").count(),
            s.matches("</svg>").count(),
            "{id}"
        );
        for n in needles {
            assert!(s.contains(n), "{id}: no {n:?}");
        }
        assert!(
            !s.contains("class=\"empty\""),
            "{id}: the chart says it is empty"
        );
    }
    // One bar per token row.
    let tokens = store.get_tokens(p.run).unwrap();
    let bars = section(html, "tokens")
        .matches("<rect class=\"mark\"")
        .count();
    assert_eq!(bars, tokens.len());
    // The 30 layers x (norm, attention, mlp) plus the model row's output and final norm,
    // per phase.
    let cells = section(html, "heatmap")
        .matches("<rect class=\"mark\"")
        .count();
    assert_eq!(cells, 2 * (30 * 3 + 2));
    // Ten hottest components.
    assert_eq!(
        section(html, "hottest")
            .matches("<rect class=\"mark\"")
            .count(),
        10
    );
    // The phases table lists the summary's phases.
    let phases = section(html, "phases");
    for ph in store.get_run_summary(p.run).unwrap().unwrap().phases {
        assert!(phases.contains(&format!("{}</td>", escape_html(&ph.phase))));
    }
    let _ = &p.summary;
}

#[test]
fn unknown_run_is_a_clear_error() {
    let p = profiled();
    let store = Store::open_existing(&p.db).unwrap();
    for result in [
        render(&store, 987_654).map(|_| ()),
        chrome_trace(&store, 987_654).map(|_| ()),
    ] {
        match result {
            Err(Error::UnknownRun { path, run }) => {
                assert_eq!(path, p.db);
                assert_eq!(run, "987654");
            }
            other => panic!("expected UnknownRun, got {other:?}"),
        }
    }
}

/// A run without a power source: energies are unknown, never 0, and the page says so.
#[test]
fn unknown_energy_reads_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("none.db")).unwrap();
    let run = store
        .create_run(&NewRun {
            model: Some("<i>model</i>".into()),
            prompt: Some("hello <script>x</script>".into()),
            tags: vec!["a&b".into()],
            ..NewRun::new()
        })
        .unwrap();
    let ms = 1_000_000;
    store.add_pipeline_sections(
        run,
        vec![
            SectionRecord {
                section_index: 0,
                parent_index: None,
                name: "prefill".into(),
                kind: "phase".into(),
                phase: Some("prefill".into()),
                depth: 0,
                fields: None,
                path: None,
                polls: None,
                busy_ms: None,
                measured: Measured {
                    thread_id: Some(0),
                    ..Measured::span(0, 40 * ms)
                },
            },
            SectionRecord {
                section_index: 1,
                parent_index: None,
                name: "decode".into(),
                kind: "phase".into(),
                phase: Some("decode".into()),
                depth: 0,
                fields: None,
                path: None,
                polls: None,
                busy_ms: None,
                measured: Measured {
                    thread_id: Some(0),
                    ..Measured::span(40 * ms, 100 * ms)
                },
            },
        ],
    );
    store.add_tokens(
        run,
        (0..4)
            .map(|i| TokenRecord {
                token_index: i,
                phase: if i == 0 { "prefill" } else { "decode" }.into(),
                n_tokens: if i == 0 { 5 } else { 1 },
                token_id: Some(7),
                text: Some(format!("<t{i}>")),
                measured: Measured {
                    thread_id: Some(0),
                    ..Measured::span(i * 20 * ms + ms, (i + 1) * 20 * ms)
                },
            })
            .collect(),
    );
    store.finish_run(run, &RunEnd::complete()).unwrap();

    let html = render(&store, run).unwrap();
    assert!(html.contains("id=\"unknown-banner\""));
    assert!(html.contains("ENERGY UNKNOWN"));
    assert!(!html.contains("id=\"estimated-banner\""));
    assert!(html.contains("&lt;i&gt;model&lt;/i&gt;"));
    assert!(html.contains("hello &lt;script&gt;x&lt;/script&gt;"));
    assert!(html.contains("a&amp;b"));
    assert!(!html.to_ascii_lowercase().contains("<script"));
    assert!(
        !html.contains(" 0 mJ") && !html.contains(">0 mJ"),
        "an unknown energy shown as 0"
    );
    let kpis = &html[html.find("class=\"kpis\"").unwrap()..];
    let kpis = &kpis[..kpis.find("id=\"metadata\"").unwrap()];
    assert!(kpis.matches(">unknown<").count() >= 4, "{kpis}");
    for id in ["power", "tokens", "heatmap", "sankey", "hottest"] {
        assert!(section(&html, id).contains("<svg class=\"chart\""), "{id}");
    }
    // Unknown energies are left out of the trace's args, and there are no counters.
    let trace = chrome_trace(&store, run).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let tokens: Vec<&Value> = events.iter().filter(|e| e["cat"] == "token").collect();
    assert_eq!(tokens.len(), 4);
    for t in tokens {
        assert!(t["args"].get("energy_mj").is_none(), "{t}");
        assert_eq!(t["args"]["duration_ms"].as_f64().unwrap(), 19.0);
    }
    assert!(!events.iter().any(|e| e["ph"] == "C"));
}

#[test]
fn chrome_trace_is_complete_and_well_formed() {
    let p = profiled();
    let store = Store::open_existing(&p.db).unwrap();
    let text = chrome_trace_string(&store, p.run).unwrap();
    std::fs::write(artifacts().join("trace.json"), &text).unwrap();
    let trace: Value = serde_json::from_str(&text).unwrap();
    // The string is the value, serialized (floats may differ in their last bit on parsing).
    let value = chrome_trace(&store, p.run).unwrap();
    assert_eq!(
        trace["traceEvents"].as_array().unwrap().len(),
        value["traceEvents"].as_array().unwrap().len()
    );
    assert_eq!(trace["displayTimeUnit"], "ms");
    assert_eq!(trace["metadata"]["run_id"].as_i64(), Some(p.run));
    assert_eq!(trace["metadata"]["estimated"], true);
    let events = trace["traceEvents"].as_array().unwrap();

    let mut thread_names = BTreeSet::new();
    let mut x_tids = BTreeSet::new();
    let mut by_cat: HashMap<String, usize> = HashMap::new();
    let mut counters = 0;
    for e in events {
        let ph = e["ph"].as_str().unwrap();
        assert_eq!(e["pid"], 1, "{e}");
        match ph {
            "X" => {
                let ts = e["ts"].as_f64().unwrap();
                let dur = e["dur"].as_f64().unwrap();
                assert!(ts >= 0.0 && dur >= 0.0, "{e}");
                assert!(e["name"].as_str().is_some_and(|n| !n.is_empty()));
                let args = e["args"].as_object().unwrap();
                assert!(
                    args.values().all(|v| !v.is_null()),
                    "nulls are left out: {e}"
                );
                assert!(args["energy_mj"].as_f64().is_some(), "{e}");
                assert!(args.contains_key("exclusive_energy_mj"), "{e}");
                assert!(args["cpu_energy_mj"].as_f64().is_some(), "{e}");
                assert!(args.contains_key("energy_uncertainty_mj"), "{e}");
                assert!(args["sample_windows"].as_u64().is_some(), "{e}");
                x_tids.insert(e["tid"].as_u64().unwrap());
                *by_cat
                    .entry(e["cat"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            "C" => {
                assert!(e["ts"].as_f64().unwrap() >= 0.0);
                let args = e["args"].as_object().unwrap();
                assert!(
                    !args.is_empty() && args.values().all(|v| v.as_f64().is_some_and(|v| v >= 0.0))
                );
                assert!(e["name"].as_str().unwrap().contains("(mW)"));
                counters += 1;
            }
            "M" => {
                if e["name"] == "thread_name" {
                    assert!(e["args"]["name"].as_str().is_some());
                    thread_names.insert(e["tid"].as_u64().unwrap());
                }
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    assert!(!x_tids.is_empty());
    assert!(
        x_tids.is_subset(&thread_names),
        "{x_tids:?} {thread_names:?}"
    );

    let tokens = store.get_tokens(p.run).unwrap();
    let token_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"].as_str().unwrap().starts_with("token "))
        .collect();
    assert_eq!(token_events.len(), tokens.len());
    assert_eq!(by_cat["token"], tokens.len());
    assert!(token_events
        .iter()
        .any(|e| e["name"] == "token 0 (prefill)"));
    assert!(token_events.iter().any(|e| e["name"] == "token 1 (decode)"));
    assert_eq!(by_cat["layer"], 30 * tokens.len());
    assert_eq!(by_cat["component"], (30 * 3 + 2) * tokens.len());
    assert!(by_cat["operation"] >= 30 * 10 * tokens.len());
    assert_eq!(by_cat["phase"], 3, "tokenize, prefill, decode");
    for name in [
        "layer 12",
        "attention",
        "mlp",
        "q_proj",
        "down_proj",
        "lm_head",
        "output",
    ] {
        assert!(events.iter().any(|e| e["name"] == name), "{name}");
    }
    // Power counters: one per sample and kind (domains, total), plus the last end.
    let samples = store.get_power_timeline(p.run).unwrap();
    assert_eq!(counters, 2 * (samples.len() + 1));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["args"]["cpu"].as_f64().is_some()));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["args"]["total"].as_f64().is_some()));
    // The trace starts at 0 and its timed events are in time order.
    let ts: Vec<f64> = events
        .iter()
        .filter(|e| e["ph"] != "M")
        .map(|e| e["ts"].as_f64().unwrap())
        .collect();
    assert_eq!(ts.iter().cloned().fold(f64::INFINITY, f64::min), 0.0);
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
}

// ------------------------------------------------------------------ headless Chromium

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs Chromium headless on `url` with `args`, killing it after two minutes; returns
/// (stdout, stderr).
fn chromium(profile_dir: &Path, args: &[String], url: &str) -> (String, String) {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            // Nothing resolves: a request is still logged, but never leaves the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (out_thread.join().unwrap(), err_thread.join().unwrap())
}

/// Console messages and uncaught errors in Chromium's log (`INFO:CONSOLE:1] "..."` with
/// `--enable-logging=stderr --v=0`). The page has no script, so any console message is an
/// error (a Content-Security-Policy violation, for one).
fn console_errors(stderr: &str) -> Vec<&str> {
    let console = regex::Regex::new(r"(?i)\bconsole[(:]").unwrap();
    stderr
        .lines()
        .filter(|l| l.contains("Uncaught") || console.is_match(l))
        .collect()
}

/// The (url, initiator) of every request job in a Chromium net log.
fn net_requests(net_log: &str) -> Vec<(String, String)> {
    let log: Value = serde_json::from_str(net_log)
        .or_else(|_| {
            serde_json::from_str(&format!("{}]}}", net_log.trim_end().trim_end_matches(',')))
        })
        .expect("a JSON net log");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("URL_REQUEST_START_JOB in the net log's constants");
    log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter_map(|e| {
            let p = &e["params"];
            Some((
                p["url"].as_str()?.to_string(),
                p["initiator"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// Requests a page made (Chromium's own background requests have no initiating origin)
/// for anything but file:, data: and about: URLs.
fn page_network_requests(requests: &[(String, String)]) -> Vec<String> {
    requests
        .iter()
        .filter(|(_, initiator)| initiator != "not an origin")
        .map(|(url, _)| url.clone())
        .filter(|u| !(u.starts_with("file:") || u.starts_with("data:") || u.starts_with("about:")))
        .collect()
}

/// What headless Chromium made of a page: a screenshot (with a log of every network
/// request) and the DOM it built, each checked for console errors and for requests the
/// page made. Artifacts go to target/report-artifacts/{name}.png and {name}-dom.html.
struct Browsed {
    png: Vec<u8>,
    dom: String,
    requests: Vec<(String, String)>,
}

fn browse(dir: &Path, html: &str, name: &str, height: u32) -> Browsed {
    let page = dir.join(format!("{name}.html"));
    std::fs::write(&page, html).unwrap();
    let url = format!("file://{}", page.display());
    let shot = artifacts().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let size = format!("--window-size=1400,{height}");
    // 1. A screenshot, with a net log of every request.
    let net_log = dir.join(format!("{name}-netlog.json"));
    let (_, stderr) = chromium(
        &dir.join(format!("{name}-profile-1")),
        &[
            format!("--screenshot={}", shot.display()),
            size.clone(),
            format!("--log-net-log={}", net_log.display()),
            "--net-log-capture-mode=Everything".into(),
        ],
        &url,
    );
    std::fs::write(artifacts().join(format!("chromium-{name}.log")), &stderr).unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}); chromium said:\n{stderr}",
            shot.display()
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(
        console_errors(&stderr).is_empty(),
        "{:?}",
        console_errors(&stderr)
    );
    let requests = net_requests(&std::fs::read_to_string(&net_log).expect("net log"));
    let from_page = page_network_requests(&requests);
    assert!(
        from_page.is_empty(),
        "the page made network requests: {from_page:?}"
    );
    // 2. The DOM as the browser built it.
    let (dom, stderr) = chromium(
        &dir.join(format!("{name}-profile-2")),
        &["--dump-dom".into(), size],
        &url,
    );
    std::fs::write(artifacts().join(format!("{name}-dom.html")), &dom).unwrap();
    assert!(
        console_errors(&stderr).is_empty(),
        "{:?}",
        console_errors(&stderr)
    );
    Browsed { png, dom, requests }
}

#[test]
fn html_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).is_file() {
        eprintln!(
            "!! SKIPPED html_renders_in_headless_chromium: {CHROMIUM} is missing \
             (install the Debian package `chromium`; scripts/test.sh should)"
        );
        return;
    }
    let html = report_html();
    let dir = tempfile::tempdir().unwrap();
    let Browsed { png, dom, requests } = browse(dir.path(), html, "report", 3000);
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 1000 && height >= 2000, "{width}x{height}");
    assert!(
        png.len() > 60_000,
        "a suspiciously small screenshot: {} bytes",
        png.len()
    );
    // Chromium's own (update checks, network time) are not the page's: noted, not failed.
    let own: BTreeSet<&str> = requests
        .iter()
        .filter(|(_, i)| i == "not an origin")
        .filter_map(|(url, _)| url.split('/').nth(2))
        .collect();
    if !own.is_empty() {
        eprintln!(
            "note: Chromium's own background requests (not the page's, never resolved): {own:?}"
        );
    }
    assert_eq!(
        dom.matches("<svg class=\"chart\"").count(),
        5,
        "five charts"
    );
    for id in [
        "power", "tokens", "heatmap", "sankey", "hottest", "phases", "metadata",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id}");
    }
    // The browser parsed the user's markup as text: no script or img element exists.
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let lower = dom.to_ascii_lowercase();
    assert!(!lower.contains("<script") && !lower.contains("<img"));
    // Every chart's marks made it into the DOM.
    let tokens = Store::open_existing(&profiled().db)
        .unwrap()
        .get_tokens(profiled().run)
        .unwrap()
        .len();
    assert!(dom.matches("<rect class=\"mark\"").count() >= tokens + 2 * 92 + 10);
    assert!(dom.matches("<path class=\"link\"").count() >= 10);

    // 3. The detectors work: a page that fetches an image and throws is caught by both.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><img src=\"http://example.invalid/pixel.png\">\
         <script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let control_log = dir.path().join("control-netlog.json");
    let (_, stderr) = chromium(
        &dir.path().join("profile-3"),
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", control_log.display()),
            "--net-log-capture-mode=Everything".into(),
        ],
        &format!("file://{}", control.display()),
    );
    let requests = net_requests(&std::fs::read_to_string(&control_log).unwrap());
    assert_eq!(
        page_network_requests(&requests),
        ["http://example.invalid/pixel.png"],
        "the net log check misses a page's request"
    );
    assert!(
        !console_errors(&stderr).is_empty(),
        "the console check misses an uncaught error: {stderr}"
    );
}

/// A run with energy per span path shaped like a model's (phases, tokens, layers,
/// components, matmuls; `token;layer` and `token;layer;mlp` have no row of their own), in
/// a database of its own; returns the store and the run.
fn flame_run(dir: &Path) -> (Store, i64) {
    let store = Store::open(dir.join("flame.db")).unwrap();
    let run = store
        .create_run(&NewRun {
            model: Some("flame-test".into()),
            power_source: Some("estimate".into()),
            estimated: true,
            ..NewRun::new()
        })
        .unwrap();
    let mut rows = vec![SpanRollup {
        path: "tokenize".into(),
        calls: 1,
        busy_ms: 3.0,
        energy_mj: Some(40.0),
        exclusive_energy_mj: Some(40.0),
    }];
    let mut total = 40.0;
    for (phase, scale, tokens) in [("prefill", 1.0, 1u64), ("decode", 2.5, 6)] {
        for (leaf, mj) in [
            ("", 30.0),
            (";layer;attention", 25.0),
            (";layer;attention;q_proj", 120.0),
            (";layer;attention;k_proj", 45.0),
            (";layer;attention;v_proj", 44.0),
            (";layer;attention;o_proj", 110.0),
            (";layer;mlp;gate_proj", 260.0),
            (";layer;mlp;up_proj", 255.0),
            (";layer;mlp;down_proj", 270.0),
            (";layer;norm", 18.0),
            (";output;lm_head", 90.0),
            (";output", 4.0),
            (";sample<T>", 6.0),
        ] {
            let e = mj * scale;
            total += e;
            rows.push(SpanRollup {
                path: format!("{phase};token{leaf}"),
                calls: tokens * if leaf.contains("layer") { 30 } else { 1 },
                busy_ms: e / 50.0,
                energy_mj: Some(e),
                exclusive_energy_mj: Some(e),
            });
        }
        rows.push(SpanRollup {
            path: phase.into(),
            calls: 1,
            busy_ms: 1.0,
            energy_mj: Some(2.0),
            exclusive_energy_mj: Some(2.0),
        });
        total += 2.0;
    }
    assert!(store.add_span_rollup(run, rows));
    store
        .finish_run(
            run,
            &RunEnd {
                total_energy_mj: Some(total * 1.25),
                attributed_energy_mj: Some(total),
                unattributed_energy_mj: Some(total * 0.25),
                ..RunEnd::complete()
            },
        )
        .unwrap();
    store.flush().unwrap();
    (store, run)
}

#[test]
fn flame_graph_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = flame_run(dir.path());
    let html = render(&store, run).unwrap();
    std::fs::write(artifacts().join("flame.html"), &html).unwrap();
    let flame = section(&html, "flame-graph");
    assert!(flame.contains("Energy by span path"));
    assert!(flame.contains("<svg class=\"chart flame\""));
    // The root, every path with energy and the two prefixes without a row of their own.
    let rects = flame.matches("<rect class=\"frame\"").count();
    assert_eq!(
        rects,
        1 + 2 * (1 + 1 + 1 + 1 + 4 + 1 + 3 + 1 + 1 + 1 + 1) + 1
    );
    for name in ["decode;token;layer;mlp;down_proj", "prefill;token;layer"] {
        assert!(flame.contains(&format!("<title>{name}\n")), "{name}");
    }
    assert!(flame.contains("sample&lt;T&gt;") && !flame.contains("sample<T>"));
    assert!(flame.contains("none (no span of its own"));
    assert!(!flame.contains("id=\"flame-note\""));

    if !Path::new(CHROMIUM).is_file() {
        eprintln!(
            "!! SKIPPED the browser part of flame_graph_renders_in_headless_chromium: {CHROMIUM} \
             is missing (install the Debian package `chromium`; scripts/test.sh should)"
        );
        return;
    }
    let Browsed { dom, .. } = browse(dir.path(), &html, "flame", 4200);
    let flame = section(&dom, "flame-graph");
    assert!(flame.contains("<svg class=\"chart flame\""));
    assert_eq!(flame.matches("<rect class=\"frame\"").count(), rects);
    for name in [
        "all spans",
        "decode",
        "prefill",
        "token",
        "layer",
        "mlp",
        "attention",
        "down_proj",
        "q_proj",
    ] {
        assert!(flame.contains(&format!(">{name}")), "{name}");
    }
    assert!(flame.contains("decode;token;layer;attention;q_proj"));
    assert!(!dom.to_ascii_lowercase().contains("<script"));
}
