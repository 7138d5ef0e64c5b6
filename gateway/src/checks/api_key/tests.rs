use super::*;
use crate::checks::secret::tests::{context, env_of};
use std::path::Path;
use time::macros::datetime;

const PEPPER: &str = "pepper-pepper-pepper-pepper-pepper!";

fn pepper() -> Secret {
    Secret::new(PEPPER.as_bytes().to_vec())
}

/// Validates a policy section built from keygen output, the way an
/// operator would paste it.
fn keys_from(entries: &[String]) -> ApiKeys {
    let toml_text = format!(
        "pepper = {{ env = \"PEPPER\" }}\nkeys = [\n{}\n]\n",
        entries.join(",\n")
    );
    let raw: ApiKeysRaw = toml::from_str(&toml_text).unwrap();
    let env = env_of(&[("PEPPER", PEPPER)]);
    let mut problems = Problems::new();
    let keys = validate(
        &raw,
        "api_keys",
        &context(&env, Path::new("/")),
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems}");
    keys.unwrap()
}

fn generate(id: &str, scopes: &[&str]) -> GeneratedKey {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    keygen(&pepper(), id, &scopes, &mut rand::rngs::OsRng).unwrap()
}

const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

#[test]
fn generated_key_round_trips_through_the_policy() {
    let ci = generate("ci", &["trades:read", "trades:write"]);
    let other = generate("other", &[]);
    assert!(ci.key.starts_with("th_"));
    assert_eq!(ci.key.len(), 3 + 43);
    assert!(ci.policy_entry.starts_with("{ id = \"ci\", hash = \""));
    assert!(!ci.policy_entry.contains(&ci.key));
    assert!(!format!("{ci:?}").contains(&ci.key));

    let keys = keys_from(&[ci.policy_entry.clone(), other.policy_entry.clone()]);
    let matched = keys.check(ci.key.as_bytes(), NOW).unwrap();
    assert_eq!(matched.id, "ci");
    assert_eq!(
        matched.scopes,
        BTreeSet::from(["trades:read".to_owned(), "trades:write".to_owned()])
    );
    assert_eq!(keys.check(other.key.as_bytes(), NOW).unwrap().id, "other");
}

#[test]
fn wrong_keys_are_unknown() {
    let ci = generate("ci", &[]);
    let keys = keys_from(std::slice::from_ref(&ci.policy_entry));
    let mut wrong = ci.key.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] ^= 1;
    assert_eq!(keys.check(&wrong, NOW), Err(ApiKeyError::Unknown));
    assert_eq!(keys.check(b"th_nope", NOW), Err(ApiKeyError::Unknown));
    // The stored hash itself is not a key.
    let hash = ci.policy_entry.split('"').nth(3).unwrap().to_owned();
    assert_eq!(keys.check(hash.as_bytes(), NOW), Err(ApiKeyError::Unknown));
}

#[test]
fn malformed_keys_are_refused_before_hashing() {
    let keys = keys_from(&[generate("ci", &[]).policy_entry]);
    assert_eq!(keys.check(b"", NOW), Err(ApiKeyError::Malformed));
    assert_eq!(keys.check(b"has space", NOW), Err(ApiKeyError::Malformed));
    assert_eq!(keys.check(&[b'a'; 257], NOW), Err(ApiKeyError::Malformed));
    assert_eq!(
        keys.check("clé".as_bytes(), NOW),
        Err(ApiKeyError::Malformed)
    );
}

#[test]
fn revoked_and_expired_keys_are_refused_with_their_id() {
    let revoked = generate("old", &[]);
    let expiring = generate("temp", &[]);
    let revoked_entry = revoked.policy_entry.replace(" }", ", revoked = true }");
    let expiring_entry = expiring
        .policy_entry
        .replace(" }", ", expires = \"2025-06-01T12:00:00Z\" }");
    let keys = keys_from(&[revoked_entry, expiring_entry]);
    let err = keys.check(revoked.key.as_bytes(), NOW).unwrap_err();
    assert_eq!(err, ApiKeyError::Revoked { id: "old".into() });
    assert_eq!(err.reason(), "api_key.revoked");
    assert_eq!(err.key_id(), Some("old"));
    assert_eq!(
        keys.check(expiring.key.as_bytes(), NOW),
        Err(ApiKeyError::Expired { id: "temp".into() })
    );
    let before = datetime!(2025-06-01 11:59:59 UTC);
    assert_eq!(
        keys.check(expiring.key.as_bytes(), before).unwrap().id,
        "temp"
    );
    assert!(keys.active_scopes("temp", before).is_some());
    assert!(keys.active_scopes("temp", NOW).is_none());
    assert!(keys.active_scopes("old", before).is_none());
    assert!(keys.active_scopes("missing", before).is_none());
}

#[test]
fn a_different_pepper_matches_nothing() {
    let key = keygen(
        &Secret::new(b"another-pepper-another-pepper-0123".to_vec()),
        "ci",
        &[],
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let keys = keys_from(&[key.policy_entry]);
    assert_eq!(
        keys.check(key.key.as_bytes(), NOW),
        Err(ApiKeyError::Unknown)
    );
}

#[test]
fn empty_set_knows_no_key() {
    assert_eq!(
        ApiKeys::empty().check(b"th_x", NOW),
        Err(ApiKeyError::Unknown)
    );
}

#[test]
fn every_problem_is_reported() {
    let raw: ApiKeysRaw = toml::from_str(
        r#"
            keys = [
              { id = "", hash = "zz", scopes = ["bad scope"], expires = "tomorrow" },
              { id = "a", hash = "0000000000000000000000000000000000000000000000000000000000000000" },
              { id = "a", hash = "0000000000000000000000000000000000000000000000000000000000000000" },
            ]
            "#,
    )
    .unwrap();
    let env = env_of(&[]);
    let mut problems = Problems::new();
    assert!(validate(
        &raw,
        "api_keys",
        &context(&env, Path::new("/")),
        &mut problems
    )
    .is_none());
    for path in [
        "api_keys.pepper",
        "api_keys.keys[0].id",
        "api_keys.keys[0].hash",
        "api_keys.keys[0].scopes[0]",
        "api_keys.keys[0].expires",
        "api_keys.keys[2].id",
        "api_keys.keys[2].hash",
    ] {
        assert!(problems.has(path), "{path}: {problems}");
    }
    assert_eq!(problems.len(), 7, "{problems}");
}

#[test]
fn unknown_keys_in_the_section_are_rejected() {
    let err = toml::from_str::<ApiKeysRaw>("keys = [{ id = \"a\", hash = \"b\", key = \"c\" }]")
        .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn keygen_refuses_bad_arguments() {
    assert_eq!(
        keygen(&pepper(), "bad id", &[], &mut rand::rngs::OsRng).unwrap_err(),
        KeygenError::BadId
    );
    assert_eq!(
        keygen(&pepper(), "ok", &["a\"b".into()], &mut rand::rngs::OsRng).unwrap_err(),
        KeygenError::BadScope("a\"b".into())
    );
}
