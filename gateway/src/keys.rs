//! The library side of the operator commands that manage API keys and read
//! the audit log's pseudonyms: `keygen` checked against the policy it is
//! for, with `--append` into the policy's keys file, and `pseudonym`
//! (`docs/configuration.md`, "API keys"; `docs/audit-and-metrics.md`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::checks::api_key::{self, GeneratedKey};
use crate::checks::secret::Secret;
use crate::config::Config;

/// Why `keygen` refused to make a key.
#[derive(Debug, thiserror::Error)]
pub enum KeygenRefused {
    /// No scope was given: the key could call no route that needs one.
    #[error("no scopes given (--scopes read,analyze); scopes the routes require: {}", list(.0))]
    NoScopes(BTreeSet<String>),
    /// A scope no route requires (a typo, most likely).
    #[error("no route requires the scope {scope:?}; scopes the routes require: {}", list(.known))]
    UnknownScope {
        /// The scope given.
        scope: String,
        /// Every scope some route requires.
        known: BTreeSet<String>,
    },
    /// A key with this id is listed already.
    #[error("a key with id {0:?} is listed already; revoke it or pick another id")]
    DuplicateId(String),
    /// `--append` but the policy names no keys file.
    #[error("--append: the policy has no [api_keys] keys_file to append to")]
    NoKeysFile,
    /// The id or a scope is malformed.
    #[error(transparent)]
    Malformed(#[from] api_key::KeygenError),
    /// The keys file could not be written.
    #[error("cannot append to {path}: {source}")]
    Append {
        /// The keys file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn list(scopes: &BTreeSet<String>) -> String {
    if scopes.is_empty() {
        return "none".to_string();
    }
    scopes.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Every scope some route of `config` requires.
pub fn required_scopes(config: &Config) -> BTreeSet<String> {
    config
        .routes
        .iter()
        .flat_map(|route| route.checks.scopes.iter().cloned())
        .collect()
}

/// A new key for `id` with `scopes`, hashed with the policy's pepper, after
/// checking that the scopes are ones the routes require and that the id is
/// new. With `append`, the entry is added to the policy's keys file; the
/// path written is returned with the key.
pub fn keygen(
    config: &Config,
    pepper: &Secret,
    id: &str,
    scopes: &[String],
    append: bool,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<(GeneratedKey, Option<PathBuf>), KeygenRefused> {
    let known = required_scopes(config);
    if scopes.is_empty() {
        return Err(KeygenRefused::NoScopes(known));
    }
    if let Some(scope) = scopes.iter().find(|scope| !known.contains(*scope)) {
        return Err(KeygenRefused::UnknownScope {
            scope: scope.clone(),
            known,
        });
    }
    let api_keys = config.checks.auth.api_keys();
    if api_keys.has_id(id) {
        return Err(KeygenRefused::DuplicateId(id.to_string()));
    }
    let keys_file = match (append, api_keys.keys_file()) {
        (false, _) => None,
        (true, None) => return Err(KeygenRefused::NoKeysFile),
        (true, Some(file)) => Some(file.to_path_buf()),
    };
    let key = api_key::keygen(pepper, id, scopes, rng)?;
    if let Some(path) = &keys_file {
        api_key::append_to_keys_file(path, &key.keys_file_entry).map_err(|source| {
            KeygenRefused::Append {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok((key, keys_file))
}
