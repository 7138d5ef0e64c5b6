//! JWT attack matrix: every refusal reason, with tokens minted here.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::checks::secret::tests::{context, env_of};
use crate::checks::Problems;

const RSA_PRIVATE: &str = include_str!("../testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../testdata/rsa_public.pem");
const HMAC_SECRET: &str = "0123456789abcdef0123456789abcdef-hmac";
const ISS: &str = "https://idp.example.com/";
const AUD: &str = "tradehabit-api";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard valid claims, an hour from expiry.
fn claims() -> serde_json::Value {
    json!({ "iss": ISS, "aud": AUD, "sub": "alice", "exp": now() + 3600, "scope": "trades:read trades:write" })
}

fn with(mut claims: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    claims[key] = value;
    claims
}

fn without(mut claims: serde_json::Value, key: &str) -> serde_json::Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}

fn rs256(claims: &serde_json::Value, kid: Option<&str>) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    encode(&header(Algorithm::RS256, kid), claims, &key).unwrap()
}

fn hs256(claims: &serde_json::Value, secret: &[u8], kid: Option<&str>) -> String {
    encode(
        &header(Algorithm::HS256, kid),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A fresh key pair made with rcgen, as (private PKCS#8 PEM, public PEM, raw public key).
fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String, Vec<u8>) {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    (
        pair.serialize_pem(),
        pair.public_key_pem(),
        pair.public_key_raw().to_vec(),
    )
}

/// Builds a verifier from a `[jwt]` TOML snippet; files named in it are
/// written into a temporary directory first.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rsa.pem"), RSA_PUBLIC).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str, contents: &str) -> &Self {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
        self
    }

    fn validate(&self, toml_text: &str) -> (Option<JwtVerifier>, Problems) {
        let raw: JwtRaw = toml::from_str(toml_text).unwrap();
        let env = env_of(&[
            ("HMAC", HMAC_SECRET),
            ("PEM_AS_SECRET", RSA_PUBLIC),
            ("SHORT", "too-short"),
        ]);
        let ctx = context(&env, self.dir.path());
        let mut problems = Problems::new();
        let verifier = validate(&raw, "auth.jwt", &ctx, &mut problems);
        (verifier, problems)
    }

    fn verifier(&self, toml_text: &str) -> JwtVerifier {
        let (verifier, problems) = self.validate(toml_text);
        assert!(problems.is_empty(), "{problems}");
        verifier.unwrap()
    }
}

fn rsa_issuer() -> JwtVerifier {
    rsa_issuer_for(AUD)
}

/// The RSA issuer serving `audience`.
fn rsa_issuer_for(audience: &str) -> JwtVerifier {
    rsa_issuer_with(audience, "")
}

/// The RSA issuer serving `audience`, with `extra` lines in its table.
fn rsa_issuer_with(audience: &str, extra: &str) -> JwtVerifier {
    Fixture::new().verifier(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{audience}"]
        algorithms = ["RS256"]
        keys = [{{ kid = "rsa-1", pem_file = "rsa.pem" }}]
        {extra}
        "#
    ))
}

#[test]
fn valid_rs256_token_is_accepted_with_its_scopes() {
    let verified = rsa_issuer()
        .verify(&rs256(&claims(), Some("rsa-1")))
        .unwrap();
    assert_eq!(verified.issuer, ISS);
    assert_eq!(verified.subject, "alice");
    assert_eq!(verified.origin, IssuerOrigin::External);
    assert_eq!(
        verified.scopes,
        BTreeSet::from(["trades:read".to_owned(), "trades:write".to_owned()])
    );
    // With a single key, the kid may be omitted.
    assert!(rsa_issuer().verify(&rs256(&claims(), None)).is_ok());
}

#[test]
fn scopes_come_from_scope_and_scp() {
    let verifier = rsa_issuer();
    let token = rs256(
        &with(
            without(claims(), "scope"),
            "scp",
            json!(["a", "b", "bad scope"]),
        ),
        None,
    );
    assert_eq!(
        verifier.verify(&token).unwrap().scopes,
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
    let token = rs256(&with(claims(), "scp", json!("c d")), None);
    assert_eq!(verifier.verify(&token).unwrap().scopes.len(), 4);
    let token = rs256(&without(claims(), "scope"), None);
    assert!(verifier.verify(&token).unwrap().scopes.is_empty());
}

#[test]
fn alg_none_is_refused() {
    let verifier = rsa_issuer();
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&claims())
        );
        assert_eq!(verifier.verify(&token), Err(JwtError::AlgNone), "{alg}");
    }
}

#[test]
fn rsa_public_key_used_as_hmac_secret_is_refused() {
    // The issuer allows only RS256: an HS256 token is refused by the allowlist.
    let forged = hs256(&claims(), RSA_PUBLIC.as_bytes(), Some("rsa-1"));
    assert_eq!(
        rsa_issuer().verify(&forged),
        Err(JwtError::AlgorithmNotAllowed)
    );

    // Even if the issuer also allows HS256 (with its own secret), naming the
    // RSA key's kid gives a type mismatch, and omitting the kid selects the
    // real secret, against which the forgery does not verify.
    let mixed = Fixture::new().verifier(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["RS256", "HS256"]
        secret = {{ env = "HMAC" }}
        keys = [{{ kid = "rsa-1", pem_file = "rsa.pem" }}]
        "#
    ));
    assert_eq!(mixed.verify(&forged), Err(JwtError::AlgorithmKeyMismatch));
    let forged_without_kid = hs256(&claims(), RSA_PUBLIC.as_bytes(), None);
    assert_eq!(
        mixed.verify(&forged_without_kid),
        Err(JwtError::BadSignature)
    );
    // The genuine tokens of both kinds pass.
    assert!(mixed
        .verify(&hs256(&claims(), HMAC_SECRET.as_bytes(), None))
        .is_ok());
    assert!(mixed.verify(&rs256(&claims(), Some("rsa-1"))).is_ok());
}

#[test]
fn a_public_key_can_never_be_configured_as_a_secret() {
    let (verifier, problems) = Fixture::new().validate(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["HS256"]
        secret = {{ env = "PEM_AS_SECRET" }}
        "#
    ));
    assert!(verifier.is_none());
    assert!(
        problems.has(&format!("auth.jwt.issuers[{ISS:?}].secret")),
        "{problems}"
    );
}

#[test]
fn unknown_kid_is_refused() {
    let token = rs256(&claims(), Some("rsa-2"));
    assert_eq!(rsa_issuer().verify(&token), Err(JwtError::UnknownKid));
}

#[test]
fn key_choosing_header_parameters_are_refused() {
    let verifier = rsa_issuer();
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();

    let mut jku = header(Algorithm::RS256, Some("rsa-1"));
    jku.jku = Some("https://evil.example/jwks.json".into());
    let token = encode(&jku, &claims(), &key).unwrap();
    assert_eq!(
        rsa_issuer().verify(&token),
        Err(JwtError::ForbiddenHeader("jku"))
    );

    let mut x5u = header(Algorithm::RS256, Some("rsa-1"));
    x5u.x5u = Some("https://evil.example/cert.pem".into());
    let token = encode(&x5u, &claims(), &key).unwrap();
    assert_eq!(
        verifier.verify(&token),
        Err(JwtError::ForbiddenHeader("x5u"))
    );

    // Hand-made headers for `jwk` and `crit` (signature irrelevant: refused first).
    for (param, value) in [
        ("jwk", json!({"kty": "oct", "k": "AAAA"})),
        ("crit", json!(["exp"])),
    ] {
        let header = json!({"alg": "RS256", "kid": "rsa-1", param: value});
        let token = format!("{}.{}.c2ln", b64(&header), b64(&claims()));
        let err = verifier.verify(&token).unwrap_err();
        assert_eq!(err.reason(), "jwt.forbidden_header", "{param}");
    }
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let big = with(claims(), "padding", json!("x".repeat(MAX_TOKEN_BYTES)));
    assert_eq!(
        rsa_issuer().verify(&rs256(&big, None)),
        Err(JwtError::TooLarge)
    );
    // Not even valid base64 is looked at.
    assert_eq!(
        rsa_issuer().verify(&"!".repeat(MAX_TOKEN_BYTES + 1)),
        Err(JwtError::TooLarge)
    );
}

#[test]
fn expiry_and_not_before_are_enforced_with_leeway() {
    let verifier = rsa_issuer();
    let expired = rs256(&with(claims(), "exp", json!(now() - 120)), None);
    assert_eq!(verifier.verify(&expired), Err(JwtError::Expired));
    // Within the 30 s default leeway.
    let just_expired = rs256(&with(claims(), "exp", json!(now() - 5)), None);
    assert!(verifier.verify(&just_expired).is_ok());

    let future = rs256(&with(claims(), "nbf", json!(now() + 3600)), None);
    assert_eq!(verifier.verify(&future), Err(JwtError::NotYetValid));
    let almost = rs256(&with(claims(), "nbf", json!(now() + 5)), None);
    assert!(verifier.verify(&almost).is_ok());
}

#[test]
fn required_claims() {
    let verifier = rsa_issuer();
    for claim in ["exp", "aud", "sub"] {
        let token = rs256(&without(claims(), claim), None);
        assert_eq!(
            verifier.verify(&token),
            Err(JwtError::MissingClaim(claim.into())),
            "{claim}"
        );
    }
    let token = rs256(&without(claims(), "iss"), None);
    assert_eq!(
        verifier.verify(&token),
        Err(JwtError::MissingClaim("iss".into()))
    );
    let token = rs256(&with(claims(), "exp", json!("tomorrow")), None);
    assert_eq!(
        verifier.verify(&token),
        Err(JwtError::MissingClaim("exp".into()))
    );
}

#[test]
fn audience_and_issuer_are_checked() {
    let verifier = rsa_issuer();
    let token = rs256(&with(claims(), "aud", json!("another-service")), None);
    assert_eq!(verifier.verify(&token), Err(JwtError::WrongAudience));
    let token = rs256(
        &with(claims(), "aud", json!(["another-service", AUD])),
        None,
    );
    assert!(verifier.verify(&token).is_ok());
    let token = rs256(
        &with(claims(), "iss", json!("https://other-idp.example/")),
        None,
    );
    assert_eq!(verifier.verify(&token), Err(JwtError::UnknownIssuer));
    let token = rs256(&with(claims(), "iss", json!(GATEWAY_ISSUER)), None);
    assert_eq!(verifier.verify(&token), Err(JwtError::UnknownIssuer));
}

#[test]
fn tampered_or_foreign_signatures_are_refused() {
    let verifier = rsa_issuer();
    let token = rs256(&claims(), None);
    let mut parts: Vec<&str> = token.split('.').collect();
    let promoted = b64(&with(claims(), "sub", json!("admin")));
    parts[1] = &promoted;
    assert_eq!(
        verifier.verify(&parts.join(".")),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn bad_subjects_are_refused() {
    let verifier = rsa_issuer();
    for sub in [json!(""), json!("x".repeat(300)), json!("line\nbreak")] {
        let token = rs256(&with(claims(), "sub", sub.clone()), None);
        assert_eq!(verifier.verify(&token), Err(JwtError::BadSubject), "{sub}");
    }
}

#[test]
fn malformed_tokens_are_refused() {
    let verifier = rsa_issuer();
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        "e30.e30.",
        "bm90IGpzb24.e30.x",
    ] {
        let err = verifier.verify(token).unwrap_err();
        assert!(
            matches!(err, JwtError::Malformed | JwtError::MissingClaim(_)),
            "{token:?}: {err:?}"
        );
    }
    let unsupported = format!("{}.{}.x", b64(&json!({"alg": "HS1"})), b64(&claims()));
    assert_eq!(
        verifier.verify(&unsupported),
        Err(JwtError::AlgorithmNotAllowed)
    );
}

#[test]
fn es256_and_eddsa_from_pem_files() {
    let (ec_private, ec_public, _) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (ed_private, ed_public, _) = keypair(&rcgen::PKCS_ED25519);
    let fixture = Fixture::new();
    fixture
        .file("ec.pem", &ec_public)
        .file("ed.pem", &ed_public);
    let verifier = fixture.verifier(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["ES256", "EdDSA"]
        keys = [{{ kid = "ec", pem_file = "ec.pem" }}, {{ kid = "ed", pem_file = "ed.pem" }}]
        "#
    ));
    let ec_key = EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap();
    let ed_key = EncodingKey::from_ed_pem(ed_private.as_bytes()).unwrap();
    let es = encode(&header(Algorithm::ES256, Some("ec")), &claims(), &ec_key).unwrap();
    let ed = encode(&header(Algorithm::EdDSA, Some("ed")), &claims(), &ed_key).unwrap();
    assert!(verifier.verify(&es).is_ok());
    assert!(verifier.verify(&ed).is_ok());
    // The EC-signed token pointed at the Ed25519 key: type mismatch.
    let confused = encode(&header(Algorithm::ES256, Some("ed")), &claims(), &ec_key).unwrap();
    assert_eq!(
        verifier.verify(&confused),
        Err(JwtError::AlgorithmKeyMismatch)
    );
    // Several keys and no kid: refused rather than guessed.
    let no_kid = encode(&header(Algorithm::ES256, None), &claims(), &ec_key).unwrap();
    assert!(verifier.verify(&no_kid).is_ok(), "one EC key: unambiguous");
    // A token signed by a key the issuer does not have.
    let (other_private, _, _) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other = EncodingKey::from_ec_pem(other_private.as_bytes()).unwrap();
    let foreign = encode(&header(Algorithm::ES256, Some("ec")), &claims(), &other).unwrap();
    assert_eq!(verifier.verify(&foreign), Err(JwtError::BadSignature));
}

#[test]
fn keys_from_a_jwks_file_are_selected_by_kid() {
    let (ec_private, _, ec_raw) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (ed_private, _, ed_raw) = keypair(&rcgen::PKCS_ED25519);
    // ES384 is allowed, so some key must serve it (check-config insists).
    let (_, _, p384_raw) = keypair(&rcgen::PKCS_ECDSA_P384_SHA384);
    // Uncompressed point: 0x04 || x || y.
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-2025", "alg": "ES256", "use": "sig",
         "x": URL_SAFE_NO_PAD.encode(&ec_raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&ec_raw[33..])},
        {"kty": "EC", "crv": "P-384", "kid": "ec-384", "alg": "ES384", "use": "sig",
         "x": URL_SAFE_NO_PAD.encode(&p384_raw[1..49]), "y": URL_SAFE_NO_PAD.encode(&p384_raw[49..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-2025", "x": URL_SAFE_NO_PAD.encode(&ed_raw)},
    ]});
    let fixture = Fixture::new();
    fixture.file("jwks.json", &jwks.to_string());
    let verifier = fixture.verifier(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["ES256", "ES384", "EdDSA"]
        jwks_file = "jwks.json"
        "#
    ));
    let ec_key = EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap();
    let ed_key = EncodingKey::from_ed_pem(ed_private.as_bytes()).unwrap();
    assert!(verifier
        .verify(
            &encode(
                &header(Algorithm::ES256, Some("ec-2025")),
                &claims(),
                &ec_key
            )
            .unwrap()
        )
        .is_ok());
    assert!(verifier
        .verify(
            &encode(
                &header(Algorithm::EdDSA, Some("ed-2025")),
                &claims(),
                &ed_key
            )
            .unwrap()
        )
        .is_ok());
    assert_eq!(
        verifier.verify(
            &encode(
                &header(Algorithm::EdDSA, Some("ed-2026")),
                &claims(),
                &ed_key
            )
            .unwrap()
        ),
        Err(JwtError::UnknownKid)
    );
    // The JWK pins ES256: an ES384 header is refused even though the issuer allows ES384.
    let es384 = format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "ES384", "kid": "ec-2025"})),
        b64(&claims())
    );
    assert_eq!(verifier.verify(&es384), Err(JwtError::AlgorithmKeyMismatch));
}

#[test]
fn gateway_issuer_accepts_its_own_tokens_only() {
    let secret = Secret::new(HMAC_SECRET.as_bytes().to_vec());
    let verifier = rsa_issuer().with_issuer(Issuer::gateway(&secret));
    let own = json!({"iss": GATEWAY_ISSUER, "aud": GATEWAY_ISSUER, "sub": "s_1", "exp": now() + 60, "th_kind": "session"});
    let verified = verifier
        .verify(&hs256(&own, HMAC_SECRET.as_bytes(), None))
        .unwrap();
    assert_eq!(verified.origin, IssuerOrigin::Gateway);
    assert_eq!(verified.gateway_kind.as_deref(), Some("session"));
    // The external issuer cannot mint gateway tokens, nor use the gateway's secret.
    assert_eq!(
        verifier.verify(&hs256(&own, b"another-secret-another-secret-xx", None)),
        Err(JwtError::BadSignature)
    );
    let forged = with(claims(), "iss", json!(GATEWAY_ISSUER));
    assert_eq!(
        verifier.verify(&rs256(&forged, None)),
        Err(JwtError::AlgorithmNotAllowed)
    );
}

#[test]
fn every_configuration_problem_is_reported() {
    let (ec_private, _, _) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let fixture = Fixture::new();
    fixture
        .file("private.pem", &ec_private)
        .file("garbage.pem", "not a key")
        .file("jwks.json", r#"{"keys": [{"kty": "oct", "k": "AAAA", "kid": "sym"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#);
    let (verifier, problems) = fixture.validate(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        algorithms = ["none", "HS1", "RS256", "RS256"]
        leeway_seconds = 3600

        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["HS256"]
        keys = [{{ pem_file = "private.pem" }}, {{ pem_file = "garbage.pem" }}, {{ pem_file = "missing.pem" }}]
        jwks_file = "jwks.json"

        [[issuers]]
        issuer = "{GATEWAY_ISSUER}"
        audiences = ["{AUD}"]
        algorithms = ["ES256"]
        keys = [{{ pem_file = "rsa.pem" }}]
        "#
    ));
    assert!(verifier.is_none());
    let text = problems.to_string();
    let first = format!("auth.jwt.issuers[{ISS:?}]");
    let text = text.replace(&first, "auth.jwt.issuers[0]").replace(
        &format!("auth.jwt.issuers[{GATEWAY_ISSUER:?}]"),
        "auth.jwt.issuers[2]",
    );
    for expected in [
        "auth.jwt.issuers[0].audiences:",
        "auth.jwt.issuers[0].algorithms[0]: \"none\" is not allowed",
        "auth.jwt.issuers[0].algorithms[1]:",
        "auth.jwt.issuers[0].algorithms[3]:",
        "auth.jwt.issuers[0].leeway_seconds:",
        "auth.jwt.issuers[0].keys: algorithms allows RS256, but no RSA key",
        "auth.jwt.issuers[1].issuer: \"https://idp.example.com/\" is listed twice",
        "auth.jwt.issuers[1].keys[0].pem_file: this is a private key",
        "auth.jwt.issuers[1].keys[1].pem_file: not an RSA",
        "auth.jwt.issuers[1].keys[2].pem_file: cannot read",
        "auth.jwt.issuers[1].jwks_file (keys[0]):",
        "auth.jwt.issuers[1].jwks_file (keys[1]): every JWKS key needs a kid",
        "auth.jwt.issuers[1].secret: algorithms allows HS256, but no secret is configured",
        "auth.jwt.issuers[2].issuer: \"tradehabit-gateway\" is reserved",
        "auth.jwt.issuers[2].algorithms: a configured RSA key",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn unknown_fields_are_rejected() {
    let err = toml::from_str::<JwtRaw>(
        r#"
        [[issuers]]
        issuer = "x"
        audience = "typo"
        "#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `audience`"),
        "{err}"
    );
}

#[test]
fn reasons_are_stable() {
    assert_eq!(JwtError::Expired.reason(), "jwt.expired");
    assert_eq!(JwtError::AlgNone.reason(), "jwt.alg_none");
    assert_eq!(JwtError::UnknownKid.reason(), "jwt.unknown_kid");
}

fn typed_rs256(claims: &serde_json::Value, typ: Option<&str>) -> String {
    let mut header = header(Algorithm::RS256, Some("rsa-1"));
    header.typ = typ.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    encode(&header, claims, &key).unwrap()
}

fn access_token_issuer(required_typ: &str) -> JwtVerifier {
    rsa_issuer_with(AUD, &format!("required_typ = \"{required_typ}\""))
}

#[test]
fn required_typ_accepts_the_type_in_either_form_and_refuses_others() {
    for configured in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let verifier = access_token_issuer(configured);
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(
                verifier.verify(&typed_rs256(&claims(), Some(typ))).is_ok(),
                "{configured} / {typ}"
            );
        }
        let wrong = JwtError::WrongType {
            required: "at+jwt".to_owned(),
        };
        for typ in [
            Some("JWT"),
            Some("application/jwt"),
            Some("at+jwt "),
            Some("xat+jwt"),
            Some("application/at+jwt/extra"),
            None,
        ] {
            assert_eq!(
                verifier.verify(&typed_rs256(&claims(), typ)),
                Err(wrong.clone()),
                "{configured} / {typ:?}"
            );
        }
    }
    assert_eq!(
        JwtError::WrongType {
            required: "at+jwt".to_owned()
        }
        .reason(),
        "jwt.wrong_typ"
    );
}

#[test]
fn the_type_is_checked_only_on_otherwise_valid_tokens_and_only_when_required() {
    let verifier = access_token_issuer("at+jwt");
    // A wrong type on an expired token is reported as expired: the type is
    // only revealed to holders of a token that is valid in every other way.
    let expired = with(claims(), "exp", json!(now() - 3600));
    assert_eq!(
        verifier.verify(&typed_rs256(&expired, Some("JWT"))),
        Err(JwtError::Expired)
    );
    // A typ header that is not a string is malformed.
    let token = format!(
        "{}.{}.sig",
        b64(&json!({"alg": "RS256", "kid": "rsa-1", "typ": 1})),
        b64(&claims())
    );
    assert_eq!(verifier.verify(&token), Err(JwtError::Malformed));
    // Without `required_typ`, any type (or none) passes as before.
    let lenient = rsa_issuer();
    for typ in [Some("JWT"), Some("at+jwt"), None] {
        assert!(
            lenient.verify(&typed_rs256(&claims(), typ)).is_ok(),
            "{typ:?}"
        );
    }
}

#[test]
fn required_typ_must_be_a_media_type() {
    for bad in ["", "text/plain", "at jwt", "application/"] {
        let (verifier, problems) = Fixture::new().validate(&format!(
            r#"
            [[issuers]]
            issuer = "{ISS}"
            audiences = ["{AUD}"]
            algorithms = ["RS256"]
            keys = [{{ kid = "rsa-1", pem_file = "rsa.pem" }}]
            required_typ = "{bad}"
            "#
        ));
        assert!(verifier.is_none(), "{bad:?}");
        assert!(
            problems.to_string().contains(&format!(
                "auth.jwt.issuers[{ISS:?}].required_typ: must be a media type"
            )),
            "{bad:?}: {problems}"
        );
    }
}

#[test]
fn a_remembered_token_never_vouches_for_a_tampered_copy() {
    let verifier = rsa_issuer();
    let token = rs256(&claims(), Some("rsa-1"));
    let first = verifier.verify(&token).unwrap();
    // The second verification of the same text is served from the cache
    // and gives the same outcome.
    assert_eq!(verifier.verify(&token).unwrap(), first);
    // Same header and signature, claims edited to another subject: the
    // signature no longer matches, cached original or not.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = b64(&with(claims(), "sub", json!("mallory")));
    parts[1] = &forged_claims;
    assert_eq!(
        verifier.verify(&parts.join(".")),
        Err(JwtError::BadSignature)
    );
    // One byte of the signature changed.
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(verifier.verify(&tampered).is_err());
    // The original still verifies.
    assert_eq!(verifier.verify(&token).unwrap(), first);
}

#[test]
fn a_reloaded_policy_does_not_inherit_remembered_tokens() {
    let token = rs256(&claims(), Some("rsa-1"));
    let before = rsa_issuer();
    assert!(before.verify(&token).is_ok());
    // The reloaded policy's issuer serves another audience: the token the
    // old verifier remembered is judged afresh and refused.
    let after = rsa_issuer_for("another-api");
    assert_eq!(after.verify(&token), Err(JwtError::WrongAudience));
    assert!(before.verify(&token).is_ok());
}

/// A key pinned (JWKS `alg`) to an algorithm the allowlist lacks verifies
/// nothing, and an allowed algorithm without a key fails every token: both
/// are configuration problems, not surprises at run time.
#[test]
fn keys_and_algorithms_must_fit_both_ways() {
    let (_, _, ec_raw) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-pinned", "alg": "ES256",
         "x": URL_SAFE_NO_PAD.encode(&ec_raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&ec_raw[33..])},
    ]});
    let fixture = Fixture::new();
    fixture.file("jwks.json", &jwks.to_string());
    let (verifier, problems) = fixture.validate(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["ES384"]
        jwks_file = "jwks.json"

        [[issuers]]
        issuer = "https://second.example.com/"
        audiences = ["{AUD}"]
        algorithms = ["RS256", "ES256"]
        keys = [{{ kid = "rsa-1", pem_file = "rsa.pem" }}]
        "#
    ));
    assert!(verifier.is_none());
    let text = problems.to_string();
    for expected in [
        format!("auth.jwt.issuers[{ISS:?}].algorithms: the EC key (kid \"ec-pinned\") is pinned to ES256"),
        format!("auth.jwt.issuers[{ISS:?}].keys: algorithms allows ES384, but no EC key"),
        "auth.jwt.issuers[\"https://second.example.com/\"].keys: algorithms allows ES256, but no EC key".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("RS256, but"), "{text}");
}

/// A key source that fails is reported once: not again as "no key".
#[test]
fn a_broken_key_source_is_not_also_reported_missing() {
    let fixture = Fixture::new();
    fixture.file("jwks.json", "{ not json");
    let (verifier, problems) = fixture.validate(&format!(
        r#"
        [[issuers]]
        issuer = "{ISS}"
        audiences = ["{AUD}"]
        algorithms = ["HS256", "RS256"]
        secret = {{ env = "SHORT" }}
        jwks_file = "jwks.json"
        "#
    ));
    assert!(verifier.is_none());
    let text = problems.to_string();
    assert_eq!(problems.len(), 2, "{text}");
    assert!(text.contains(".secret:") && text.contains("32"), "{text}");
    assert!(text.contains(".jwks_file: not a JWKS document"), "{text}");
    assert!(!text.contains("no secret"), "{text}");
    assert!(!text.contains("no RSA key"), "{text}");
}
