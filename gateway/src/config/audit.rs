//! `[audit]`: where the audit log goes, whether its lines are hash-chained,
//! the key that turns principals into pseudonyms, and what the gateway does
//! when the log cannot be written.
//!
//! # Defaults
//!
//! | key | default |
//! |---|---|
//! | `audit.output` | `"stdout"` |
//! | `audit.hash_chain` | `false` |
//! | `audit.pseudonym_key` | none: principals are logged as `null` (start-up warning) |
//! | `audit.on_failure` | [`DEFAULT_AUDIT_ON_FAILURE`] (`"refuse"`) |
//! | `audit.failure_log_interval` | [`DEFAULT_AUDIT_FAILURE_LOG_INTERVAL`] |
//! | `audit.file_mode` | [`DEFAULT_AUDIT_FILE_MODE`] (`0o600`) |
//! | `audit.flush_interval` | [`DEFAULT_AUDIT_FLUSH_INTERVAL`] (`"1ms"`) |

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{duration, Problems};
use crate::checks::secret::LoadContext;

/// What happens to traffic while the audit log cannot be written: refused
/// (503), so no request passes unaudited once the failure is known
/// (`docs/audit-and-metrics.md`, "When the audit log cannot be written").
pub const DEFAULT_AUDIT_ON_FAILURE: AuditOnFailure = AuditOnFailure::Refuse;
/// While the audit log keeps failing, one summary diagnostic line per this
/// interval (the first failure and the recovery are always logged).
pub const DEFAULT_AUDIT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The bounds of `audit.failure_log_interval`.
const FAILURE_LOG_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

/// The permissions an audit file is created with: the owner only, since its
/// lines hold client IP addresses (`docs/audit-and-metrics.md`). An
/// existing file keeps its own.
pub const DEFAULT_AUDIT_FILE_MODE: u32 = 0o600;
/// The permission bits `audit.file_mode` may hold: read and write only, and
/// the owner's read and write always.
const FILE_MODE_ALLOWED: u32 = 0o666;
const FILE_MODE_REQUIRED: u32 = 0o600;

/// How long a serving thread may hold an audit line in its buffer before
/// it is written with the others (`docs/audit-and-metrics.md`, "Batched
/// writes"): lines are flushed when the thread runs out of work, when a
/// line finds the oldest this old, or at 64 KiB. `"0s"` writes each line at
/// once.
pub const DEFAULT_AUDIT_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
/// The longest `audit.flush_interval`: what a crash may lose stays small.
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest pseudonym key accepted: 128 bits.
pub(super) const MIN_PSEUDONYM_KEY_BYTES: usize = 16;

/// `[audit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) output: Option<String>,
    pub(crate) hash_chain: Option<bool>,
    pub(crate) pseudonym_key: Option<RawSecret>,
    pub(crate) on_failure: Option<String>,
    pub(crate) failure_log_interval: Option<String>,
    pub(crate) file_mode: Option<u32>,
    pub(crate) flush_interval: Option<String>,
}

/// A secret named in the file: `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum RawSecret {
    Env(String),
    File(String),
}

/// Where audit lines are written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AuditOutput {
    /// The process's standard output (diagnostics go to stderr).
    Stdout,
    /// A file, opened for appending and reopened on `SIGHUP`.
    File(PathBuf),
}

/// `[audit]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Audit {
    pub(crate) output: AuditOutput,
    /// Each line carries `prev_hash` and `hash` (tamper evidence).
    pub(crate) hash_chain: bool,
    /// The HMAC key for principal pseudonyms; `None` logs no principal.
    pub(crate) pseudonym_key: Option<PseudonymKey>,
    /// Whether requests pass while the log cannot be written (reloadable).
    pub(crate) on_failure: AuditOnFailure,
    /// One summary diagnostic per this interval while writes keep failing.
    pub(crate) failure_log_interval: Duration,
    /// The permissions a new audit file is created with (restart-only).
    pub(crate) file_mode: u32,
    /// How long a serving thread may buffer a line; zero: no buffering.
    pub(crate) flush_interval: Duration,
}

impl Audit {
    /// Whether going from `self` to `next` needs a restart: everything but
    /// `on_failure`, which each request reads from the policy in force.
    pub(crate) fn needs_restart(&self, next: &Audit) -> bool {
        (
            &self.output,
            self.hash_chain,
            &self.pseudonym_key,
            self.failure_log_interval,
            self.file_mode,
            self.flush_interval,
        ) != (
            &next.output,
            next.hash_chain,
            &next.pseudonym_key,
            next.failure_log_interval,
            next.file_mode,
            next.flush_interval,
        )
    }
}

/// `audit.on_failure`: may a request pass while the audit log cannot be
/// written?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOnFailure {
    /// No: answered 503 with `Retry-After` until a write succeeds again.
    Refuse,
    /// Yes: served as usual; the lost lines are counted and noted in a gap
    /// record when writing resumes.
    Continue,
}

/// The pseudonym HMAC key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq)]
pub(crate) struct PseudonymKey(pub(crate) Vec<u8>);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

pub(super) fn validate_audit(
    raw: RawAudit,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Audit {
    let output = match raw.output.as_deref() {
        None | Some("stdout") => AuditOutput::Stdout,
        Some(path) if path.starts_with('/') => AuditOutput::File(PathBuf::from(path)),
        Some(other) => {
            problems.push(
                "audit.output",
                format_args!("`{other}` is neither \"stdout\" nor an absolute file path"),
            );
            AuditOutput::Stdout
        }
    };
    let pseudonym_key = raw
        .pseudonym_key
        .and_then(|secret| read_key(secret, ctx, problems));
    let on_failure = match raw.on_failure.as_deref() {
        None => DEFAULT_AUDIT_ON_FAILURE,
        Some("refuse") => AuditOnFailure::Refuse,
        Some("continue") => AuditOnFailure::Continue,
        Some(other) => {
            problems.push(
                "audit.on_failure",
                format_args!("`{other}` is neither \"refuse\" nor \"continue\""),
            );
            DEFAULT_AUDIT_ON_FAILURE
        }
    };
    const KEY: &str = "audit.failure_log_interval";
    let failure_log_interval = duration(
        raw.failure_log_interval,
        KEY,
        DEFAULT_AUDIT_FAILURE_LOG_INTERVAL,
        problems,
    );
    let (min, max) = FAILURE_LOG_INTERVAL_RANGE;
    if !(min..=max).contains(&failure_log_interval) {
        problems.push(KEY, "must be between 1s and 1h");
    }
    let file_mode = raw.file_mode.unwrap_or(DEFAULT_AUDIT_FILE_MODE);
    if file_mode & !FILE_MODE_ALLOWED != 0 || file_mode & FILE_MODE_REQUIRED != FILE_MODE_REQUIRED {
        problems.push(
            "audit.file_mode",
            format_args!(
                "{file_mode:#o}: must give the owner read and write and nobody execute \
                 (between 0o600 and 0o666; write it as an octal number, e.g. 0o640)"
            ),
        );
    }
    let flush_interval = duration(
        raw.flush_interval,
        "audit.flush_interval",
        DEFAULT_AUDIT_FLUSH_INTERVAL,
        problems,
    );
    if flush_interval > MAX_FLUSH_INTERVAL {
        problems.push(
            "audit.flush_interval",
            "must be at most 1s (\"0s\" writes each line at once)",
        );
    }
    Audit {
        output,
        hash_chain: raw.hash_chain.unwrap_or(false),
        pseudonym_key,
        on_failure,
        failure_log_interval,
        file_mode,
        flush_interval,
    }
}

fn read_key(
    secret: RawSecret,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<PseudonymKey> {
    const KEY: &str = "audit.pseudonym_key";
    // Never echo the value itself in a problem message.
    let text = match secret {
        RawSecret::Env(name) => match std::env::var(&name) {
            Ok(value) => value,
            Err(_) => {
                problems.push(
                    KEY,
                    format_args!("environment variable `{name}` is not set"),
                );
                return None;
            }
        },
        // Relative to the policy file, like every other file it names.
        RawSecret::File(path) => match std::fs::read_to_string(ctx.resolve(Path::new(&path))) {
            Ok(value) => value,
            Err(error) => {
                problems.push(
                    KEY,
                    format_args!(
                        "cannot read {}: {}",
                        crate::checks::problems::shown_path(std::path::Path::new(&path)),
                        crate::checks::problems::io_text(&error)
                    ),
                );
                return None;
            }
        },
    };
    let key = text.trim().as_bytes().to_vec();
    if key.len() < MIN_PSEUDONYM_KEY_BYTES {
        problems.push(
            KEY,
            format_args!("must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes"),
        );
        return None;
    }
    Some(PseudonymKey(key))
}
