//! Step 1 of a frame's journey: a port of the gateway accepts a client connection and hands it to
//! a session of its own. One accept loop per port; a port reaches the bootstrap servers or one broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span};

use crate::session::{Group, Session};
use crate::upstream::Target;

/// Connections waiting to be accepted per port before the kernel refuses more.
const BACKLOG: i32 = 1024;

/// Binds `addr` with SO_REUSEADDR, so a restarted gateway gets its ports back at once.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// What one port's connections are: their group and target, and the tokens that stop the port
/// (no more accepts) and drain its sessions (finish what is in flight, then close).
pub struct Port {
    pub group: Arc<Group>,
    pub target: Target,
    pub stop: CancellationToken,
    pub drain: CancellationToken,
}

/// Accepts until the port is stopped; each connection gets its own session task, tracked so that a
/// drain can wait for them.
pub async fn accept_loop(port: Port, listener: TcpListener, sessions: TaskTracker) {
    let span = info_span!("listener", group = %port.group.name, target = %port.target);
    async move {
        loop {
            let accepted = tokio::select! {
                _ = port.stop.cancelled() => {
                    info!("listener closed");
                    return;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((client, peer)) => {
                    let session = Session::new(Arc::clone(&port.group), port.target, peer, port.drain.clone());
                    sessions.spawn(session.serve(client));
                }
                Err(e) => {
                    // Out of file descriptors or similar: pause rather than spin; the port stays open.
                    error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    .instrument(span)
    .await
}
