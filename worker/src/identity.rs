//! Identity stage: who is calling, and the request id, from the headers the
//! gateway sets.
//!
//! The principal comes from [`headers::PRINCIPAL`]; no header means the one
//! shared anonymous space (the existing backend's behaviour). The worker
//! trusts the header only because the gateway is the only process that can
//! reach its socket. A principal never appears in clear in the logs: they
//! carry `Principal::tag`, a keyed hash prefix that is stable for the
//! lifetime of the process only.

use std::fmt;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use tradehabit_shared::headers;

use crate::refusal::Refusal;

/// The longest request id taken from `x-request-id`; longer or odd-looking
/// ids are replaced by a fresh one so that a caller cannot stuff the logs.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Hex characters of the keyed hash kept in log lines (48 bits: enough to
/// tell principals apart in one process's logs, too short to be a stable
/// identifier outside it).
const TAG_HEX_CHARS: usize = 12;

/// Whose data a request may see and change.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Principal {
    /// No principal header: the one space shared by every anonymous caller.
    Anonymous,
    /// The gateway's opaque principal string, as raw header bytes.
    Named(Box<[u8]>),
}

impl Principal {
    /// Reads the principal header.
    ///
    /// Fails (400) when the header is repeated, empty, or longer than
    /// [`headers::MAX_PRINCIPAL_BYTES`]: the gateway never sends such values,
    /// so they are a misconfiguration or an attempt to make the worker hold
    /// large keys.
    pub(crate) fn from_headers(map: &HeaderMap) -> Result<Self, Refusal> {
        let mut values = map.get_all(headers::PRINCIPAL).iter();
        let Some(value) = values.next() else {
            return Ok(Self::Anonymous);
        };
        if values.next().is_some() {
            return Err(Refusal::PrincipalRepeated);
        }
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return Err(Refusal::PrincipalEmpty);
        }
        if bytes.len() > headers::MAX_PRINCIPAL_BYTES {
            return Err(Refusal::PrincipalTooLong {
                max: headers::MAX_PRINCIPAL_BYTES,
            });
        }
        Ok(Self::Named(bytes.into()))
    }

    /// The pseudonym for log lines: `anonymous`, or the first hex characters
    /// of SHA-256(`key` ‖ principal).
    pub(crate) fn tag(&self, key: &TagKey) -> String {
        match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::Named(bytes) => {
                let digest = Sha256::new()
                    .chain_update(key.0)
                    .chain_update(bytes)
                    .finalize();
                let mut text = hex::encode(digest);
                text.truncate(TAG_HEX_CHARS);
                text
            }
        }
    }
}

/// Never prints the principal: `Debug` output can end up in logs.
impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Principal::Anonymous"),
            Self::Named(bytes) => write!(f, "Principal::Named(<{} bytes>)", bytes.len()),
        }
    }
}

/// The per-process secret that keys [`Principal::tag`], so that a tag cannot
/// be reversed by hashing guessed principal ids.
#[derive(Clone)]
pub(crate) struct TagKey([u8; 32]);

impl TagKey {
    /// A fresh random key (two UUIDv4s: 244 random bits).
    pub(crate) fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(key)
    }
}

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(<redacted>)")
    }
}

/// The request id for the log line: the gateway's `x-request-id` when it is
/// 1 to [`MAX_REQUEST_ID_BYTES`] visible ASCII characters, otherwise a fresh
/// UUIDv7.
pub(crate) fn request_id(map: &HeaderMap) -> String {
    map.get(headers::REQUEST_ID)
        .map(|value| value.as_bytes())
        .filter(|bytes| {
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID_BYTES
                && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_principal(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                headers::PRINCIPAL,
                HeaderValue::from_bytes(value).expect("test values are valid header bytes"),
            );
        }
        map
    }

    #[test]
    fn no_header_is_the_anonymous_space() {
        assert_eq!(
            Principal::from_headers(&HeaderMap::new()).unwrap(),
            Principal::Anonymous
        );
    }

    #[test]
    fn a_principal_of_the_maximum_length_is_accepted_and_one_more_byte_is_not() {
        let max = vec![b'a'; headers::MAX_PRINCIPAL_BYTES];
        assert!(Principal::from_headers(&with_principal(&[&max])).is_ok());
        let over = vec![b'a'; headers::MAX_PRINCIPAL_BYTES + 1];
        assert!(matches!(
            Principal::from_headers(&with_principal(&[&over])),
            Err(Refusal::PrincipalTooLong { .. })
        ));
    }

    #[test]
    fn empty_and_repeated_principals_are_refused() {
        assert!(matches!(
            Principal::from_headers(&with_principal(&[b""])),
            Err(Refusal::PrincipalEmpty)
        ));
        assert!(matches!(
            Principal::from_headers(&with_principal(&[b"a", b"b"])),
            Err(Refusal::PrincipalRepeated)
        ));
    }

    #[test]
    fn tags_are_stable_per_key_distinct_per_principal_and_never_the_principal() {
        let key = TagKey::random();
        let alice = Principal::Named(b"jwt:issuer|alice".as_slice().into());
        let bob = Principal::Named(b"jwt:issuer|bob".as_slice().into());
        assert_eq!(alice.tag(&key), alice.tag(&key));
        assert_ne!(alice.tag(&key), bob.tag(&key));
        assert_ne!(alice.tag(&key), alice.tag(&TagKey::random()));
        assert_eq!(alice.tag(&key).len(), TAG_HEX_CHARS);
        assert!(!format!("{alice:?}").contains("alice"));
    }

    #[test]
    fn request_ids_are_taken_only_when_short_and_visible() {
        let mut map = HeaderMap::new();
        map.insert(headers::REQUEST_ID, HeaderValue::from_static("req-42"));
        assert_eq!(request_id(&map), "req-42");
        map.insert(headers::REQUEST_ID, HeaderValue::from_static("two words"));
        assert_ne!(request_id(&map), "two words");
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        map.insert(headers::REQUEST_ID, HeaderValue::from_str(&long).unwrap());
        assert_ne!(request_id(&map), long);
    }
}
