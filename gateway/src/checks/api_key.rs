//! Authentication by API key (`X-API-Key`).
//!
//! The policy file stores, per key, only `HMAC-SHA256(pepper, key)` in hex,
//! with an id, scopes and an optional expiry or revocation. The pepper comes
//! from the environment or a file, so a leaked policy file alone does not
//! let anyone test key guesses offline.
//!
//! Lookup is constant-time with respect to which key matched: the presented
//! key's HMAC is compared (with `subtle`) against **every** stored hash, and
//! the index of the match is selected without branching. A design with a
//! public key-id prefix (`th_<id>_<secret>`) would allow a map lookup, but
//! it would reveal key ids in logs and URLs and the key count here is small
//! (tens), so comparing against all of them costs nothing measurable.
//! Revocation and expiry are checked after the match; the client sees the
//! same generic 401 for all failures, the audit log the precise reason.
//!
//! [`keygen`] makes a new key: 32 random bytes, base64url, prefix `th_`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use serde::Deserialize;
use sha2::Sha256;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::is_scope_token;
use super::problems::{index, join, Problems};
use super::secret::{self, LoadContext, Secret, SecretSourceRaw, MIN_SECRET_BYTES};

/// Prefix of generated keys, so they are recognisable in secret scanners.
pub const KEY_PREFIX: &str = "th_";

/// Random bytes in a generated key.
pub const KEY_RANDOM_BYTES: usize = 32;

/// Longest `X-API-Key` value considered; longer values are refused without
/// hashing.
pub const MAX_PRESENTED_KEY_BYTES: usize = 256;

/// Longest key id.
const MAX_ID_CHARS: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// The `[api_keys]` section as written in the policy file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysRaw {
    /// Where the pepper lives; required when any key is listed.
    pub pepper: Option<SecretSourceRaw>,
    /// The keys, as printed by `tradehabit-gateway keygen`.
    #[serde(default)]
    pub keys: Vec<ApiKeyRaw>,
    /// A file of more `[[keys]]` entries, relative to the policy file
    /// (`keys_file.rs`); read again on every reload.
    pub keys_file: Option<String>,
}

/// One key entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRaw {
    /// Stable, non-secret name (`[A-Za-z0-9._-]`, at most 64 characters);
    /// the principal is `key:<id>`.
    pub id: String,
    /// `HMAC-SHA256(pepper, key)`, 64 hex digits.
    pub hash: String,
    /// Scopes granted to the key.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 3339 instant after which the key is refused.
    pub expires: Option<String>,
    /// Refuse the key (kept in the file so the audit log can name it).
    #[serde(default)]
    pub revoked: bool,
}

/// A validated key entry.
#[derive(Clone, PartialEq, Eq)]
struct StoredKey {
    id: String,
    hash: [u8; 32],
    scopes: BTreeSet<String>,
    expires: Option<OffsetDateTime>,
    revoked: bool,
}

/// The validated key set.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    pepper: Option<Secret>,
    keys: Vec<StoredKey>,
    /// `keys_file`, resolved against the policy file's directory.
    keys_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("ApiKeys")
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

/// A key that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    /// The key's id.
    pub id: String,
    /// The key's scopes.
    pub scopes: BTreeSet<String>,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Too long, or not printable ASCII.
    #[error("malformed API key")]
    Malformed,
    /// No stored hash matches.
    #[error("unknown API key")]
    Unknown,
    /// The key matched but is revoked.
    #[error("revoked API key {id}")]
    Revoked {
        /// The key's id.
        id: String,
    },
    /// The key matched but has expired.
    #[error("expired API key {id}")]
    Expired {
        /// The key's id.
        id: String,
    },
}

impl ApiKeyError {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "api_key.malformed",
            Self::Unknown => "api_key.unknown",
            Self::Revoked { .. } => "api_key.revoked",
            Self::Expired { .. } => "api_key.expired",
        }
    }

    /// The key id for the audit log, when one matched.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Self::Revoked { id } | Self::Expired { id } => Some(id),
            Self::Malformed | Self::Unknown => None,
        }
    }
}

/// Validates `[api_keys]` at key path `path`, loading the pepper.
pub fn validate(
    raw: &ApiKeysRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<ApiKeys> {
    let before = problems.len();
    let mut listed = raw.keys.clone();
    if let Some(file) = &raw.keys_file {
        listed.extend(keys_file::load(file, path, ctx, problems));
    }
    // The pepper is only read when there are keys to check; `keygen` reads
    // it on its own.
    let pepper = match &raw.pepper {
        Some(_) if listed.is_empty() => None,
        Some(source) => secret::load(
            source,
            &join(path, "pepper"),
            ctx,
            MIN_SECRET_BYTES,
            problems,
        ),
        None if listed.is_empty() => None,
        None => {
            problems.push(
                join(path, "pepper"),
                "keys are listed but no pepper is configured (pepper = { env = \"…\" })",
            );
            None
        }
    };

    let keys_path = join(path, "keys");
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut keys = Vec::new();
    let inline = raw.keys.len();
    for (i, key) in listed.iter().enumerate() {
        let key_path = match i.checked_sub(inline) {
            None => index(&keys_path, i),
            Some(i) => format!("{}[{i}]", join(path, "keys_file")),
        };
        if let Some(stored) = validate_key(key, &key_path, problems) {
            if !ids.insert(stored.id.clone()) {
                problems.push(
                    join(&key_path, "id"),
                    format!("id {:?} is used twice", stored.id),
                );
            }
            if !hashes.insert(stored.hash) {
                problems.push(join(&key_path, "hash"), "the same hash is listed twice");
            }
            keys.push(stored);
        }
    }
    let keys_file = raw
        .keys_file
        .as_ref()
        .map(|file| ctx.resolve(std::path::Path::new(file)));
    (problems.len() == before).then_some(ApiKeys {
        pepper,
        keys,
        keys_file,
    })
}

/// Loads the pepper of an `[api_keys]` section (for `keygen`), reporting a
/// missing or unusable one at `path.pepper`.
pub fn load_pepper(
    raw: &ApiKeysRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<Secret> {
    let pepper_path = join(path, "pepper");
    match &raw.pepper {
        Some(source) => secret::load(source, &pepper_path, ctx, MIN_SECRET_BYTES, problems),
        None => {
            problems.push(
                pepper_path,
                "no pepper is configured (pepper = { env = \"…\" })",
            );
            None
        }
    }
}

fn validate_key(raw: &ApiKeyRaw, path: &str, problems: &mut Problems) -> Option<StoredKey> {
    let before = problems.len();
    if !is_valid_id(&raw.id) {
        problems.push(
            join(path, "id"),
            format!(
                "{:?} must be 1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 . _ -",
                raw.id
            ),
        );
    }
    let mut hash = [0u8; 32];
    if hex::decode_to_slice(&raw.hash, &mut hash).is_err() {
        problems.push(
            join(path, "hash"),
            "must be 64 hex digits (HMAC-SHA256), as printed by keygen",
        );
    }
    let scopes_path = join(path, "scopes");
    for (i, scope) in raw.scopes.iter().enumerate() {
        if !is_scope_token(scope) {
            problems.push(
                index(&scopes_path, i),
                format!("{scope:?} is not a valid scope"),
            );
        }
    }
    let expires = raw.expires.as_ref().and_then(|text| {
        OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| {
                problems.push(
                    join(path, "expires"),
                    format!("{text:?} is not an RFC 3339 date-time such as 2026-01-31T00:00:00Z"),
                )
            })
            .ok()
    });
    (problems.len() == before).then(|| StoredKey {
        id: raw.id.clone(),
        hash,
        scopes: raw.scopes.iter().cloned().collect(),
        expires,
        revoked: raw.revoked,
    })
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn keyed_hash(pepper: &Secret, key: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(pepper.expose()).expect("HMAC accepts any key length");
    mac.update(key);
    mac.finalize().into_bytes().into()
}

impl ApiKeys {
    /// A set with no keys: every presented key is unknown.
    pub fn empty() -> Self {
        Self {
            pepper: None,
            keys: Vec::new(),
            keys_file: None,
        }
    }

    /// Whether a key with this id is listed (inline or in the keys file).
    pub fn has_id(&self, id: &str) -> bool {
        self.keys.iter().any(|key| key.id == id)
    }

    /// The keys file the policy includes, resolved (`keys_file.rs`).
    pub fn keys_file(&self) -> Option<&std::path::Path> {
        self.keys_file.as_deref()
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a presented `X-API-Key` value at instant `now`.
    pub fn check(&self, presented: &[u8], now: OffsetDateTime) -> Result<KeyMatch, ApiKeyError> {
        if presented.is_empty()
            || presented.len() > MAX_PRESENTED_KEY_BYTES
            || !presented.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(ApiKeyError::Malformed);
        }
        let Some(pepper) = &self.pepper else {
            return Err(ApiKeyError::Unknown);
        };
        let digest = keyed_hash(pepper, presented);

        // Compare against every key; remember the match without branching.
        let mut found = subtle::Choice::from(0);
        let mut found_index = 0u32;
        for (i, key) in self.keys.iter().enumerate() {
            let is_match = digest[..].ct_eq(&key.hash[..]);
            let i = u32::try_from(i).expect("fewer than 2^32 keys");
            found_index.conditional_assign(&i, is_match);
            found |= is_match;
        }
        if !bool::from(found) {
            return Err(ApiKeyError::Unknown);
        }
        let key = &self.keys[found_index as usize];
        if key.revoked {
            return Err(ApiKeyError::Revoked { id: key.id.clone() });
        }
        if key.expires.is_some_and(|expires| now >= expires) {
            return Err(ApiKeyError::Expired { id: key.id.clone() });
        }
        Ok(KeyMatch {
            id: key.id.clone(),
            scopes: key.scopes.clone(),
        })
    }

    /// The current state of the key `id`: its scopes if it exists and is
    /// neither revoked nor expired at `now`. Used to re-check keys behind
    /// tokens obtained by exchanging a key.
    pub fn active_scopes(&self, id: &str, now: OffsetDateTime) -> Option<&BTreeSet<String>> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .filter(|k| !k.revoked && k.expires.is_none_or(|e| now < e))
            .map(|k| &k.scopes)
    }
}

impl ApiKeys {
    /// A copy with one more key, made now and returned with it: a dry
    /// run's stand-in for a caller holding `scopes` (`explain
    /// --caller-scopes`, the policy tests' `[callers]`). It is hashed with
    /// the configured pepper, or with a throwaway one when none is.
    pub(crate) fn with_probe_key(
        &self,
        id: &str,
        scopes: &[String],
    ) -> Result<(ApiKeys, String), KeygenError> {
        let pepper = self.pepper.clone().unwrap_or_else(|| {
            let mut random = [0u8; KEY_RANDOM_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut random);
            Secret::new(random.to_vec())
        });
        let generated = keygen(&pepper, id, scopes, &mut rand::rngs::OsRng)?;
        let mut keys = self.clone();
        keys.keys.push(StoredKey {
            id: id.to_owned(),
            hash: keyed_hash(&pepper, generated.key.as_bytes()),
            scopes: scopes.iter().cloned().collect(),
            expires: None,
            revoked: false,
        });
        keys.pepper = Some(pepper);
        Ok((keys, generated.key))
    }
}

/// A freshly generated key: shown once, never stored by the gateway.
pub struct GeneratedKey {
    /// The key to hand to the client.
    pub key: String,
    /// The entry to paste into `[api_keys] keys = [...]`.
    pub policy_entry: String,
    /// The same entry as a `[[keys]]` table for `[api_keys] keys_file`.
    pub keys_file_entry: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key", &"<redacted>")
            .field("policy_entry", &self.policy_entry)
            .finish()
    }
}

/// Why `keygen` refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeygenError {
    /// The id is not usable.
    #[error("the id must be 1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 . _ -")]
    BadId,
    /// A scope is not a valid scope token.
    #[error("{0:?} is not a valid scope")]
    BadScope(String),
}

/// Makes a new random key and its policy entry, hashed with `pepper`.
pub fn keygen<R: RngCore + CryptoRng>(
    pepper: &Secret,
    id: &str,
    scopes: &[String],
    rng: &mut R,
) -> Result<GeneratedKey, KeygenError> {
    if !is_valid_id(id) {
        return Err(KeygenError::BadId);
    }
    if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(KeygenError::BadScope(bad.clone()));
    }
    let mut random = [0u8; KEY_RANDOM_BYTES];
    rng.fill_bytes(&mut random);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let hash = hex::encode(keyed_hash(pepper, key.as_bytes()));
    let scopes_toml: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    let policy_entry = format!(
        "{{ id = \"{id}\", hash = \"{hash}\", scopes = [{}] }}",
        scopes_toml.join(", ")
    );
    let keys_file_entry = keys_file::entry(id, &hash, scopes);
    Ok(GeneratedKey {
        key,
        policy_entry,
        keys_file_entry,
    })
}

mod keys_file;
pub use keys_file::append as append_to_keys_file;

#[cfg(test)]
mod tests;
