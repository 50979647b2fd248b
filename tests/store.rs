//! The SQLite store on real database files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tracing_energy::power::{DomainEnergy, PowerSample};
use tracing_energy::store::*;

fn measured(start: u64, end: u64, energy: Option<f64>) -> Measured {
    Measured {
        start_ns: start,
        end_ns: end,
        thread_id: Some(7),
        energy_mj: energy,
        exclusive_energy_mj: energy.map(|e| e / 2.0),
        cpu_energy_mj: energy.map(|e| e * 0.75),
        gpu_energy_mj: energy.map(|e| e * 0.25),
        ane_energy_mj: energy.map(|_| 0.0),
        dram_energy_mj: None,
        energy_method: energy.map(|_| "overlap".to_string()),
        energy_uncertainty_mj: energy.map(|e| e * 0.1),
        sample_windows: energy.map(|_| 2),
        span_id: None,
    }
}

fn sample(start: u64, end: u64, cpu: f64) -> PowerSample {
    PowerSample::new(
        start,
        end,
        DomainEnergy {
            cpu: Some(cpu),
            gpu: Some(1.0),
            ane: Some(0.0),
            dram: None,
        },
        Arc::from("powermetrics"),
        false,
    )
    .unwrap()
}

/// A run with `tokens` tokens x `layers` layers x 3 components x 2 operations.
struct Tree {
    tokens: Vec<TokenRecord>,
    layers: Vec<LayerRecord>,
    components: Vec<ComponentRecord>,
    ops: Vec<OperationRecord>,
}

fn tree(tokens: u64, layers: u32) -> Tree {
    let mut t = Tree {
        tokens: vec![],
        layers: vec![],
        components: vec![],
        ops: vec![],
    };
    for ti in 0..tokens {
        let base = ti * 1_000_000;
        t.tokens.push(TokenRecord {
            token_index: ti,
            phase: if ti == 0 {
                "prefill".into()
            } else {
                "decode".into()
            },
            n_tokens: if ti == 0 { 12 } else { 1 },
            token_id: Some(100 + ti as u32),
            text: Some(format!("tok{ti}")),
            measured: measured(base, base + 900_000, Some(90.0)),
        });
        for li in 0..layers {
            let lb = base + li as u64 * 10_000;
            t.layers.push(LayerRecord {
                token_index: ti,
                layer_index: li,
                measured: measured(lb, lb + 9_000, Some(3.0 + li as f64)),
            });
            for (ci, comp) in ["norm", "attention", "mlp"].iter().enumerate() {
                let cb = lb + ci as u64 * 3_000;
                // Energy grows with layer and component so the hottest list is known.
                let e = (li as f64 + 1.0) * (ci as f64 + 1.0);
                t.components.push(ComponentRecord {
                    token_index: ti,
                    layer_index: Some(li),
                    component_index: ci as u32,
                    component: comp.to_string(),
                    name: format!("span-{comp}"),
                    measured: measured(cb, cb + 2_000 + ci as u64 * 100, Some(e)),
                });
                for oi in 0..2u32 {
                    t.ops.push(OperationRecord {
                        token_index: ti,
                        layer_index: Some(li),
                        component_index: ci as u32,
                        op_index: oi,
                        operation: format!("op{oi}"),
                        name: "qmatmul".into(),
                        measured: measured(
                            cb + oi as u64 * 500,
                            cb + oi as u64 * 500 + 400,
                            Some(e / 4.0),
                        ),
                    });
                }
            }
        }
    }
    t
}

fn write_tree(store: &Store, run: RunId, t: &Tree) {
    assert!(store.add_tokens(run, t.tokens.clone()));
    assert!(store.add_layer_metrics(run, t.layers.clone()));
    assert!(store.add_component_metrics(run, t.components.clone()));
    assert!(store.add_deep_operation_metrics(run, t.ops.clone()));
}

fn new_run(model: &str, tags: &[&str]) -> NewRun {
    NewRun {
        model: Some(model.into()),
        prompt: Some(format!("prompt for {model}")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        experiment: Some("exp1".into()),
        power_source: Some("powermetrics".into()),
        estimated: false,
        sample_interval_ms: Some(100.0),
        ..NewRun::new()
    }
}

fn count(path: &Path, table: &str, run: RunId) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE run_id = ?1"),
        [run],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn every_table_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = Store::open(&path).unwrap();
    let meta = new_run("smollm2", &["b", "a", "a"]);
    let run = store.create_run(&meta).unwrap();
    let samples = vec![
        sample(0, 100_000_000, 50.0),
        sample(100_000_000, 200_000_000, 70.0),
    ];
    assert!(store.add_power_samples(run, samples.clone()));
    let section = SectionRecord {
        section_index: 0,
        parent_index: None,
        name: "prefill".into(),
        kind: "phase".into(),
        phase: Some("prefill".into()),
        depth: 0,
        fields: Some(r#"{"n":1}"#.into()),
        path: None,
        polls: None,
        busy_ms: None,
        measured: measured(10, 20_000, Some(5.0)),
    };
    let child = SectionRecord {
        section_index: 1,
        parent_index: Some(0),
        name: "x".into(),
        kind: "section".into(),
        depth: 1,
        fields: None,
        measured: measured(100, 200, None),
        ..section.clone()
    };
    assert!(store.add_pipeline_section(run, section.clone()));
    assert!(store.add_pipeline_section(run, child.clone()));
    let t = tree(2, 3);
    write_tree(&store, run, &t);
    let mut end = RunEnd::complete();
    end.response = Some("hello".into());
    end.total_energy_mj = Some(120.0);
    end.attributed_energy_mj = Some(100.0);
    end.unattributed_energy_mj = Some(20.0);
    end.dropped_records = 3;
    store.finish_run(run, &end).unwrap();
    drop(store);

    // Reopen: everything comes back as written.
    let store = Store::open_existing(&path).unwrap();
    let r = store.get_run(run).unwrap().unwrap();
    assert_eq!(r.model.as_deref(), Some("smollm2"));
    assert_eq!(r.prompt, meta.prompt);
    assert_eq!(r.response.as_deref(), Some("hello"));
    assert_eq!(r.tags, vec!["a", "b"]);
    assert_eq!(r.experiment.as_deref(), Some("exp1"));
    assert_eq!(r.power_source.as_deref(), Some("powermetrics"));
    assert_eq!(r.sample_interval_ms, Some(100.0));
    assert_eq!(r.host, meta.host);
    assert!(r.host.os.is_some());
    assert_eq!(r.crate_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(r.status, RunStatus::Complete);
    assert_eq!(
        (
            r.total_energy_mj,
            r.attributed_energy_mj,
            r.unattributed_energy_mj
        ),
        (Some(120.0), Some(100.0), Some(20.0))
    );
    assert_eq!(r.dropped_records, 3);
    assert!(r.ended_at_ms.unwrap() >= r.started_at_ms);
    assert!(r.started_at.ends_with('Z'), "{}", r.started_at);

    let power = store.get_power_timeline(run).unwrap();
    assert_eq!(power.len(), 2);
    assert_eq!(power[0].cpu_mj, Some(50.0));
    assert_eq!(power[0].cpu_mw, Some(500.0));
    assert_eq!(power[0].dram_mj, None, "unknown stays NULL");
    assert_eq!(power[0].dram_mw, None);
    assert_eq!(power[1].total_mj, 71.0);
    assert_eq!(power[1].source, "powermetrics");

    let sections = store.get_pipeline_sections(run).unwrap();
    assert_eq!(
        sections
            .iter()
            .map(|s| s.record.clone())
            .collect::<Vec<_>>(),
        vec![section, child]
    );
    assert_eq!(sections[1].record.measured.energy_mj, None);

    let tokens = store.get_tokens(run).unwrap();
    assert_eq!(
        tokens.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        t.tokens
    );
    assert!((tokens[0].duration_ms - 0.9).abs() < 1e-12);
    let layers = store.get_layer_metrics(run, 1).unwrap();
    assert_eq!(
        layers.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        t.layers[3..6].to_vec()
    );
    let comps = store.get_component_metrics(layers[2].id).unwrap();
    assert_eq!(
        comps.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        t.components[15..18].to_vec()
    );
    let ops = store.get_operation_metrics(comps[1].id).unwrap();
    assert_eq!(
        ops.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        t.ops[32..34].to_vec()
    );
    // Rows serialize (the CLI prints them as JSON).
    let json = serde_json::to_value(&ops[0]).unwrap();
    assert_eq!(json["operation"], "op0");
    assert!(json["dram_energy_mj"].is_null());
}

#[test]
fn delete_cascades_to_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = Store::open(&path).unwrap();
    let keep = store.create_run(&new_run("m", &["x"])).unwrap();
    let gone = store.create_run(&new_run("m", &["x"])).unwrap();
    for run in [keep, gone] {
        store.add_power_samples(run, vec![sample(0, 10, 1.0)]);
        store.add_pipeline_section(
            run,
            SectionRecord {
                section_index: 0,
                parent_index: None,
                name: "s".into(),
                kind: "section".into(),
                phase: None,
                depth: 0,
                fields: None,
                path: None,
                polls: None,
                busy_ms: None,
                measured: measured(0, 5, None),
            },
        );
        write_tree(&store, run, &tree(2, 2));
    }
    store.flush().unwrap();
    let tables = [
        "power_samples",
        "pipeline_sections",
        "tokens",
        "layer_metrics",
        "component_metrics",
        "deep_operation_metrics",
        "run_tags",
    ];
    for t in tables {
        assert!(count(&path, t, gone) > 0, "{t}");
    }
    assert!(store.delete_run(gone).unwrap());
    assert!(
        !store.delete_run(gone).unwrap(),
        "deleting twice says there was nothing"
    );
    for t in tables {
        assert_eq!(count(&path, t, gone), 0, "{t} keeps rows of a deleted run");
        assert!(count(&path, t, keep) > 0, "{t} lost rows of another run");
    }
    assert!(store.get_run(gone).unwrap().is_none());
}

#[test]
fn tags_are_trimmed_before_duplicates_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let run = store
        .create_run(&new_run("m", &["a", " a ", "b", "  ", "b\t"]))
        .unwrap();
    let stored = store.get_run(run).unwrap().unwrap();
    assert_eq!(stored.tags, ["a", "b"]);
    assert_eq!(store.get_runs(&RunFilter::default()).unwrap().len(), 1);
}

#[test]
fn filters_and_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let day = 86_400_000i64;
    let t0 = 1_700_000_000_000i64;
    let mut ids = vec![];
    for (k, (model, tags, exp)) in [
        ("a", vec!["cpu", "q4"], "e1"),
        ("b", vec!["cpu"], "e1"),
        ("a", vec!["q8"], "e2"),
        ("a", vec!["cpu", "q8"], "e2"),
        ("c", vec![], "e1"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = new_run(model, &tags);
        m.experiment = Some(exp.into());
        m.prompt = Some(format!("Tell me 100% about item_{k}"));
        m.started_at_ms = Some(t0 + k as i64 * day);
        ids.push(store.create_run(&m).unwrap());
    }
    let ids_of = |runs: Vec<Run>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let all = ids_of(store.get_runs(&RunFilter::default()).unwrap());
    assert_eq!(
        all,
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "newest first"
    );
    let f = |f: RunFilter| ids_of(store.get_runs(&f).unwrap());
    assert_eq!(
        f(RunFilter {
            model: Some("a".into()),
            ..Default::default()
        }),
        vec![ids[3], ids[2], ids[0]]
    );
    assert_eq!(
        f(RunFilter {
            tags: vec!["cpu".into()],
            ..Default::default()
        }),
        vec![ids[3], ids[1], ids[0]]
    );
    assert_eq!(
        f(RunFilter {
            tags: vec!["cpu".into(), "q8".into()],
            ..Default::default()
        }),
        vec![ids[3]]
    );
    assert_eq!(
        f(RunFilter {
            experiment: Some("e2".into()),
            ..Default::default()
        }),
        vec![ids[3], ids[2]]
    );
    assert_eq!(
        f(RunFilter {
            since_ms: Some(t0 + day),
            until_ms: Some(t0 + 3 * day),
            ..Default::default()
        }),
        vec![ids[2], ids[1]]
    );
    assert_eq!(
        f(RunFilter {
            limit: Some(2),
            offset: 1,
            ..Default::default()
        }),
        vec![ids[3], ids[2]]
    );
    assert_eq!(
        f(RunFilter {
            limit: Some(2),
            offset: 4,
            ..Default::default()
        }),
        vec![ids[0]]
    );
    assert!(f(RunFilter {
        model: Some("zzz".into()),
        ..Default::default()
    })
    .is_empty());
    assert_eq!(store.latest_run().unwrap().unwrap().run_id, ids[4]);
    // Search is literal: % and _ are not wildcards.
    assert_eq!(
        ids_of(store.search_by_prompt("item_3").unwrap()),
        vec![ids[3]]
    );
    assert_eq!(ids_of(store.search_by_prompt("100%").unwrap()).len(), 5);
    assert!(store.search_by_prompt("item%3").unwrap().is_empty());
    assert!(store.search_by_prompt("item__").unwrap().is_empty());
}

#[test]
fn summary_matches_hand_computed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let run = store.create_run(&new_run("m", &[])).unwrap();
    // Phases: prefill 2 ms / 10 mJ; decode twice, 3 ms / 6 mJ and 5 ms / 9 mJ.
    for (i, (name, s, e, mj)) in [
        ("prefill", 0u64, 2_000_000u64, 10.0),
        ("decode", 2_000_000, 5_000_000, 6.0),
        ("decode", 5_000_000, 10_000_000, 9.0),
    ]
    .into_iter()
    .enumerate()
    {
        store.add_pipeline_section(
            run,
            SectionRecord {
                section_index: i as u64,
                parent_index: None,
                name: name.into(),
                kind: "phase".into(),
                phase: Some(name.into()),
                depth: 0,
                fields: None,
                path: None,
                polls: None,
                busy_ms: None,
                measured: measured(s, e, Some(mj)),
            },
        );
    }
    let t = tree(3, 2);
    write_tree(&store, run, &t);
    let mut end = RunEnd::complete();
    end.total_energy_mj = Some(200.0);
    store.finish_run(run, &end).unwrap();
    let s = store.get_run_summary(run).unwrap().unwrap();
    assert_eq!(s.tokens, 3);
    assert_eq!(s.phases.len(), 2);
    assert_eq!(s.phases[0].phase, "prefill");
    assert_eq!(
        (
            s.phases[0].sections,
            s.phases[0].duration_ms,
            s.phases[0].energy_mj
        ),
        (1, 2.0, Some(10.0))
    );
    assert_eq!(
        s.phases[0].mean_power_mw,
        Some(5000.0),
        "10 mJ in 2 ms = 5 W"
    );
    assert_eq!(
        (
            s.phases[1].sections,
            s.phases[1].duration_ms,
            s.phases[1].energy_mj
        ),
        (2, 8.0, Some(15.0))
    );
    assert_eq!(s.phases[1].mean_power_mw, Some(1875.0));
    // Layers: energy 3 + layer, duration 9 us, over 3 tokens.
    assert_eq!(s.layers.len(), 2);
    assert_eq!(s.layers[1].layer_index, 1);
    assert_eq!(s.layers[1].tokens, 3);
    assert_eq!(s.layers[1].mean_energy_mj, Some(4.0));
    assert_eq!(s.layers[1].total_energy_mj, Some(12.0));
    assert!((s.layers[1].mean_duration_ms - 0.009).abs() < 1e-12);
    // Components: energy (layer+1)*(ci+1): mlp = 3 and 6 per token -> 27 in total, mean 4.5.
    assert_eq!(s.components[0].component, "mlp");
    assert_eq!(s.components[0].count, 6);
    assert_eq!(s.components[0].total_energy_mj, Some(27.0));
    assert_eq!(s.components[0].mean_energy_mj, Some(4.5));
    assert!((s.components[0].mean_duration_ms - 0.0022).abs() < 1e-12);
    assert_eq!(s.components[2].component, "norm");
    assert_eq!(s.components[2].total_energy_mj, Some(9.0));
    // Hottest: layer 1 mlp (6 x 3 tokens = 18 mJ, 9 % of 200), then layer 1 attention (12).
    assert_eq!(s.hottest.len(), 6);
    assert_eq!(
        (
            s.hottest[0].layer_index,
            s.hottest[0].component.as_str(),
            s.hottest[0].energy_mj
        ),
        (Some(1), "mlp", 18.0)
    );
    assert_eq!(s.hottest[0].share_of_run, Some(0.09));
    assert_eq!(
        (
            s.hottest[1].layer_index,
            s.hottest[1].component.as_str(),
            s.hottest[1].energy_mj
        ),
        (Some(1), "attention", 12.0)
    );
    let json = serde_json::to_value(&s).unwrap();
    for key in ["phases", "layers", "components", "hottest"] {
        assert!(json[key].is_array(), "{key}");
    }
}

#[test]
fn unknown_energy_stays_unknown_in_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let run = store.create_run(&new_run("m", &[])).unwrap();
    store.add_pipeline_section(
        run,
        SectionRecord {
            section_index: 0,
            parent_index: None,
            name: "decode".into(),
            kind: "phase".into(),
            phase: None,
            depth: 0,
            fields: None,
            path: None,
            polls: None,
            busy_ms: None,
            measured: measured(0, 1_000_000, None),
        },
    );
    store.add_token(
        run,
        TokenRecord {
            token_index: 0,
            phase: "decode".into(),
            n_tokens: 1,
            token_id: None,
            text: None,
            measured: measured(0, 10, None),
        },
    );
    store.add_layer_metrics(
        run,
        vec![LayerRecord {
            token_index: 0,
            layer_index: 0,
            measured: measured(0, 5, None),
        }],
    );
    store.flush().unwrap();
    let s = store.get_run_summary(run).unwrap().unwrap();
    assert_eq!(s.phases[0].energy_mj, None);
    assert_eq!(s.phases[0].mean_power_mw, None);
    assert_eq!(s.layers[0].mean_energy_mj, None);
    assert!(s.hottest.is_empty());
    let r = store.get_run(run).unwrap().unwrap();
    assert_eq!(r.total_energy_mj, None);
}

#[test]
fn rows_whose_parent_is_missing_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let run = store.create_run(&new_run("m", &[])).unwrap();
    // Layers of token 5, which has no token row.
    store.add_layer_metrics(
        run,
        vec![
            LayerRecord {
                token_index: 5,
                layer_index: 0,
                measured: measured(0, 5, None)
            };
            1
        ],
    );
    write_tree(&store, run, &tree(1, 1));
    store.finish_run(run, &RunEnd::complete()).unwrap();
    let r = store.get_run(run).unwrap().unwrap();
    assert_eq!(r.dropped_records, 1);
    assert_eq!(
        store.get_tokens(run).unwrap().len(),
        1,
        "the other rows are kept"
    );
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = Store::open_with_queue(&path, 1).unwrap();
    let run = store.create_run(&new_run("m", &[])).unwrap();
    let mut accepted = 0u64;
    let mut dropped = 0u64;
    for k in 0..2000u64 {
        let s = vec![sample(k * 10, k * 10 + 10, 1.0); 50];
        if store.add_power_samples(run, s) {
            accepted += 50;
        } else {
            dropped += 50;
        }
    }
    assert!(dropped > 0, "a 1-slot queue must overflow");
    assert_eq!(store.pending_dropped(run), dropped);
    store.finish_run(run, &RunEnd::complete()).unwrap();
    let r = store.get_run(run).unwrap().unwrap();
    assert_eq!(r.dropped_records, dropped);
    assert_eq!(
        count(&path, "power_samples", run) as u64,
        accepted,
        "every accepted row is written"
    );
}

// ---- other processes: the test binary re-runs itself as a writer child ----

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

// ---- bad input ----

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/p.db");
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("no/such/folder") && e.contains("does not exist") && e.contains("Fix"),
        "{e}"
    );
    assert!(!path.exists());
}

#[test]
fn unwritable_folder_is_named() {
    // /proc refuses new files even to root.
    let e = Store::open("/proc/tracing-energy-test.db")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/proc/tracing-energy-test.db") && e.contains("Fix"),
        "{e}"
    );
}

#[test]
fn missing_file_is_an_error_for_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let e = Store::open_existing(&path).err().unwrap().to_string();
    assert!(e.contains("no such file"), "{e}");
    assert!(!path.exists(), "a reader must not create the file");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let before = file_bytes(&path);
    for e in [
        Store::open(&path).err().unwrap(),
        Store::open_existing(&path).err().unwrap(),
    ] {
        let e = e.to_string();
        assert!(
            e.contains("notes.txt") && e.contains("not an SQLite database"),
            "{e}"
        );
    }
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);").unwrap();
    }
    let before = file_bytes(&path);
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("another program") && e.contains("invoices"),
        "{e}"
    );
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    {
        let s = Store::open(&path).unwrap();
        s.create_run(&new_run("m", &[])).unwrap();
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let before = file_bytes(&path);
    let e = Store::open(&path).err().unwrap().to_string();
    assert!(
        e.contains("newer tracing-energy")
            && e.contains(&format!("version {}", SCHEMA_VERSION + 1)),
        "{e}"
    );
    assert_eq!(file_bytes(&path), before);
    assert!(!dir.path().join("p.db-wal").exists());
}

#[test]
fn an_empty_database_file_is_initialised_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    std::fs::write(&path, b"").unwrap();
    let s = Store::open(&path).unwrap();
    assert!(s.get_runs(&RunFilter::default()).unwrap().is_empty());
    assert!(s.latest_run().unwrap().is_none());
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn finishing_an_unknown_run_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("p.db")).unwrap();
    let e = store
        .finish_run(424242, &RunEnd::complete())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("424242"), "{e}");
}
