//! Start-up stage: command-line flags (each with an environment fallback)
//! → a validated [`Config`].
//!
//! Every problem is reported at once, before the socket is created.
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--socket PATH` | `TRADEHABIT_WORKER_SOCKET` | required |
//! | `--session-idle-secs` | `TRADEHABIT_WORKER_SESSION_IDLE_SECS` | 1800 |
//! | `--max-sessions` | `TRADEHABIT_WORKER_MAX_SESSIONS` | 10000 |
//! | `--max-session-bytes` | `TRADEHABIT_WORKER_MAX_SESSION_BYTES` | 536870912 (512 MiB) |
//! | `--max-concurrent-analyses` | `TRADEHABIT_WORKER_MAX_CONCURRENT_ANALYSES` | number of CPUs |
//! | `--max-queued-analyses` | `TRADEHABIT_WORKER_MAX_QUEUED_ANALYSES` | 64 |
//! | `--max-requests-per-principal` | `TRADEHABIT_WORKER_MAX_REQUESTS_PER_PRINCIPAL` | 16 |
//! | `--max-connections` | `TRADEHABIT_WORKER_MAX_CONNECTIONS` | 256 |
//! | `--max-body-bytes` | `TRADEHABIT_WORKER_MAX_BODY_BYTES` | 65536 |
//! | `--header-read-timeout-secs` | `TRADEHABIT_WORKER_HEADER_READ_TIMEOUT_SECS` | 10 |
//! | `--body-read-timeout-secs` | `TRADEHABIT_WORKER_BODY_READ_TIMEOUT_SECS` | 30 |
//! | `--shutdown-grace-secs` | `TRADEHABIT_WORKER_SHUTDOWN_GRACE_SECS` | 30 |
//! | `--legacy-settings-keys` | `TRADEHABIT_WORKER_LEGACY_SETTINGS_KEYS` | off: unknown settings keys are refused |
//! | `--log-format` | `TRADEHABIT_WORKER_LOG_FORMAT` | `json` |
//! | `--allowed-peer-uids` | `TRADEHABIT_WORKER_ALLOWED_PEER_UIDS` | none (any peer the socket mode lets in) |
//! | `--allowed-peer-gids` | `TRADEHABIT_WORKER_ALLOWED_PEER_GIDS` | none |
//! | `--hmac-key-file` | `TRADEHABIT_WORKER_HMAC_KEY_FILE` | none (no signature required) |
//! | `--hmac-max-skew-secs` | `TRADEHABIT_WORKER_HMAC_MAX_SKEW_SECS` | 30 |

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use tradehabit_shared::routes::MAX_JSON_BODY_BYTES;

use crate::api::UnknownSettings;
use crate::trust::Trust;
use crate::{admission, session};
use tradehabit_shared::signature::{Key, DEFAULT_MAX_SKEW_SECS};

/// Default time for a client to send a request's headers: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of open connections: 256.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default time requests in flight get to finish after shutdown starts: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Default time for a request's body to arrive: 30 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit on a non-upload request body (JSON for settings and
/// goals): 64 KiB, the API's JSON body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = MAX_JSON_BODY_BYTES;

/// Connection limits.
///
/// # Defaults
/// * `max_connections`: [`DEFAULT_MAX_CONNECTIONS`] (256)
/// * `header_read_timeout`: [`DEFAULT_HEADER_READ_TIMEOUT`] (10 s)
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: NonZeroUsize,
    /// Time to receive a request's headers before the connection is closed.
    /// It also runs while a keep-alive connection waits for its next
    /// request, so it doubles as the idle-connection timeout.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS)
                .expect("default is non-zero"),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Limits on reading a request.
///
/// # Defaults
/// * `max_body_bytes`: [`DEFAULT_MAX_BODY_BYTES`] (64 KiB)
/// * `read_timeout`: [`DEFAULT_BODY_READ_TIMEOUT`] (30 s)
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Non-upload bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// The whole body must arrive within this time, or 408.
    pub read_timeout: Duration,
}

/// The worker's validated configuration.
///
/// # Defaults
/// See [`session::Limits`], [`admission::Limits`], [`ConnectionLimits`],
/// [`BodyLimits`] (max body [`DEFAULT_MAX_BODY_BYTES`], read timeout
/// [`DEFAULT_BODY_READ_TIMEOUT`]) and [`DEFAULT_SHUTDOWN_GRACE`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the Unix socket is created.
    pub socket: PathBuf,
    /// Session expiry and caps.
    pub sessions: session::Limits,
    /// Engine concurrency and queueing.
    pub admission: admission::Limits,
    /// Connection count and header timeout.
    pub connections: ConnectionLimits,
    /// Body size and time limits.
    pub body: BodyLimits,
    /// Time requests in flight get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Which peers and which requests are trusted (default: no check).
    pub trust: Trust,
}

impl Config {
    /// The defaults, listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            sessions: session::Limits::default(),
            admission: admission::Limits::default(),
            connections: ConnectionLimits::default(),
            body: BodyLimits {
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            },
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            trust: Trust {
                max_skew_secs: DEFAULT_MAX_SKEW_SECS,
                ..Trust::default()
            },
        }
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// The command line, as typed (see the module doc for the table).
#[derive(Debug, Parser)]
#[command(
    name = "tradehabit-worker",
    version,
    about = "TradeHabit worker: the legacy JSON API on a private Unix socket, with per-principal \
             in-memory sessions."
)]
pub struct Args {
    /// Path of the Unix socket to create (its directory must not be
    /// world-writable).
    #[arg(long, env = "TRADEHABIT_WORKER_SOCKET", value_name = "PATH")]
    pub socket: PathBuf,

    /// A session unused for this many seconds ends.
    #[arg(long, env = "TRADEHABIT_WORKER_SESSION_IDLE_SECS", value_name = "SECS",
          default_value_t = session::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub session_idle_secs: u64,

    /// At most this many sessions; the least recently used goes first.
    #[arg(long, env = "TRADEHABIT_WORKER_MAX_SESSIONS", value_name = "N",
          default_value_t = session::DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,

    /// Sessions hold at most about this many bytes together; the least
    /// recently used go first.
    #[arg(long, env = "TRADEHABIT_WORKER_MAX_SESSION_BYTES", value_name = "BYTES",
          default_value_t = session::DEFAULT_MAX_BYTES)]
    pub max_session_bytes: u64,

    /// Engine calls running at once [default: number of CPUs].
    #[arg(
        long,
        env = "TRADEHABIT_WORKER_MAX_CONCURRENT_ANALYSES",
        value_name = "N"
    )]
    pub max_concurrent_analyses: Option<usize>,

    /// Requests waiting for an engine slot before 503 + Retry-After.
    #[arg(long, env = "TRADEHABIT_WORKER_MAX_QUEUED_ANALYSES", value_name = "N",
          default_value_t = admission::DEFAULT_MAX_QUEUED)]
    pub max_queued_analyses: usize,

    /// Requests of one principal in progress before 429 + Retry-After.
    #[arg(long, env = "TRADEHABIT_WORKER_MAX_REQUESTS_PER_PRINCIPAL", value_name = "N",
          default_value_t = admission::DEFAULT_MAX_PER_PRINCIPAL)]
    pub max_requests_per_principal: usize,

    /// Connections open at once.
    #[arg(long, env = "TRADEHABIT_WORKER_MAX_CONNECTIONS", value_name = "N",
          default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest non-upload request body (JSON), in bytes; larger gets 413.
    #[arg(long, env = "TRADEHABIT_WORKER_MAX_BODY_BYTES", value_name = "BYTES",
          default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Seconds to receive a request's headers.
    #[arg(long, env = "TRADEHABIT_WORKER_HEADER_READ_TIMEOUT_SECS", value_name = "SECS",
          default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    pub header_read_timeout_secs: u64,

    /// Seconds to receive a request's body; longer gets 408.
    #[arg(long, env = "TRADEHABIT_WORKER_BODY_READ_TIMEOUT_SECS", value_name = "SECS",
          default_value_t = DEFAULT_BODY_READ_TIMEOUT.as_secs())]
    pub body_read_timeout_secs: u64,

    /// Seconds requests in flight get to finish on SIGTERM / Ctrl-C.
    #[arg(long, env = "TRADEHABIT_WORKER_SHUTDOWN_GRACE_SECS", value_name = "SECS",
          default_value_t = DEFAULT_SHUTDOWN_GRACE.as_secs())]
    pub shutdown_grace_secs: u64,

    /// Ignore unknown `POST /api/settings` keys, as the legacy backend did,
    /// instead of refusing them with 400 (`docs/quirks.md`, H-19).
    #[arg(long, env = "TRADEHABIT_WORKER_LEGACY_SETTINGS_KEYS")]
    pub legacy_settings_keys: bool,

    /// Log line format (level from RUST_LOG, default info).
    #[arg(long, env = "TRADEHABIT_WORKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Peer uids (comma-separated) whose connections are answered; with
    /// neither this nor --allowed-peer-gids, any peer the socket mode lets in.
    #[arg(
        long,
        env = "TRADEHABIT_WORKER_ALLOWED_PEER_UIDS",
        value_name = "UIDS",
        value_delimiter = ','
    )]
    pub allowed_peer_uids: Vec<u32>,

    /// Peer gids (comma-separated) whose connections are answered.
    #[arg(
        long,
        env = "TRADEHABIT_WORKER_ALLOWED_PEER_GIDS",
        value_name = "GIDS",
        value_delimiter = ','
    )]
    pub allowed_peer_gids: Vec<u32>,

    /// File holding the key the gateway signs requests with (at least 32
    /// bytes); every request must then carry a valid signature.
    #[arg(long, env = "TRADEHABIT_WORKER_HMAC_KEY_FILE", value_name = "PATH")]
    pub hmac_key_file: Option<PathBuf>,

    /// Seconds a signature's timestamp may differ from the worker's clock.
    #[arg(long, env = "TRADEHABIT_WORKER_HMAC_MAX_SKEW_SECS", value_name = "SECS",
          default_value_t = DEFAULT_MAX_SKEW_SECS)]
    pub hmac_max_skew_secs: u64,
}

/// The configuration is invalid; every problem is listed.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem, naming the flag.
    pub problems: Vec<String>,
}

impl Args {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut positive = |flag: &str, value: usize| {
            NonZeroUsize::new(value).or_else(|| {
                problems.push(format!("--{flag} must be at least 1"));
                None
            })
        };
        let max_sessions = positive("max-sessions", self.max_sessions);
        let max_concurrent = match self.max_concurrent_analyses {
            Some(value) => positive("max-concurrent-analyses", value),
            None => Some(admission::default_max_concurrent()),
        };
        let max_per_principal = positive(
            "max-requests-per-principal",
            self.max_requests_per_principal,
        );
        let max_connections = positive("max-connections", self.max_connections);
        let max_body_bytes = positive("max-body-bytes", self.max_body_bytes);
        for (flag, secs) in [
            ("session-idle-secs", self.session_idle_secs),
            ("header-read-timeout-secs", self.header_read_timeout_secs),
            ("body-read-timeout-secs", self.body_read_timeout_secs),
        ] {
            if secs == 0 {
                problems.push(format!("--{flag} must be at least 1"));
            }
        }
        if self.socket.as_os_str().is_empty() {
            problems.push("--socket must not be empty".to_owned());
        }
        let hmac_key = match &self.hmac_key_file {
            Some(path) => match Key::from_file(path) {
                Ok(key) => Some(key),
                Err(error) => {
                    problems.push(format!("--hmac-key-file: {error}"));
                    None
                }
            },
            None => None,
        };
        if self.hmac_max_skew_secs == 0 {
            problems.push("--hmac-max-skew-secs must be at least 1".to_owned());
        }
        let (
            Some(max_sessions),
            Some(max_concurrent),
            Some(max_per_principal),
            Some(max_connections),
            Some(max_body_bytes),
            true,
        ) = (
            max_sessions,
            max_concurrent,
            max_per_principal,
            max_connections,
            max_body_bytes,
            problems.is_empty(),
        )
        else {
            return Err(ConfigError { problems });
        };
        Ok(Config {
            socket: self.socket,
            sessions: session::Limits {
                idle_timeout: Duration::from_secs(self.session_idle_secs),
                max_sessions,
                max_bytes: self.max_session_bytes,
                unknown_settings: if self.legacy_settings_keys {
                    UnknownSettings::Ignore
                } else {
                    UnknownSettings::Refuse
                },
            },
            admission: admission::Limits {
                max_concurrent,
                max_queued: self.max_queued_analyses,
                max_per_principal,
            },
            connections: ConnectionLimits {
                max_connections,
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            },
            body: BodyLimits {
                max_body_bytes: max_body_bytes.get(),
                read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            trust: Trust {
                allowed_uids: self.allowed_peer_uids,
                allowed_gids: self.allowed_peer_gids,
                hmac_key,
                max_skew_secs: self.hmac_max_skew_secs,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("tradehabit-worker").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = parse(&["--socket", "/run/w.sock"])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.socket, PathBuf::from("/run/w.sock"));
        assert_eq!(config.sessions.idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.sessions.max_sessions.get(), 10_000);
        assert_eq!(config.sessions.max_bytes, 512 * 1024 * 1024);
        assert_eq!(config.admission.max_queued, 64);
        assert_eq!(config.admission.max_per_principal.get(), 16);
        assert_eq!(
            config.admission.max_concurrent,
            admission::default_max_concurrent()
        );
        assert_eq!(config.connections.max_connections.get(), 256);
        assert_eq!(config.body.max_body_bytes, 64 * 1024);
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn the_socket_is_required() {
        // The environment fallback must not leak in from the test runner.
        if std::env::var_os("TRADEHABIT_WORKER_SOCKET").is_none() {
            assert!(parse(&[]).is_err());
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_the_flag() {
        let error = parse(&[
            "--socket",
            "/run/w.sock",
            "--max-sessions",
            "0",
            "--max-concurrent-analyses",
            "0",
            "--session-idle-secs",
            "0",
        ])
        .unwrap()
        .into_config()
        .unwrap_err();
        assert_eq!(error.problems.len(), 3, "{error}");
        let text = error.to_string();
        assert!(text.contains("--max-sessions"));
        assert!(text.contains("--max-concurrent-analyses"));
        assert!(text.contains("--session-idle-secs"));
    }

    #[test]
    fn trust_is_off_by_default_and_read_from_the_flags() {
        let config = parse(&["--socket", "/run/w.sock"])
            .unwrap()
            .into_config()
            .unwrap();
        assert!(!config.trust.is_configured());
        assert_eq!(config.trust.max_skew_secs, 30);
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, format!("{}\n", "k".repeat(32))).unwrap();
        let config = parse(&[
            "--socket",
            "/run/w.sock",
            "--allowed-peer-uids",
            "0,65532",
            "--hmac-key-file",
            key.to_str().unwrap(),
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(config.trust.allowed_uids, vec![0, 65532]);
        assert!(config.trust.hmac_key.is_some());
        std::fs::write(&key, "short").unwrap();
        let error = parse(&[
            "--socket",
            "/w.sock",
            "--hmac-key-file",
            key.to_str().unwrap(),
        ])
        .unwrap()
        .into_config()
        .unwrap_err();
        assert!(error.to_string().contains("--hmac-key-file"), "{error}");
        assert!(!error.to_string().contains("short"), "{error}");
    }

    #[test]
    fn a_zero_queue_is_allowed() {
        let config = parse(&["--socket", "/run/w.sock", "--max-queued-analyses", "0"])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.admission.max_queued, 0);
    }
}
