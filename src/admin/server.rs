//! [`AdminServer`]: the HTTP/1.1 listener (hyper) and its routes.
//!
//! Owns the accept loop and one task per admin connection, all ended on
//! shutdown; must not block: every route reads atomics or a cloned view.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::{AdminError, AdminSources, metrics};
use crate::shutdown::{Shutdown, TaskSet};

/// The status page (HTML + inline JS, no build step).
const PAGE: &str = include_str!("page.html");

/// A bound admin endpoint, ready to [`run`](AdminServer::run).
pub struct AdminServer {
    /// The listening socket.
    listener: TcpListener,
    /// The bound address.
    addr: SocketAddr,
}

/// What every request handler reads.
struct State {
    /// Counters and views.
    sources: AdminSources,
    /// The registry holding the collector.
    registry: Registry,
    /// Our own address (shown in `/cluster` for a standalone node).
    addr: SocketAddr,
}

impl AdminServer {
    /// Bind `addr` (port 0 allowed). Returns at once.
    pub async fn bind(addr: SocketAddr) -> Result<AdminServer, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| AdminError::Listen { addr, source })?;
        Ok(AdminServer { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `sources` until `shutdown`; then close every admin connection.
    pub async fn run(self, sources: AdminSources, shutdown: Shutdown) {
        let state = Arc::new(State {
            registry: metrics::registry(sources.clone()),
            sources,
            addr: self.addr,
        });
        tracing::info!(addr = %self.addr, "admin endpoint listening");
        let tasks = TaskSet::new();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                r = self.listener.accept() => r,
            };
            match accepted {
                Ok((stream, _)) => {
                    tasks.spawn(serve_conn(state.clone(), stream, shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                    }
                }
            }
        }
        drop(self.listener);
        tasks.join_all().await;
    }
}

/// One admin connection (keep-alive allowed) until it ends or shutdown.
async fn serve_conn(state: Arc<State>, stream: tokio::net::TcpStream, shutdown: Shutdown) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, &req)) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(error = %e, "admin connection ended with an error");
        },
        _ = shutdown.wait() => {}
    }
}

/// Answer one request.
fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let s = &state.sources;
    match req.uri().path() {
        "/" | "/index.html" => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE.into()),
        "/metrics" => match metrics::render(&state.registry) {
            Ok(body) => respond(
                StatusCode::OK,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                body.into(),
            ),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
        },
        "/health" => json(StatusCode::OK, &serde_json::json!({"status": "serving"})),
        "/ready" => {
            let r = s.ready_json();
            let code = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &r)
        }
        "/cluster" => json(StatusCode::OK, &s.cluster_json(Some(state.addr))),
        "/stats" => json(StatusCode::OK, &s.stats_json()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics, /health, /ready, /cluster, /stats\n",
        ),
    }
}

fn text(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        code,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn json<T: serde::Serialize>(code: StatusCode, v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(v) {
        Ok(body) => respond(code, "application/json", body.into()),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode JSON\n"),
    }
}

fn respond(code: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = code;
    let h = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    // The status page of one node polls every member's /stats: read-only
    // numbers, so any origin may read them.
    h.insert(
        ACCESS_CONTROL_ALLOW_ORIGIN,
        hyper::header::HeaderValue::from_static("*"),
    );
    r
}
