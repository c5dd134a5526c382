//! A minimal HTTP/1.1 GET over hyper's client connection, for `shoal status`
//! and tests: one request per connection, with a deadline.
//!
//! Owns nothing else; must not retry (callers decide).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::AdminError;

/// Deadline of one GET, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// GET `path` from the admin endpoint at `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse, AdminError> {
    tokio::time::timeout(TIMEOUT, get_inner(addr, path))
        .await
        .map_err(|_| AdminError::Timeout(addr))?
}

/// GET `path` and decode its JSON body as `T`.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
) -> Result<T, AdminError> {
    let r = get(addr, path).await?;
    serde_json::from_slice(&r.body).map_err(|e| AdminError::BadBody {
        addr,
        path: path.to_string(),
        reason: e.to_string(),
    })
}

async fn get_inner(addr: SocketAddr, path: &str) -> Result<HttpResponse, AdminError> {
    let http = |e: hyper::Error| AdminError::Http {
        addr,
        reason: e.to_string(),
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| AdminError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "admin client connection ended with an error");
        }
    });
    let req = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| AdminError::Http {
            addr,
            reason: e.to_string(),
        })?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
        Ok(HttpResponse { status, body })
    }
    .await;
    driver.abort();
    result
}
