//! The attackers that stop taking their answers
//! (`docs/security-controls.md`, F-4 and F-5):
//!
//! * **zero-window HTTP/2**: from 127.0.0.4, with its own valid key and
//!   data, HTTP/2 connections that grant the gateway no flow-control window
//!   (`SETTINGS_INITIAL_WINDOW_SIZE = 0`, never a `WINDOW_UPDATE`), each
//!   keeping `--stall-streams` streams open on the read routes; a stream the
//!   gateway resets is replaced at once;
//! * **non-reading HTTP/1.1**: from 127.0.0.5, with its own valid key and
//!   data, connections with a small receive buffer that pipeline requests
//!   for the trades (an answer larger than the gateway's response buffer)
//!   and never read; a connection the gateway closes is replaced at once.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use tokio::io::AsyncWriteExt;

use super::{Stack, READ_ROUTES};

/// Requests each non-reading connection pipelines.
const PIPELINED: usize = 16;
/// The non-reading client's TCP receive buffer (its window fills early).
const RECEIVE_BUFFER: u32 = 4096;

/// What the stalling attackers got.
#[derive(Default)]
pub(super) struct StallCounters {
    /// HTTP/2 streams answered with a head, and with a 200 head.
    pub(super) h2_heads: AtomicU64,
    pub(super) h2_heads_ok: AtomicU64,
    /// HTTP/2 streams the gateway reset.
    pub(super) h2_resets: AtomicU64,
    /// Non-reading HTTP/1.1 connections opened.
    pub(super) h1_opened: AtomicU64,
    /// Of those, closed by the gateway; and how long they were held.
    pub(super) h1_closed: AtomicU64,
    pub(super) h1_held_ms: AtomicU64,
    /// When the gateway ended a stream or connection.
    pub(super) timeline: std::sync::Arc<super::Timeline>,
}

/// One zero-window HTTP/2 connection, reopened whenever it ends.
pub(super) async fn zero_window_h2(
    stack: &Stack,
    source: IpAddr,
    key: &str,
    streams: usize,
    stop: &std::sync::atomic::AtomicBool,
    counters: &StallCounters,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(tls) = stack.connect_alpn(source, b"h2").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handshake = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tls)
            .await;
        let Ok((client, connection)) = handshake else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let driver = tokio::spawn(connection);
        let mut open = tokio::task::JoinSet::new();
        let mut round = 0usize;
        loop {
            while open.len() < streams {
                round += 1;
                let path = READ_ROUTES[round % READ_ROUTES.len()];
                let request = Request::get(format!("https://localhost{path}"))
                    .header("x-api-key", key)
                    .body(())
                    .expect("a valid request");
                let Ok(mut ready) = client.clone().ready().await else {
                    break;
                };
                let Ok((response, _)) = ready.send_request(request, true) else {
                    break;
                };
                open.spawn(hold_stream(response));
            }
            match open.join_next().await {
                Some(Ok(outcome)) => outcome.count(counters),
                Some(Err(_)) | None => break,
            }
            if stop.load(Ordering::Relaxed) || driver.is_finished() {
                break;
            }
        }
        open.abort_all();
        driver.abort();
    }
}

/// How one zero-window stream ended.
struct StreamOutcome {
    head: Option<u16>,
    reset: bool,
}

impl StreamOutcome {
    fn count(&self, counters: &StallCounters) {
        if let Some(status) = self.head {
            counters.h2_heads.fetch_add(1, Ordering::Relaxed);
            if status == 200 {
                counters.h2_heads_ok.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.reset {
            counters.h2_resets.fetch_add(1, Ordering::Relaxed);
            counters.timeline.mark("zero-window streams reset");
        }
    }
}

/// Waits for the head, then for the body's end without ever granting
/// window: it ends only when the gateway resets the stream.
async fn hold_stream(response: h2::client::ResponseFuture) -> StreamOutcome {
    let Ok(head) = response.await else {
        return StreamOutcome {
            head: None,
            reset: true,
        };
    };
    let status = head.status().as_u16();
    let mut body = head.into_body();
    let reset = loop {
        match body.data().await {
            Some(Ok(_)) => continue,
            Some(Err(_)) => break true,
            None => break false,
        }
    };
    StreamOutcome {
        head: Some(status),
        reset,
    }
}

/// One non-reading HTTP/1.1 connection, reopened whenever the gateway
/// closes it.
pub(super) async fn never_reading_h1(
    stack: &Stack,
    source: IpAddr,
    key: &str,
    stop: &std::sync::atomic::AtomicBool,
    counters: &StallCounters,
) {
    let head = format!(
        "GET /api/trades HTTP/1.1\r\nHost: localhost:{}\r\nX-Api-Key: {key}\r\n\r\n",
        stack.addr.port()
    );
    let pipeline = head.repeat(PIPELINED);
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = small_window(source, stack.addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(name) = rustls::pki_types::ServerName::try_from("localhost") else {
            return;
        };
        let Ok(mut tls) = stack.connector.connect(name, tcp).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        counters.h1_opened.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        if tls.write_all(pipeline.as_bytes()).await.is_err() {
            continue;
        }
        // Never read: the gateway's close is seen as the socket's
        // read-closed readiness, with the answers still queued unread.
        while !stop.load(Ordering::Relaxed) && !is_closed(tls.get_ref().0).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        counters.h1_closed.fetch_add(1, Ordering::Relaxed);
        counters.timeline.mark("non-reading connections closed");
        let held = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        counters.h1_held_ms.fetch_add(held, Ordering::Relaxed);
    }
}

/// A connection from `source` whose receive buffer (so its TCP window) is
/// small.
async fn small_window(
    source: IpAddr,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
    socket.connect(to).await
}

/// Whether the peer has closed the connection, without reading what it
/// sent.
async fn is_closed(tcp: &tokio::net::TcpStream) -> bool {
    let interest = tokio::io::Interest::READABLE | tokio::io::Interest::ERROR;
    match tokio::time::timeout(Duration::from_millis(200), tcp.ready(interest)).await {
        Ok(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}
