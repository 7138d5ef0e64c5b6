//! `[upstream]`: where requests are forwarded, the pool, the slots and the
//! supervised child, and their validation.

use super::*;
use crate::checks::secret::load;
use tradehabit_shared::signature::{Key, MIN_KEY_BYTES};

/// How long a worker that refused a connection or broke an exchange gets no
/// requests (`upstream.eject_for`), when there are several.
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);

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
    /// The first (with `address`, the only) worker: the one a spawned
    /// child listens on.
    pub(crate) address: UpstreamAddress,
    /// Every worker, `address` first: one with `address`, those of
    /// `addresses` otherwise (`proxy/workers.rs` picks one per principal).
    pub(crate) addresses: Vec<UpstreamAddress>,
    /// How long a failing worker is left out when there are several.
    pub(crate) eject_for: Duration,
    /// The key the gateway signs forwarded requests with, shared with the
    /// worker (`tradehabit_shared::signature`); none: no signature.
    pub(crate) hmac_key: Option<Key>,
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
    /// Request bodies that declare a length up to this many bytes are read
    /// in full before an upstream connection is taken (0: always streamed).
    pub(crate) request_buffer_bytes: usize,
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
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<Upstream> {
    let Some(mut raw) = raw else {
        problems.push("upstream", "missing table (it needs at least `address`)");
        return None;
    };
    let addresses = worker_addresses(raw.address.take(), raw.addresses.take(), problems);
    let address = addresses.as_ref().and_then(|all| all.first().cloned());
    let eject_for = duration(
        raw.eject_for.take(),
        "upstream.eject_for",
        DEFAULT_EJECT_FOR,
        problems,
    );
    let hmac_key = raw.hmac_key.take().and_then(|source| {
        let secret = load(&source, "upstream.hmac_key", ctx, MIN_KEY_BYTES, problems)?;
        Key::new(secret.expose()).ok()
    });
    if raw.spawn.is_some() && addresses.as_ref().is_some_and(|all| all.len() > 1) {
        problems.push(
            "upstream.spawn",
            "supervises one worker: use `address`, not several `addresses`",
        );
    }
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
    let (response_buffer_bytes, request_buffer_bytes) = buffer_sizes(
        raw.response_buffer_bytes,
        raw.request_buffer_bytes,
        problems,
    );
    let spawn = raw
        .spawn
        .map(|spawn| validate_spawn(spawn, &address, problems));
    Some(Upstream {
        address: address?,
        addresses: addresses?,
        eject_for,
        hmac_key,
        connect_timeout,
        response_timeout,
        max_in_flight: NonZeroUsize::new(max_in_flight).unwrap_or(NonZeroUsize::MIN),
        queue_timeout,
        pool_idle_timeout,
        pool_max_idle,
        retry_after,
        response_buffer_bytes,
        request_buffer_bytes,
        replace_error_bodies: raw.replace_error_bodies.unwrap_or(true),
        ready_path: ready_path(raw.ready_path, problems),
        spawn: spawn.flatten(),
    })
}

/// `upstream.response_buffer_bytes` and `upstream.request_buffer_bytes`,
/// each at most 16 MiB.
fn buffer_sizes(
    response: Option<i64>,
    request: Option<i64>,
    problems: &mut Problems,
) -> (usize, usize) {
    let response = count(
        response,
        "upstream.response_buffer_bytes",
        DEFAULT_RESPONSE_BUFFER_BYTES,
        0..=16 << 20,
        problems,
    );
    let request = count(
        request,
        "upstream.request_buffer_bytes",
        DEFAULT_REQUEST_BUFFER_BYTES,
        0..=16 << 20,
        problems,
    );
    (response, request)
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

/// `address` (one worker) or `addresses` (several, each once), not both.
fn worker_addresses(
    address: Option<String>,
    addresses: Option<Vec<String>>,
    problems: &mut Problems,
) -> Option<Vec<UpstreamAddress>> {
    const KEY: &str = "upstream.addresses";
    match (address, addresses) {
        (Some(_), Some(_)) => {
            problems.push(KEY, "give either `address` or `addresses`, not both");
            None
        }
        (None, None) => {
            problems.push("upstream.address", "is required (or `addresses`)");
            None
        }
        (Some(one), None) => Some(vec![upstream_address(&one, problems)?]),
        (None, Some(many)) => {
            if many.is_empty() || many.len() > MAX_WORKERS {
                problems.push(KEY, format_args!("must list 1 to {MAX_WORKERS} workers"));
                return None;
            }
            let parsed: Vec<_> = many
                .iter()
                .filter_map(|text| upstream_address(text, problems))
                .collect();
            let mut unique = parsed.clone();
            unique.sort_by_key(|a| format!("{a:?}"));
            unique.dedup();
            if unique.len() != parsed.len() {
                problems.push(KEY, "lists a worker twice");
            }
            (parsed.len() == many.len()).then_some(parsed)
        }
    }
}

/// A typo guard: more workers than this behind one gateway is a mistake.
const MAX_WORKERS: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::super::tests::MINIMAL;
    use super::*;
    use std::collections::HashMap;

    const ONE: &str = r#"address = "unix:/run/tradehabit/worker.sock""#;

    fn with(upstream: &str) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = HashMap::from([("HMAC".to_owned(), "h".repeat(32))]);
        Config::from_toml_with(&MINIMAL.replace(ONE, upstream), Path::new("."), &env)
    }

    #[test]
    fn one_address_is_one_worker_with_no_key_and_the_default_ejection() {
        let upstream = with(ONE).unwrap().upstream;
        assert_eq!(upstream.addresses, vec![upstream.address.clone()]);
        assert_eq!(upstream.eject_for, DEFAULT_EJECT_FOR);
        assert!(upstream.hmac_key.is_none());
    }

    #[test]
    fn several_addresses_a_key_and_an_ejection_time() {
        let upstream = with(
            r#"addresses = ["unix:/run/a/w.sock", "unix:/run/b/w.sock"]
eject_for = "3s"
hmac_key = { env = "HMAC" }"#,
        )
        .unwrap()
        .upstream;
        assert_eq!(upstream.addresses.len(), 2);
        assert_eq!(
            upstream.address,
            UpstreamAddress::Unix("/run/a/w.sock".into())
        );
        assert_eq!(upstream.eject_for, Duration::from_secs(3));
        assert!(upstream.hmac_key.is_some());
        assert!(!format!("{upstream:?}").contains("hhhh"));
    }

    #[test]
    fn bad_worker_lists_and_keys_are_refused() {
        for (upstream, key) in [
            (
                r#"address = "unix:/a.sock"
addresses = ["unix:/b.sock"]"#,
                "upstream.addresses",
            ),
            ("addresses = []", "upstream.addresses"),
            (
                r#"addresses = ["unix:/a.sock", "unix:/a.sock"]"#,
                "upstream.addresses",
            ),
            (r#"addresses = ["unix:relative.sock"]"#, "upstream.address"),
            (
                r#"addresses = ["unix:/a.sock", "unix:/b.sock"]
spawn = { command = ["w"] }"#,
                "upstream.spawn",
            ),
            (
                r#"address = "unix:/a.sock"
hmac_key = { env = "UNSET_HMAC_FOR_TEST" }"#,
                "upstream.hmac_key",
            ),
            ("", "upstream.address"),
        ] {
            let error = with(upstream).unwrap_err().to_string();
            assert!(error.contains(key), "{upstream}: {error}");
        }
    }
}
