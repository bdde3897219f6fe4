//! The two ends a session's pumps read from and write to: a plain TCP socket, whose halves can
//! wait for bytes without a buffer and splice, or a TLS stream over one.
//!
//! A pump waits for bytes before it borrows a buffer ([`Source::ready`]), so that an idle
//! connection holds none. A socket waits for readability; a TLS stream waits until rustls holds
//! decrypted bytes (its own buffers, which TLS needs anyway), never in a buffer of the pump's.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::TlsStream;

/// A direction's read side.
pub trait Source: AsyncRead + Unpin {
    /// Returns once bytes can be read (or the stream ended), holding no buffer of the caller's.
    fn ready(&mut self) -> impl std::future::Future<Output = io::Result<()>>;

    /// The socket behind it, from which large frames can be spliced: plain TCP only.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

/// A direction's write side. Writes may be buffered (TLS encrypts into rustls' buffer), so a
/// pump flushes when it has written what it had.
pub trait Sink: AsyncWrite + Unpin {
    /// The socket behind it, to which large frames can be spliced: plain TCP only.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }

    /// `bytes` reached the socket behind it without passing through it (spliced in the kernel).
    fn moved(&self, _bytes: usize) {}
}

/// Lent to a pump that must not close it: a drain ends the requests, and dropping the broker's
/// write half would half-close the connection, which a broker answers by closing before it answers
/// what is in flight.
impl<S: Sink> Sink for &mut S {
    fn socket(&self) -> Option<&TcpStream> {
        (**self).socket()
    }

    fn moved(&self, bytes: usize) {
        (**self).moved(bytes)
    }
}

/// One side of a session: a client's connection, or the gateway's connection to a broker.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The socket underneath, plain or not.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Its two directions, for the two pumps.
    pub fn split(self) -> (ReadEnd, WriteEnd) {
        match self {
            Stream::Tcp(tcp) => {
                let (read, write) = tcp.into_split();
                (ReadEnd::Tcp(read), WriteEnd::Tcp(write))
            }
            Stream::Tls(tls) => {
                let shared = Arc::new(Mutex::new(*tls));
                (ReadEnd::Tls(TlsHalf(Arc::clone(&shared))), WriteEnd::Tls(TlsHalf(shared)))
            }
        }
    }
}

impl Stream {
    pub fn is_tcp(&self) -> bool {
        matches!(self, Stream::Tcp(_))
    }
}

/// A whole stream reads and writes too (the gateway's own client, one request at a time).
impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

/// The read direction of a [`Stream`].
pub enum ReadEnd {
    Tcp(OwnedReadHalf),
    Tls(TlsHalf),
}

/// The write direction of a [`Stream`].
pub enum WriteEnd {
    Tcp(OwnedWriteHalf),
    Tls(TlsHalf),
}

/// Half of a TLS stream. Both halves of a session are polled by one task, one after the other, so
/// the lock is never contended; it is there because reading TLS may write (alerts, key updates)
/// and writing needs the same connection state.
pub struct TlsHalf(Arc<Mutex<TlsStream<TcpStream>>>);

impl TlsHalf {
    fn lock(&self) -> MutexGuard<'_, TlsStream<TcpStream>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Source for ReadEnd {
    async fn ready(&mut self) -> io::Result<()> {
        match self {
            ReadEnd::Tcp(read) => read.readable().await,
            // Decrypted bytes waiting in rustls, or the end of the stream.
            ReadEnd::Tls(half) => {
                std::future::poll_fn(|cx| Pin::new(&mut *half.lock()).poll_fill_buf(cx).map_ok(drop)).await
            }
        }
    }

    fn socket(&self) -> Option<&TcpStream> {
        match self {
            ReadEnd::Tcp(read) => Some(read.as_ref()),
            ReadEnd::Tls(_) => None,
        }
    }
}

impl Sink for WriteEnd {
    fn socket(&self) -> Option<&TcpStream> {
        match self {
            WriteEnd::Tcp(write) => Some(write.as_ref()),
            WriteEnd::Tls(_) => None,
        }
    }
}

impl AsyncRead for ReadEnd {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadEnd::Tcp(read) => Pin::new(read).poll_read(cx, buf),
            ReadEnd::Tls(half) => Pin::new(&mut *half.lock()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteEnd {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteEnd::Tcp(write) => Pin::new(write).poll_write(cx, buf),
            WriteEnd::Tls(half) => Pin::new(&mut *half.lock()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteEnd::Tcp(write) => Pin::new(write).poll_flush(cx),
            WriteEnd::Tls(half) => Pin::new(&mut *half.lock()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteEnd::Tcp(write) => Pin::new(write).poll_shutdown(cx),
            WriteEnd::Tls(half) => Pin::new(&mut *half.lock()).poll_shutdown(cx),
        }
    }
}

/// In-memory streams (tests, benchmarks) have no readiness: the read itself waits.
#[cfg(any(test, feature = "testing"))]
impl<T: AsyncRead> Source for tokio::io::ReadHalf<T> {
    async fn ready(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(any(test, feature = "testing"))]
impl<T: AsyncWrite> Sink for tokio::io::WriteHalf<T> {}
