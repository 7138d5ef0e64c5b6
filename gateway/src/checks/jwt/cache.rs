//! Tokens already verified, so a client that sends the same bearer token on
//! every request pays for the signature and the JSON claims once.
//!
//! What is cached is only the outcome of a *successful* [`super::JwtVerifier::verify`]
//! (issuer, subject, scopes), keyed by the whole token text:
//! * a hit needs the exact same token: the entry is found by a keyed hash
//!   of the token and then compared in constant time, so a token that
//!   differs in any byte (a forged signature, edited claims) is never served
//!   from here and goes through full verification;
//! * an entry is used only while `now < exp` — never the leeway: the cache
//!   can only shorten a token's life, never extend it; `nbf` was already in
//!   the past when the token was verified;
//! * every check that can change while a token is valid (a revoked API key
//!   behind a gateway-issued token, scopes of the route) runs after
//!   verification, on the cached outcome too;
//! * the cache belongs to one loaded policy: a reload (new keys, issuers,
//!   audiences) starts with an empty one;
//! * it holds at most [`CAPACITY`] tokens; when full it is emptied, so a
//!   flood of distinct valid tokens costs memory no larger than that.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use subtle::ConstantTimeEq;

use super::VerifiedToken;

/// Most tokens remembered at once.
pub(crate) const CAPACITY: usize = 4096;

/// Verified tokens by keyed hash of their text.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    hasher: RandomState,
    entries: Mutex<HashMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    token: Box<[u8]>,
    verified: VerifiedToken,
    /// The token's `exp`, seconds since the epoch.
    expires: u64,
}

impl TokenCache {
    /// The verified outcome for exactly `token`, if it is cached and `now`
    /// (seconds since the epoch) is before its `exp`.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<VerifiedToken> {
        let key = self.hasher.hash_one(token.as_bytes());
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(&key)?;
        if !bool::from(entry.token.ct_eq(token.as_bytes())) {
            return None;
        }
        if now >= entry.expires {
            entries.remove(&key);
            return None;
        }
        Some(entry.verified.clone())
    }

    /// Remembers a token that passed every check and expires at `expires`.
    pub(crate) fn insert(&self, token: &str, verified: &VerifiedToken, expires: u64) {
        let key = self.hasher.hash_one(token.as_bytes());
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                token: token.as_bytes().into(),
                verified: verified.clone(),
                expires,
            },
        );
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |entries| entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::jwt::IssuerOrigin;

    fn verified(subject: &str) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://idp.example/".into(),
            origin: IssuerOrigin::External,
            subject: subject.into(),
            scopes: ["read".to_owned()].into(),
            gateway_kind: None,
        }
    }

    #[test]
    fn a_cached_token_is_served_until_its_exp_and_not_after() {
        let cache = TokenCache::default();
        cache.insert("a.b.c", &verified("alice"), 1_000);
        assert_eq!(cache.get("a.b.c", 999), Some(verified("alice")));
        assert_eq!(cache.get("a.b.c", 1_000), None, "exp itself is too late");
        assert_eq!(cache.get("a.b.c", 999), None, "an expired entry is dropped");
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = TokenCache::default();
        cache.insert("a.b.c", &verified("alice"), 1_000);
        for other in ["a.b.C", "a.b.c ", "a.b.", "a.b.cc", ""] {
            assert_eq!(cache.get(other, 0), None, "{other:?}");
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = TokenCache::default();
        for i in 0..CAPACITY * 2 + 7 {
            cache.insert(&format!("t.{i}.s"), &verified("x"), u64::MAX);
            assert!(cache.len() <= CAPACITY);
        }
        let last = format!("t.{}.s", CAPACITY * 2 + 6);
        assert!(cache.get(&last, 0).is_some(), "the newest entry survives");
    }
}
