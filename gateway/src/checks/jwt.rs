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

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::is_scope_token;
use super::problems::{index, join, Problems};
use super::secret::{self, LoadContext, Secret, SecretSourceRaw, MIN_SECRET_BYTES};

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Largest accepted leeway.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// Longest token accepted; longer ones are refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The issuer name of tokens the gateway signs itself (browser sessions and
/// API-key exchange); reserved, so no configured issuer may use it.
pub const GATEWAY_ISSUER: &str = "tradehabit-gateway";

/// Header parameters that would make the token choose its own key, or that
/// demand extensions we do not implement.
const FORBIDDEN_HEADER_PARAMS: &[&str] = &["jku", "x5u", "jwk", "x5c", "crit"];

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

/// Validates `[jwt]` at key path `path`, loading secrets and key files.
pub fn validate(
    raw: &JwtRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<JwtVerifier> {
    let before = problems.len();
    let issuers_path = join(path, "issuers");
    let mut names = HashSet::new();
    let mut issuers = Vec::new();
    for (i, issuer) in raw.issuers.iter().enumerate() {
        let issuer_path = index(&issuers_path, i);
        if !names.insert(issuer.issuer.as_str()) {
            problems.push(
                join(&issuer_path, "issuer"),
                format!("{:?} is listed twice", issuer.issuer),
            );
        }
        if let Some(valid) = validate_issuer(issuer, &issuer_path, ctx, problems) {
            issuers.push(valid);
        }
    }
    (problems.len() == before).then(|| JwtVerifier {
        issuers,
        cache: Arc::default(),
    })
}

fn validate_issuer(
    raw: &IssuerRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<Issuer> {
    let before = problems.len();
    if raw.issuer.is_empty()
        || raw.issuer.len() > 256
        || !is_printable(&raw.issuer)
        || raw.issuer.contains('|')
    {
        problems.push(
            join(path, "issuer"),
            "must be 1 to 256 printable ASCII characters, without `|`",
        );
    } else if raw.issuer == GATEWAY_ISSUER {
        problems.push(
            join(path, "issuer"),
            format!("{GATEWAY_ISSUER:?} is reserved for the gateway's own tokens"),
        );
    }
    if raw.audiences.is_empty() {
        problems.push(
            join(path, "audiences"),
            "at least one audience is required (tokens for other services must not be accepted)",
        );
    }
    for (i, aud) in raw.audiences.iter().enumerate() {
        if aud.is_empty() {
            problems.push(index(&join(path, "audiences"), i), "must not be empty");
        }
    }
    let leeway_seconds = raw.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECONDS);
    if leeway_seconds > MAX_LEEWAY_SECONDS {
        problems.push(
            join(path, "leeway_seconds"),
            format!("{leeway_seconds} is above the maximum of {MAX_LEEWAY_SECONDS}"),
        );
    }

    let required_typ = raw.required_typ.as_deref().map(media_type);
    if let Some(typ) = &required_typ {
        let is_media_type = typ.split_once('/').is_none()
            && !typ.is_empty()
            && typ.len() <= 64
            && typ
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
        if !is_media_type {
            problems.push(
                join(path, "required_typ"),
                "must be a media type such as \"at+jwt\" (an `application/` prefix may be given)",
            );
        }
    }

    let algorithms = validate_algorithms(&raw.algorithms, &join(path, "algorithms"), problems);
    let families: HashSet<Family> = algorithms.iter().map(|a| Family::of(*a)).collect();

    let mut keys = Vec::new();
    if let Some(source) = &raw.secret {
        let secret_path = join(path, "secret");
        if let Some(secret) = secret::load(source, &secret_path, ctx, MIN_SECRET_BYTES, problems) {
            if secret.expose().windows(10).any(|w| w == b"-----BEGIN") {
                problems.push(
                    secret_path,
                    "this looks like a PEM key; an HMAC secret must be random bytes, never a public key",
                );
            } else {
                keys.push(VerifyKey {
                    kid: None,
                    family: Family::Hmac,
                    pinned: None,
                    key: DecodingKey::from_secret(secret.expose()),
                });
            }
        }
    }
    for (i, pem) in raw.keys.iter().enumerate() {
        let key_path = index(&join(path, "keys"), i);
        if let Some(key) = load_pem_key(pem, &key_path, ctx, problems) {
            keys.push(key);
        }
    }
    if let Some(file) = &raw.jwks_file {
        keys.extend(load_jwks(file, &join(path, "jwks_file"), ctx, problems));
    }

    check_keys_against_algorithms(&keys, &families, path, problems);
    (problems.len() == before).then(|| Issuer {
        name: raw.issuer.clone(),
        audiences: raw.audiences.clone(),
        algorithms,
        keys,
        leeway_seconds,
        required_typ,
        origin: IssuerOrigin::External,
    })
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

fn validate_algorithms(names: &[String], path: &str, problems: &mut Problems) -> Vec<Algorithm> {
    if names.is_empty() {
        problems.push(path, "list the allowed algorithms, e.g. [\"RS256\"]");
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if name.eq_ignore_ascii_case("none") {
            problems.push(index(path, i), "\"none\" is not allowed");
            continue;
        }
        match Algorithm::from_str(name) {
            Ok(alg) if algorithms.contains(&alg) => problems.push(index(path, i), format!("{name:?} is listed twice")),
            Ok(alg) => algorithms.push(alg),
            Err(_) => problems.push(
                index(path, i),
                format!("{name:?} is not a supported algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"),
            ),
        }
    }
    algorithms
}

fn check_keys_against_algorithms(
    keys: &[VerifyKey],
    families: &HashSet<Family>,
    path: &str,
    problems: &mut Problems,
) {
    let has_asymmetric = families.iter().any(|f| *f != Family::Hmac);
    if families.contains(&Family::Hmac) && !keys.iter().any(|k| k.family == Family::Hmac) {
        problems.push(
            join(path, "secret"),
            "HS* algorithms are allowed but no secret is configured",
        );
    }
    if has_asymmetric && !keys.iter().any(|k| k.family != Family::Hmac) {
        problems.push(
            join(path, "keys"),
            "asymmetric algorithms are allowed but no public key (keys or jwks_file) is configured",
        );
    }
    for key in keys {
        if !families.contains(&key.family) {
            let kid = key
                .kid
                .as_deref()
                .map(|k| format!(" (kid {k:?})"))
                .unwrap_or_default();
            problems.push(
                join(path, "algorithms"),
                format!(
                    "a configured {}{kid} has no matching algorithm in the allowlist",
                    key.family.name()
                ),
            );
        }
    }
    let mut kids = HashSet::new();
    for key in keys {
        if let Some(kid) = &key.kid {
            if !kids.insert(kid.as_str()) {
                problems.push(
                    join(path, "keys"),
                    format!("kid {kid:?} is used by two keys"),
                );
            }
        }
    }
    if keys.len() > 1
        && keys
            .iter()
            .any(|k| k.kid.is_none() && k.family != Family::Hmac)
    {
        problems.push(
            join(path, "keys"),
            "with several keys, every public key needs a kid",
        );
    }
}

fn load_pem_key(
    raw: &PemKeyRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<VerifyKey> {
    if raw.kid.as_deref().is_some_and(str::is_empty) {
        problems.push(join(path, "kid"), "must not be empty");
        return None;
    }
    let pem = ctx.read_file(&raw.pem_file, &join(path, "pem_file"), problems)?;
    if pem.windows(7).any(|w| w == b"PRIVATE") {
        problems.push(
            join(path, "pem_file"),
            "this is a private key; the gateway needs only the public key (openssl pkey -pubout)",
        );
        return None;
    }
    let candidates = [
        (Family::Rsa, DecodingKey::from_rsa_pem(&pem)),
        (Family::Ec, DecodingKey::from_ec_pem(&pem)),
        (Family::Ed, DecodingKey::from_ed_pem(&pem)),
    ];
    let found = candidates
        .into_iter()
        .find_map(|(family, key)| key.ok().map(|key| (family, key)));
    match found {
        Some((family, key)) => Some(VerifyKey {
            kid: raw.kid.clone(),
            family,
            pinned: None,
            key,
        }),
        None => {
            problems.push(
                join(path, "pem_file"),
                "not an RSA, EC or Ed25519 public key in PEM form",
            );
            None
        }
    }
}

fn load_jwks(
    file: &std::path::Path,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Vec<VerifyKey> {
    let Some(bytes) = ctx.read_file(file, path, problems) else {
        return Vec::new();
    };
    let set: JwkSet = match serde_json::from_slice(&bytes) {
        Ok(set) => set,
        Err(err) => {
            problems.push(path, format!("not a JWKS document: {err}"));
            return Vec::new();
        }
    };
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let key_path = format!("{path} (keys[{i}])");
        let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
            problems.push(key_path, "every JWKS key needs a kid");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            problems.push(
                key_path,
                format!("key {kid:?} is an encryption key (use = enc)"),
            );
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
            AlgorithmParameters::OctetKey(_) => {
                problems.push(
                    key_path,
                    format!("key {kid:?} is a symmetric key; HMAC secrets come only from `secret`"),
                );
                continue;
            }
        };
        let pinned = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => {
                let name = serde_json::to_value(alg)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                match Algorithm::from_str(&name) {
                    Ok(alg) if Family::of(alg) == family => Some(alg),
                    _ => {
                        problems.push(key_path, format!("key {kid:?} names algorithm {name:?}, which does not fit its key type"));
                        continue;
                    }
                }
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(VerifyKey {
                kid: Some(kid),
                family,
                pinned,
                key,
            }),
            Err(err) => problems.push(key_path, format!("key {kid:?} is unusable: {err}")),
        }
    }
    keys
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

/// Why a token was refused. The client always gets the same 401; these are
/// for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token too large")]
    TooLarge,
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg: none`.
    #[error("unsigned token (alg none)")]
    AlgNone,
    /// `jku`, `x5u`, `jwk`, `x5c` or `crit` in the header.
    #[error("forbidden header parameter {0}")]
    ForbiddenHeader(&'static str),
    /// `iss` names no configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The algorithm is not in the issuer's allowlist.
    #[error("algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    /// The algorithm does not fit the selected key.
    #[error("algorithm does not match the key type")]
    AlgorithmKeyMismatch,
    /// `kid` names no key of the issuer.
    #[error("unknown kid")]
    UnknownKid,
    /// No `kid`, and the issuer has several keys.
    #[error("kid required")]
    KidRequired,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` names none of the issuer's audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// `iss` does not match.
    #[error("wrong issuer")]
    WrongIssuer,
    /// A required claim is missing.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// `sub` is empty, too long or not printable ASCII.
    #[error("unusable subject")]
    BadSubject,
    /// The header's `typ` is missing or not the issuer's `required_typ`.
    #[error("token type must be {required}")]
    WrongType {
        /// The type the issuer requires (from the policy, not the token).
        required: String,
    },
}

impl JwtError {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "jwt.too_large",
            Self::Malformed => "jwt.malformed",
            Self::AlgNone => "jwt.alg_none",
            Self::ForbiddenHeader(_) => "jwt.forbidden_header",
            Self::UnknownIssuer => "jwt.unknown_issuer",
            Self::AlgorithmNotAllowed => "jwt.algorithm_not_allowed",
            Self::AlgorithmKeyMismatch => "jwt.algorithm_key_mismatch",
            Self::UnknownKid => "jwt.unknown_kid",
            Self::KidRequired => "jwt.kid_required",
            Self::BadSignature => "jwt.bad_signature",
            Self::Expired => "jwt.expired",
            Self::NotYetValid => "jwt.not_yet_valid",
            Self::WrongAudience => "jwt.wrong_audience",
            Self::WrongIssuer => "jwt.wrong_issuer",
            Self::MissingClaim(_) => "jwt.missing_claim",
            Self::BadSubject => "jwt.bad_subject",
            Self::WrongType { .. } => "jwt.wrong_typ",
        }
    }
}

#[derive(Deserialize)]
struct PeekIssuer {
    iss: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    /// Checked by jsonwebtoken; read here only to bound the cache entry.
    exp: Option<serde_json::Value>,
    sub: Option<String>,
    scope: Option<ScopeClaim>,
    scp: Option<ScopeClaim>,
    th_kind: Option<String>,
}

/// Longest accepted `sub`.
const MAX_SUBJECT_BYTES: usize = 255;

fn decode_part(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

fn map_library_error(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm => JwtError::AlgorithmKeyMismatch,
        _ => JwtError::Malformed,
    }
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

    /// Verifies `token` (the text after `Bearer `).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(verified) = self.cache.get(token, now) {
            return Ok(verified);
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload_part), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };

        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&decode_part(header_part)?).map_err(|_| JwtError::Malformed)?;
        let alg_name = header
            .get("alg")
            .and_then(|v| v.as_str())
            .ok_or(JwtError::Malformed)?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(JwtError::AlgNone);
        }
        if let Some(param) = FORBIDDEN_HEADER_PARAMS
            .iter()
            .find(|p| header.contains_key(**p))
        {
            return Err(JwtError::ForbiddenHeader(param));
        }
        let alg = Algorithm::from_str(alg_name).map_err(|_| JwtError::AlgorithmNotAllowed)?;
        let kid = match header.get("kid") {
            None => None,
            Some(serde_json::Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(JwtError::Malformed),
        };
        let typ = match header.get("typ") {
            None => None,
            Some(serde_json::Value::String(typ)) => Some(typ.as_str()),
            Some(_) => return Err(JwtError::Malformed),
        };

        let peek: PeekIssuer =
            serde_json::from_slice(&decode_part(payload_part)?).map_err(|_| JwtError::Malformed)?;
        let iss = match peek.iss {
            None => return Err(JwtError::MissingClaim("iss".to_owned())),
            Some(serde_json::Value::String(iss)) => iss,
            Some(_) => return Err(JwtError::Malformed),
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.name == iss)
            .ok_or(JwtError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let key = select_key(issuer, kid, alg)?;
        if key.family != Family::of(alg) || key.pinned.is_some_and(|pinned| pinned != alg) {
            return Err(JwtError::AlgorithmKeyMismatch);
        }

        let mut validation = Validation::new(alg);
        validation.leeway = issuer.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&issuer.name]);
        validation.set_audience(&issuer.audiences);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|err| map_library_error(err.kind()))?;

        let claims = data.claims;
        let subject = claims
            .sub
            .ok_or_else(|| JwtError::MissingClaim("sub".to_owned()))?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES || !is_printable(&subject) {
            return Err(JwtError::BadSubject);
        }
        let mut scopes = BTreeSet::new();
        for claim in [claims.scope, claims.scp].into_iter().flatten() {
            match claim {
                ScopeClaim::Text(text) => scopes.extend(text.split(' ').map(str::to_owned)),
                ScopeClaim::List(list) => scopes.extend(list),
            }
        }
        scopes.retain(|s| is_scope_token(s));
        if let Some(required) = &issuer.required_typ {
            if typ.map(media_type).as_ref() != Some(required) {
                return Err(JwtError::WrongType {
                    required: required.clone(),
                });
            }
        }
        let verified = VerifiedToken {
            issuer: issuer.name.clone(),
            origin: issuer.origin,
            subject,
            scopes,
            gateway_kind: claims.th_kind,
        };
        if let Some(exp) = claims.exp.as_ref().and_then(serde_json::Value::as_u64) {
            self.cache.insert(token, &verified, exp);
        }
        Ok(verified)
    }
}

/// Picks the key named by `kid`; without a `kid`, the issuer's only key of
/// the algorithm's type. There is never a fallback to "try every key".
fn select_key<'a>(
    issuer: &'a Issuer,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'a VerifyKey, JwtError> {
    if let Some(kid) = kid {
        return issuer
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(JwtError::UnknownKid);
    }
    let mut candidates = issuer.keys.iter().filter(|k| k.family == Family::of(alg));
    match (candidates.next(), candidates.next()) {
        (Some(only), None) => Ok(only),
        (None, _) => Err(JwtError::AlgorithmKeyMismatch),
        (Some(_), Some(_)) => Err(JwtError::KidRequired),
    }
}

mod cache;
#[cfg(test)]
mod tests;
