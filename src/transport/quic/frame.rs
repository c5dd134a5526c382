//! Request framing on a QUIC stream: a big-endian `u32` length, then that
//! many bytes. One frame each way per stream.
//!
//! Owns the size limit check (before allocating) and the mapping of quinn's
//! stream errors; knows nothing of what the bytes mean.

use bytes::Bytes;
use quinn::{
    ConnectionError, ReadError, ReadExactError, RecvStream, SendStream, VarInt, WriteError,
};

/// Stream error code: the frame exceeded the receiver's maximum. Sent by
/// earlier builds both for a request refused unread and for a reply over
/// the limit (after acting on the request); this build sends it only when
/// a reply it reads is too large, and reads it from a peer as "may have
/// acted" unless it stopped our request while we were still writing it.
pub const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(1);
/// Stream error code: the request exceeded the receiver's maximum; it was
/// refused unread.
pub const REQUEST_TOO_LARGE: VarInt = VarInt::from_u32(5);
/// Stream error code: the request got no reply (handler dropped it or was
/// too slow); it may have been acted on.
pub const NO_REPLY: VarInt = VarInt::from_u32(2);
/// Stream error code: the request was acted on, but its reply exceeded the
/// frame maximum. (Peers before it sent [`FRAME_TOO_LARGE`] here.)
pub const REPLY_TOO_LARGE: VarInt = VarInt::from_u32(3);
/// Stream error code: the request never arrived whole (stream failed or
/// too slow); it was not acted on. (Peers before it sent [`NO_REPLY`].)
pub const UNREAD: VarInt = VarInt::from_u32(4);

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The length prefix announced more than the maximum (the length).
    TooLarge(u64),
    /// The connection is gone.
    Conn(ConnectionError),
    /// The peer reset or stopped the stream with this code.
    Reset(VarInt),
    /// The stream ended before a whole frame arrived.
    Truncated,
    /// Any other stream error (already closed stream, 0-RTT rejected...).
    Other(String),
}

/// Write one frame. The caller finishes the stream.
pub async fn write_frame(send: &mut SendStream, payload: &[u8]) -> Result<(), FrameError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge(payload.len() as u64))?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(from_write)?;
    send.write_all(payload).await.map_err(from_write)
}

/// Read one frame of at most `max` bytes; a larger announced length fails
/// before anything is allocated.
pub async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Bytes, FrameError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(from_read_exact)?;
    let len = u32::from_be_bytes(len);
    if len as usize > max {
        return Err(FrameError::TooLarge(u64::from(len)));
    }
    let mut buf = vec![0u8; len as usize];
    recv.read_exact(&mut buf).await.map_err(from_read_exact)?;
    Ok(Bytes::from(buf))
}

/// Take the stream's end if it has already arrived (it normally travels in
/// the packet with the frame's last bytes). A receive stream dropped before
/// its end was read makes quinn send STOP_SENDING, and that extra
/// ack-eliciting packet made the peer send an ACK of its own: two packets
/// more per request than the request and its reply. Never waits: a stream
/// whose end is late is stopped on drop as before.
pub fn take_end(recv: &mut RecvStream) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut read = std::pin::pin!(recv.read_chunk(1, true));
    let _ = std::future::Future::poll(read.as_mut(), &mut cx);
}

/// Map a write error.
fn from_write(e: WriteError) -> FrameError {
    match e {
        WriteError::ConnectionLost(c) => FrameError::Conn(c),
        WriteError::Stopped(code) => FrameError::Reset(code),
        other => FrameError::Other(other.to_string()),
    }
}

/// Map a read error.
fn from_read_exact(e: ReadExactError) -> FrameError {
    match e {
        ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        ReadExactError::ReadError(ReadError::ConnectionLost(c)) => FrameError::Conn(c),
        ReadExactError::ReadError(ReadError::Reset(code)) => FrameError::Reset(code),
        ReadExactError::ReadError(other) => FrameError::Other(other.to_string()),
    }
}
