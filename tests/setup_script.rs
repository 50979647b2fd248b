//! Tests for `scripts/setup_powermetrics.sh`, the script that installs the
//! sudoers rule letting one user run powermetrics as root without a password.
//!
//! The script is pointed at a temporary folder with `TRACING_ENERGY_SUDOERS_DIR`
//! (so nothing under /etc is touched) and told which user the rule is for with
//! `SUDO_USER`, as sudo would when it re-runs the script.
//!
//! Installing needs `visudo` (to validate the rule). On Debian/Ubuntu it comes
//! with the `sudo` package (`apt-get install -y sudo`); on macOS it is
//! /usr/sbin/visudo. Tests that need it print a loud message and return early
//! when it is missing.

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RULE_ALICE: &str = "alice ALL=(root) NOPASSWD: /usr/bin/powermetrics";

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup_powermetrics.sh")
}

/// Looks for visudo where the script looks for it: PATH, then the usual sbin folders.
fn find_visudo() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        ["/usr/sbin", "/usr/local/sbin", "/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    dirs.into_iter()
        .map(|d| d.join("visudo"))
        .find(|p| p.is_file())
}

/// True when visudo is available; otherwise prints a loud skip notice.
fn have_visudo(test: &str) -> bool {
    if find_visudo().is_some() {
        return true;
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!! SKIPPED: setup_script::{test}");
    eprintln!("!! `visudo` was not found (PATH, /usr/sbin, /usr/local/sbin, /sbin),");
    eprintln!("!! so the sudoers rule cannot be validated and this test cannot run.");
    eprintln!("!! Install it to run this test: apt-get update && apt-get install -y sudo");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
    false
}

/// Runs the script with `dir` as the sudoers folder and `user` as SUDO_USER.
fn run(dir: &Path, user: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(script_path())
        .args(args)
        .env("TRACING_ENERGY_SUDOERS_DIR", dir)
        .env("SUDO_USER", user)
        .env_remove("TRACING_ENERGY_POWERMETRICS_BIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("failed to run bash with the setup script");
    eprintln!(
        "--- setup_powermetrics.sh {args:?} (SUDO_USER={user:?}, env {env:?}) -> {:?}\n\
         --- stdout:\n{}--- stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Names of all entries in `dir`, hidden ones included, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read temp dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("stat rule file")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn script_exists_and_is_executable() {
    let path = script_path();
    let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "{} is not executable (chmod +x it)",
        path.display()
    );
}

#[test]
fn help_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), "alice", &["--help"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("--dry-run") && text.contains("--remove"),
        "help: {text}"
    );

    let out = run(dir.path(), "alice", &["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2), "unknown argument must exit 2");
    assert!(stderr(&out).contains("--bogus"));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn install_is_idempotent_and_remove_works() {
    if !have_visudo("install_is_idempotent_and_remove_works") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("powermetrics-alice");

    // First install.
    let out = run(dir.path(), "alice", &[], &[]);
    assert!(out.status.success(), "install failed: {}", stderr(&out));
    assert_eq!(
        entries(dir.path()),
        vec!["powermetrics-alice".to_string()],
        "only the rule file, no temp files left"
    );
    assert_eq!(mode(&rule), 0o440, "rule file must have mode 0440");
    let content = fs::read_to_string(&rule).unwrap();
    assert!(
        content.lines().any(|l| l == RULE_ALICE),
        "rule line {RULE_ALICE:?} not found in:\n{content}"
    );
    // The only non-comment line is the rule itself.
    let active: Vec<&str> = content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(active, vec![RULE_ALICE]);
    let mtime = fs::metadata(&rule).unwrap().modified().unwrap();

    // Second run: nothing changes.
    let out = run(dir.path(), "alice", &[], &[]);
    assert!(out.status.success(), "second run failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing changed"),
        "second run should report no change, got: {}",
        stdout(&out)
    );
    assert_eq!(fs::read_to_string(&rule).unwrap(), content);
    assert_eq!(mode(&rule), 0o440);
    assert_eq!(
        fs::metadata(&rule).unwrap().modified().unwrap(),
        mtime,
        "file was rewritten"
    );
    assert_eq!(entries(dir.path()), vec!["powermetrics-alice".to_string()]);

    // A wrong mode is repaired.
    fs::set_permissions(&rule, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(dir.path(), "alice", &[], &[]);
    assert!(out.status.success());
    assert!(!stdout(&out).contains("nothing changed"));
    assert_eq!(mode(&rule), 0o440, "mode 0644 should be repaired to 0440");
    assert_eq!(fs::read_to_string(&rule).unwrap(), content);

    // Remove.
    let out = run(dir.path(), "alice", &["--remove"], &[]);
    assert!(out.status.success(), "remove failed: {}", stderr(&out));
    assert!(stdout(&out).contains("Removed"), "got: {}", stdout(&out));
    assert!(!rule.exists(), "rule file still there after --remove");
    assert!(entries(dir.path()).is_empty());

    // Remove again: succeeds, says it was not there.
    let out = run(dir.path(), "alice", &["--remove"], &[]);
    assert!(
        out.status.success(),
        "second remove failed: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("not installed"),
        "second remove should say the rule was not there, got: {}",
        stdout(&out)
    );
}

#[test]
fn remove_when_absent_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), "alice", &["--remove"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("not installed"),
        "got: {}",
        stdout(&out)
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn remove_leaves_other_users_rules_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("powermetrics-bob");
    fs::write(&bob, "bob ALL=(root) NOPASSWD: /usr/bin/powermetrics\n").unwrap();
    let out = run(dir.path(), "alice", &["--remove"], &[]);
    assert!(out.status.success());
    assert!(bob.exists(), "--remove for alice deleted bob's rule");
}

#[test]
fn invalid_user_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for user in [
        "bad user;rm",
        "-rf",
        "a/b",
        "x\ny",
        "alice,bob",
        "$(id)",
        "",
    ] {
        if user.is_empty() {
            // An empty SUDO_USER falls back to USER; force that to a bad value too.
            let out = run(dir.path(), user, &[], &[("USER", "bad user")]);
            assert_ne!(
                out.status.code(),
                Some(0),
                "empty SUDO_USER + bad USER accepted"
            );
            continue;
        }
        let out = run(dir.path(), user, &[], &[]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "user name {user:?} was accepted"
        );
        assert!(
            stderr(&out).contains("invalid user name"),
            "for {user:?} stderr should explain, got: {}",
            stderr(&out)
        );
        let out = run(dir.path(), user, &["--dry-run"], &[]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "user name {user:?} accepted in --dry-run"
        );
    }
    assert!(
        entries(dir.path()).is_empty(),
        "something was written: {:?}",
        entries(dir.path())
    );
}

#[test]
fn root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), "root", &[], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("root"), "got: {}", stderr(&out));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), "alice", &["--dry-run"], &[]);
    assert!(out.status.success(), "dry run failed: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(RULE_ALICE),
        "dry run should print the rule, got: {text}"
    );
    let dest = dir.path().join("powermetrics-alice");
    assert!(
        text.contains(&dest.display().to_string()),
        "dry run should print the destination, got: {text}"
    );
    assert!(
        entries(dir.path()).is_empty(),
        "dry run wrote: {:?}",
        entries(dir.path())
    );

    // With an installed rule, --dry-run --remove keeps it.
    if have_visudo("dry_run_writes_nothing (second half)") {
        assert!(run(dir.path(), "alice", &[], &[]).status.success());
        let before = fs::read_to_string(&dest).unwrap();
        let out = run(dir.path(), "alice", &["--dry-run", "--remove"], &[]);
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("would remove"),
            "got: {}",
            stdout(&out)
        );
        assert_eq!(fs::read_to_string(&dest).unwrap(), before);
    }
}

#[test]
fn rule_failing_validation_is_not_installed() {
    if !have_visudo("rule_failing_validation_is_not_installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // visudo rejects command paths that are not fully qualified.
    let env = [("TRACING_ENERGY_POWERMETRICS_BIN", "powermetrics")];
    let out = run(dir.path(), "alice", &[], &env);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a rule with a relative path was accepted"
    );
    assert!(
        entries(dir.path()).is_empty(),
        "left behind: {:?}",
        entries(dir.path())
    );
    let err = stderr(&out);
    assert!(
        err.contains("validation"),
        "stderr should mention validation, got: {err}"
    );
    assert!(
        err.contains("not installed"),
        "stderr should say it was not installed, got: {err}"
    );

    // An existing good rule is left untouched by a failed update.
    assert!(run(dir.path(), "alice", &[], &[]).status.success());
    let dest = dir.path().join("powermetrics-alice");
    let before = fs::read_to_string(&dest).unwrap();
    let out = run(dir.path(), "alice", &[], &env);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(fs::read_to_string(&dest).unwrap(), before);
    assert_eq!(entries(dir.path()), vec!["powermetrics-alice".to_string()]);
}

#[test]
fn unsafe_powermetrics_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A comma or space would add commands to the rule.
    for bin in [
        "/usr/bin/powermetrics, /bin/sh",
        "/usr/bin/powermetrics ALL",
    ] {
        let out = run(
            dir.path(),
            "alice",
            &[],
            &[("TRACING_ENERGY_POWERMETRICS_BIN", bin)],
        );
        assert_ne!(out.status.code(), Some(0), "path {bin:?} was accepted");
    }
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn custom_powermetrics_path_goes_into_the_rule() {
    if !have_visudo("custom_powermetrics_path_goes_into_the_rule") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = [("TRACING_ENERGY_POWERMETRICS_BIN", "/opt/test/powermetrics")];
    let out = run(dir.path(), "alice", &[], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let content = fs::read_to_string(dir.path().join("powermetrics-alice")).unwrap();
    assert!(content
        .lines()
        .any(|l| l == "alice ALL=(root) NOPASSWD: /opt/test/powermetrics"));
}

#[test]
fn dotted_user_name_gets_a_file_name_sudo_reads() {
    // sudo skips sudoers.d files whose names contain '.', so the dot is mapped to '_'.
    if !have_visudo("dotted_user_name_gets_a_file_name_sudo_reads") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), "john.doe", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        entries(dir.path()),
        vec!["powermetrics-john_doe".to_string()]
    );
    let content = fs::read_to_string(dir.path().join("powermetrics-john_doe")).unwrap();
    assert!(content
        .lines()
        .any(|l| l == "john.doe ALL=(root) NOPASSWD: /usr/bin/powermetrics"));
    let out = run(dir.path(), "john.doe", &["--remove"], &[]);
    assert!(out.status.success());
    assert!(entries(dir.path()).is_empty());
}
