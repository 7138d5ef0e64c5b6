use super::{closest, distance};
use crate::config::tests::MINIMAL;
use crate::config::Config;

fn problems(text: &str) -> Vec<String> {
    Config::from_toml(text).unwrap_err().problems()
}

#[test]
fn every_unknown_key_is_reported_at_once_with_a_suggestion() {
    let text = MINIMAL
        .replace("listen = ", "lisen = \"x\"\nlisten = ")
        .replace("[upstream]\n", "[upstream]\nready_pth = \"/api/health\"\n")
        .replace("methods = [\"GET\"]", "methdos = [\"GET\"]\nbody_limt = 10")
        + "\n[limits]\nheader_timeout = \"5s\"\n";
    let found = problems(&text);
    for expected in [
        "server.lisen: unknown key `lisen`; did you mean `listen`?",
        "upstream.ready_pth: unknown key `ready_pth`; did you mean `ready_path`?",
        "routes[\"health\"].methdos: unknown key `methdos`; did you mean `methods`?",
        "routes[\"health\"].body_limt: unknown key `body_limt`; did you mean `body_limit`?",
        "limits.header_timeout: unknown key `header_timeout`",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {found:#?}"
        );
    }
    // `methdos` is not reported a second time as a missing `methods`.
    assert!(
        !found.iter().any(|p| p.contains("methods: is required")),
        "{found:#?}"
    );
    assert_eq!(found.len(), 5, "{found:#?}");
}

#[test]
fn unknown_values_of_a_fixed_set_are_named_with_their_key() {
    let text = MINIMAL.replace(
        "methods = [\"GET\"]",
        "methods = [\"GET\"]\nauth = \"nonee\"",
    );
    let found = problems(&text);
    assert!(
        found.iter().any(|p| p.starts_with(
            "routes[\"health\"].auth: `nonee` is not one of required, optional, none; did you mean `none`?"
        )),
        "{found:#?}"
    );
}

#[test]
fn nested_unknown_keys_are_found_where_they_are() {
    let text = MINIMAL.replace(
        "methods = [\"GET\"]",
        "methods = [\"GET\"]\nrate_limit = { per_ipp = [\"5/minute\"] }",
    ) + "\n[[jwt.issuers]]\nissuer = \"https://idp/\"\naudiences = [\"a\"]\nalgorithm = [\"RS256\"]\n";
    let found = problems(&text);
    for expected in [
        "routes[\"health\"].rate_limit.per_ipp: unknown key `per_ipp`; did you mean `per_ip`?",
        "jwt.issuers[\"https://idp/\"].algorithm: unknown key `algorithm`; did you mean `algorithms`?",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {found:#?}"
        );
    }
}

#[test]
fn suggestions_are_only_for_likely_typos() {
    let known = ["listen".to_owned(), "names".to_owned()];
    assert_eq!(closest("lisetn", &known).as_deref(), Some("listen"));
    assert_eq!(closest("colour", &known), None);
    assert_eq!(distance("ab", "ba"), 1);
    assert_eq!(distance("", "abc"), 3);
}
