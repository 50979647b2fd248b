//! The SQLite store on real database files: every table round trips, deletes cascade,
//! tags are normalised, and rows that cannot be written (a missing parent, a full queue)
//! are dropped and counted.

mod common;

use common::tree::{count, measured, new_run, sample, tree, write_tree};
use tracing_energy::store::*;

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
