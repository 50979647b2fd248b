//! `tracing-energy serve` over real databases: the JSON API answers with the CLI's JSON
//! shapes, pages and `/metrics` render a real run, a run committed by another process
//! while serving appears without a restart, a deleted run is a 404 while the server goes
//! on, and bad input is refused: a port in use, a database that is not ours (left
//! byte-identical), a run that is not a number (400 JSON).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::serve as server;

use server::Server;
use tracing_energy::store::{NewRun, RunEnd, Store};

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(args)
        .output()
        .unwrap()
}

/// A CLI command's JSON output.
fn cli_json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A new database with one finished run (energy known or not): (its folder, path, run id).
fn database_with_a_run(energy_mj: Option<f64>) -> (tempfile::TempDir, PathBuf, i64) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let id = add_run(&db, "first", energy_mj);
    (dir, db, id)
}

/// Records a finished run in `db` through the library (another writer than the server).
fn add_run(db: &Path, prompt: &str, energy_mj: Option<f64>) -> i64 {
    let store = Store::open(db).unwrap();
    let id = store
        .create_run(&NewRun {
            model: Some("test-model".into()),
            prompt: Some(prompt.into()),
            power_source: energy_mj.map(|_| "estimate".into()),
            estimated: energy_mj.is_some(),
            ..NewRun::default()
        })
        .unwrap();
    store
        .finish_run(
            id,
            &RunEnd {
                total_energy_mj: energy_mj,
                duration_ms: Some(250.0),
                ..RunEnd::complete()
            },
        )
        .unwrap();
    store.close().unwrap();
    id
}

#[cfg(feature = "candle")]
#[test]
fn api_pages_and_metrics_of_a_real_run_match_the_cli() {
    let p = common::profiled::profiled();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("copy.db");
    std::fs::copy(&p.db, &db).unwrap();
    let dbs = db.to_str().unwrap();
    let id = p.run.to_string();
    let s = Server::start(&db);

    // The API answers with the shapes of the CLI's JSON.
    let (status, runs) = s.json("/api/runs");
    assert_eq!(status, 200);
    assert_eq!(runs, cli_json(&["runs", "--db", dbs, "--format", "json"]));
    for (path, args) in [
        (format!("/api/runs/{id}"), vec!["show", &id]),
        (format!("/api/runs/{id}/summary"), vec!["summary", &id]),
        (format!("/api/runs/{id}/tokens"), vec!["tokens", &id]),
        ("/api/runs/latest".to_string(), vec!["show", "latest"]),
        (
            format!("/api/compare?a={id}&b=latest"),
            vec!["compare", &id, "latest"],
        ),
    ] {
        let (status, v) = s.json(&path);
        assert_eq!(status, 200, "{path}: {v}");
        let mut full = args.clone();
        full.extend(["--db", dbs, "--format", "json"]);
        assert_eq!(v, cli_json(&full), "{path}");
    }
    let (status, tokens) = s.json(&format!("/api/runs/{id}/tokens"));
    assert_eq!(status, 200);
    assert!(tokens.as_array().is_some_and(|t| !t.is_empty()));
    let (status, power) = s.json(&format!("/api/runs/{id}/power"));
    assert_eq!(status, 200);
    let export = cli_json(&["export", &id, "--db", dbs, "--format", "json"]);
    assert!(power.as_array().is_some_and(|p| !p.is_empty()));
    assert_eq!(power, export["power"], "the power timeline of `export`");

    // The report page is the one `report` writes, markup from the run escaped.
    let (status, ctype, page) = s.get(&format!("/runs/{id}"));
    assert_eq!((status, ctype.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains(&format!("Energy profile: run {id}")));
    assert!(!page.contains("<script>alert(1)"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        page.contains("<nav class=\"top\"><a href=\"/\">All runs</a>"),
        "a way back"
    );
    let (status, _, list) = s.get("/?tag=plain");
    assert_eq!(status, 200);
    assert!(list.contains(&format!("href=\"/runs/{id}\"")), "{list}");
    assert!(
        !list.contains("<img src=x"),
        "the experiment name is escaped"
    );
    let (_, _, none) = s.get("/?tag=no-such-tag");
    assert!(none.contains("No run matches") && !none.contains(&format!("/runs/{id}\"")));
    let (status, _, cmp) = s.get(&format!("/compare?a={id}&b={id}"));
    assert_eq!(status, 200);
    assert!(cmp.contains(&format!("Run {id} vs run {id}")));

    // Metrics: the run's energy in joules, labelled as an estimate.
    let (status, ctype, text) = s.get("/metrics");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let energy_mj = p.summary["total_energy_mj"].as_f64();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("tracing_energy_run_energy_joules{")
                && l.contains(&format!("run_id=\"{id}\""))
        })
        .unwrap_or_else(|| panic!("no energy series for run {id}: {text}"));
    assert!(line.contains("estimated=\"true\""), "{line}");
    let joules: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let stored = cli_json(&["show", &id, "--db", dbs, "--format", "json"])["total_energy_mj"]
        .as_f64()
        .expect("the run's energy");
    assert!(
        (joules - stored / 1000.0).abs() < 1e-9,
        "{joules} vs {stored} mJ"
    );
    assert!(energy_mj.is_none() || energy_mj == Some(stored));
    assert!(text
        .lines()
        .any(|l| l.starts_with("tracing_energy_run_tokens{") && l.contains("phase=\"decode\"")));
}

#[test]
fn a_run_added_while_serving_appears_and_a_deleted_one_is_404() {
    let (dir, db, first) = database_with_a_run(None);
    let s = Server::start(&db);
    let (_, runs) = s.json("/api/runs");
    assert_eq!(runs.as_array().unwrap().len(), 1);
    // A run without a source: unknown energy has no series, never 0.
    let (_, _, text) = s.get("/metrics");
    assert!(
        !text.contains("tracing_energy_run_energy_joules{"),
        "{text}"
    );
    assert!(text.contains("tracing_energy_runs 1"));

    // Another process (here, another connection) commits a run while the server runs.
    let second = add_run(&db, "<second>", Some(1234.5));
    let (_, runs) = s.json("/api/runs");
    let ids: Vec<i64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second, first], "the new run, without a restart");
    let (_, _, text) = s.get("/metrics");
    assert!(text.contains(&format!(
        "tracing_energy_run_energy_joules{{run_id=\"{second}\""
    )));
    let (status, _, page) = s.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("&lt;second&gt;") && page.contains(&format!("/runs/{second}\"")));

    // The run is deleted while its page is open: its page and API are 404, the rest goes on.
    let (status, _, _) = s.get(&format!("/runs/{second}"));
    assert_eq!(status, 200);
    let out = cli(&["delete", &second.to_string(), "--db", db.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, ctype, page) = s.get(&format!("/runs/{second}"));
    assert_eq!(status, 404, "{page}");
    assert!(ctype.starts_with("text/html") && page.contains(&format!("no run {second}")));
    for path in ["", "/summary", "/tokens", "/power"] {
        let (status, v) = s.json(&format!("/api/runs/{second}{path}"));
        assert_eq!(status, 404, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(&second.to_string()));
        assert!(v["fix"].is_string());
    }
    let (status, v) = s.json(&format!("/api/compare?a={first}&b={second}"));
    assert_eq!(status, 404, "{v}");
    let (status, _, _) = s.get(&format!("/compare?a={first}&b={second}"));
    assert_eq!(status, 404);
    let (status, runs) = s.json("/api/runs");
    assert_eq!(status, 200);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    drop(s);
    drop(dir);
}

#[test]
fn bad_requests_are_json_errors_with_the_fix() {
    let (_dir, db, id) = database_with_a_run(Some(10.0));
    let s = Server::start(&db);
    for (path, status, says) in [
        ("/api/runs/abc", 400, "`abc` is not a run"),
        ("/api/runs/0", 400, "`0` is not a run"),
        ("/api/runs/abc/summary", 400, "`abc` is not a run"),
        ("/api/runs/99999999", 404, "no run 99999999"),
        ("/api/compare", 400, "run a is missing"),
        ("/api/compare?a=1", 400, "run b is missing"),
        ("/api/compare?a=1&b=x", 400, "`x` is not a run"),
        (
            "/api/compare?a=1&b=2&c=3",
            400,
            "unknown query parameter `c`",
        ),
        (
            "/api/runs?limit=ten",
            400,
            "`limit=ten` is not a whole number",
        ),
        (
            "/api/runs?since=yesterday",
            400,
            "`since=yesterday` is not a date",
        ),
        (
            "/api/runs?colour=red",
            400,
            "unknown query parameter `colour`",
        ),
        ("/api/nothing-here", 404, "no such page"),
    ] {
        let (got, v) = s.json(path);
        assert_eq!(got, status, "{path}: {v}");
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{path}: {v}"));
        assert!(error.contains(says), "{path}: {v}");
        assert!(
            v["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{path}: {v}"
        );
    }
    // Pages answer HTML errors.
    for (path, status) in [
        ("/runs/abc", 400),
        ("/runs/424242", 404),
        ("/nowhere", 404),
        ("/compare", 400),
    ] {
        let (got, ctype, page) = s.get(path);
        assert_eq!(got, status, "{path}");
        assert!(
            ctype.starts_with("text/html") && page.contains("Fix:"),
            "{path}: {page}"
        );
    }
    // Filters as `runs`: since/until, model.
    let (_, v) = s.json("/api/runs?since=2000-01-01&model=test-model");
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = s.json("/api/runs?until=2000-01-01");
    assert!(v.as_array().unwrap().is_empty());
    let (status, v) = s.json(&format!("/api/runs/{id}"));
    assert_eq!((status, v["run_id"].as_i64()), (200, Some(id)));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let (_dir, db, _) = database_with_a_run(None);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = cli(&["serve", "--db", db.to_str().unwrap(), "--addr", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot listen on ") && err.contains(&addr),
        "{err}"
    );
    assert!(
        err.contains("already in use") && err.contains("--addr 127.0.0.1:0"),
        "{err}"
    );
    // A bad address is bad usage.
    let out = cli(&["serve", "--db", db.to_str().unwrap(), "--addr", "localhost"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn databases_that_are_not_ours_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');")
            .unwrap();
    }
    let random = dir.path().join("random.db");
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&random, &bytes).unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for (db, says) in [
        (&other, "another program (tables: notes)"),
        (&random, "not an SQLite database"),
        (&empty, "not a tracing-energy database"),
    ] {
        let before = std::fs::read(db).unwrap();
        let out = cli(&[
            "serve",
            "--db",
            db.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", db.display());
        assert!(out.stdout.is_empty(), "it never listened");
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
        assert!(err.contains("Fix:") && err.contains("not changed"), "{err}");
        assert_eq!(
            std::fs::read(db).unwrap(),
            before,
            "{} changed",
            db.display()
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["empty.db", "other.db", "random.db"],
        "nothing created"
    );
    let out = cli(&[
        "serve",
        "--db",
        dir.path().join("absent.db").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a missing database is not found"
    );
}

#[test]
fn serving_never_writes_and_sigterm_ends_it_cleanly() {
    let (_dir, db, id) = database_with_a_run(Some(5.0));
    // Checkpointed: everything is in the file itself.
    let before = std::fs::read(&db).unwrap();
    let s = Server::start(&db);
    for path in ["/", "/metrics", "/api/runs", &format!("/runs/{id}")] {
        assert_eq!(s.get(path).0, 200, "{path}");
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "serving changed the database"
    );
    // SAFETY: sends SIGTERM to the child this test started.
    assert_eq!(unsafe { libc::kill(s.pid() as i32, libc::SIGTERM) }, 0);
    let status = s.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_non_loopback_address_is_announced() {
    let (_dir, db, _) = database_with_a_run(None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracing-energy"))
        .args(["serve", "--addr", "0.0.0.0:0", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The note comes before the `serving` line: once that line is read, it is there.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("serving http://0.0.0.0:"), "{line}");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

#[test]
fn a_read_only_store_never_writes() {
    let (_dir, db, id) = database_with_a_run(Some(5.0));
    let before = std::fs::read(&db).unwrap();
    let store = Store::open_read_only(&db).unwrap();
    assert_eq!(store.get_run(id).unwrap().unwrap().run_id, id);
    let refused =
        |r: tracing_energy::Result<_>| matches!(r, Err(tracing_energy::Error::ReadOnly { .. }));
    assert!(refused(store.delete_run(id).map(|_| ())));
    assert!(refused(store.create_run(&NewRun::default()).map(|_| ())));
    assert!(refused(store.finish_run(id, &RunEnd::complete())));
    drop(store);
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(Store::open_existing(&db)
        .unwrap()
        .get_run(id)
        .unwrap()
        .is_some());
}
