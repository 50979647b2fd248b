//! The router, the shared state (the database path and a small pool of read-only stores),
//! running store reads off the async runtime, and the errors as responses (JSON for the API
//! and `/metrics`, an HTML page otherwise).

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;
use serde::Serialize;
use tracing_energy::report::pages::{message_page, PAGE_CSP};
use tracing_energy::store::{Run, Store};

use super::{api, metrics, pages};
use crate::db::RunRef;

/// Idle read-only stores kept for the next request.
const POOL_SIZE: usize = 8;

/// What every request shares.
pub struct AppState {
    /// The database, as given.
    pub db: PathBuf,
    /// Idle read-only stores: one per request in flight, kept for the next ones.
    pool: Mutex<Vec<Store>>,
}

impl AppState {
    /// The state of a server of `db`, with `first` (the store opened to check the file) as
    /// the pool's first store.
    pub fn new(db: PathBuf, first: Store) -> Arc<AppState> {
        Arc::new(AppState {
            db,
            pool: Mutex::new(vec![first]),
        })
    }

    fn take(&self) -> Result<Store, Failure> {
        if let Some(store) = self.pool.lock().pop() {
            return Ok(store);
        }
        Store::open_read_only(&self.db).map_err(Failure::from)
    }

    fn put_back(&self, store: Store) {
        let mut pool = self.pool.lock();
        if pool.len() < POOL_SIZE {
            pool.push(store);
        }
    }
}

/// Runs `f` with a read-only store on a blocking thread (SQLite never blocks the async
/// runtime); the store goes back to the pool afterwards.
pub async fn with_store<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Store) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let store = state.take()?;
        let result = f(&store);
        state.put_back(store);
        result
    })
    .await
    .map_err(|e| Failure::internal(format!("the request's reader stopped: {e}")))?
}

/// A request that cannot be answered: its status, what is wrong and what to do.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// The HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// What is wrong.
    pub error: String,
    /// What to do about it.
    pub fix: String,
}

impl Failure {
    /// A bad request (400).
    pub fn bad(error: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            fix: fix.into(),
        }
    }

    /// Not found (404).
    pub fn not_found(error: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            error: error.into(),
            fix: fix.into(),
        }
    }

    /// A failure of the server (500).
    pub fn internal(error: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: error.into(),
            fix: "see the message; check the database file, then retry".into(),
        }
    }

    /// A message of the form `problem. Fix: fix` (as the CLI's errors read) split in two;
    /// `fallback_fix` where it has no `Fix:`.
    pub fn split(status: StatusCode, message: &str, fallback_fix: &str) -> Failure {
        let (error, fix) = match message.split_once(" Fix: ") {
            Some((e, f)) => (e.trim_end_matches('.').to_string(), f.to_string()),
            None => (message.to_string(), fallback_fix.to_string()),
        };
        Failure { status, error, fix }
    }

    /// This failure as JSON: `{"error": ..., "fix": ...}`.
    pub fn json(self) -> Response {
        let status = self.status;
        let mut r = (status, axum::Json(self)).into_response();
        no_store(&mut r);
        r
    }

    /// This failure as an HTML page.
    pub fn page(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            _ => "Error",
        };
        let mut r = html(message_page(title, &self.error, &self.fix));
        *r.status_mut() = self.status;
        r
    }
}

impl From<tracing_energy::Error> for Failure {
    fn from(e: tracing_energy::Error) -> Failure {
        match &e {
            tracing_energy::Error::UnknownRun { run, .. } => Failure::not_found(
                format!("the database has no run {run}"),
                "list the runs at / or /api/runs",
            ),
            _ => Failure::split(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
                "check the database file, then retry",
            ),
        }
    }
}

/// A run named in a path or query (`7` or `latest`): 400 when it is not a run.
pub fn parse_run(text: &str) -> Result<RunRef, Failure> {
    text.parse::<RunRef>()
        .map_err(|e| Failure::split(StatusCode::BAD_REQUEST, &e, "give a run id or `latest`"))
}

/// The run `run` names, read from `store`: 404 when there is none.
pub fn resolve(store: &Store, run: RunRef) -> Result<Run, Failure> {
    let found = match run {
        RunRef::Latest => store.latest_run()?,
        RunRef::Id(id) => store.get_run(id)?,
    };
    found.ok_or_else(|| match run {
        RunRef::Latest => Failure::not_found(
            "the database has no runs yet",
            "record one with `tracing-energy profile`",
        ),
        RunRef::Id(id) => Failure::not_found(
            format!("the database has no run {id}"),
            "list the runs at / or /api/runs (it may have been deleted)",
        ),
    })
}

/// The decoded `(key, value)` pairs of a query string.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Responses that must not be cached: the database changes while it is served.
fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML page, with the pages' Content-Security-Policy as a header too.
pub fn html(body: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut r);
    r
}

/// A JSON body.
pub fn json<T: Serialize>(v: &T) -> Response {
    let mut r = axum::Json(v).into_response();
    no_store(&mut r);
    r
}

/// Every route (GET only: the server never changes the database).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::runs))
        .route("/runs/{id}", get(pages::report))
        .route("/compare", get(pages::compare))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/runs/{id}/summary", get(api::summary))
        .route("/api/runs/{id}/tokens", get(api::tokens))
        .route("/api/runs/{id}/power", get(api::power))
        .route("/api/compare", get(api::compare))
        .route("/metrics", get(metrics::metrics))
        // Browsers ask for it unprompted: nothing, rather than a 404 in their console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
        .with_state(state)
}

/// An unknown path: JSON under `/api/` and for `/metrics…`, a page elsewhere.
async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    let f = Failure::not_found(
        format!("no such page: {path}"),
        "see / for the runs, or /api/runs, /api/runs/ID[/summary|/tokens|/power], \
         /api/compare?a=A&b=B and /metrics",
    );
    if path.starts_with("/api/") || path.starts_with("/metrics") {
        f.json()
    } else {
        f.page()
    }
}
