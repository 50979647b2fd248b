//! `tracing-energy serve` in a real browser: headless Chromium (driven over the DevTools
//! protocol) clicks from the runs list to a run's report, back, to a compare page by the
//! compare form and by a "vs run" link, and from there to a report, over two real runs (the
//! second recorded by `tracing-energy profile` while the server runs);
//! no console error is logged and no request goes anywhere but the server. The checks are
//! shown to catch a page that loads an external image or logs an error. Skipped loudly
//! when /usr/bin/chromium is absent (scripts/test.sh installs it).
#![cfg(feature = "candle")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Network;
use headless_chrome::{Browser, LaunchOptions, Tab};

mod common;

use common::chromium::{installed_or_skip, CHROMIUM};
use common::serve as server;

/// What the page did: every request's URL, and every console error, uncaught exception
/// or error logged by the browser (a Content-Security-Policy violation, a failed load).
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
}

fn watch(tab: &Tab) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    tab.add_event_listener(Arc::new(move |event: &Event| match event {
        Event::NetworkRequestWillBeSent(e) => {
            s.requests
                .lock()
                .unwrap()
                .push(e.params.request.url.clone());
        }
        Event::LogEntryAdded(e) => {
            let entry = &e.params.entry;
            if format!("{:?}", entry.level).eq_ignore_ascii_case("error") {
                s.errors
                    .lock()
                    .unwrap()
                    .push(format!("log: {} ({:?})", entry.text, entry.url));
            }
        }
        Event::RuntimeConsoleAPICalled(e) => {
            let kind = format!("{:?}", e.params.Type);
            if kind.eq_ignore_ascii_case("error") || kind.eq_ignore_ascii_case("assert") {
                s.errors.lock().unwrap().push(format!("console.{kind}"));
            }
        }
        Event::RuntimeExceptionThrown(e) => {
            s.errors
                .lock()
                .unwrap()
                .push(format!("exception: {}", e.params.exception_details.text));
        }
        _ => {}
    }))
    .unwrap();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.call_method(Network::Enable {
        max_total_buffer_size: None,
        max_resource_buffer_size: None,
        max_post_data_size: None,
        report_direct_socket_traffic: None,
        enable_durable_messages: None,
    })
    .unwrap();
    seen
}

/// A JavaScript expression's string value, evaluated by the DevTools protocol (the pages
/// themselves run no script).
fn eval(tab: &Tab, expr: &str) -> String {
    tab.evaluate(expr, false)
        .ok()
        .and_then(|o| o.value)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits (up to 60 s) until the loaded page's path and query satisfy `ok`: the path.
fn wait_for_page(tab: &Tab, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let at = eval(tab, "location.pathname + location.search");
        if ok(&at) && eval(tab, "document.readyState") == "complete" {
            return at;
        }
        assert!(Instant::now() < deadline, "never reached {what}; at {at}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clicks the element `selector` (a real mouse click at its middle).
fn click(tab: &Tab, selector: &str) {
    let el = tab
        .wait_for_element(selector)
        .unwrap_or_else(|e| panic!("no {selector}: {e}"));
    el.scroll_into_view().unwrap();
    el.click()
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

fn back(tab: &Tab) {
    tab.evaluate("history.back()", false).unwrap();
    wait_for_page(tab, "the runs list", |p| p == "/");
}

/// A second real run in `db` (as `common::profiled` records the first).
fn profile_again(db: &Path) -> i64 {
    let args = ["--max-tokens", "3", "--prompt", "Say hello."];
    common::profiled::profile_into(db, &args)["run_id"]
        .as_i64()
        .expect("run_id")
}

#[test]
fn clicks_from_the_runs_list_to_a_report_and_to_compare_pages() {
    if !installed_or_skip("clicks_from_the_runs_list_to_a_report_and_to_compare_pages") {
        return;
    }
    let p = common::profiled::profiled();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("browse.db");
    std::fs::copy(&p.db, &db).unwrap();
    let first = p.run;
    let s = server::Server::start(&db);
    // A real profile records into the file while it is served.
    let second = profile_again(&db);

    let browser = Browser::new(LaunchOptions {
        headless: true,
        sandbox: false,
        path: Some(CHROMIUM.into()),
        window_size: Some((1400, 1000)),
        idle_browser_timeout: Duration::from_secs(120),
        args: vec![
            // Nothing but the server resolves: a request elsewhere is still seen, but never
            // leaves the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".as_ref(),
            "--disable-background-networking".as_ref(),
            "--disable-component-update".as_ref(),
            "--disable-sync".as_ref(),
            "--no-first-run".as_ref(),
            "--disable-dev-shm-usage".as_ref(),
        ],
        ..LaunchOptions::default()
    })
    .expect("start headless chromium");
    let tab = browser.new_tab().unwrap();
    let seen = watch(&tab);

    // The runs list, then a click on the first run's link: its report.
    tab.navigate_to(&format!("{}/", s.url)).unwrap();
    wait_for_page(&tab, "the runs list", |p| p == "/");
    assert_eq!(eval(&tab, "document.title"), "Runs");
    click(&tab, &format!("a.run[href=\"/runs/{first}\"]"));
    wait_for_page(&tab, "the report", |p| p == format!("/runs/{first}"));
    assert!(
        eval(&tab, "document.title").starts_with(&format!("Energy profile: run {first}")),
        "{}",
        eval(&tab, "document.title")
    );
    assert!(
        tab.find_element("section#power svg").is_ok(),
        "the power chart"
    );
    // Back to the runs list by the report's own link.
    click(&tab, "nav.top a[href=\"/\"]");
    wait_for_page(&tab, "the runs list", |p| p == "/");

    // The compare form: its submit button, with the two newest runs chosen.
    click(&tab, "#compare-submit");
    let at = wait_for_page(&tab, "the compare page", |p| p.starts_with("/compare?"));
    assert_eq!(at, format!("/compare?a={first}&b={second}"));
    assert_eq!(
        eval(&tab, "document.querySelector('h1').textContent"),
        format!("Run {first} vs run {second}")
    );
    assert!(tab.find_element("section#phases table").is_ok());
    back(&tab);

    // A "vs run" link, then from the compare page to run A's report.
    click(&tab, "a.vs");
    wait_for_page(&tab, "the compare page", |p| {
        p == format!("/compare?a={first}&b={second}")
    });
    click(&tab, "#report-a");
    wait_for_page(&tab, "run A's report", |p| p == format!("/runs/{first}"));

    let errors = seen.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let requests = seen.requests.lock().unwrap().clone();
    for page in [
        "/".to_string(),
        format!("/runs/{first}"),
        format!("/compare?a={first}&b={second}"),
    ] {
        let url = format!("{}{page}", s.url);
        assert!(
            requests.contains(&url),
            "{url} not requested: {requests:#?}"
        );
    }
    let elsewhere: Vec<&String> = requests
        .iter()
        .filter(|u| !u.starts_with(&format!("{}/", s.url)))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests beyond the server: {elsewhere:#?}"
    );

    // The checks catch a page that loads an external image and logs an error.
    seen.requests.lock().unwrap().clear();
    tab.navigate_to(
        "data:text/html,<img src=\"http://example.invalid/x.png\"><script>console.error('x')</script>",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let external = seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.starts_with("http://example.invalid/"));
        let logged = seen
            .errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("console.Error") || e.contains("console.error"));
        if external && logged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the checks missed an external image or a console error"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
