//! Verifying one token: the checks in the order the module doc of
//! `jwt.rs` gives, and the precise reason when one fails.

use std::collections::BTreeSet;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::{
    is_printable, media_type, Family, Issuer, JwtVerifier, VerifiedToken, VerifyKey,
    MAX_TOKEN_BYTES,
};
use crate::checks::is_scope_token;

/// Header parameters that would make the token choose its own key, or that
/// demand extensions we do not implement.
const FORBIDDEN_HEADER_PARAMS: &[&str] = &["jku", "x5u", "jwk", "x5c", "crit"];

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

/// The header fields the checks read, taken from the decoded header.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
}

impl TokenHeader {
    /// Decodes the header part: `alg: none` and the forbidden parameters are
    /// refused by name, then the algorithm, `kid` and `typ` are read.
    fn read(part: &str) -> Result<Self, JwtError> {
        let mut header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&decode_part(part)?).map_err(|_| JwtError::Malformed)?;
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
        let kid = optional_text(header.remove("kid"))?;
        let typ = optional_text(header.remove("typ"))?;
        Ok(Self { alg, kid, typ })
    }
}

/// A header parameter that, when present, must be a string.
fn optional_text(value: Option<serde_json::Value>) -> Result<Option<String>, JwtError> {
    match value {
        None => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(JwtError::Malformed),
    }
}

impl JwtVerifier {
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
        let header = TokenHeader::read(header_part)?;
        let issuer = self.issuer_named_in(payload_part)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let key = select_key(issuer, header.kid.as_deref(), header.alg)?;
        if key.family != Family::of(header.alg)
            || key.pinned.is_some_and(|pinned| pinned != header.alg)
        {
            return Err(JwtError::AlgorithmKeyMismatch);
        }

        let mut validation = Validation::new(header.alg);
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
        let exp = claims.exp.as_ref().and_then(serde_json::Value::as_u64);
        let verified = verified_token(issuer, claims, header.typ.as_deref())?;
        if let Some(exp) = exp {
            self.cache.insert(token, &verified, exp);
        }
        Ok(verified)
    }

    /// The configured issuer the (not yet verified) `iss` claim names.
    fn issuer_named_in(&self, payload_part: &str) -> Result<&Issuer, JwtError> {
        let peek: PeekIssuer =
            serde_json::from_slice(&decode_part(payload_part)?).map_err(|_| JwtError::Malformed)?;
        let iss = match peek.iss {
            None => return Err(JwtError::MissingClaim("iss".to_owned())),
            Some(serde_json::Value::String(iss)) => iss,
            Some(_) => return Err(JwtError::Malformed),
        };
        self.issuers
            .iter()
            .find(|i| i.name == iss)
            .ok_or(JwtError::UnknownIssuer)
    }
}

/// The checks after the signature: the subject, the scopes, and last the
/// issuer's `required_typ` against the header's `typ`.
fn verified_token(
    issuer: &Issuer,
    claims: Claims,
    typ: Option<&str>,
) -> Result<VerifiedToken, JwtError> {
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
    Ok(VerifiedToken {
        issuer: issuer.name.clone(),
        origin: issuer.origin,
        subject,
        scopes,
        gateway_kind: claims.th_kind,
    })
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
