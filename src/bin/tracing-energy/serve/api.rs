//! The JSON API. Each answer has the shape of the CLI's JSON output for the same thing:
//! `/api/runs` as `runs --format json`, `/api/runs/{id}` as `show --format json`,
//! `/summary` as `summary --format json`, `/tokens` as `tokens --format json`,
//! `/api/compare` as `compare --format json`; `/power` is the run's power timeline (the
//! `power` member of `export --format json`).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use tracing_energy::report::compare as compare_runs;
use tracing_energy::report::pages::RunListQuery;
use tracing_energy::store::{RunFilter, RunSummary, Store};

use super::app::{json, parse_run, query_pairs, resolve, with_store, AppState, Failure};
use crate::db::{parse_date, RunRef};

/// The runs list's filters from a query string: the page's echo of them and the store's
/// filter. 400 for an unknown key, a bad number or a bad date.
pub fn run_filter(query: Option<&str>) -> Result<(RunListQuery, RunFilter), Failure> {
    let q = RunListQuery::from_pairs(query_pairs(query))
        .map_err(|e| Failure::split(StatusCode::BAD_REQUEST, &e, "see the message"))?;
    let date = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(|text| {
                parse_date(text).map_err(|_| {
                    Failure::bad(
                        format!("`{key}={text}` is not a date"),
                        format!(
                            "give {key} as YYYY-MM-DD or RFC 3339, e.g. {key}=2026-11-23 or \
                             {key}=2026-11-23T10:00:00Z"
                        ),
                    )
                })
            })
            .transpose()
    };
    let filter = RunFilter {
        model: q.model.clone(),
        since_ms: date("since", &q.since)?,
        until_ms: date("until", &q.until)?,
        tags: q.tags.clone(),
        experiment: q.experiment.clone(),
        limit: Some(q.limit),
        offset: q.offset,
    };
    Ok((q, filter))
}

/// `/api/runs?model=&tag=&experiment=&since=&until=&limit=&offset=`.
pub async fn runs(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let answer = async {
        let (_, filter) = run_filter(query.as_deref())?;
        with_store(&state, move |s| Ok(s.get_runs(&filter)?)).await
    };
    match answer.await {
        Ok(runs) => json(&runs),
        Err(f) => f.json(),
    }
}

/// Reads `f` of the run `id` names, all from one snapshot; a JSON response.
async fn of_run<T: serde::Serialize + Send + 'static>(
    state: &Arc<AppState>,
    id: &str,
    f: impl FnOnce(&Store, tracing_energy::store::Run) -> Result<T, Failure> + Send + 'static,
) -> Response {
    let answer = async {
        let run = parse_run(id)?;
        with_store(state, move |s| {
            s.read_snapshot(|s| -> Result<T, Failure> {
                let r = resolve(s, run)?;
                f(s, r)
            })
        })
        .await
    };
    match answer.await {
        Ok(v) => json(&v),
        Err(f) => f.json(),
    }
}

/// The summary of a run just resolved: gone meanwhile is 404.
fn summary_of(s: &Store, run: &tracing_energy::store::Run) -> Result<RunSummary, Failure> {
    s.get_run_summary(run.run_id)?.ok_or_else(|| {
        Failure::not_found(
            format!("the database has no run {}", run.run_id),
            "list the runs at / or /api/runs (it may have been deleted)",
        )
    })
}

/// `/api/runs/{id}`: the run (id or `latest`).
pub async fn run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    of_run(&state, &id, |_, r| Ok(r)).await
}

/// `/api/runs/{id}/summary`.
pub async fn summary(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    of_run(&state, &id, |s, r| summary_of(s, &r)).await
}

/// `/api/runs/{id}/tokens`.
pub async fn tokens(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    of_run(&state, &id, |s, r| Ok(s.get_tokens(r.run_id)?)).await
}

/// `/api/runs/{id}/power`.
pub async fn power(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    of_run(&state, &id, |s, r| Ok(s.get_power_timeline(r.run_id)?)).await
}

/// The two runs of `?a=A&b=B` (each an id or `latest`); 400 when one is missing or bad.
pub fn compare_pair(query: Option<&str>) -> Result<(RunRef, RunRef), Failure> {
    let (mut a, mut b) = (None, None);
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "a" => a = Some(parse_run(&v)?),
            "b" => b = Some(parse_run(&v)?),
            other => {
                return Err(Failure::bad(
                    format!("unknown query parameter `{other}`"),
                    "give only a and b, e.g. ?a=1&b=2",
                ))
            }
        }
    }
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        (None, _) => Err(Failure::bad(
            "run a is missing",
            "give both runs to compare, e.g. ?a=1&b=2",
        )),
        (_, None) => Err(Failure::bad(
            "run b is missing",
            "give both runs to compare, e.g. ?a=1&b=2",
        )),
    }
}

/// Both runs' summaries compared, from one snapshot.
pub async fn comparison(
    state: &Arc<AppState>,
    query: Option<&str>,
) -> Result<compare_runs::Comparison, Failure> {
    let (a, b) = compare_pair(query)?;
    with_store(state, move |s| {
        s.read_snapshot(|s| -> Result<_, Failure> {
            let (ra, rb) = (resolve(s, a)?, resolve(s, b)?);
            let (sa, sb) = (summary_of(s, &ra)?, summary_of(s, &rb)?);
            Ok(compare_runs::compare(&sa, &sb))
        })
    })
    .await
}

/// `/api/compare?a=A&b=B`.
pub async fn compare(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    match comparison(&state, query.as_deref()).await {
        Ok(c) => json(&c),
        Err(f) => f.json(),
    }
}
