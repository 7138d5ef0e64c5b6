//! `[upstream]`: where requests are forwarded, the pool, the slots and the
//! supervised child, and their validation.

use super::*;

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamAddress {
    /// `unix:/path/to.sock`
    Unix(PathBuf),
    /// `http://host:port`
    Tcp { host: String, port: u16 },
}

/// `[upstream]`
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upstream {
    pub(crate) address: UpstreamAddress,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) max_in_flight: NonZeroUsize,
    pub(crate) queue_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle: usize,
    pub(crate) retry_after: Duration,
    /// Answers up to this many bytes are read in full before the client
    /// gets them (0: always streamed).
    pub(crate) response_buffer_bytes: usize,
    /// Replace the bodies of upstream 5xx answers with a generic envelope
    /// (the legacy backend puts Python exception texts in its 500s).
    pub(crate) replace_error_bodies: bool,
    /// The path the readiness probe GETs, default [`DEFAULT_READY_PATH`].
    pub(crate) ready_path: String,
    pub(crate) spawn: Option<Spawn>,
}

/// `[upstream.spawn]`: a child process the gateway supervises.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spawn {
    /// Program and arguments; `{socket}` is replaced by the socket path.
    pub(crate) command: Vec<String>,
    pub(crate) ready_timeout: Duration,
    pub(crate) restart_backoff_max: Duration,
}

pub(super) fn validate_upstream(
    raw: Option<RawUpstream>,
    problems: &mut Problems,
) -> Option<Upstream> {
    let Some(raw) = raw else {
        problems.push("upstream", "missing table (it needs at least `address`)");
        return None;
    };
    let address = required(raw.address, "upstream.address", problems)
        .and_then(|text| upstream_address(&text, problems));
    let connect_timeout = duration(
        raw.connect_timeout,
        "upstream.connect_timeout",
        DEFAULT_CONNECT_TIMEOUT,
        problems,
    );
    let response_timeout = duration(
        raw.response_timeout,
        "upstream.response_timeout",
        DEFAULT_RESPONSE_TIMEOUT,
        problems,
    );
    let max_in_flight = count(
        raw.max_in_flight,
        "upstream.max_in_flight",
        DEFAULT_MAX_IN_FLIGHT,
        1..=1_000_000,
        problems,
    );
    let queue_timeout = duration(
        raw.queue_timeout,
        "upstream.queue_timeout",
        DEFAULT_QUEUE_TIMEOUT,
        problems,
    );
    let pool_idle_timeout = duration(
        raw.pool_idle_timeout,
        "upstream.pool_idle_timeout",
        DEFAULT_POOL_IDLE_TIMEOUT,
        problems,
    );
    let pool_max_idle = count(
        raw.pool_max_idle,
        "upstream.pool_max_idle",
        DEFAULT_POOL_MAX_IDLE,
        0..=1_000_000,
        problems,
    );
    let retry_after = duration(
        raw.retry_after,
        "upstream.retry_after",
        DEFAULT_RETRY_AFTER,
        problems,
    );
    let response_buffer_bytes = count(
        raw.response_buffer_bytes,
        "upstream.response_buffer_bytes",
        DEFAULT_RESPONSE_BUFFER_BYTES,
        0..=16 << 20,
        problems,
    );
    let spawn = raw
        .spawn
        .map(|spawn| validate_spawn(spawn, &address, problems));
    Some(Upstream {
        address: address?,
        connect_timeout,
        response_timeout,
        max_in_flight: NonZeroUsize::new(max_in_flight).unwrap_or(NonZeroUsize::MIN),
        queue_timeout,
        pool_idle_timeout,
        pool_max_idle,
        retry_after,
        response_buffer_bytes,
        replace_error_bodies: raw.replace_error_bodies.unwrap_or(true),
        ready_path: ready_path(raw.ready_path, problems),
        spawn: spawn.flatten(),
    })
}

pub(super) fn validate_spawn(
    raw: RawSpawn,
    address: &Option<UpstreamAddress>,
    problems: &mut Problems,
) -> Option<Spawn> {
    if matches!(address, Some(UpstreamAddress::Tcp { .. })) {
        problems.push(
            "upstream.spawn",
            "needs a `unix:` upstream address (the child is given the socket path)",
        );
    }
    let command = required(raw.command, "upstream.spawn.command", problems);
    if command.as_ref().is_some_and(|c| c.is_empty()) {
        problems.push("upstream.spawn.command", "must name a program");
    }
    let ready_timeout = duration(
        raw.ready_timeout,
        "upstream.spawn.ready_timeout",
        DEFAULT_SPAWN_READY_TIMEOUT,
        problems,
    );
    let restart_backoff_max = duration(
        raw.restart_backoff_max,
        "upstream.spawn.restart_backoff_max",
        DEFAULT_RESTART_BACKOFF_MAX,
        problems,
    );
    Some(Spawn {
        command: command?,
        ready_timeout,
        restart_backoff_max,
    })
}

pub(super) fn ready_path(value: Option<String>, problems: &mut Problems) -> String {
    let path = value.unwrap_or_else(|| DEFAULT_READY_PATH.to_string());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        problems.push(
            "upstream.ready_path",
            "must be an absolute path with no query",
        );
    }
    path
}

pub(super) fn upstream_address(text: &str, problems: &mut Problems) -> Option<UpstreamAddress> {
    const KEY: &str = "upstream.address";
    if let Some(socket) = text.strip_prefix("unix:") {
        if !socket.starts_with('/') {
            problems.push(KEY, "a unix: socket path must be absolute");
            return None;
        }
        return Some(UpstreamAddress::Unix(PathBuf::from(socket)));
    }
    let Some(authority) = text.strip_prefix("http://") else {
        problems.push(
            KEY,
            format_args!("`{text}` is neither `unix:/path.sock` nor `http://host:port`"),
        );
        return None;
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let uri_authority: Option<http::uri::Authority> = authority.parse().ok();
    match uri_authority {
        Some(a) if !authority.contains('@') && !a.host().is_empty() => Some(UpstreamAddress::Tcp {
            host: a.host().trim_matches(['[', ']']).to_string(),
            port: a.port_u16().unwrap_or(80),
        }),
        _ => {
            problems.push(
                KEY,
                format_args!("`{text}` must be http://host:port with no path or credentials"),
            );
            None
        }
    }
}
