//! The HTML report in a real browser (headless Chromium, when installed): the page of a
//! real run (see `common::profiled`) and a flame graph of energy by span path render,
//! make no network request and log no console error, and the checks themselves catch a
//! page that does.
#![cfg(feature = "candle")]

use std::collections::BTreeSet;
use std::path::Path;

mod common;

use common::chromium::{chromium, console_errors, installed_or_skip};
use common::profiled::{artifacts, profiled, report_html, section};
use serde_json::Value;
use tracing_energy::report::render;
use tracing_energy::store::{NewRun, RunEnd, SpanRollup, Store};

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
    if !installed_or_skip("html_renders_in_headless_chromium") {
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

    if !installed_or_skip("the browser part of flame_graph_renders_in_headless_chromium") {
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
