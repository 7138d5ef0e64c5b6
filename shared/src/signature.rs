//! The gateway's signature on a forwarded request, checked by the worker.
//!
//! With a shared key configured on both sides (`[upstream] hmac_key` in the
//! gateway's policy, `--hmac-key-file` for the worker), the gateway adds
//! [`SIGNATURE`] to every request it forwards:
//!
//! ```text
//! x-tradehabit-signature: t=<unix seconds>,v1=<64 hex digits>
//! ```
//!
//! The digest is HMAC-SHA256 under the key over [`canonical`]: a version
//! line, the timestamp, the method, the path and query, and then one line
//! per header in [`SIGNED_HEADERS`] (the identity the gateway vouches for and
//! the request id), `+value` when present and `-` when absent, so that
//! adding or removing an identity header breaks the signature. Header values
//! cannot contain a line feed, so the lines cannot be shifted into each
//! other. The worker recomputes it with the same function and accepts the
//! request only when the digest matches and the timestamp lies within its
//! window (replay of a captured request is bounded by that window).
//!
//! The key is held in a [`Key`], whose `Debug` never shows it.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::headers::SIGNATURE;
use crate::headers::{AUTH_METHOD, PRINCIPAL, REQUEST_ID, SCOPES};

/// The headers covered by the signature, in canonical order.
pub const SIGNED_HEADERS: [&str; 4] = [PRINCIPAL, SCOPES, AUTH_METHOD, REQUEST_ID];

/// The shortest key accepted: 32 bytes, the output size of SHA-256.
pub const MIN_KEY_BYTES: usize = 32;

/// How far (seconds) a signature's timestamp may lie from the worker's
/// clock, either way, by default.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 30;

const VERSION: &str = "tradehabit-signature-v1";

/// A shared signing key. `Debug` never shows it; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Why a key could not be used. The messages never contain key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read the key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The error from the OS.
        source: std::io::Error,
    },
    /// The key is too short.
    #[error("the key is {0} bytes long; at least {MIN_KEY_BYTES} are required")]
    TooShort(usize),
}

impl Key {
    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Key, KeyError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Key(bytes))
    }

    /// Reads a key file; one final newline (`\n` or `\r\n`) is not part of
    /// the key, as for the gateway's other secret files.
    pub fn from_file(path: &Path) -> Result<Key, KeyError> {
        let mut bytes = std::fs::read(path).map_err(|source| KeyError::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Key::new(bytes)
    }

    fn mac(&self, canonical: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(canonical);
        mac
    }
}

/// What the signature covers of one request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The request target in origin form (path and query).
    pub path_and_query: &'a str,
    /// The values of [`SIGNED_HEADERS`], in that order; `None` when absent.
    pub headers: [Option<&'a [u8]>; SIGNED_HEADERS.len()],
}

/// The string the digest covers (see the module doc).
pub fn canonical(timestamp: u64, request: &Signed<'_>) -> Vec<u8> {
    let mut text = Vec::with_capacity(128);
    for line in [
        VERSION.as_bytes(),
        timestamp.to_string().as_bytes(),
        request.method.as_bytes(),
        request.path_and_query.as_bytes(),
    ] {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    for value in request.headers {
        match value {
            Some(value) => {
                text.push(b'+');
                text.extend_from_slice(value);
            }
            None => text.push(b'-'),
        }
        text.push(b'\n');
    }
    text
}

/// The [`SIGNATURE`] header value for `request` at `timestamp`.
pub fn sign(key: &Key, timestamp: u64, request: &Signed<'_>) -> String {
    let digest = key
        .mac(&canonical(timestamp, request))
        .finalize()
        .into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header.
    #[error("no signature")]
    Missing,
    /// The header is not `t=<seconds>,v1=<hex>`, or appears twice.
    #[error("malformed signature")]
    Malformed,
    /// The timestamp is outside the accepted window.
    #[error("signature timestamp outside the accepted window")]
    Stale,
    /// The digest does not match.
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// A short fixed label, for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Stale => "signature_stale",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// Checks a [`SIGNATURE`] header value against `request`, at `now` (unix
/// seconds), accepting timestamps at most `max_skew` seconds away. The
/// digest comparison takes constant time.
pub fn verify(
    key: &Key,
    value: &[u8],
    request: &Signed<'_>,
    now: u64,
    max_skew: u64,
) -> Result<(), SignatureError> {
    let text = std::str::from_utf8(value).map_err(|_| SignatureError::Malformed)?;
    let (timestamp, digest) = text
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .ok_or(SignatureError::Malformed)?;
    let timestamp: u64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    let digest = hex::decode(digest).map_err(|_| SignatureError::Malformed)?;
    if now.abs_diff(timestamp) > max_skew {
        return Err(SignatureError::Stale);
    }
    key.mac(&canonical(timestamp, request))
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

/// The current time in unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(vec![7u8; 32]).unwrap()
    }

    fn request<'a>(principal: Option<&'a [u8]>) -> Signed<'a> {
        Signed {
            method: "GET",
            path_and_query: "/api/trades?limit=5",
            headers: [principal, Some(b"read"), Some(b"api-key"), Some(b"rid-1")],
        }
    }

    #[test]
    fn a_signature_verifies_within_the_window_only() {
        let value = sign(&key(), 1_000, &request(Some(b"key:alice")));
        let check = |now| {
            verify(
                &key(),
                value.as_bytes(),
                &request(Some(b"key:alice")),
                now,
                30,
            )
        };
        assert_eq!(check(1_000), Ok(()));
        assert_eq!(check(1_030), Ok(()));
        assert_eq!(check(970), Ok(()));
        assert_eq!(check(1_031), Err(SignatureError::Stale));
        assert_eq!(check(969), Err(SignatureError::Stale));
    }

    #[test]
    fn any_change_to_the_covered_parts_breaks_it() {
        let value = sign(&key(), 1_000, &request(Some(b"key:alice")));
        let mismatch = |signed: Signed<'_>| verify(&key(), value.as_bytes(), &signed, 1_000, 30);
        assert_eq!(
            mismatch(request(Some(b"key:bob"))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(mismatch(request(None)), Err(SignatureError::Mismatch));
        assert_eq!(mismatch(request(Some(b""))), Err(SignatureError::Mismatch));
        let mut other = request(Some(b"key:alice"));
        other.method = "DELETE";
        assert_eq!(mismatch(other), Err(SignatureError::Mismatch));
        let mut other = request(Some(b"key:alice"));
        other.path_and_query = "/api/trades?limit=6";
        assert_eq!(mismatch(other), Err(SignatureError::Mismatch));
        let other_key = Key::new(vec![8u8; 32]).unwrap();
        assert_eq!(
            verify(
                &other_key,
                value.as_bytes(),
                &request(Some(b"key:alice")),
                1_000,
                30
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn absent_and_empty_headers_differ_in_the_canonical_string() {
        assert_ne!(
            canonical(1, &request(None)),
            canonical(1, &request(Some(b"")))
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for value in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "t=1;v1=00"] {
            assert_eq!(
                verify(&key(), value.as_bytes(), &request(None), 1, 30),
                Err(SignatureError::Malformed),
                "{value}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_and_debug_hides_the_key() {
        assert!(matches!(Key::new(vec![1; 31]), Err(KeyError::TooShort(31))));
        assert_eq!(format!("{:?}", key()), "Key(<redacted>)");
    }
}
