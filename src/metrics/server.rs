//! The HTTP server of a profiled process's metrics: `GET /metrics` in the OpenMetrics text
//! format, on its own thread with a single-threaded tokio runtime (axum), for as long as
//! the [`MetricsServer`] lives.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use super::LiveMetrics;
use crate::{Error, Result};

/// The content type of the OpenMetrics text format, which Prometheus asks for and reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running metrics server; stops (and joins its thread) when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: a free port, see [`MetricsServer::addr`]) and serves
    /// `metrics` at `/metrics`. The address is bound before this returns, so an address in
    /// use is an error here ([`Error::MetricsListen`]), not later.
    pub fn start(addr: SocketAddr, metrics: Arc<LiveMetrics>) -> Result<MetricsServer> {
        let listen_error = |cause| Error::MetricsListen { addr, cause };
        let listener = TcpListener::bind(addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let bound = listener.local_addr().map_err(listen_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(Error::Thread)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/metrics", get(move || scrape(Arc::clone(&metrics))))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    "not found: this server has one page, /metrics\n",
                )
            });
        let thread = std::thread::Builder::new()
            .name("tracing-energy-metrics".into())
            .spawn(move || {
                crate::clock::background_thread();
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("the metrics server could not start: {e}");
                            return;
                        }
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("the metrics server stopped: {e}");
                    }
                });
            })
            .map_err(Error::Thread)?;
        Ok(MetricsServer {
            addr: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn scrape(metrics: Arc<LiveMetrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_refuses_a_port_in_use() {
        let metrics = Arc::new(LiveMetrics::new());
        metrics.tokens(3);
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics).unwrap();
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        let page = get(addr, "/metrics");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("application/openmetrics-text"), "{page}");
        assert!(page.contains("tracing_energy_tokens_total 3"), "{page}");
        assert!(get(addr, "/other").starts_with("HTTP/1.1 404"));

        let err = MetricsServer::start(addr, Arc::new(LiveMetrics::new()))
            .err()
            .expect("the port is in use");
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("choose another port"), "{text}");

        drop(server);
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "stopped with its owner"
        );
    }
}
