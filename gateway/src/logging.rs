//! The diagnostic log's level filter (stderr; the audit log is separate).
//!
//! rustls logs a warning for protocol oddities a client controls — an IP
//! address sent as the TLS server name, as curl and wrk do, is one per
//! handshake — so any client could fill the operator's log with lines that
//! say nothing about the gateway. Failed handshakes are in the audit log
//! and the metrics instead; rustls is held to errors unless `RUST_LOG`
//! names it.

use tracing_subscriber::EnvFilter;

/// How diagnostic lines are written to stderr (`--log-format`,
/// `TRADEHABIT_GATEWAY_LOG_FORMAT`): text by default, or one JSON object
/// per line, as the worker writes them, for log collectors. Either way a
/// refused reload is one line (`docs/runbook.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// The diagnostic log format when neither the flag nor the variable is set.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// The level when `RUST_LOG` is unset or invalid.
const DEFAULT_LEVEL: &str = "info";

/// The directive that holds rustls to errors.
const RUSTLS_ERRORS_ONLY: &str = "rustls=error";

/// The filter for `RUST_LOG`'s value (`None` when unset): the operator's
/// directives, or `info`, with rustls held to errors unless they name it.
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let directives = rust_log
        .filter(|value| EnvFilter::try_new(value).is_ok())
        .unwrap_or(DEFAULT_LEVEL);
    let filter = EnvFilter::new(directives);
    if directives.contains("rustls") {
        filter
    } else {
        filter.add_directive(RUSTLS_ERRORS_ONLY.parse().expect("a valid directive"))
    }
}

/// [`filter`] for this process's `RUST_LOG`.
pub fn filter_from_env() -> EnvFilter {
    filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn rustls_is_held_to_errors_unless_named() {
        for value in [
            None,
            Some("info"),
            Some("debug"),
            Some("not a [valid filter"),
        ] {
            let text = filter(value).to_string();
            assert!(text.contains(RUSTLS_ERRORS_ONLY), "{value:?}: {text}");
        }
        let named = filter(Some("info,rustls=debug")).to_string();
        assert!(!named.contains(RUSTLS_ERRORS_ONLY), "{named}");
        assert_eq!(
            filter(Some("warn")).max_level_hint(),
            Some(LevelFilter::WARN)
        );
        assert_eq!(filter(None).max_level_hint(), Some(LevelFilter::INFO));
    }
}
