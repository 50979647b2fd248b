//! Export size and speed: a 1,000-token run of the real SmolLM2-135M model exported with
//! `tracing-energy export` at every `--detail` level, plain and gzip-compressed.
//!
//! ```text
//! cargo bench --bench export                        # profiles the run first (a few minutes)
//! EXPORT_DB=run.db cargo bench --bench export       # the latest run of an existing database
//! EXPORT_REPEAT=5 cargo bench --bench export        # runs per row (default 3)
//! ```
//!
//! Without `EXPORT_DB` the bench profiles 1,000 tokens (`--power estimate --requant q8_0`,
//! a counting prompt that does not stop early) into `target/export-bench/run.db`, once: a
//! database already there is reused. Every row runs the release CLI as a user would, into
//! a file, and prints the file's bytes, the command's wall time (median of the runs, and
//! the slowest) and its peak resident memory (the largest of the runs), as a Markdown
//! table for BENCHMARKS.md. It also checks that a gzip file decompresses to the plain one.
//! The peak RSS is the child's as Linux reports it, which counts the bench's own (about
//! 10 MiB) as a floor.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CLI: &str = env!("CARGO_BIN_EXE_tracing-energy");
const TOKENS: &str = "1000";
/// A prompt the model goes on counting from, past 1,000 tokens.
const PROMPT: &str = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,";

/// Runs `args` to completion; returns (wall seconds, peak RSS in MiB).
// The child is waited for by `wait4`, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn timed(args: &[&str]) -> (f64, f64) {
    let start = Instant::now();
    let child = Command::new(CLI)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start tracing-energy");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "{args:?}: {status}");
    // ru_maxrss is in KiB on Linux.
    (secs, usage.ru_maxrss as f64 / 1024.0)
}

/// Whether two streams hold the same bytes, read a block at a time (the bench holds no
/// file: its own memory would count in its children's peak RSS, which Linux carries over
/// from the spawning process).
fn same(mut a: impl Read, mut b: impl Read) -> bool {
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut a, &mut x);
        if n != read_full(&mut b, &mut y) || x[..n] != y[..n] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

/// Fills `buf` as far as the stream goes; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    n
}

fn database() -> PathBuf {
    if let Ok(db) = std::env::var("EXPORT_DB") {
        return PathBuf::from(db);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/export-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("run.db");
    if !db.exists() {
        eprintln!("profiling {TOKENS} tokens into {} ...", db.display());
        let db_arg = db.to_str().unwrap();
        let args = [
            "profile",
            "--db",
            db_arg,
            "--power",
            "estimate",
            "--requant",
            "q8_0",
            "--max-tokens",
            TOKENS,
            "--raw",
            "--quiet",
            "--prompt",
            PROMPT,
        ];
        let (secs, _) = timed(&args);
        eprintln!("profiled in {secs:.0} s");
    }
    db
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let repeat: usize = std::env::var("EXPORT_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let db = database();
    let db_arg = db.to_str().unwrap();
    let tokens = Command::new(CLI)
        .args(["tokens", "latest", "--format", "json", "--db", db_arg])
        .output()
        .expect("tokens");
    assert!(tokens.status.success(), "{tokens:?}");
    let token_rows = serde_json::from_slice::<serde_json::Value>(&tokens.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .expect("the tokens as a JSON array");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/export-bench/out");
    std::fs::create_dir_all(&out).unwrap();

    println!("run: latest of {} ({token_rows} token rows)", db.display());
    println!(
        "| format | detail | gzip | bytes | seconds (median, max of {repeat}) | peak RSS (MiB) |"
    );
    println!("|---|---|---|---:|---:|---:|");
    let rows = ["phases", "tokens", "layers", "components", "ops"]
        .map(|d| ("chrome", d))
        .into_iter()
        .chain([("json", "layers"), ("csv", "layers")]);
    for (format, detail) in rows {
        for gzip in [false, true] {
            let ext = match (format, gzip) {
                ("csv", false) => "csv",
                ("csv", true) => "csv.gz",
                (_, false) => "json",
                (_, true) => "json.gz",
            };
            let file = out.join(format!("{format}-{detail}.{ext}"));
            let file_arg = file.to_str().unwrap();
            let args = [
                "export", "latest", "--db", db_arg, "--format", format, "--detail", detail, "-o",
                file_arg,
            ];
            let mut secs = Vec::new();
            let mut rss = 0.0f64;
            for _ in 0..repeat {
                let (s, r) = timed(&args);
                secs.push(s);
                rss = rss.max(r);
            }
            secs.sort_by(f64::total_cmp);
            let bytes = std::fs::metadata(&file).unwrap().len();
            if gzip {
                let plain = out.join(format!("{format}-{detail}.{}", ext.trim_end_matches(".gz")));
                let gz = flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap());
                assert!(
                    same(gz, std::fs::File::open(plain).unwrap()),
                    "{format} {detail}: the gzip file is not the plain one compressed"
                );
            }
            println!(
                "| {format} | {detail} | {} | {} | {:.2} ({:.2}) | {rss:.0} |",
                if gzip { "yes" } else { "no" },
                bytes,
                secs[secs.len() / 2],
                secs[secs.len() - 1],
            );
        }
    }
}
