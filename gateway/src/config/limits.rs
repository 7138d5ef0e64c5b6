//! `[limits]`: the connection and request hardening settings and their
//! validation.

use super::*;

/// `[limits]`: connection and request hardening.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_header_count: usize,
    pub(crate) max_header_field_bytes: usize,
    pub(crate) max_request_line_bytes: usize,
    pub(crate) h2_max_concurrent_streams: u32,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) refusal_drain_timeout: Duration,
    pub(crate) refusal_drain_bytes: usize,
    pub(crate) over_cap_answers_per_second: usize,
    /// `underscore_headers`, default [`DEFAULT_UNDERSCORE_HEADERS`].
    pub(crate) underscore_headers: UnderscoreHeaders,
    /// What one client may hold, and for how long.
    pub(crate) clients: ClientLimits,
}

/// `[limits]` on what one client may hold, and for how long
/// (`docs/security-controls.md`, F-4 and F-5).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientLimits {
    /// How long a response may make no progress toward the client.
    pub(crate) send_timeout: Duration,
    /// Requests in flight per client IP, across its connections.
    pub(crate) max_requests_per_ip: usize,
    /// Upstream slots held per client IP (set, or a share of
    /// `upstream.max_in_flight`).
    pub(crate) max_upstream_per_ip: usize,
    /// How long a refusal beyond `refusal_delay_after` a second is held
    /// (zero: never).
    pub(crate) refusal_delay: Duration,
    /// Refusals a second one client IP gets without delay.
    pub(crate) refusal_delay_after: u32,
}

/// `limits.underscore_headers`: request headers whose names contain `_`.
/// WSGI servers (gunicorn) map `X_Foo` and `X-Foo` to the same variable, so
/// such a header could pose as one the gateway owns. Whatever the setting,
/// none is ever forwarded (`proxy/headers.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// `"drop"`: removed before forwarding; the request goes on.
    Drop,
    /// `"refuse"`: the request is refused with 400.
    Refuse,
}

pub(super) fn validate_limits(raw: RawLimits, problems: &mut Problems) -> Limits {
    let clients = validate_client_limits(&raw, problems);
    let d = |value, key, default, problems: &mut Problems| {
        let value = duration(value, key, default, problems);
        if value.is_zero() {
            problems.push(key, "must be longer than 0");
        }
        value
    };
    Limits {
        tls_handshake_timeout: d(
            raw.tls_handshake_timeout,
            "limits.tls_handshake_timeout",
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            problems,
        ),
        header_read_timeout: d(
            raw.header_read_timeout,
            "limits.header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
            problems,
        ),
        idle_timeout: d(
            raw.idle_timeout,
            "limits.idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
            problems,
        ),
        request_timeout: d(
            raw.request_timeout,
            "limits.request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
            problems,
        ),
        // hyper refuses header buffers under 8 KiB.
        max_header_bytes: count(
            raw.max_header_bytes,
            "limits.max_header_bytes",
            DEFAULT_MAX_HEADER_BYTES,
            8192..=1 << 20,
            problems,
        ),
        max_header_count: count(
            raw.max_header_count,
            "limits.max_header_count",
            DEFAULT_MAX_HEADER_COUNT,
            1..=1000,
            problems,
        ),
        max_header_field_bytes: count(
            raw.max_header_field_bytes,
            "limits.max_header_field_bytes",
            DEFAULT_MAX_HEADER_FIELD_BYTES,
            64..=1 << 20,
            problems,
        ),
        max_request_line_bytes: count(
            raw.max_request_line_bytes,
            "limits.max_request_line_bytes",
            DEFAULT_MAX_REQUEST_LINE_BYTES,
            64..=1 << 20,
            problems,
        ),
        h2_max_concurrent_streams: count(
            raw.h2_max_concurrent_streams,
            "limits.h2_max_concurrent_streams",
            DEFAULT_H2_MAX_CONCURRENT_STREAMS as usize,
            1..=10_000,
            problems,
        ) as u32,
        max_connections: count(
            raw.max_connections,
            "limits.max_connections",
            DEFAULT_MAX_CONNECTIONS,
            1..=1_000_000,
            problems,
        ),
        max_connections_per_ip: count(
            raw.max_connections_per_ip,
            "limits.max_connections_per_ip",
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            1..=1_000_000,
            problems,
        ),
        refusal_drain_timeout: drain_timeout(raw.refusal_drain_timeout, problems),
        refusal_drain_bytes: count(
            raw.refusal_drain_bytes,
            "limits.refusal_drain_bytes",
            DEFAULT_REFUSAL_DRAIN_BYTES,
            0..=1 << 30,
            problems,
        ),
        over_cap_answers_per_second: count(
            raw.over_cap_answers_per_second,
            "limits.over_cap_answers_per_second",
            DEFAULT_OVER_CAP_ANSWERS_PER_SECOND,
            0..=10_000,
            problems,
        ),
        underscore_headers: underscore_headers(raw.underscore_headers.as_deref(), problems),
        clients,
    }
}

pub(super) fn underscore_headers(
    value: Option<&str>,
    problems: &mut Problems,
) -> UnderscoreHeaders {
    match value {
        None => DEFAULT_UNDERSCORE_HEADERS,
        Some("drop") => UnderscoreHeaders::Drop,
        Some("refuse") => UnderscoreHeaders::Refuse,
        Some(other) => {
            problems.push(
                "limits.underscore_headers",
                format_args!("`{other}` is not `drop` or `refuse`"),
            );
            DEFAULT_UNDERSCORE_HEADERS
        }
    }
}

/// The `[limits]` on what one client may hold, and for how long.
pub(super) fn validate_client_limits(raw: &RawLimits, problems: &mut Problems) -> ClientLimits {
    let key = "limits.send_timeout";
    let send_timeout = duration(
        raw.send_timeout.clone(),
        key,
        DEFAULT_SEND_TIMEOUT,
        problems,
    );
    if send_timeout.is_zero() {
        problems.push(key, "must be longer than 0");
    }
    ClientLimits {
        send_timeout,
        max_requests_per_ip: count(
            raw.max_requests_per_ip,
            "limits.max_requests_per_ip",
            DEFAULT_MAX_REQUESTS_PER_IP,
            1..=1_000_000,
            problems,
        ),
        // 0 until resolved against `upstream.max_in_flight` in `validate`.
        max_upstream_per_ip: count(
            raw.max_upstream_per_ip,
            "limits.max_upstream_per_ip",
            0,
            1..=1_000_000,
            problems,
        ),
        refusal_delay: at_most(
            raw.refusal_delay.clone(),
            "limits.refusal_delay",
            DEFAULT_REFUSAL_DELAY,
            MAX_REFUSAL_DELAY,
            problems,
        ),
        refusal_delay_after: u32::try_from(count(
            raw.refusal_delay_after,
            "limits.refusal_delay_after",
            DEFAULT_REFUSAL_DELAY_AFTER,
            0..=1_000_000,
            problems,
        ))
        .unwrap_or(u32::MAX),
    }
}

/// `limits.refusal_drain_timeout`, at most [`MAX_REFUSAL_DRAIN_TIMEOUT`].
fn drain_timeout(value: Option<String>, problems: &mut Problems) -> Duration {
    let (key, default) = (
        "limits.refusal_drain_timeout",
        DEFAULT_REFUSAL_DRAIN_TIMEOUT,
    );
    at_most(value, key, default, MAX_REFUSAL_DRAIN_TIMEOUT, problems)
}

/// A duration setting that may be 0 (off) but not longer than `max`:
/// `limits.refusal_delay` (longer would hold refused clients' requests too
/// long) and `limits.refusal_drain_timeout` (longer would let refused
/// clients hold connections).
fn at_most(
    value: Option<String>,
    key: &str,
    default: Duration,
    max: Duration,
    problems: &mut Problems,
) -> Duration {
    let value = duration(value, key, default, problems);
    if value > max {
        problems.push(key, format_args!("must be {}s or less", max.as_secs()));
        return default;
    }
    value
}
