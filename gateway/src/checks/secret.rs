//! Secrets (the API-key pepper, HMAC keys for JWTs): read once at start-up
//! from an environment variable or a file, never from the policy file.
//!
//! The policy file only names where a secret lives:
//! `pepper = { env = "TRADEHABIT_API_KEY_PEPPER" }` or
//! `pepper = { file = "/run/secrets/pepper" }`. The value is held in a
//! [`Secret`], whose `Debug` prints a placeholder, so it cannot leak
//! through a log line or a panic message.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::problems::{join, Problems};

/// The shortest secret accepted for keyed hashes and HMAC-signed tokens:
/// 32 bytes, the output size of SHA-256 (RFC 7518 §3.2 requires at least
/// the hash size for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// Secret bytes. `Debug` never shows them; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret bytes, for the one place that uses them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from, as written in the policy file: exactly one of
/// `env` or `file`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSourceRaw {
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// Path of a file holding the secret (relative paths are resolved
    /// against the policy file's directory). One trailing newline is
    /// ignored.
    pub file: Option<PathBuf>,
}

/// Where validation reads environment variables and files from. Start-up
/// passes the real process environment; tests pass a map.
pub trait Environment {
    /// The value of an environment variable, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// What validation needs from the outside world: the environment and the
/// directory that relative file paths are resolved against.
pub struct LoadContext<'a> {
    /// Environment variables.
    pub env: &'a dyn Environment,
    /// The policy file's directory.
    pub base_dir: PathBuf,
}

impl LoadContext<'_> {
    /// Resolves a path from the policy file.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Reads a file named in the policy, reporting a problem at `path_key`
    /// when it cannot be read. The message names the file but never its
    /// contents.
    pub fn read_file(
        &self,
        file: &Path,
        path_key: &str,
        problems: &mut Problems,
    ) -> Option<Vec<u8>> {
        let resolved = self.resolve(file);
        match std::fs::read(&resolved) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                problems.push(
                    path_key,
                    format!(
                        "cannot read {}: {}",
                        super::problems::shown_path(&resolved),
                        super::problems::io_text(&err)
                    ),
                );
                None
            }
        }
    }
}

/// Loads the secret at `path` (a key path such as `api_keys.pepper`),
/// requiring at least `min_bytes` bytes. Every problem is reported; the
/// secret's value never appears in a message.
pub fn load(
    raw: &SecretSourceRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    min_bytes: usize,
    problems: &mut Problems,
) -> Option<Secret> {
    let bytes = match (&raw.env, &raw.file) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push(path, "give exactly one of `env` or `file`");
            return None;
        }
        (Some(name), None) => match ctx.env.var(name) {
            Some(value) => value.into_bytes(),
            None => {
                problems.push(
                    join(path, "env"),
                    format!("environment variable {name} is not set"),
                );
                return None;
            }
        },
        (None, Some(file)) => {
            let mut bytes = ctx.read_file(file, &join(path, "file"), problems)?;
            // Editors and `echo` add a final newline; it is never part of the secret.
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            bytes
        }
    };
    if bytes.len() < min_bytes {
        problems.push(
            path,
            format!(
                "the secret is {} bytes long; at least {min_bytes} are required",
                bytes.len()
            ),
        );
        return None;
    }
    Some(Secret(bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A context with the given environment and a base directory.
    pub(crate) fn context<'a>(env: &'a HashMap<String, String>, base: &Path) -> LoadContext<'a> {
        LoadContext {
            env,
            base_dir: base.to_owned(),
        }
    }

    pub(crate) fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn from_env(name: &str) -> SecretSourceRaw {
        SecretSourceRaw {
            env: Some(name.to_owned()),
            file: None,
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new(b"super-secret-value".to_vec());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn loads_from_env() {
        let env = env_of(&[("PEPPER", &"p".repeat(32))]);
        let ctx = context(&env, Path::new("/"));
        let mut problems = Problems::new();
        let secret = load(&from_env("PEPPER"), "pepper", &ctx, 32, &mut problems).unwrap();
        assert_eq!(secret.expose(), "p".repeat(32).as_bytes());
        assert!(problems.is_empty());
    }

    #[test]
    fn missing_env_and_short_secret_are_reported() {
        let env = env_of(&[("SHORT", "abc")]);
        let ctx = context(&env, Path::new("/"));
        let mut problems = Problems::new();
        assert!(load(&from_env("UNSET"), "a", &ctx, 32, &mut problems).is_none());
        assert!(load(&from_env("SHORT"), "b", &ctx, 32, &mut problems).is_none());
        assert!(problems.has("a.env"));
        assert!(problems.has("b"));
        assert!(!problems.to_string().contains("abc"), "{problems}");
    }

    #[test]
    fn both_or_neither_source_is_a_problem() {
        let env = env_of(&[]);
        let ctx = context(&env, Path::new("/"));
        let mut problems = Problems::new();
        let both = SecretSourceRaw {
            env: Some("X".into()),
            file: Some("x".into()),
        };
        let neither = SecretSourceRaw {
            env: None,
            file: None,
        };
        assert!(load(&both, "a", &ctx, 1, &mut problems).is_none());
        assert!(load(&neither, "b", &ctx, 1, &mut problems).is_none());
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn file_is_relative_to_the_policy_and_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pepper"), format!("{}\r\n", "q".repeat(40))).unwrap();
        let env = env_of(&[]);
        let ctx = context(&env, dir.path());
        let mut problems = Problems::new();
        let raw = SecretSourceRaw {
            env: None,
            file: Some("pepper".into()),
        };
        let secret = load(&raw, "pepper", &ctx, 32, &mut problems).unwrap();
        assert_eq!(secret.expose(), "q".repeat(40).as_bytes());
    }

    #[test]
    fn unreadable_file_is_reported() {
        let env = env_of(&[]);
        let ctx = context(&env, Path::new("/nonexistent-dir"));
        let mut problems = Problems::new();
        let raw = SecretSourceRaw {
            env: None,
            file: Some("pepper".into()),
        };
        assert!(load(&raw, "pepper", &ctx, 32, &mut problems).is_none());
        assert!(problems.has("pepper.file"));
    }
}
