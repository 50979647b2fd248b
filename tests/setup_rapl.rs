//! Tests for `scripts/setup_rapl.sh`, the script that lets the group `powercap` read the
//! RAPL energy counters.
//!
//! The script is pointed at temporary folders (`TRACING_ENERGY_UDEV_DIR`,
//! `TRACING_ENERGY_TMPFILES_DIR`) and at a fake powercap tree (`TRACING_ENERGY_POWERCAP`),
//! and told to use the existing group `daemon` without creating groups or changing their
//! members (`TRACING_ENERGY_RAPL_GROUP`, `TRACING_ENERGY_SKIP_GROUP=1`), so that nothing
//! of the machine is touched. Installing changes owners, so those tests need root; they
//! print a loud notice and return early without it. Creating the group and adding the
//! user (`groupadd`, `usermod`, `gpasswd`, `groupdel`) are not run by these tests.
#![cfg(target_os = "linux")]

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GROUP: &str = "daemon";
const UDEV_RULE: &str = "SUBSYSTEM==\"powercap\", KERNEL==\"intel-rapl:*\", ACTION==\"add\", \
    RUN+=\"/bin/chgrp daemon /sys%p/energy_uj\", RUN+=\"/bin/chmod g+r /sys%p/energy_uj\"";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup_rapl.sh")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn gid_of(group: &str) -> Option<u32> {
    let name = CString::new(group).unwrap();
    // SAFETY: getgrnam reads a NUL-terminated name; the result is only read at once.
    let g = unsafe { libc::getgrnam(name.as_ptr()) };
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

/// True when this test can change owners; otherwise a loud notice.
fn can_install(test: &str) -> bool {
    if is_root() && gid_of(GROUP).is_some() {
        return true;
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!! SKIPPED: setup_rapl::{test}");
    eprintln!("!! installing changes file owners: it needs root and the group `{GROUP}`.");
    eprintln!("!! Run the tests as root (e.g. in a container) to run this one.");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
    false
}

/// A powercap tree as Linux lays it out, with root-only counters (mode 0400), and the two
/// folders the script installs into.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let b = Tree { dir };
        let devices = b.path("devices/virtual/powercap");
        for (rel, id) in [
            ("intel-rapl/intel-rapl:0", "intel-rapl:0"),
            ("intel-rapl/intel-rapl:0/intel-rapl:0:0", "intel-rapl:0:0"),
            ("intel-rapl-mmio/intel-rapl-mmio:0", "intel-rapl-mmio:0"),
        ] {
            let zone = devices.join(rel);
            fs::create_dir_all(&zone).unwrap();
            fs::write(zone.join("energy_uj"), "123\n").unwrap();
            fs::set_permissions(zone.join("energy_uj"), fs::Permissions::from_mode(0o400)).unwrap();
            fs::create_dir_all(b.powercap()).unwrap();
            symlink(&zone, b.powercap().join(id)).unwrap();
        }
        fs::create_dir_all(b.udev()).unwrap();
        fs::create_dir_all(b.tmpfiles()).unwrap();
        b
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn powercap(&self) -> PathBuf {
        self.path("class/powercap")
    }
    fn udev(&self) -> PathBuf {
        self.path("udev")
    }
    fn tmpfiles(&self) -> PathBuf {
        self.path("tmpfiles")
    }
    fn udev_file(&self) -> PathBuf {
        self.udev().join("99-tracing-energy-rapl.rules")
    }
    fn tmpfiles_file(&self) -> PathBuf {
        self.tmpfiles().join("tracing-energy-rapl.conf")
    }

    /// The counters the script must open to the group, and one it must leave alone.
    fn rapl_counters(&self) -> [PathBuf; 2] {
        [
            self.powercap().join("intel-rapl:0/energy_uj"),
            self.powercap().join("intel-rapl:0:0/energy_uj"),
        ]
    }
    fn mmio_counter(&self) -> PathBuf {
        self.powercap().join("intel-rapl-mmio:0/energy_uj")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env("TRACING_ENERGY_UDEV_DIR", self.udev())
            .env("TRACING_ENERGY_TMPFILES_DIR", self.tmpfiles())
            .env("TRACING_ENERGY_POWERCAP", self.powercap())
            .env("TRACING_ENERGY_RAPL_GROUP", GROUP)
            .env("TRACING_ENERGY_SKIP_GROUP", "1")
            .env("SUDO_USER", "alice");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        show(args, self.command(args).output().unwrap())
    }

    fn installed(&self) -> Vec<String> {
        let mut v = Vec::new();
        for d in [self.udev(), self.tmpfiles()] {
            for e in fs::read_dir(d).unwrap() {
                v.push(e.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        v.sort();
        v
    }
}

fn show(args: &[&str], out: Output) -> Output {
    eprintln!(
        "--- setup_rapl.sh {args:?} -> {:?}\n--- stdout:\n{}--- stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Mode bits and group of a file (following symlinks).
fn mode_gid(path: &Path) -> (u32, u32) {
    let m = fs::metadata(path).unwrap();
    (m.permissions().mode() & 0o7777, m.gid())
}

#[test]
fn the_script_is_executable() {
    let mode = fs::metadata(script()).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "chmod +x scripts/setup_rapl.sh");
}

#[test]
fn help_and_a_bad_option() {
    let b = Tree::new();
    let out = b.run(&["--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("--dry-run") && stdout(&out).contains("--remove"));
    assert!(stdout(&out).contains("CVE-2020-8694"));
    let out = b.run(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown argument: --bogus"));
    assert!(stderr(&out).contains("Usage:"));
    assert!(b.installed().is_empty());
}

#[test]
fn a_dry_run_changes_nothing() {
    let b = Tree::new();
    let out = b.run(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&b.udev_file().display().to_string()),
        "{text}"
    );
    assert!(text.contains(UDEV_RULE), "{text}");
    for f in b.rapl_counters() {
        assert!(
            text.contains(&format!("would run: chgrp {GROUP} -- {}", f.display())),
            "{text}"
        );
    }
    assert!(!text.contains("mmio"), "{text}");
    assert!(b.installed().is_empty(), "{:?}", b.installed());
    for f in b.rapl_counters() {
        assert_eq!(mode_gid(&f).0, 0o400, "{}", f.display());
    }
}

#[test]
fn install_is_idempotent_and_remove_undoes_it() {
    if !can_install("install_is_idempotent_and_remove_undoes_it") {
        return;
    }
    let gid = gid_of(GROUP).unwrap();
    let b = Tree::new();
    let out = b.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("skipped (TRACING_ENERGY_SKIP_GROUP=1)"));
    assert_eq!(
        b.installed(),
        ["99-tracing-energy-rapl.rules", "tracing-energy-rapl.conf"]
    );
    let rule = fs::read_to_string(b.udev_file()).unwrap();
    let active: Vec<&str> = rule.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(active, [UDEV_RULE]);
    let entry = fs::read_to_string(b.tmpfiles_file()).unwrap();
    let active: Vec<&str> = entry.lines().filter(|l| !l.starts_with('#')).collect();
    let want = format!(
        "z {}/intel-rapl:*/energy_uj 0440 root {GROUP} -",
        b.powercap().display()
    );
    assert_eq!(active, [want.as_str()]);
    for f in [b.udev_file(), b.tmpfiles_file()] {
        assert_eq!(mode_gid(&f), (0o644, 0), "{}", f.display());
    }
    for f in b.rapl_counters() {
        assert_eq!(mode_gid(&f), (0o440, gid), "{}", f.display());
    }
    assert_eq!(
        mode_gid(&b.mmio_counter()),
        (0o400, 0),
        "not a RAPL zone it reads"
    );

    // Again: nothing changes.
    let mtimes = |b: &Tree| {
        [b.udev_file(), b.tmpfiles_file()].map(|f| fs::metadata(f).unwrap().modified().unwrap())
    };
    let before = mtimes(&b);
    let out = b.run(&[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(mtimes(&b), before);

    // A counter the kernel re-created (driver reloaded) is opened again.
    let f = &b.rapl_counters()[1];
    fs::set_permissions(f, fs::Permissions::from_mode(0o400)).unwrap();
    std::os::unix::fs::chown(f, None, Some(0)).unwrap();
    let out = b.run(&[]);
    assert!(!stdout(&out).contains("nothing changed"));
    assert_eq!(mode_gid(f), (0o440, gid));

    // Remove: back to root only, files gone; then nothing to remove.
    let out = b.run(&["--remove"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.installed().is_empty(), "{:?}", b.installed());
    for f in b.rapl_counters() {
        assert_eq!(mode_gid(&f), (0o400, 0), "{}", f.display());
    }
    let out = b.run(&["--remove"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("nothing to remove"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_installed_tmpfiles_entry_works() {
    if !can_install("the_installed_tmpfiles_entry_works") {
        return;
    }
    let Ok(tmpfiles) = which("systemd-tmpfiles") else {
        eprintln!(
            "!! SKIPPED: setup_rapl::the_installed_tmpfiles_entry_works: no systemd-tmpfiles"
        );
        return;
    };
    let b = Tree::new();
    assert!(b.run(&[]).status.success());
    // As after a reboot: the kernel made the counters root-only again.
    for f in b.rapl_counters() {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::chown(&f, None, Some(0)).unwrap();
    }
    let out = Command::new(tmpfiles)
        .arg("--create")
        .arg(b.tmpfiles_file())
        .output()
        .unwrap();
    let out = show(&["(systemd-tmpfiles --create)"], out);
    assert!(out.status.success());
    for f in b.rapl_counters() {
        assert_eq!(
            mode_gid(&f),
            (0o440, gid_of(GROUP).unwrap()),
            "{}",
            f.display()
        );
    }
}

fn which(program: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn a_missing_group_is_refused_when_it_may_not_be_created() {
    let b = Tree::new();
    let out = show(
        &["(group te-no-such-group)"],
        b.command(&[])
            .env("TRACING_ENERGY_RAPL_GROUP", "te-no-such-group")
            .output()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("does not exist") || err.contains("needs root"),
        "{err}"
    );
    assert!(b.installed().is_empty());
}

#[test]
fn a_user_who_is_not_root_is_refused_with_the_fix() {
    let b = Tree::new();
    let mut install = b.command(&[]);
    let mut dry = b.command(&["--dry-run"]);
    if is_root() {
        // As `nobody`, whose permissions mode bits do not wave through.
        install.uid(65534).gid(65534);
        dry.uid(65534).gid(65534);
    }
    let out = show(&["(as nobody)"], install.output().unwrap());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("needs root") && err.contains("Fix: run 'sudo "),
        "{err}"
    );
    assert!(b.installed().is_empty());
    let out = show(&["--dry-run (as nobody)"], dry.output().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.installed().is_empty());
}
