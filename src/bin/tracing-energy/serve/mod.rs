//! `serve --db PATH [--addr 127.0.0.1:8080]`: a local, read-only web app over a database.
//!
//! Pages: `/` (the runs list, with the filters of `runs` as its query string), `/runs/{id}`
//! (the run's report, as `report` writes it), `/compare?a=&b=`. JSON: `/api/runs`,
//! `/api/runs/{id}`, `/api/runs/{id}/summary`, `/api/runs/{id}/tokens`,
//! `/api/runs/{id}/power`, `/api/compare?a=&b=`; `/metrics` (Prometheus text). A run is an
//! id or `latest`. Errors of the API are JSON, `{"error": ..., "fix": ...}`: 400 for a bad
//! run or query, 404 for an unknown run or path.
//!
//! The database is opened read-only ([`Store::open_read_only`]): a file that is not a
//! tracing-energy database of this build's schema is refused, unchanged, before anything
//! listens. Profiles may write the file while it is served: every request reads what they
//! have committed. Each request reads on a blocking thread with a store of a small pool
//! (SQLite connections are not shared between threads).
//!
//! It binds to 127.0.0.1:8080 unless `--addr` says otherwise (a note on standard error when
//! that is not a loopback address), prints `serving http://ADDR` on standard output (so
//! that `--addr 127.0.0.1:0` gives a free port that a caller reads back), and ends cleanly
//! on Ctrl-C or SIGTERM. An address it cannot listen on (in use, not this machine's, a
//! privileged port) is an error, exit code 1, that names the address and the fix.

mod api;
mod app;
mod metrics;
mod pages;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use clap::Args;
use tracing_energy::store::Store;

use crate::db::{DbArg, NotFound};
use crate::export::shown;

/// `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The address to listen on, IP:PORT (port 0: any free port). Anything but a loopback
    /// address lets other machines read every run.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

/// `serve`: checks the database, listens, and answers until Ctrl-C or SIGTERM.
pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if !a.db.db.exists() {
        return Err(NotFound(format!(
            "database {} does not exist. Fix: record a run first (`tracing-energy profile`), or pass --db PATH / set TRACING_ENERGY_DB",
            shown(&a.db.db)
        ))
        .into());
    }
    let store = Store::open_read_only(&a.db.db)?;
    let listener = listen(a.addr)?;
    let local = listener
        .local_addr()
        .context("cannot read the address listened on")?;
    if !local.ip().is_loopback() {
        eprintln!(
            "note: listening on {local}, which is not a loopback address: anyone who can reach \
             this machine can read every run of {}",
            shown(&a.db.db)
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let state = app::AppState::new(a.db.db.clone(), store);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot hand the socket to the server's runtime")?;
        {
            let mut out = std::io::stdout().lock();
            // Nobody reading standard output is no reason not to serve.
            let _ = writeln!(out, "serving http://{local}");
            let _ = out.flush();
        }
        axum::serve(listener, app::router(state))
            .with_graceful_shutdown(stop_signal())
            .await
            .context("the server stopped")
    })
}

/// Listens on `addr`; an error names the address and the fix.
fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use std::io::ErrorKind;
    let listener = TcpListener::bind(addr).map_err(|e| {
        let other_port = format!(
            "choose another port, e.g. --addr {}:{}, or --addr {}:0 for any free port",
            bracketed(addr),
            if addr.port() == 8080 { 8081 } else { 8080 },
            bracketed(addr)
        );
        match e.kind() {
            ErrorKind::AddrInUse => anyhow::anyhow!(
                "cannot listen on {addr}: the address is already in use (another server, or \
                 another `tracing-energy serve`, listens there). Fix: {other_port}"
            ),
            ErrorKind::PermissionDenied => anyhow::anyhow!(
                "cannot listen on {addr}: permission denied (ports below 1024 need privileges). \
                 Fix: {other_port}"
            ),
            ErrorKind::AddrNotAvailable => anyhow::anyhow!(
                "cannot listen on {addr}: that address is not one of this machine's. Fix: give \
                 one of its addresses, e.g. --addr 127.0.0.1:{}",
                addr.port()
            ),
            _ => anyhow::anyhow!("cannot listen on {addr}: {e}. Fix: {other_port}"),
        }
    })?;
    listener
        .set_nonblocking(true)
        .context("cannot make the socket non-blocking")?;
    Ok(listener)
}

/// The IP of `addr` as written before `:PORT` (IPv6 in brackets).
fn bracketed(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
