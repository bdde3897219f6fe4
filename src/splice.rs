//! Step 3 for the bulk of a large frame: its bytes move from one socket to the other through a
//! pipe, in the kernel, and are never copied to user space and back.
//!
//! A pump reads a chunk, peeks at the frames in it and forwards them; when the frame at the end of
//! the chunk goes on for at least `gateway.splice_min_bytes` more (a produce request of a few
//! batches, a fetch response that streams), those bytes need no look: `splice(2)` takes the pages
//! of the received segments into a pipe and hands the same pages to the other socket, sparing the
//! two copies through user space that were most of the gateway's CPU in bulk transfers
//! (benches/README.md has the measurements).
//!
//! Pipes come from a small pool per worker thread and go back to it empty. Where no pipe can be
//! had (the descriptor limit) or the kernel refuses to splice a socket, the pump copies as before.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// A pipe's capacity: what one splice in and one splice out can move. 1 MiB is the most an
/// unprivileged process may ask (/proc/sys/fs/pipe-max-size); a pipe refused it keeps the kernel's
/// 64 KiB.
const PIPE_BYTES: usize = 1 << 20;
/// Empty pipes a worker thread keeps for the next large frame.
const POOL_PER_THREAD: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    static MOVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The bytes this thread has spliced so far: what shows a test that a frame crossed in the kernel.
#[cfg(test)]
pub fn bytes_moved() -> u64 {
    MOVED.get()
}

/// Cleared for good when the kernel refuses to splice a socket (a sandbox, an exotic socket).
static SPLICE_WORKS: AtomicBool = AtomicBool::new(true);

/// How a [`Pipe::forward`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// All of it.
    All,
    /// The source closed first, after this many bytes.
    Ended(usize),
    /// Nothing: the kernel does not splice these sockets; the caller copies instead.
    Refused,
}

/// A socket of a [`Pipe::forward`] failed.
#[derive(Debug)]
pub enum Failed {
    Reading(io::Error),
    Writing(io::Error),
}

/// A pipe with nothing in it, and how much it takes.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one; `None` when none can be made or splicing
    /// does not work here.
    pub fn take() -> Option<Self> {
        if !SPLICE_WORKS.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(pipe) = POOL.with_borrow_mut(Vec::pop) {
            return Some(pipe);
        }
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .inspect_err(|e| tracing::debug!("no pipe for a large frame, copying it: {e}"))
            .ok()?;
        let capacity = fcntl_setpipe_size(&write, PIPE_BYTES).unwrap_or(64 * 1024);
        Some(Self { read, write, capacity })
    }

    /// Moves exactly `len` bytes from `from` to `to` unless `from` ends first, then goes back to
    /// the pool. A pipe that fails midway may hold bytes, so it is closed instead. With `stall`,
    /// `from` sending nothing for that long fails the read with `TimedOut` (a client that announced
    /// a frame and stopped sending it).
    pub async fn forward(
        self,
        from: &TcpStream,
        to: &TcpStream,
        len: usize,
        stall: Option<std::time::Duration>,
    ) -> Result<Moved, Failed> {
        let mut moved = 0;
        while moved < len {
            let want = (len - moved).min(self.capacity);
            let held = match fill_pipe(from, &self.write, want, stall).await {
                Ok(0) => return Ok(Moved::Ended(moved)),
                Ok(n) => n,
                Err(e) if moved == 0 && refused(&e) => {
                    SPLICE_WORKS.store(false, Ordering::Relaxed);
                    tracing::warn!("the kernel does not splice sockets here ({e}); copying every frame");
                    return Ok(Moved::Refused);
                }
                Err(e) => return Err(Failed::Reading(e)),
            };
            let mut left = held;
            while left > 0 {
                to.writable().await.map_err(Failed::Writing)?;
                let out = || splice(&self.read, None, to, None, left, SpliceFlags::NONBLOCK).map_err(io::Error::from);
                match to.try_io(Interest::WRITABLE, out) {
                    Ok(n) => left -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(Failed::Writing(e)),
                }
            }
            moved += held;
            #[cfg(test)]
            MOVED.set(MOVED.get() + held as u64);
        }
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_PER_THREAD {
                pool.push(self);
            }
        });
        Ok(Moved::All)
    }
}

/// Splices up to `want` bytes from the socket into the (empty) pipe once some have arrived; 0 at
/// the end of the stream.
async fn fill_pipe(
    from: &TcpStream,
    pipe: &OwnedFd,
    want: usize,
    stall: Option<std::time::Duration>,
) -> io::Result<usize> {
    loop {
        match stall {
            Some(limit) => tokio::time::timeout(limit, from.readable())
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
            None => from.readable().await?,
        }
        let into = || splice(from, None, pipe, None, want, SpliceFlags::NONBLOCK).map_err(io::Error::from);
        match from.try_io(Interest::READABLE, into) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// Errors that say splicing does not work for this kind of socket, not that this connection broke.
fn refused(e: &io::Error) -> bool {
    [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP, Errno::PERM]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

#[cfg(test)]
mod tests;
