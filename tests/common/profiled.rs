//! The real run that the report tests share: `tracing-energy profile` generates text with
//! the real SmolLM2-135M model (fetched when missing) into a real database, once per test
//! binary, with a prompt, tags and an experiment name full of markup; its HTML report, and
//! where the tests leave their artifacts (target/report-artifacts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use tracing_energy::report::render;
use tracing_energy::store::Store;

/// The raw chat prompt: the answer is primed so that the model goes on repeating the
/// script tag, which puts markup in the response too.
pub const PROMPT: &str =
    "<|im_start|>user\nRepeat this three times: <script>alert(1)</script><|im_end|>\n\
<|im_start|>assistant\n<script>alert(1)</script>\n<script>alert(1)</script>\n";
pub const TAGS: &str = "<b>tag</b>,plain";
pub const EXPERIMENT: &str = "\"><img src=x onerror=alert(2)>";

pub struct Profiled {
    pub db: PathBuf,
    pub run: i64,
    pub summary: Value,
}

/// One real profile per test binary, shared by the tests.
pub fn profiled() -> &'static Profiled {
    static ONCE: OnceLock<Profiled> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_dirs(tmp);
        let dir = tmp.join(format!("report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("profile.db");
        let summary = profile_into(
            &db,
            &[
                "--max-tokens",
                "6",
                "--raw",
                "--tags",
                TAGS,
                "--experiment",
                EXPERIMENT,
                "--prompt",
                PROMPT,
            ],
        );
        let run = summary["run_id"].as_i64().expect("run_id");
        Profiled { db, run, summary }
    })
}

/// A real `tracing-energy profile` into `db`: the CPU-time estimate as the power source,
/// the model requantized to q8_0, and `args` (the prompt, the tokens, ...). Returns its
/// `--json` summary; panics with the error when it fails.
pub fn profile_into(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["profile", "--db"])
        .arg(db)
        .args(["--power", "estimate", "--requant", "q8_0", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "profile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Removes the folders of earlier test processes that are gone (Linux: no /proc/PID).
pub fn remove_stale_dirs(tmp: &Path) {
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

pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The HTML report of the shared run, also written to target/report-artifacts/report.html.
pub fn report_html() -> &'static String {
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
pub fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}
