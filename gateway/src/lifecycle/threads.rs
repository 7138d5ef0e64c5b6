//! Thread-per-core serving of the HTTPS listener (`server.threads`).
//!
//! Each serving thread runs its own single-threaded tokio runtime with its
//! own listening socket on the same address (`SO_REUSEPORT`: the kernel
//! spreads new connections over the sockets), so a connection, its
//! requests, their upstream connections (one idle list per thread,
//! `proxy/pool.rs`) and their timers stay on the thread that accepted it:
//! no task is stolen by another thread and no cross-thread wake-up sits on
//! the request path. What the threads share is in `State` (the policy in
//! force, counters, the audit log, the metrics). With one thread the
//! listener is a plain socket, without `SO_REUSEPORT`.
//!
//! `SO_REUSEPORT` lets another socket of the same user bind the same
//! address too (Linux refuses other users); a second gateway started by
//! mistake on the same port then shares the connections instead of
//! failing to start. The operator runs one gateway per address.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StartError;
use crate::accept::{self, Listener};
use crate::state::State;

/// The listen backlog of each socket (tokio's own `bind` uses the same).
const BACKLOG: u32 = 1024;

/// Binds `threads` sockets to `addr` (the first one decides the port when
/// `addr` has port 0), each ready to move to its serving thread.
pub(super) fn bind(
    addr: SocketAddr,
    threads: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let first = socket(addr, threads > 1).map_err(bind_error)?;
    let bound = first.local_addr().map_err(bind_error)?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(socket(bound, true).map_err(bind_error)?);
    }
    Ok(listeners)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    // `listen` registers the socket with the calling runtime; `into_std`
    // takes it back out, non-blocking, for the serving thread's runtime.
    socket.listen(BACKLOG)?.into_std()
}

/// Starts serving thread `index` on `listener` until `stop`; the returned
/// task ends when the thread has drained its connections and stopped.
pub(super) fn spawn(
    index: usize,
    listener: std::net::TcpListener,
    kind: Listener,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StartError> {
    let serving_error = |source| StartError::Serving { source };
    // The thread's audit lines are buffered and written when the runtime
    // runs out of work (`audit/batch.rs`).
    let audit = Arc::clone(&state.audit);
    let parking = Arc::clone(&audit);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || parking.flush_here())
        .build()
        .map_err(serving_error)?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("serve-{index}"))
        .spawn(move || {
            crate::shard::enter(index);
            audit.enter();
            crate::timers::enter();
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept::serve(listener, kind, state, stop).await,
                    Err(error) => tracing::error!(%error, index, "serving thread has no listener"),
                }
                // The spare timers belong to this runtime: dropped with it.
                crate::timers::leave();
                crate::shard::leave();
            });
            // Dropping the runtime drops what is left of its connections,
            // whose lines are buffered too: write them after it.
            drop(runtime);
            audit.leave();
            let _ = done.send(());
        })
        .map_err(serving_error)?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_serving_sockets_share_one_address_and_each_accepts() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr));
        // Every connection lands on one of them (the kernel picks which).
        let listeners: Vec<TcpListener> = listeners
            .into_iter()
            .map(|l| TcpListener::from_std(l).unwrap())
            .collect();
        for _ in 0..6 {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let accepted =
                futures_util::future::select_all(listeners.iter().map(|l| Box::pin(l.accept())))
                    .await;
            accepted.0.unwrap();
        }
    }

    #[tokio::test]
    async fn one_thread_binds_a_plain_socket_that_a_second_bind_cannot_share() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert!(matches!(bind(addr, 1), Err(StartError::Bind { .. })));
        assert!(matches!(bind(addr, 2), Err(StartError::Bind { .. })));
    }
}
