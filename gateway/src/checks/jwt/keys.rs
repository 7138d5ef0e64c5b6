//! Public keys for an issuer, from PEM files and a local JWKS file, each
//! tagged with its key family (and a JWKS entry's pinned algorithm).

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{Family, PemKeyRaw, VerifyKey};
use crate::checks::problems::{join, Problems};
use crate::checks::secret::LoadContext;

pub(super) fn load_pem_key(
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

pub(super) fn load_jwks(
    file: &Path,
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
