//! Step 1 to 5 of a frame's journey, for one client connection: requests stream to the broker as the
//! same bytes, responses stream back, and only the responses [`rewrite::plan`] marked are decoded.
//!
//! Each direction is a pump over a buffer it borrows from its worker thread's pool while bytes are
//! in flight, and gives back when they are written. A read may hold many frames or part of one;
//! the pump peeks at each frame's first bytes, and forwards everything up to the first frame it
//! must wait for in one write. A frame is never buffered whole unless it is rewritten, so a 100 MiB
//! produce request costs the same memory as a small one, and the rest of a large frame past a read
//! moves from socket to socket in the kernel ([`crate::splice`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, trace, warn};

use crate::frame::{self, FrameError, MIN_REQUEST, MIN_RESPONSE, Peek};
use crate::gateway::{Gateway, Target};
use crate::inflight::{Inflight, OrderError, Pending};
use crate::record::Recorder;
use crate::rewrite::{self, Action, Advertise, Refused, RewriteError, api_versions};
use crate::splice::{Moved, Pipe};
use crate::upstream::{self, UpstreamError};

/// Bytes read at a time: the size of the buffers a direction borrows while bytes are in flight.
const READ_CHUNK: usize = 64 * 1024;
/// Below this much free space the buffer grows before the next read.
const MIN_READ: usize = 4 * 1024;
/// What a read takes after a spliced frame: the next frame's header and, if it is small, all of it;
/// if it is large, its bulk stays in the kernel as well.
const AFTER_SPLICE_READ: usize = 4 * 1024;
/// Drained buffers a worker thread keeps for the next connection that has something to read.
const POOL_PER_THREAD: usize = 64;

thread_local! {
    static POOL: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A direction's read side: it can wait until bytes arrive without holding a buffer, so that an
/// idle connection holds none (10,000 idle connections would otherwise pin 1.25 GiB of buffers).
pub trait Source: AsyncRead + Unpin {
    fn ready(&mut self) -> impl std::future::Future<Output = io::Result<()>>;

    /// The socket behind it, from which large frames can be spliced.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl Source for tokio::net::tcp::OwnedReadHalf {
    async fn ready(&mut self) -> io::Result<()> {
        self.readable().await
    }

    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

/// A direction's write side, and the socket behind it, to which large frames can be spliced.
pub trait Sink: AsyncWrite + Unpin {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl Sink for tokio::net::tcp::OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T: AsyncWrite> Sink for tokio::io::WriteHalf<T> {}

/// In-memory streams (tests, benchmarks) have no readiness: the read itself waits.
impl<T: AsyncRead> Source for tokio::io::ReadHalf<T> {
    async fn ready(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads more bytes into `buf`, borrowing a pooled buffer if it has none, at most `limit` of them.
/// False at end of stream.
async fn fill(from: &mut impl Source, buf: &mut BytesMut, limit: usize) -> io::Result<bool> {
    if buf.is_empty() {
        from.ready().await?;
        if buf.capacity() == 0 {
            *buf = POOL.with_borrow_mut(Vec::pop).unwrap_or_default();
        }
    }
    if buf.capacity() - buf.len() < MIN_READ {
        // Reclaims the front of a buffer whose bytes were written, without allocating.
        buf.reserve(READ_CHUNK);
    }
    Ok(from.read_buf(&mut buf.limit(limit)).await? > 0)
}

/// Gives a drained buffer back to the worker's pool.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        let drained = std::mem::take(buf);
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_PER_THREAD {
                pool.push(drained);
            }
        });
    }
}

/// Why a connection ended other than by a close.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error("the broker closed the connection in the middle of a response")]
    Truncated,
    #[error("a response of {size} bytes to rewrite exceeds the limit of {limit} bytes (gateway.max_response_bytes)")]
    ResponseTooLarge { size: usize, limit: usize },
}

/// Serves one accepted client connection until either side closes or breaks the protocol.
pub async fn serve(gateway: Arc<Gateway>, group: usize, target: Target, client: TcpStream, peer: SocketAddr) {
    let name = &gateway.config.groups[group].name;
    debug!(%peer, group = %name, %target, "connection accepted");
    match run(&gateway, group, target, client).await {
        Ok(()) => debug!(%peer, group = %name, %target, "connection closed"),
        // A peer resetting its connection is ordinary (a client stopped); faults of the protocol,
        // of a rewrite or of reaching a broker are what an operator must see.
        Err(SessionError::Io(e)) => debug!(%peer, group = %name, %target, "connection ended: {e}"),
        Err(e) => warn!(%peer, group = %name, %target, "closing connection: {e}"),
    }
}

async fn run(gateway: &Arc<Gateway>, group: usize, target: Target, client: TcpStream) -> Result<(), SessionError> {
    upstream::tune(&client, gateway.config.tcp_keepalive)?;
    let upstream = gateway.dial(target).await?;
    let (client_rd, client_wr) = client.into_split();
    let (upstream_rd, upstream_wr) = upstream.into_split();
    let advertiser = gateway.advertiser(group);
    let config = &gateway.config;
    let limits = Limits {
        request: config.max_frame_bytes,
        response: config.max_response_bytes,
        splice_min: config.splice_min_bytes,
    };
    proxy(client_rd, client_wr, upstream_rd, upstream_wr, limits, &advertiser, gateway.recorder.as_ref()).await
}

/// The largest request forwarded, the largest response held whole to be rewritten, and the least
/// rest of a frame past a read that moves in the kernel (`gateway.splice_min_bytes`, 0 = never).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request: usize,
    pub response: usize,
    pub splice_min: usize,
}

/// Runs both directions of one connection until one of them ends.
pub async fn proxy(
    client_rd: impl Source,
    client_wr: impl Sink,
    upstream_rd: impl Source,
    upstream_wr: impl Sink,
    limits: Limits,
    advertiser: &(dyn Advertise + Sync),
    recorder: Option<&Recorder>,
) -> Result<(), SessionError> {
    let inflight = Inflight::default();
    tokio::select! {
        r = pump_requests(client_rd, upstream_wr, &inflight, limits) => r,
        r = pump_responses(upstream_rd, client_wr, &inflight, limits, advertiser, recorder) => r,
    }
}

/// Client to broker: every byte is forwarded as it came; headers are only read, to note which
/// responses will need a rewrite and to refuse versions the gateway could not rewrite.
async fn pump_requests(
    mut from: impl Source,
    mut to: impl Sink,
    inflight: &Inflight,
    limits: Limits,
) -> Result<(), SessionError> {
    let mut buf = BytesMut::new();
    let mut place = Place::default();
    loop {
        if !fill(&mut from, &mut buf, place.read_limit()).await? {
            return Ok(());
        }
        while place.frame_done(buf.len()) {
            let next = &buf[place.ready..];
            let Peek::Ready(len) = frame::frame_len(next, MIN_REQUEST, limits.request)? else { break };
            let Peek::Ready(head) = frame::peek_request(next, len)? else { break };
            let action = rewrite::plan(head.api_key, head.api_version)?;
            trace!(
                api_key = head.api_key,
                version = head.api_version,
                correlation_id = head.correlation_id,
                ?action,
                "request"
            );
            if head.expects_response {
                // Before the bytes leave: the response may come back before this loop ends.
                inflight.push(Pending {
                    correlation_id: head.correlation_id,
                    api_key: head.api_key,
                    api_version: head.api_version,
                    action,
                });
            }
            place.rest = len;
        }
        if place.ready > 0 {
            to.write_all(&buf[..place.ready]).await?;
            buf.advance(std::mem::take(&mut place.ready));
        }
        if !splice_rest(&from, &to, &buf, &mut place, limits.splice_min).await? {
            // The client closed within a request: as at any other close, nothing more to send.
            return Ok(());
        }
        release(&mut buf);
    }
}

/// Broker to client: responses are matched to their requests in order; those marked for rewrite are
/// read whole and replaced, all others are forwarded as they came.
async fn pump_responses(
    mut from: impl Source,
    mut to: impl Sink,
    inflight: &Inflight,
    limits: Limits,
    advertiser: &(dyn Advertise + Sync),
    recorder: Option<&Recorder>,
) -> Result<(), SessionError> {
    let mut buf = BytesMut::new();
    let mut place = Place::default();
    loop {
        if !fill(&mut from, &mut buf, place.read_limit()).await? {
            return if buf.is_empty() && place.rest == 0 { Ok(()) } else { Err(SessionError::Truncated) };
        }
        while place.frame_done(buf.len()) {
            // Forwarded responses may be as large as the client asked for; the limit applies to
            // what the gateway must hold in memory to rewrite.
            let next = &buf[place.ready..];
            let Peek::Ready(len) = frame::frame_len(next, MIN_RESPONSE, i32::MAX as usize)? else { break };
            let Peek::Ready(correlation_id) = frame::peek_correlation_id(next) else { break };
            let pending = inflight.answer(correlation_id)?;
            if pending.action == Action::Forward {
                place.rest = len;
                continue;
            }
            if len > limits.response {
                return Err(SessionError::ResponseTooLarge { size: len, limit: limits.response });
            }
            // Send what precedes this frame, then hold the frame whole.
            to.write_all(&buf[..place.ready]).await?;
            buf.advance(std::mem::take(&mut place.ready));
            let response = read_whole(&mut from, &mut buf, len).await?;
            let replaced = match pending.action {
                Action::Rewrite(kind) => rewrite::rewrite(kind, pending.api_version, response.clone(), advertiser),
                Action::ApiVersionsFallback => Ok(api_versions::fallback(correlation_id).freeze().into()),
                Action::Forward => unreachable!("forwarded above"),
            };
            if let Some(recorder) = recorder {
                recorder.record(&pending, &response, &replaced, advertiser.racks());
            }
            for piece in replaced?.pieces() {
                to.write_all(piece).await?;
            }
        }
        if place.ready > 0 {
            to.write_all(&buf[..place.ready]).await?;
            buf.advance(std::mem::take(&mut place.ready));
        }
        if !splice_rest(&from, &to, &buf, &mut place, limits.splice_min).await? {
            return Err(SessionError::Truncated);
        }
        release(&mut buf);
    }
}

/// Moves the rest of a large frame that goes on past the buffer from socket to socket in the kernel
/// (src/splice.rs), when both sides are sockets, the rest is at least `min` bytes (0 = never) and a
/// pipe can be had. False when the source ended within the frame.
async fn splice_rest(
    from: &impl Source,
    to: &impl Sink,
    buf: &BytesMut,
    place: &mut Place,
    min: usize,
) -> io::Result<bool> {
    if min == 0 || place.rest < min || !buf.is_empty() {
        return Ok(true);
    }
    let (Some(from), Some(to)) = (from.socket(), to.socket()) else { return Ok(true) };
    let Some(pipe) = Pipe::take() else { return Ok(true) };
    match pipe.forward(from, to, place.rest).await? {
        Moved::All => {
            place.rest = 0;
            place.spliced = true;
            Ok(true)
        }
        Moved::Ended(_) => Ok(false),
        Moved::Refused => Ok(true),
    }
}

/// Where a pump stands in its stream: the first `ready` bytes of its buffer are whole frames or the
/// start of one, to be written as they are, and `rest` more bytes of the current frame are still to
/// come (they are forwarded as they arrive, never gathered).
#[derive(Default)]
struct Place {
    ready: usize,
    rest: usize,
    /// The last frame's bulk was spliced: the next is likely large too (see `AFTER_SPLICE_READ`).
    spliced: bool,
}

impl Place {
    /// How many bytes the next read may take; it resets the hint.
    fn read_limit(&mut self) -> usize {
        if std::mem::take(&mut self.spliced) { AFTER_SPLICE_READ } else { usize::MAX }
    }

    /// Counts the current frame's bytes among the `buffered` ones as ready. True when the frame is
    /// complete, so that the next one starts at `ready`; false while it goes on past the buffer.
    fn frame_done(&mut self, buffered: usize) -> bool {
        let take = self.rest.min(buffered - self.ready);
        self.ready += take;
        self.rest -= take;
        self.rest == 0
    }
}

/// Takes the `len`-byte frame that starts at the front of `buf` out whole. A frame larger than what
/// `buf` holds is read into one allocation of exactly its size, never past its end, so `buf` stays
/// the size of a read chunk: grown to a large response, a pooled buffer would keep that memory for
/// as long as the process runs.
async fn read_whole(from: &mut impl Source, buf: &mut BytesMut, len: usize) -> Result<Bytes, SessionError> {
    if buf.len() >= len {
        return Ok(buf.split_to(len).freeze());
    }
    let mut whole = BytesMut::with_capacity(len);
    whole.extend_from_slice(buf);
    buf.clear();
    while whole.len() < len {
        let room = len - whole.len();
        if from.read_buf(&mut (&mut whole).limit(room)).await? == 0 {
            return Err(SessionError::Truncated);
        }
    }
    Ok(whole.freeze())
}

#[cfg(test)]
mod tests;
