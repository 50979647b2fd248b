//! The SQLite store's queries on real database files: run filters, pagination and literal
//! prompt search, and run summaries (phases, layers, components, hottest spans) checked
//! against hand-computed numbers, with unknown energies kept unknown.

mod common;

use common::tree::{measured, new_run, tree, write_tree};
use tracing_energy::store::*;

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
