//! Step 1 of a frame's journey: a port of the gateway accepts a client connection and hands it to
//! a session of its own. One accept loop per port; a port reaches the bootstrap servers or one broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
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

/// Accepts until `stop` is cancelled; each connection gets its own session task.
pub async fn accept_loop(group: Arc<Group>, target: Target, listener: TcpListener, stop: CancellationToken) {
    let span = info_span!("listener", group = %group.name, %target);
    async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => {
                    info!("listener closed");
                    return;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((client, peer)) => {
                    tokio::spawn(Session::new(Arc::clone(&group), target, peer).serve(client));
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
