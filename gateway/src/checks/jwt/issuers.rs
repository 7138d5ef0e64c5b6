//! The `[jwt]` section validated into issuers: names, audiences, leeway,
//! `required_typ`, the algorithm allowlist, and keys that fit it.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::keys::{load_jwks, load_pem_key};
use super::{
    is_printable, media_type, Family, Issuer, IssuerOrigin, IssuerRaw, JwtRaw, JwtVerifier,
    VerifyKey, DEFAULT_LEEWAY_SECONDS, GATEWAY_ISSUER, MAX_LEEWAY_SECONDS,
};
use crate::checks::problems::{index, join, Problems};
use crate::checks::secret::{self, LoadContext, MIN_SECRET_BYTES};

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
        // Named by its issuer, as the operator knows it; by position only
        // when it has none.
        let first = names.insert(issuer.issuer.as_str());
        let issuer_path = if issuer.issuer.trim().is_empty() || !first {
            index(&issuers_path, i)
        } else {
            format!("{issuers_path}[{:?}]", issuer.issuer)
        };
        if !first {
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

    let required_typ = validate_required_typ(raw.required_typ.as_deref(), path, problems);

    let algorithms = validate_algorithms(&raw.algorithms, &join(path, "algorithms"), problems);

    let (keys, failed) = load_keys(raw, path, ctx, problems);
    check_keys_against_algorithms(&keys, &algorithms, failed, path, problems);
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

/// The `required_typ` as compared (see [`media_type`]), reporting a value
/// that is not a media type.
fn validate_required_typ(
    required_typ: Option<&str>,
    path: &str,
    problems: &mut Problems,
) -> Option<String> {
    let required_typ = required_typ.map(media_type);
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
    required_typ
}

/// Which key sources failed to load (each failure is reported already).
#[derive(Debug, Clone, Copy, Default)]
struct Failed {
    secret: bool,
    public: bool,
}

/// The issuer's keys: its HMAC secret, its PEM keys and its JWKS file's
/// keys, in that order, and which sources failed.
fn load_keys(
    raw: &IssuerRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> (Vec<VerifyKey>, Failed) {
    let mut keys = Vec::new();
    let before = problems.len();
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
    let secret = problems.len() > before;
    let before = problems.len();
    for (i, pem) in raw.keys.iter().enumerate() {
        let key_path = index(&join(path, "keys"), i);
        if let Some(key) = load_pem_key(pem, &key_path, ctx, problems) {
            keys.push(key);
        }
    }
    if let Some(file) = &raw.jwks_file {
        keys.extend(load_jwks(file, &join(path, "jwks_file"), ctx, problems));
    }
    let public = problems.len() > before;
    (keys, Failed { secret, public })
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

/// Every key needs an allowed algorithm it can verify, and every allowed
/// algorithm needs a key: a token signed with an algorithm that has no key
/// could never be accepted (`jwt.algorithm_key_mismatch` on every token).
/// A key source that `failed` (reported already) is not reported again as
/// missing: that would only mislead.
fn check_keys_against_algorithms(
    keys: &[VerifyKey],
    algorithms: &[Algorithm],
    failed: Failed,
    path: &str,
    problems: &mut Problems,
) {
    let families: HashSet<Family> = algorithms.iter().map(|a| Family::of(*a)).collect();
    let serves = |key: &VerifyKey, alg: Algorithm| {
        key.family == Family::of(alg) && key.pinned.is_none_or(|pinned| pinned == alg)
    };
    for alg in algorithms {
        let hmac = Family::of(*alg) == Family::Hmac;
        if keys.iter().any(|key| serves(key, *alg))
            || (hmac && failed.secret)
            || (!hmac && failed.public)
        {
            continue;
        }
        let (key, wanted) = match Family::of(*alg) {
            Family::Hmac => ("secret", "no secret is configured".to_owned()),
            family => (
                "keys",
                format!("no {} (keys or jwks_file) can verify it", family.name()),
            ),
        };
        problems.push(
            join(path, key),
            format!("algorithms allows {alg:?}, but {wanted}"),
        );
    }
    for key in keys {
        let kid = key
            .kid
            .as_deref()
            .map(|k| format!(" (kid {k:?})"))
            .unwrap_or_default();
        if !families.contains(&key.family) {
            problems.push(
                join(path, "algorithms"),
                format!(
                    "a configured {}{kid} has no matching algorithm in the allowlist",
                    key.family.name()
                ),
            );
        } else if let Some(pinned) = key.pinned.filter(|p| !algorithms.contains(p)) {
            problems.push(
                join(path, "algorithms"),
                format!(
                    "the {}{kid} is pinned to {pinned:?} (its JWKS `alg`), which algorithms does not allow: it could verify no token",
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
