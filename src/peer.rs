//! Whether the client is still there.
//!
//! actix-web does not drop a handler when its client hangs up (actix/actix-web#1313, #3462): a
//! request whose client timed out would still wait for, and run, a forward pass nobody reads. Each
//! connection keeps a duplicate of its socket (`on_connect`), and a request waiting for the model
//! races its pipeline against `closed`: when the peer has closed, the pipeline is dropped, which
//! frees its queue place and makes the inference thread skip its job. Like Go's net/http, a FIN
//! counts as gone: a client that half-closes its side and still waits for the answer loses it.
use std::any::Any;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A duplicate of a connection's socket, used only to peek at it.
#[derive(Clone)]
pub struct PeerSocket(Arc<OwnedFd>);

/// For `HttpServer::on_connect`: keeps the socket of each plain TCP connection.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(fd) = stream.as_fd().try_clone_to_owned() {
            data.insert(PeerSocket(Arc::new(fd)));
        }
    }
}

/// Resolves once the client has closed its connection; never if that cannot be told (no socket,
/// or the client already sent its next pipelined request, so it is there).
pub async fn closed(req: &HttpRequest) {
    let socket = req.conn_data::<PeerSocket>().cloned();
    if let Some(socket) = socket {
        if let Ok(true) = watch(&socket).await {
            return;
        }
    }
    std::future::pending().await
}

/// Waits until the socket tells: true when the peer has closed (or reset) it, false when the
/// client sent more (it is there); Err when it cannot be watched.
async fn watch(socket: &PeerSocket) -> std::io::Result<bool> {
    // A fresh duplicate per request: the registration with the runtime ends with the request.
    // SAFETY: an OwnedFd is a valid open descriptor that stays the same until it is dropped
    // with the AsyncFd that owns it.
    let fd = unsafe { AsyncFd::register_with_interest(socket.0.try_clone()?, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        let mut ready = fd.readable().await?;
        let mut byte = 0u8;
        // SAFETY: a one-byte read into a local buffer, on a descriptor we own; MSG_PEEK leaves
        // the byte for actix.
        let n = unsafe { libc::recv(fd.as_raw_fd(), (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        match n {
            0 => return Ok(true),
            n if n > 0 => return Ok(false),
            _ => {
                let error = std::io::Error::last_os_error();
                match error.kind() {
                    std::io::ErrorKind::WouldBlock => ready.clear_ready(),
                    std::io::ErrorKind::Interrupted => {}
                    // A reset connection is gone too.
                    _ => return Ok(true),
                }
            }
        }
    }
}
