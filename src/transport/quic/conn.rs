//! Life of one authenticated connection: the driver task that receives its
//! datagrams and request streams, the handler that answers one request, and
//! the client side of one request exchange.
//!
//! Owns per-connection I/O; must not decide which connection to use (that
//! is the peer cache's job) nor block on the application: datagrams are
//! offered with `try_send`, requests wait at most the request deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use quinn::{ConnectionError, RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::Inner;
use super::frame::{
    FRAME_TOO_LARGE, FrameError, NO_REPLY, REPLY_TOO_LARGE, REQUEST_TOO_LARGE, UNREAD, read_frame,
    take_end, write_frame,
};
use super::peers::PeerConn;
use super::stats::{HandshakeFailure, add, bump};
use crate::transport::{Incoming, TransportError};

/// Receive from `peer` until it closes or the transport shuts down, then
/// forget it in the cache.
///
/// The connection's requests are answered inside this task, as futures it
/// polls alongside its reads, not as tasks of their own: a request then
/// costs no spawn, and its wake-ups stay on the thread that drives the
/// connection instead of waking an idle worker to steal it. They still run
/// concurrently (a replicated write waiting for its replica does not hold
/// up the next request); they end with the connection or at shutdown.
pub async fn drive(inner: Arc<Inner>, peer: PeerConn) {
    let addr = peer.conn.remote_address();
    let stop = inner.shutdown.clone();
    let stopped = stop.wait();
    tokio::pin!(stopped);
    let mut serving = FuturesUnordered::new();
    let mut stop_seen = false;
    loop {
        tokio::select! {
            _ = &mut stopped => { stop_seen = true; break }
            Some(()) = serving.next(), if !serving.is_empty() => {}
            dg = peer.conn.read_datagram() => match dg {
                Ok(payload) => deliver_datagram(&inner, &peer, addr, payload),
                Err(e) => { closed(&inner, &peer, &e); break; }
            },
            bi = peer.conn.accept_bi() => match bi {
                Ok((send, recv)) => serving.push(guarded(serve_request(inner.clone(), peer.clone(), send, recv))),
                Err(e) => { closed(&inner, &peer, &e); break; }
            },
        }
    }
    inner.peers.forget(addr, peer.conn.stable_id());
    bump(&inner.stats.connections_closed);
    // The connection is gone but its requests' work is not: let them end
    // (their replies go nowhere) rather than cut them off halfway, as
    // their own tasks used to; at shutdown they are dropped.
    if !serving.is_empty() && !stop_seen {
        let drain = async { while serving.next().await.is_some() {} };
        tokio::select! {
            _ = &mut stopped => {}
            _ = timeout(inner.limits.request_timeout, drain) => {}
        }
    }
}

/// `request`, with a panic in it caught and logged: it would otherwise
/// end the connection's driver and every request on it.
async fn guarded(request: impl std::future::Future<Output = ()>) {
    if std::panic::AssertUnwindSafe(request)
        .catch_unwind()
        .await
        .is_err()
    {
        tracing::error!("a peer request handler panicked; the request got no reply");
    }
}

/// Note why a connection ended; a TLS alert right after the handshake (the
/// peer refused our certificate) counts as a handshake failure.
fn closed(inner: &Inner, peer: &PeerConn, err: &ConnectionError) {
    if HandshakeFailure::is_tls_refusal(err) {
        inner
            .stats
            .handshake_failed(HandshakeFailure::classify(err));
        tracing::warn!(peer = %peer.name, error = %err, "peer refused the TLS handshake");
    } else {
        tracing::debug!(peer = %peer.name, error = %err, "connection closed");
    }
}

/// Hand a datagram to the application, or drop it if the channel is full.
fn deliver_datagram(inner: &Inner, peer: &PeerConn, addr: SocketAddr, payload: Bytes) {
    let len = payload.len();
    let msg = Incoming::Datagram {
        from: peer.name.clone(),
        addr,
        payload,
    };
    match inner.incoming.try_send(msg) {
        Ok(()) => {
            bump(&inner.stats.datagrams_in);
            add(&inner.stats.bytes_in, len);
        }
        Err(mpsc::error::TrySendError::Full(_)) => bump(&inner.stats.datagrams_dropped),
        Err(mpsc::error::TrySendError::Closed(_)) => bump(&inner.stats.datagrams_dropped),
    }
}

/// Answer one request stream: read its frame, hand it to the application,
/// write the reply (or reset the stream when there is none in time).
async fn serve_request(
    inner: Arc<Inner>,
    from: PeerConn,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let max = inner.limits.max_frame;
    let deadline = inner.limits.request_timeout;
    // A peer that opens a stream and sends too slowly does not hold a task.
    let read = timeout(deadline, read_frame(&mut recv, max))
        .await
        .unwrap_or(Err(FrameError::Other(
            "request not received in time".into(),
        )));
    let payload = match read {
        Ok(p) => {
            take_end(&mut recv);
            p
        }
        Err(FrameError::TooLarge(len)) => {
            bump(&inner.stats.frames_rejected);
            tracing::warn!(peer = %from.name, len, max, "request frame too large; refused");
            let _ = recv.stop(REQUEST_TOO_LARGE);
            let _ = send.reset(REQUEST_TOO_LARGE);
            return;
        }
        Err(e) => {
            tracing::debug!(peer = %from.name, error = ?e, "request stream failed");
            let _ = recv.stop(UNREAD);
            let _ = send.reset(UNREAD);
            return;
        }
    };
    bump(&inner.stats.requests_in);
    add(&inner.stats.bytes_in, payload.len());
    let reply = async {
        if let Some(handler) = inner.handler.get() {
            return Some(handler(from.name.clone(), payload).await);
        }
        let (tx, rx) = oneshot::channel();
        let msg = Incoming::Request {
            from: from.name.clone(),
            payload,
            reply: tx,
        };
        inner.incoming.send(msg).await.ok()?;
        rx.await.ok()
    };
    // Shutdown does not wait for the application's answer: the driver
    // drops this future.
    let reply = timeout(deadline, reply).await.ok().flatten();
    let Some(reply) = reply else {
        let _ = send.reset(NO_REPLY);
        return;
    };
    if reply.len() > max {
        bump(&inner.stats.frames_rejected);
        tracing::warn!(peer = %from.name, len = reply.len(), max, "reply frame too large; refused");
        let _ = send.reset(REPLY_TOO_LARGE);
        return;
    }
    if write_frame(&mut send, &reply).await.is_ok() {
        add(&inner.stats.bytes_out, reply.len());
        let _ = send.finish();
    }
}

/// Why one exchange failed: whether the connection itself died before the
/// request was handed over (worth one retry on a fresh connection) or the
/// request did.
#[derive(Debug)]
pub enum ExchangeError {
    /// The connection was closed or lost before the whole request was
    /// written: the peer cannot have acted on it.
    Conn(ConnectionError),
    /// The request failed; [`TransportError::maybe_delivered`] says whether
    /// the peer may have acted on it.
    Request(TransportError),
}

/// Send one request on `peer` and read its reply. `sent` is set once the
/// whole request is written (from then on the peer may act on it).
pub async fn exchange(
    inner: &Inner,
    peer: &PeerConn,
    payload: &[u8],
    sent: &AtomicBool,
) -> Result<Bytes, ExchangeError> {
    let addr = peer.conn.remote_address();
    let (mut send, mut recv) = peer.conn.open_bi().await.map_err(ExchangeError::Conn)?;
    write_frame(&mut send, payload)
        .await
        .map_err(|e| unsent_err(addr, e))?;
    let _ = send.finish();
    sent.store(true, Ordering::Relaxed);
    add(&inner.stats.bytes_out, payload.len());
    let reply = read_frame(&mut recv, inner.limits.max_frame)
        .await
        .map_err(|e| {
            if matches!(e, FrameError::TooLarge(_)) {
                bump(&inner.stats.frames_rejected);
                let _ = recv.stop(FRAME_TOO_LARGE);
            }
            ExchangeError::Request(reply_err(addr, e))
        })?;
    take_end(&mut recv);
    add(&inner.stats.bytes_in, reply.len());
    Ok(reply)
}

/// Map an error while writing the request: the peer does not have all of
/// it (a frame is acted on only once whole), so nothing ran.
fn unsent_err(addr: SocketAddr, e: FrameError) -> ExchangeError {
    let err = match e {
        FrameError::Conn(c) => return ExchangeError::Conn(c),
        FrameError::TooLarge(len) => {
            TransportError::BadFrame(addr, format!("request of {len} bytes exceeds the maximum"))
        }
        FrameError::Reset(code) if code == FRAME_TOO_LARGE || code == REQUEST_TOO_LARGE => {
            TransportError::BadFrame(addr, "peer refused the request: frame too large".into())
        }
        FrameError::Reset(code) => {
            TransportError::Unreachable(addr, format!("peer stopped the request (code {code})"))
        }
        FrameError::Truncated => TransportError::Unreachable(addr, "stream ended".into()),
        FrameError::Other(msg) => TransportError::Unreachable(addr, msg),
    };
    ExchangeError::Request(err)
}

/// Map an error while waiting for the reply to a request written whole.
/// Only the peer's explicit refusals (the request unread: too large, or
/// not received whole) say it did not act; anything else may have come
/// after it did.
fn reply_err(addr: SocketAddr, e: FrameError) -> TransportError {
    match e {
        FrameError::Reset(code) if code == REQUEST_TOO_LARGE => {
            TransportError::BadFrame(addr, "peer refused the request: frame too large".into())
        }
        // From an earlier build: a request refused unread, or a reply over
        // its limit after it acted: it may have.
        FrameError::Reset(code) if code == FRAME_TOO_LARGE => TransportError::Lost(
            addr,
            "peer refused the request or its reply: frame too large".into(),
        ),
        FrameError::Reset(code) if code == UNREAD => {
            TransportError::Unreachable(addr, "peer did not receive the request whole".into())
        }
        FrameError::Reset(code) if code == NO_REPLY => {
            TransportError::Lost(addr, "peer gave no reply in time".into())
        }
        FrameError::Reset(code) if code == REPLY_TOO_LARGE => {
            TransportError::Lost(addr, "the reply exceeded the peer's frame limit".into())
        }
        FrameError::Reset(code) => {
            TransportError::Lost(addr, format!("stream reset by peer (code {code})"))
        }
        FrameError::Conn(ConnectionError::LocallyClosed) => {
            TransportError::Lost(addr, "closed here (shutdown) before the reply".into())
        }
        // Our certificate refused after the handshake looked done on our
        // side (TLS 1.3 checks the client last): the peer never served us.
        FrameError::Conn(c) if HandshakeFailure::is_tls_refusal(&c) => {
            TransportError::Refused(addr, c.to_string())
        }
        FrameError::Conn(c) => TransportError::Lost(addr, format!("connection lost: {c}")),
        FrameError::TooLarge(len) => {
            TransportError::Lost(addr, format!("reply of {len} bytes exceeds the maximum"))
        }
        FrameError::Truncated => TransportError::Lost(addr, "reply truncated".into()),
        FrameError::Other(msg) => TransportError::Lost(addr, msg),
    }
}

#[cfg(test)]
mod tests {
    use quinn::VarInt;

    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn after_the_request_is_written_only_explicit_refusals_mean_not_run() {
        let not_run = [REQUEST_TOO_LARGE, UNREAD];
        for code in not_run {
            let e = reply_err(addr(), FrameError::Reset(code));
            assert!(!e.maybe_delivered(), "{code}: {e}");
        }
        // An earlier build sent FRAME_TOO_LARGE for a reply over its limit,
        // after acting on the request.
        let may_have_run = [
            FRAME_TOO_LARGE,
            REPLY_TOO_LARGE,
            NO_REPLY,
            VarInt::from_u32(0),
        ];
        for code in may_have_run {
            let e = reply_err(addr(), FrameError::Reset(code));
            assert!(e.maybe_delivered(), "{code}: {e}");
        }
        for e in [FrameError::Truncated, FrameError::TooLarge(1 << 30)] {
            assert!(reply_err(addr(), e).maybe_delivered());
        }
    }

    #[test]
    fn while_writing_a_stop_or_lost_link_means_not_run() {
        for code in [FRAME_TOO_LARGE, REQUEST_TOO_LARGE, UNREAD, NO_REPLY] {
            match unsent_err(addr(), FrameError::Reset(code)) {
                ExchangeError::Request(e) => assert!(!e.maybe_delivered(), "{code}: {e}"),
                ExchangeError::Conn(c) => panic!("{code}: {c}"),
            }
        }
        assert!(matches!(
            unsent_err(addr(), FrameError::Conn(ConnectionError::Reset)),
            ExchangeError::Conn(_)
        ));
    }
}
