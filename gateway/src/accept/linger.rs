//! Lingering close for HTTPS HTTP/1.1 connections: a connection that
//! answered a request without reading all of its body sends TLS
//! `close_notify` and a TCP FIN, then reads and discards what the client
//! still sends, raw and without decrypting it, within
//! `limits.refusal_drain_bytes` and `limits.refusal_drain_timeout`
//! ([`DrainBounds`]), so the client reads the refusal instead of a reset.
//! The mechanism is the shared crate's `linger` module, which the worker
//! uses on its socket too; this module only says where the raw socket is.

use std::sync::Arc;

use tokio_rustls::server::TlsStream;
use tradehabit_shared::linger::{Bounds, Linger as Lingering};

use super::held::HeldWrites;
use super::send_watch::WriteWatch;
use super::DrainBounds;

pub(crate) use tradehabit_shared::linger::LingerSwitch;

/// An HTTPS connection that lingers on close when its switch is on.
pub(crate) type Linger = Lingering<TlsStream<WriteWatch<HeldWrites>>>;

/// Wraps `stream`: when `switch` is on at shutdown, discard from the TCP
/// stream under TLS within `bounds`.
pub(crate) fn lingering(
    stream: TlsStream<WriteWatch<HeldWrites>>,
    switch: Arc<LingerSwitch>,
    bounds: DrainBounds,
) -> Linger {
    let bounds = Bounds {
        timeout: bounds.timeout,
        max_bytes: bounds.max_bytes,
    };
    Lingering::with_raw(stream, |tls| tls.get_mut().0, switch, bounds)
}
