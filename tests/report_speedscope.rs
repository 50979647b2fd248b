//! The Chrome trace of a real run (see `common::profiled`) opened in speedscope, the real
//! web app (its npm package, fetched by scripts/fetch-speedscope.sh), in headless Chromium:
//! speedscope imports the default (`layers`) trace and the `ops` trace without a single
//! "Tried to end ... Doing nothing instead." warning, the message it logs when an event
//! does not close inside its parent, after which it nests every later event one level
//! deeper (a staircase). The same check on the trace with its times written as they were
//! before (nanosecond decimals, plain durations) finds that warning, so it can fail.
#![cfg(feature = "candle")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod common;

use common::chromium::{chromium, installed_or_skip};
use common::cli_ok;
use common::profiled::{artifacts, profiled};
use common::trace::with_plain_times;
use serde_json::Value;

/// speedscope's `dist/release` directory: `$TRACING_ENERGY_TEST_SPEEDSCOPE` (set by
/// scripts/test.sh), else where scripts/fetch-speedscope.sh puts it by default.
fn speedscope_app() -> Option<PathBuf> {
    let dir = match std::env::var_os("TRACING_ENERGY_TEST_SPEEDSCOPE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/speedscope-1.25.0/package/dist/release"),
    };
    dir.join("index.html").is_file().then_some(dir)
}

/// A static file server over `dir` on a free localhost port (Python's `http.server`):
/// speedscope fetches the trace named in its URL, which a file: page may not.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in http.server's first line: {line:?}"));
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What speedscope said while importing one trace.
struct Opened {
    /// Its console messages (Chromium's log lines).
    console: Vec<String>,
    dom: String,
}

impl Opened {
    /// The nesting warnings: an end that does not match the frame open on top.
    fn staircase_warnings(&self) -> Vec<&String> {
        self.console
            .iter()
            .filter(|l| l.contains("Tried to end"))
            .collect()
    }
}

/// Opens `file` (served by `server` from `dir`) in speedscope, in headless Chromium.
fn open(server: &FileServer, dir: &Path, file: &str) -> Opened {
    let url = format!(
        "http://127.0.0.1:{}/index.html#profileURL={file}",
        server.port
    );
    let (dom, stderr) = chromium(
        &dir.join(format!("chromium-{file}")),
        &[
            "--virtual-time-budget=20000".into(),
            "--window-size=1400,900".into(),
            "--dump-dom".into(),
        ],
        &url,
    );
    std::fs::write(artifacts().join(format!("speedscope-{file}.log")), &stderr).unwrap();
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    Opened { console, dom }
}

fn export(db: &Path, run: i64, detail: &str) -> Value {
    let id = run.to_string();
    let args = ["export", "--format", "chrome", "--detail", detail, &id];
    serde_json::from_str(&cli_ok(db, &args)).unwrap()
}

#[test]
fn speedscope_nests_the_trace_as_written() {
    if !installed_or_skip("speedscope_nests_the_trace_as_written") {
        return;
    }
    let Some(app) = speedscope_app() else {
        eprintln!(
            "!! SKIPPED speedscope_nests_the_trace_as_written: speedscope is missing \
             (run scripts/fetch-speedscope.sh, or scripts/test.sh, which does)"
        );
        return;
    };
    let p = profiled();
    // speedscope's app and the traces, served from one folder.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&app).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let layers = export(&p.db, p.run, "layers");
    let ops = export(&p.db, p.run, "ops");
    let traces = [
        ("layers.json", &layers),
        ("ops.json", &ops),
        ("plain.json", &with_plain_times(&ops)),
    ];
    for (name, trace) in traces {
        std::fs::write(dir.path().join(name), serde_json::to_vec(trace).unwrap()).unwrap();
    }
    let server = FileServer::start(dir.path());
    let name = format!("tracing-energy run {}", p.run);
    let mut warnings = Vec::new();
    for (file, _) in traces {
        let opened = open(&server, dir.path(), file);
        // speedscope ran its Chrome trace importer and shows the run.
        assert!(
            opened
                .console
                .iter()
                .any(|l| l.contains("Importing as Trace Event Format profile")),
            "{file}: speedscope did not import it: {:#?}",
            opened.console
        );
        assert!(
            opened.dom.contains(&name),
            "{file}: no {name:?} in the page"
        );
        let uncaught: Vec<_> = opened
            .console
            .iter()
            .filter(|l| l.contains("Uncaught") || l.contains("rror when"))
            .collect();
        assert!(uncaught.is_empty(), "{file}: {uncaught:#?}");
        warnings.push((file, opened.staircase_warnings().len()));
    }
    let x = |t: &Value| {
        t["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .count()
    };
    eprintln!(
        "speedscope's nesting warnings per trace: {warnings:?} (X events: layers {}, ops {})",
        x(&layers),
        x(&ops)
    );
    assert_eq!(warnings[0], ("layers.json", 0));
    assert_eq!(warnings[1], ("ops.json", 0));
    // The check catches the times as they were written before.
    assert!(warnings[2].1 > 0, "{warnings:?}");
}
