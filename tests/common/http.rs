//! HTTP for tests of the servers: a GET that returns any status (ureq), and a free port.

use std::net::SocketAddr;
use std::time::Duration;

/// `GET path` on `addr`: (status, body). Panics on a connection error.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `GET path` on `addr`: (status, body), or why no answer came.
pub fn try_get(addr: SocketAddr, path: &str) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut r = agent.get(&format!("http://{addr}{path}")).call()?;
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string()?;
    Ok((status, body))
}

/// A free local port now (bound, then released: a port another program may take in
/// between, which the tests accept).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}
