//! Headless Chromium for the browser tests: one run of it on a URL, with its console
//! messages (`--enable-logging=stderr --v=0`) read from its log.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Debian package `chromium` installs the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium is installed; when not, says loudly that `what` is skipped.
pub fn installed_or_skip(what: &str) -> bool {
    let installed = Path::new(CHROMIUM).is_file();
    if !installed {
        eprintln!(
            "!! SKIPPED {what}: {CHROMIUM} is missing \
             (install the Debian package `chromium`; scripts/test.sh should)"
        );
    }
    installed
}

/// Runs Chromium headless on `url` with `args`, killing it after two minutes; returns
/// (stdout, stderr).
pub fn chromium(profile_dir: &Path, args: &[String], url: &str) -> (String, String) {
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
            // Nothing but 127.0.0.1 (a test's own server) resolves: a request is still
            // logged, but never leaves the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
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
pub fn console_errors(stderr: &str) -> Vec<&str> {
    let console = regex::Regex::new(r"(?i)\bconsole[(:]").unwrap();
    stderr
        .lines()
        .filter(|l| l.contains("Uncaught") || console.is_match(l))
        .collect()
}
