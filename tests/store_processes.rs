//! The SQLite store written by other processes: the test binary re-runs itself as a writer
//! child (`child_process_entry`), to check that a run killed with SIGKILL keeps its
//! committed rows and reads incomplete, and that two processes writing one file lose no rows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::tree::{count, measured, new_run, sample, tree};
use tracing_energy::store::*;

const CHILD_ENV: &str = "TRACING_ENERGY_STORE_TEST_CHILD";

fn spawn_child(mode: &str, db: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env("TRACING_ENERGY_STORE_TEST_DB", db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Not a test on its own: the entry point of the child processes above.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = PathBuf::from(std::env::var("TRACING_ENERGY_STORE_TEST_DB").unwrap());
    let store = Store::open(&db).unwrap();
    let run = store
        .create_run(&new_run(&format!("child-{}", std::process::id()), &[]))
        .unwrap();
    match mode.as_str() {
        "write-until-killed" => {
            for batch in 0u64.. {
                let t = tree(1, 4);
                let mut tokens = t.tokens.clone();
                tokens[0].token_index = batch;
                let fix = |ti: &mut u64| *ti = batch;
                let mut layers = t.layers.clone();
                layers.iter_mut().for_each(|l| fix(&mut l.token_index));
                let mut comps = t.components.clone();
                comps.iter_mut().for_each(|c| fix(&mut c.token_index));
                store.add_tokens(run, tokens);
                store.add_layer_metrics(run, layers);
                store.add_component_metrics(run, comps);
                store.flush().unwrap();
                println!("committed run={run} tokens={}", batch + 1);
            }
        }
        m if m.starts_with("write:") => {
            let n: u64 = m[6..].parse().unwrap();
            for k in 0..n {
                store.add_power_samples(run, vec![sample(k * 100, k * 100 + 100, 1.0)]);
                store.add_token(
                    run,
                    TokenRecord {
                        token_index: k,
                        phase: "decode".into(),
                        n_tokens: 1,
                        token_id: None,
                        text: None,
                        measured: measured(k, k + 1, Some(1.0)),
                    },
                );
                if k % 50 == 0 {
                    store.flush().unwrap();
                }
            }
            store.finish_run(run, &RunEnd::complete()).unwrap();
            println!("done run={run}");
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn read_run_id(line: &str) -> RunId {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("run="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn kill_9_keeps_committed_rows_and_the_run_reads_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    Store::open(&path).unwrap();
    let mut child = spawn_child("write-until-killed", &path);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = String::new();
    for _ in 0..5 {
        last = lines.next().unwrap().unwrap();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run = read_run_id(&last);
    let committed: i64 = last.rsplit('=').next().unwrap().parse().unwrap();
    let store = Store::open(&path).unwrap();
    let r = store.get_run(run).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Incomplete);
    let tokens = store.get_tokens(run).unwrap().len() as i64;
    assert!(
        tokens >= committed,
        "{tokens} token rows, {committed} were committed"
    );
    assert_eq!(count(&path, "layer_metrics", run), tokens * 4);
    assert_eq!(count(&path, "component_metrics", run), tokens * 12);
    // Opening for writing also marked it in the file.
    let c = rusqlite::Connection::open(&path).unwrap();
    let status: String = c
        .query_row(
            "SELECT status FROM profiling_runs WHERE run_id = ?1",
            [run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "incomplete");
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn two_processes_writing_one_file_lose_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let n = 4000;
    let children: Vec<_> = (0..2)
        .map(|_| spawn_child(&format!("write:{n}"), &path))
        .collect();
    let mut runs = vec![];
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        runs.push(read_run_id(
            stdout.lines().find(|l| l.contains("done run=")).unwrap(),
        ));
    }
    let store = Store::open_existing(&path).unwrap();
    assert_ne!(runs[0], runs[1]);
    for run in runs {
        let r = store.get_run(run).unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Complete);
        assert_eq!(r.dropped_records, 0);
        assert_eq!(count(&path, "tokens", run), n);
        assert_eq!(count(&path, "power_samples", run), n);
    }
}
