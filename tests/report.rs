//! The HTML report of a real run (`tracing-energy profile` with the real SmolLM2-135M
//! model, see `common::profiled`): the prompt, tags and experiment name full of markup are
//! shown as text, the page loads nothing, has its banner, metadata and every chart; an
//! unknown run is a clear error and a run without a power source reads unknown, never 0.
#![cfg(feature = "candle")]

mod common;

use common::profiled::{profiled, report_html, section, PROMPT};
use serde_json::Value;
use tracing_energy::report::{chrome_trace, escape_html, render};
use tracing_energy::store::{Measured, NewRun, RunEnd, SectionRecord, Store, TokenRecord};
use tracing_energy::Error;

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
        // Where the estimate's watts come from, in the metadata and the banner.
        format!(
            "power method</th><td>{}",
            escape_html(run.power_method.as_deref().unwrap())
        ),
        format!(
            "Model: {}.",
            escape_html(run.power_method.as_deref().unwrap())
        ),
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
