use super::*;

const LEGACY_ORIGINS: &[&str] = &[
    "http://127.0.0.1:5173",
    "http://localhost:5173",
    "https://tradehabit-frontend.replit.app",
    "https://app.tradehab.it",
];

fn policy_with(raw: CorsRaw) -> CorsPolicy {
    let mut problems = Problems::new();
    let policy = validate(&raw, "cors", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    policy.unwrap()
}

fn legacy() -> CorsPolicy {
    policy_with(CorsRaw {
        allowed_origins: LEGACY_ORIGINS.iter().map(|s| (*s).to_owned()).collect(),
        ..CorsRaw::default()
    })
}

fn request(origin: Option<&str>, extra: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(origin) = origin {
        headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
    }
    for (name, value) in extra {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn preflight_for(origin: &str, method: &str, req_headers: Option<&str>) -> HeaderMap {
    let mut extra = vec![("access-control-request-method", method)];
    if let Some(h) = req_headers {
        extra.push(("access-control-request-headers", h));
    }
    request(Some(origin), &extra)
}

const GET_ONLY: &[Method] = &[Method::GET, Method::HEAD];
const POST_ONLY: &[Method] = &[Method::POST];

#[test]
fn allowed_origin_gets_a_full_preflight_answer() {
    let out = legacy()
        .preflight(
            &preflight_for(
                "https://app.tradehab.it",
                "POST",
                Some("authorization, content-type"),
            ),
            POST_ONLY,
        )
        .unwrap();
    assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.tradehab.it");
    assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], "POST");
    assert_eq!(
        out[ACCESS_CONTROL_ALLOW_HEADERS],
        "Authorization, Content-Type, X-API-Key"
    );
    assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "600");
    assert!(out[VARY].to_str().unwrap().starts_with("Origin"));
    assert!(!out.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
}

#[test]
fn preflight_matrix_of_hostile_origins_is_refused() {
    for origin in [
        "https://malicious.com",
        "null",
        "https://app.tradehab.it.evil.com",
        "https://evil-tradehab.it",
        "https://evilapp.tradehab.it",
        "http://app.tradehab.it",       // downgrade
        "https://app.tradehab.it:8443", // port change
        "https://APP.TRADEHAB.IT",      // browsers never send this
        "https://app.tradehab.it/",     // trailing slash
        "http://localhost:5174",
        "",
    ] {
        let err = legacy()
            .preflight(&preflight_for(origin, "GET", None), GET_ONLY)
            .unwrap_err();
        assert_eq!(err, CorsError::OriginNotAllowed, "{origin:?}");
        let rejection = Rejection::from(err);
        assert_eq!(rejection.status, StatusCode::FORBIDDEN);
        assert!(rejection.headers.iter().any(|(n, _)| n == VARY));
        assert!(!rejection
            .headers
            .iter()
            .any(|(n, _)| n == ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}

#[test]
fn preflight_for_an_unserved_method_or_header_is_refused() {
    let policy = legacy();
    assert_eq!(
        policy.preflight(
            &preflight_for("https://app.tradehab.it", "DELETE", None),
            GET_ONLY
        ),
        Err(CorsError::MethodNotAllowed)
    );
    assert_eq!(
        policy.preflight(
            &preflight_for("https://app.tradehab.it", "GET", Some("x-custom")),
            GET_ONLY
        ),
        Err(CorsError::HeaderNotAllowed)
    );
    assert_eq!(
        policy.preflight(
            &preflight_for("https://app.tradehab.it", "G E T", None),
            GET_ONLY
        ),
        Err(CorsError::MethodNotAllowed)
    );
}

#[test]
fn actual_request_from_allowed_origin_gets_acao_and_exposed_headers() {
    let out = legacy()
        .actual(
            &Method::GET,
            &request(Some("http://localhost:5173"), &[]),
            None,
        )
        .unwrap();
    assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:5173");
    assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], EXPOSED_HEADERS);
    assert_eq!(out[VARY], "Origin");
}

#[test]
fn disallowed_or_missing_origin_gets_only_vary() {
    for origin in [Some("https://malicious.com"), Some("null"), None] {
        let out = legacy()
            .actual(&Method::GET, &request(origin, &[]), None)
            .unwrap();
        assert_eq!(out.len(), 1, "{origin:?}: {out:?}");
        assert_eq!(out[VARY], "Origin");
    }
}

#[test]
fn cross_origin_writes_are_blocked_unless_allowed_or_same_origin() {
    let policy = legacy();
    let hostile = request(
        Some("https://malicious.com"),
        &[("content-type", "text/plain")],
    );
    assert_eq!(
        policy.actual(&Method::POST, &hostile, Some("api.tradehab.it")),
        Err(CorsError::CrossOriginWrite)
    );
    assert_eq!(
        policy.actual(
            &Method::POST,
            &request(Some("null"), &[]),
            Some("api.tradehab.it")
        ),
        Err(CorsError::CrossOriginWrite)
    );
    // Reads from the same origin are served (without CORS headers).
    assert!(policy.actual(&Method::GET, &hostile, None).is_ok());
    // Allowed origin, same origin, and no Origin at all (curl) pass.
    assert!(policy
        .actual(
            &Method::POST,
            &request(Some("https://app.tradehab.it"), &[]),
            None
        )
        .is_ok());
    assert!(policy
        .actual(
            &Method::POST,
            &request(Some("https://api.tradehab.it"), &[]),
            Some("api.tradehab.it")
        )
        .is_ok());
    assert!(policy
        .actual(
            &Method::POST,
            &request(Some("https://api.tradehab.it"), &[]),
            Some("api.tradehab.it:443")
        )
        .is_ok());
    assert!(policy
        .actual(&Method::POST, &request(None, &[]), None)
        .is_ok());

    let lenient = policy_with(CorsRaw {
        block_cross_origin_writes: Some(false),
        ..CorsRaw::default()
    });
    assert!(lenient.actual(&Method::POST, &hostile, None).is_ok());
}

#[test]
fn credentials_header_only_when_configured() {
    let policy = policy_with(CorsRaw {
        allowed_origins: vec!["https://app.tradehab.it".into()],
        allow_credentials: true,
        ..CorsRaw::default()
    });
    let out = policy
        .actual(
            &Method::GET,
            &request(Some("https://app.tradehab.it"), &[]),
            None,
        )
        .unwrap();
    assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
}

#[test]
fn allowlist_is_normalised() {
    let policy = policy_with(CorsRaw {
        allowed_origins: vec![
            "HTTPS://App.TradeHab.IT:443".into(),
            "http://[::1]:5173".into(),
        ],
        ..CorsRaw::default()
    });
    assert_eq!(
        policy.origins,
        vec!["https://app.tradehab.it", "http://[::1]:5173"]
    );
}

#[test]
fn bad_configuration_is_reported_with_paths() {
    let raw = CorsRaw {
        allowed_origins: vec![
            "null".into(),
            "*".into(),
            "https://app.tradehab.it/".into(),
            "ftp://x.example".into(),
            "app.tradehab.it".into(),
            "https://a.example:99999".into(),
            "https://ok.example".into(),
            "https://ok.example".into(),
            "https://bad_host.example".into(),
        ],
        allowed_headers: Some(vec!["*".into(), "bad header".into(), "X-API-Key".into()]),
        max_age_seconds: Some(86_400),
        ..CorsRaw::default()
    };
    let mut problems = Problems::new();
    assert!(validate(&raw, "routes[2].cors", &mut problems).is_none());
    for i in [0, 1, 2, 3, 4, 5, 7, 8] {
        assert!(
            problems.has(&format!("routes[2].cors.allowed_origins[{i}]")),
            "{i}: {problems}"
        );
    }
    assert!(!problems.has("routes[2].cors.allowed_origins[6]"));
    assert!(problems.has("routes[2].cors.allowed_headers[0]"));
    assert!(problems.has("routes[2].cors.allowed_headers[1]"));
    assert!(problems.has("routes[2].cors.max_age_seconds"));
    assert_eq!(problems.len(), 11, "{problems}");
}

#[test]
fn default_policy_refuses_every_preflight_but_still_varies() {
    let policy = CorsPolicy::default();
    assert_eq!(
        policy.preflight(
            &preflight_for("https://app.tradehab.it", "GET", None),
            GET_ONLY
        ),
        Err(CorsError::OriginNotAllowed)
    );
    let out = policy
        .actual(
            &Method::GET,
            &request(Some("https://app.tradehab.it"), &[]),
            None,
        )
        .unwrap();
    assert_eq!(out[VARY], "Origin");
    assert!(!out.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[test]
fn preflight_detection() {
    assert!(is_preflight(
        &Method::OPTIONS,
        &request(None, &[("access-control-request-method", "GET")])
    ));
    assert!(!is_preflight(&Method::OPTIONS, &request(None, &[])));
    assert!(!is_preflight(
        &Method::GET,
        &request(None, &[("access-control-request-method", "GET")])
    ));
}
