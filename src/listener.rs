//! Step 1 of a frame's journey: a port of the gateway accepts a client connection and hands it to
//! its own session. One accept loop per port; a port reaches the bootstrap servers or one broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::gateway::{Gateway, Target};
use crate::session;

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

/// Accepts until the gateway shuts down; each connection gets its own task.
pub async fn accept_loop(gateway: Arc<Gateway>, group: usize, target: Target, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = gateway.cancelled().cancelled() => {
                info!(group = %gateway.config.groups[group].name, %target, "listener closed");
                return;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                tokio::spawn(session::serve(Arc::clone(&gateway), group, target, client, peer));
            }
            Err(e) => {
                // Out of file descriptors or similar: pause rather than spin; the port stays open.
                error!(group = %gateway.config.groups[group].name, %target, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
