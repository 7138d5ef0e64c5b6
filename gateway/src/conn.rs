//! Connection facts: what the accept loop learns about a connection and
//! hands to the stages above it (the peer, the TLS session, why a
//! connection ended outside any request, a refused chunked body), and the
//! stop signal every long-running task waits on.
//!
//! Ground floor: imports nothing from the crate, so the audit log, the
//! metrics and the pipeline can all name these facts without reaching up
//! into the connection code (`accept`).

use std::net::SocketAddr;

use tokio::sync::watch;

/// What a request knows about its connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// TLS version and ALPN, for the audit log.
    pub(crate) tls: TlsInfo,
}

/// The TLS facts of a connection.
#[derive(Debug, Default, Clone)]
pub(crate) struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub(crate) version: Option<&'static str>,
    /// The negotiated ALPN protocol (`h2`, `http/1.1`).
    pub(crate) alpn: Option<String>,
}

impl TlsInfo {
    /// The facts of an established server connection.
    pub(crate) fn of(connection: &rustls::ServerConnection) -> TlsInfo {
        let version = connection.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "other",
        });
        let alpn = connection
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        TlsInfo { version, alpn }
    }
}

/// Why hyper (or h2) closed a connection outside any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Part of a request head arrived, the rest not within
    /// `limits.header_read_timeout` (slowloris).
    HeaderTimeout,
    /// The request head exceeded `limits.max_header_bytes` or
    /// `limits.max_header_count`, or its URI was too long (hyper: 431/414).
    HeadTooLarge,
    /// The request head did not parse (hyper: 400).
    MalformedHead,
    /// An HTTP/2 client broke the protocol (malformed or illegal frames,
    /// a flood of resets or other abuse): h2 ended the connection with a
    /// GOAWAY carrying an error code.
    Http2ProtocolViolation,
}

impl HeadError {
    /// Every kind, for pre-initialised metric series.
    pub(crate) const ALL: [HeadError; 4] = [
        HeadError::HeaderTimeout,
        HeadError::HeadTooLarge,
        HeadError::MalformedHead,
        HeadError::Http2ProtocolViolation,
    ];

    /// The audit event.
    pub(crate) fn event(self) -> &'static str {
        match self {
            Self::Http2ProtocolViolation => "protocol_violation",
            _ => "request_head_failed",
        }
    }

    /// The audit reason, `http.<why>`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "http.header_timeout",
            Self::HeadTooLarge => "http.head_too_large",
            Self::MalformedHead => "http.malformed_head",
            Self::Http2ProtocolViolation => "http.h2_protocol_violation",
        }
    }

    /// The `reason` label of `connection_errors`: the audit reason without
    /// its `http.` prefix.
    pub(crate) fn label(self) -> &'static str {
        let reason = self.reason();
        reason.split_once('.').map_or(reason, |(_, why)| why)
    }
}

/// Why a chunked body was refused; the detail of the 400 envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedError {
    /// A chunk size that is empty or has a byte other than a hex digit.
    NotHex,
    /// More than `accept/framing/chunked.rs` `MAX_SIZE_DIGITS` digits.
    TooManyDigits,
    /// Whitespace the grammar does not allow (e.g. at the end of the line).
    Whitespace,
    /// A chunk extension that is not `;name[=value]`.
    Extension,
    /// Extensions over `MAX_EXT_BYTES_PER_LINE` or `MAX_EXT_BYTES_PER_BODY`
    /// (`accept/framing/chunked.rs`).
    ExtensionsTooLong,
    /// A control byte (NUL, DEL, C0 other than HTAB).
    ControlByte,
    /// A line ended by a bare LF, or a CR not followed by LF.
    LineEnd,
    /// Chunk data not followed by CRLF.
    DataNotEnded,
    /// A trailer line that is not `name: value`.
    TrailerField,
    /// The trailer section over its byte or field bound.
    TrailersTooLarge,
}

impl ChunkedError {
    /// Every kind, for tests.
    #[cfg(test)]
    pub(crate) const ALL: [ChunkedError; 10] = [
        Self::NotHex,
        Self::TooManyDigits,
        Self::Whitespace,
        Self::Extension,
        Self::ExtensionsTooLong,
        Self::ControlByte,
        Self::LineEnd,
        Self::DataNotEnded,
        Self::TrailerField,
        Self::TrailersTooLarge,
    ];

    /// The detail of the 400 envelope.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::NotHex => "a chunk size that is not hexadecimal",
            Self::TooManyDigits => "a chunk size with more than 16 digits",
            Self::Whitespace => "whitespace out of place in a chunk-size line",
            Self::Extension => "a malformed chunk extension",
            Self::ExtensionsTooLong => "chunk extensions over their size limit",
            Self::ControlByte => "a control byte in the chunked framing",
            Self::LineEnd => "a chunked framing line not ended by CRLF",
            Self::DataNotEnded => "chunk data not followed by CRLF",
            Self::TrailerField => "a malformed trailer field",
            Self::TrailersTooLarge => "a trailer section over its limit",
        }
    }
}

/// The error a read returns once the connection's framing reader
/// (`accept/framing.rs`) has refused a chunked body; it reaches the
/// pipeline as the cause of the request body's error.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("chunked framing refused: {}", .0.detail())]
pub(crate) struct BodyFramingRefused(pub(crate) ChunkedError);

impl BodyFramingRefused {
    /// The detail of the 400 envelope.
    pub(crate) fn detail(self) -> &'static str {
        self.0.detail()
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, never held across an
    // await by the caller.
    let _ = stop.wait_for(|stopping| *stopping).await;
}
