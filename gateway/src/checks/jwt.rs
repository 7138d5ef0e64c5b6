//! Authentication by bearer JWT (`Authorization: Bearer …`), with
//! jsonwebtoken.
//!
//! In: the token text. Out: the verified issuer, subject and scopes, or the
//! precise reason it was refused. Only keys the operator configured are
//! used (HMAC secrets from the environment or a file; RSA, EC and Ed25519
//! public keys from PEM files or a local JWKS file); nothing is fetched.
//!
//! The order of the checks, and why:
//! 1. Size: tokens over [`MAX_TOKEN_BYTES`] are refused before decoding.
//! 2. Header, parsed by us: `alg: none` is refused by name; `jku`, `x5u`,
//!    `jwk`, `x5c` (keys from the token itself) and `crit` (extensions we
//!    do not implement) are refused outright (ASVS 9.1.3).
//! 3. Issuer: the unverified `iss` claim selects one configured issuer;
//!    unknown issuers are refused. Only that issuer's keys are candidates.
//! 4. Algorithm: must be in that issuer's allowlist **and** match the
//!    selected key's type. An HMAC key is only ever built from a configured
//!    secret, never from a public key, so the classic confusion (an RSA
//!    public key used as an HS256 secret) cannot verify; a secret that looks
//!    like a PEM key is refused at validation.
//! 5. Key: chosen by `kid`; an unknown `kid` is refused (no fallback).
//! 6. Signature and claims (jsonwebtoken, configured strictly, unlike its
//!    defaults): `exp`, `iss`, `aud`, `sub` required; `nbf` validated;
//!    `iss` equal to the issuer, `aud` one of its audiences; leeway default
//!    [`DEFAULT_LEEWAY_SECONDS`], at most [`MAX_LEEWAY_SECONDS`].
//! 7. Type: when the issuer sets `required_typ` (RFC 9068 access tokens:
//!    `at+jwt`), the header's `typ` must be that media type, compared
//!    case-insensitively with an optional `application/` prefix; a missing
//!    `typ` is refused too. Checked last, so only a token that is otherwise
//!    valid learns (in the envelope) which type is expected: an ID token or
//!    another JWT of the same issuer cannot pass as an access token.
//!
//! Scopes come from `scope` (space-separated) and `scp` (array or string).
//!
//! A token that passed all of this is remembered until its `exp`
//! (`jwt/cache.rs`), so the same token on the next request costs a keyed
//! hash and a constant-time comparison instead of a signature check and
//! three JSON parses.
//!
//! The parts: [`validate`] turns the `[jwt]` section into issuers
//! (`jwt/issuers.rs`), loading their keys from PEM and JWKS files
//! (`jwt/keys.rs`); [`JwtVerifier::verify`] runs the checks above
//! (`jwt/verify.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::secret::{Secret, SecretSourceRaw};

mod cache;
mod issuers;
mod keys;
#[cfg(test)]
mod tests;
mod verify;

pub use issuers::validate;
pub use verify::JwtError;

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Largest accepted leeway.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// Longest token accepted; longer ones are refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The issuer name of tokens the gateway signs itself (browser sessions and
/// API-key exchange); reserved, so no configured issuer may use it.
pub const GATEWAY_ISSUER: &str = "tradehabit-gateway";

/// The `[jwt]` section as written in the policy file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtRaw {
    /// Accepted token issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerRaw>,
}

/// One accepted issuer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerRaw {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed signature algorithms (`HS256`, `RS256`, `ES256`, `EdDSA`, …).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// HMAC secret, for `HS*` algorithms only.
    pub secret: Option<SecretSourceRaw>,
    /// Public keys in PEM files.
    #[serde(default)]
    pub keys: Vec<PemKeyRaw>,
    /// A local JWKS file with public keys (every key needs a `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Clock-skew allowance in seconds. Default [`DEFAULT_LEEWAY_SECONDS`].
    pub leeway_seconds: Option<u64>,
    /// The media type the header's `typ` must carry (`at+jwt` for RFC 9068
    /// access tokens). Default: `typ` is not checked.
    pub required_typ: Option<String>,
}

/// A public key in a PEM file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PemKeyRaw {
    /// The `kid` tokens name this key by; required when the issuer has more
    /// than one key.
    pub kid: Option<String>,
    /// The PEM file (SPKI `PUBLIC KEY`, or `RSA PUBLIC KEY`).
    pub pem_file: PathBuf,
}

/// The kind of key, which decides which algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn of(alg: Algorithm) -> Self {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Self::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Self::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => Self::Ec,
            Algorithm::EdDSA => Self::Ed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hmac => "HMAC secret",
            Self::Rsa => "RSA key",
            Self::Ec => "EC key",
            Self::Ed => "Ed25519 key",
        }
    }
}

/// A key that may verify tokens of one issuer.
#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    family: Family,
    /// The algorithm a JWKS entry is restricted to, if it names one.
    pinned: Option<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// Whether tokens of an issuer come from outside or from the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerOrigin {
    /// A configured identity provider.
    External,
    /// The gateway's own session and key-exchange tokens.
    Gateway,
}

/// A validated issuer.
#[derive(Debug, Clone)]
pub struct Issuer {
    name: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: Vec<VerifyKey>,
    leeway_seconds: u64,
    /// Normalised with [`media_type`]; `None`: not checked.
    required_typ: Option<String>,
    origin: IssuerOrigin,
}

impl Issuer {
    /// The issuer of the gateway's own HS256 tokens.
    pub(crate) fn gateway(secret: &Secret) -> Self {
        Self {
            name: GATEWAY_ISSUER.to_owned(),
            audiences: vec![GATEWAY_ISSUER.to_owned()],
            algorithms: vec![Algorithm::HS256],
            keys: vec![VerifyKey {
                kid: None,
                family: Family::Hmac,
                pinned: Some(Algorithm::HS256),
                key: DecodingKey::from_secret(secret.expose()),
            }],
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            required_typ: None,
            origin: IssuerOrigin::Gateway,
        }
    }
}

/// Verifies bearer tokens against the configured issuers.
#[derive(Debug, Clone, Default)]
pub struct JwtVerifier {
    issuers: Vec<Issuer>,
    cache: Arc<cache::TokenCache>,
}

/// A `typ` value as compared: lower case, without an `application/`
/// prefix (RFC 7515 §4.1.9: `at+jwt` and `application/at+jwt` are the same
/// type).
fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(short) => short.to_owned(),
        None => lower,
    }
}

fn is_printable(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `iss` claim (a configured issuer).
    pub issuer: String,
    /// Whether the gateway itself issued the token.
    pub origin: IssuerOrigin,
    /// The `sub` claim.
    pub subject: String,
    /// Scopes from `scope` and `scp`; invalid scope tokens are dropped.
    pub scopes: BTreeSet<String>,
    /// The `th_kind` claim of gateway-issued tokens (`session` or `api-key`).
    pub gateway_kind: Option<String>,
}

impl JwtVerifier {
    /// Adds an issuer (the gateway's own, when sessions or key exchange are
    /// enabled).
    pub(crate) fn with_issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }
}
