use std::collections::BTreeMap;

use super::*;
use crate::checks::Problems;

/// The shipped ranges (see the example policy).
fn analyze_rules() -> QueryRules {
    let raw: BTreeMap<String, ParamRaw> = toml::from_str(
        r#"
            sigma = { type = "float", min = 0.1, max = 5.0 }
            sigma_risk = { type = "float", min = 0.1, max = 5.0 }
            sigma_loss = { type = "float", min = 0.1, max = 5.0 }
            k = { type = "float", min = 0.1, max = 10.0 }
            vr = { type = "float", min = 0.01, max = 5.0 }
            symbol = { type = "string", max_length = 32 }
            "#,
    )
    .unwrap();
    let mut problems = Problems::new();
    let rules = validate_query(&raw, "routes[0].query", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    rules.unwrap()
}

fn reason(query: &str) -> &'static str {
    analyze_rules().check(Some(query)).unwrap_err().reason()
}

#[test]
fn valid_queries_pass() {
    let rules = analyze_rules();
    for query in [
        "sigma=2",
        "sigma=0.1&k=10",
        "sigma=5.0&sigma_risk=1.5&k=1e0",
        "vr=.35",
        "vr=0.01",
        "symbol=MNQ",
        "symbol=ES%20Z5",
        "symbol=NQ+H6",
        "symbol=",
        "symbol=a.b_c-d",
        "",
        "&&sigma=1&",
    ] {
        assert!(rules.check(Some(query)).is_ok(), "{query}");
    }
    assert!(rules.check(None).is_ok());
    assert!(QueryRules::default().check(None).is_ok());
}

#[test]
fn out_of_range_and_non_finite_values_are_refused() {
    for query in [
        "sigma=0",
        "sigma=5.01",
        "sigma=-1",
        "k=0",
        "k=10.5",
        "vr=0.001",
        "vr=6",
        "sigma=nan",
        "sigma=NaN",
        "sigma=inf",
        "sigma=-infinity",
        "sigma=1e400",
        "sigma=",
        "sigma",
        "sigma=abc",
        "sigma=%202",
        "sigma=1_0",
        "sigma=0x1",
    ] {
        assert_eq!(reason(query), "query.invalid_value", "{query}");
    }
}

#[test]
fn invalid_value_names_the_parameter_and_range() {
    let rejection = Rejection::from(analyze_rules().check(Some("sigma=9")).unwrap_err());
    assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        rejection.message,
        "invalid value for query parameter 'sigma'"
    );
    assert_eq!(
        rejection.details,
        vec!["sigma: must be a number from 0.1 to 5"]
    );
}

#[test]
fn strings_are_limited_in_length_and_characters() {
    assert!(analyze_rules()
        .check(Some(&format!("symbol={}", "A".repeat(32))))
        .is_ok());
    for query in [
        format!("symbol={}", "A".repeat(33)),
        "symbol=%3Cscript%3E".to_owned(),
        "symbol=a%0Ab".to_owned(),
        "symbol=caf%C3%A9".to_owned(),
        "symbol=a/b".to_owned(),
    ] {
        assert_eq!(reason(&query), "query.invalid_value", "{query}");
    }
}

#[test]
fn unknown_repeated_and_malformed_parameters_are_refused() {
    assert_eq!(reason("SIGMA=1"), "query.unknown_parameter");
    assert_eq!(reason("sigma=1&debug=1"), "query.unknown_parameter");
    assert_eq!(reason("sigma=1&sigma=2"), "query.repeated_parameter");
    assert_eq!(reason("sigma=1&sigma=1"), "query.repeated_parameter");
    assert_eq!(reason("sigma=%zz"), "query.malformed");
    assert_eq!(reason("sigma=%2"), "query.malformed");
    assert_eq!(reason("s%FFigma=1"), "query.malformed");
    let rejection = Rejection::from(analyze_rules().check(Some("debug=1")).unwrap_err());
    assert_eq!(
        rejection.message,
        "query parameter 'debug' is not allowed on this endpoint"
    );
    // Routes without rules accept no parameters.
    assert_eq!(
        QueryRules::default()
            .check(Some("sigma=1"))
            .unwrap_err()
            .reason(),
        "query.unknown_parameter"
    );
}

#[test]
fn credentials_in_the_url_are_refused_first() {
    for query in [
        "api_key=th_x",
        "sigma=1&access_token=abc",
        "debug=1&API_KEY=x",
        "Access_Token",
    ] {
        assert_eq!(reason(query), "query.credentials_in_url", "{query}");
    }
    let rejection = Rejection::from(
        QueryRules::default()
            .check(Some("api_key=secret123"))
            .unwrap_err(),
    );
    let body = String::from_utf8(rejection.envelope().to_bytes()).unwrap();
    assert!(!body.contains("secret123"), "{body}");
    assert!(body.contains("api_key"), "{body}");
}

#[test]
fn credentials_in_the_url_are_found_on_any_route() {
    for query in ["api_key=x", "a=1&ACCESS_TOKEN=y", "id%5Ftoken=z", "jwt"] {
        assert_eq!(
            refuse_credentials_in_url(Some(query)).unwrap_err().reason(),
            "query.credentials_in_url",
            "{query}"
        );
    }
    assert!(refuse_credentials_in_url(Some("sigma=1&symbol=%zz")).is_ok());
    assert!(refuse_credentials_in_url(None).is_ok());
}

#[test]
fn hostile_parameter_names_are_truncated_when_echoed() {
    let name = "x".repeat(5000);
    let rejection = Rejection::from(
        analyze_rules()
            .check(Some(&format!("{name}=1")))
            .unwrap_err(),
    );
    assert!(rejection.message.len() < 200);
}

#[test]
fn configuration_problems_are_reported() {
    let raw: BTreeMap<String, ParamRaw> = toml::from_str(
        r#"
            a = { type = "float", min = 5.0, max = 1.0 }
            b = { type = "float", max = 1.0 }
            c = { type = "string" }
            d = { type = "int" }
            e = { type = "string", max_length = 4, chars = "z-a" }
            f = { type = "float", min = 1.0, max = 2.0, max_length = 3 }
            api_key = { type = "string", max_length = 10 }
            "bad name" = { type = "string", max_length = 10 }
            "#,
    )
    .unwrap();
    let mut problems = Problems::new();
    assert!(validate_query(&raw, "q", &mut problems).is_none());
    for path in [
        "q.a",
        "q.b",
        "q.c",
        "q.d.type",
        "q.e.chars",
        "q.f.max_length",
        "q.api_key",
        "q.bad name",
    ] {
        assert!(problems.has(path), "{path}: {problems}");
    }
    assert!(
        toml::from_str::<BTreeMap<String, ParamRaw>>("a = { type = \"float\", mn = 1 }").is_err()
    );
}

#[test]
fn char_classes() {
    let class = CharClass::parse("A-Za-z0-9 ._-").unwrap();
    for c in ['A', 'z', '5', ' ', '.', '_', '-'] {
        assert!(class.contains(c), "{c}");
    }
    for c in ['/', '<', 'é', '\n', '+'] {
        assert!(!class.contains(c), "{c}");
    }
    assert!(CharClass::parse("-a").unwrap().contains('-'));
    assert!(CharClass::parse("").is_err());
}

#[test]
fn json_depth_is_capped() {
    let rules = JsonRules { max_depth: 3 };
    assert!(rules
        .check(br#"{"goals": [{"mistake_types": []}]}"#)
        .is_err());
    assert!(rules.check(br#"{"goals": [{"id": 1}]}"#).is_ok());
    assert!(rules.check(br#"{"k": 1.5, "vr": 0.4}"#).is_ok());
    // Brackets inside strings, and escaped quotes, do not count.
    assert!(rules.check(br#"{"a": "[[[[{{{{", "b": "\"[[[["}"#).is_ok());
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let rejection = Rejection::from(rules.check(deep.as_bytes()).unwrap_err());
    assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
    assert_eq!(rejection.reason, "body.json_too_deep");

    let mut problems = Problems::new();
    assert!(validate_json(
        &JsonRaw { max_depth: Some(0) },
        "routes[1].json",
        &mut problems
    )
    .is_none());
    assert!(problems.has("routes[1].json.max_depth"));
    assert_eq!(
        validate_json(&JsonRaw::default(), "j", &mut problems)
            .unwrap()
            .max_depth,
        DEFAULT_JSON_MAX_DEPTH
    );
}
