//! The HTML pages: the runs list (`/`), a run's report (`/runs/{id}`, the page of
//! `tracing-energy report`) and two runs compared (`/compare?a=&b=`). An unknown or deleted
//! run is a 404 page, a bad one a 400 page.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use tracing_energy::report::pages::{compare_page, report_page, runs_page};
use tracing_energy::report::{render_run, Detail, RunData};

use super::api::{comparison, run_filter};
use super::app::{html, parse_run, resolve, with_store, AppState, Failure};

/// `/`: the runs list, with the filters of `tracing-energy runs` in the query string.
pub async fn runs(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let answer = async {
        let (q, filter) = run_filter(query.as_deref())?;
        let shown = state.db.display().to_string();
        with_store(&state, move |s| {
            let runs = s.get_runs(&filter)?;
            Ok(runs_page(&runs, &q, &shown))
        })
        .await
    };
    match answer.await {
        Ok(page) => html(page),
        Err(f) => f.page(),
    }
}

/// `/runs/{id}`: the run's report, read from one snapshot, with the app's navigation.
pub async fn report(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let answer = async {
        let run = parse_run(&id)?;
        with_store(&state, move |s| {
            s.read_snapshot(|s| -> Result<String, Failure> {
                let id = resolve(s, run)?.run_id;
                Ok(report_page(&render_run(&RunData::load(
                    s,
                    id,
                    Detail::Report,
                )?)))
            })
        })
        .await
    };
    match answer.await {
        Ok(page) => html(page),
        Err(f) => f.page(),
    }
}

/// `/compare?a=A&b=B`.
pub async fn compare(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    match comparison(&state, query.as_deref()).await {
        Ok(c) => html(compare_page(&c)),
        Err(f) => f.page(),
    }
}
