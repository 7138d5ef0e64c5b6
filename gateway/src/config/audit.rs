//! `[audit]`: where the audit log goes, whether its lines are hash-chained,
//! and the key that turns principals into pseudonyms.
//!
//! # Defaults
//!
//! | key | default |
//! |---|---|
//! | `audit.output` | `"stdout"` |
//! | `audit.hash_chain` | `false` |
//! | `audit.pseudonym_key` | none: principals are logged as `null` (start-up warning) |

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::Problems;

/// The shortest pseudonym key accepted: 128 bits.
pub(super) const MIN_PSEUDONYM_KEY_BYTES: usize = 16;

/// `[audit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) output: Option<String>,
    pub(crate) hash_chain: Option<bool>,
    pub(crate) pseudonym_key: Option<RawSecret>,
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
}

/// The pseudonym HMAC key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq)]
pub(crate) struct PseudonymKey(pub(crate) Vec<u8>);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

pub(super) fn validate_audit(raw: RawAudit, problems: &mut Problems) -> Audit {
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
        .and_then(|secret| read_key(secret, problems));
    Audit {
        output,
        hash_chain: raw.hash_chain.unwrap_or(false),
        pseudonym_key,
    }
}

fn read_key(secret: RawSecret, problems: &mut Problems) -> Option<PseudonymKey> {
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
        RawSecret::File(path) => match std::fs::read_to_string(&path) {
            Ok(value) => value,
            Err(error) => {
                problems.push(KEY, format_args!("cannot read `{path}`: {error}"));
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
