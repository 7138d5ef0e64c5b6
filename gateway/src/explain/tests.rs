use super::*;
use crate::policy::Outcome;

/// A policy with listed names, one scoped route with quotas and one open.
const POLICY: &str = r#"
[server]
listen = "127.0.0.1:8443"
names = ["api.example"]

[tls]
cert = "does-not-exist/cert.pem"
key = "does-not-exist/key.pem"

[upstream]
address = "unix:/run/tradehabit/worker.sock"

[cors]
allowed_origins = ["https://app.example"]

[[routes]]
name = "report"
path = "/api/report"
methods = ["GET"]
scopes = ["read"]
content_types = []
rate_limit = { per_ip = ["1/minute"], per_principal = ["5/minute"] }
query = { days = { type = "float", min = 1.0, max = 30.0 } }

[[routes]]
name = "open"
path = "/api/open"
methods = ["GET"]
auth = "none"
"#;

fn policy() -> Config {
    Config::from_toml(POLICY).unwrap()
}

fn get(url: &str) -> ExplainRequest {
    ExplainRequest {
        method: "GET".into(),
        url: url.into(),
        ..ExplainRequest::default()
    }
}

fn reader(url: &str) -> ExplainRequest {
    ExplainRequest {
        caller_scopes: Some(vec!["read".into()]),
        caller_id: Some("reader".into()),
        ..get(url)
    }
}

fn checks(report: &Report) -> Vec<(&'static str, Outcome)> {
    report.steps.iter().map(|s| (s.check, s.outcome)).collect()
}

#[tokio::test]
async fn a_forwarded_request_shows_every_check_and_the_upstream_head() {
    let mut request = reader("https://api.example/api/report?days=7");
    request.headers = vec![
        "Origin: https://app.example".into(),
        "X-TradeHabit-Principal: key:admin".into(),
    ];
    let report = explain(policy(), &request).await.unwrap();
    assert_eq!(
        checks(&report),
        [
            ("shape", Outcome::Pass),
            ("host", Outcome::Pass),
            ("path", Outcome::Pass),
            ("route", Outcome::Pass),
            ("cors", Outcome::Pass),
            ("credentials_in_url", Outcome::Pass),
            ("rate_limit_ip", Outcome::Pass),
            ("authenticate", Outcome::Pass),
            ("scopes", Outcome::Pass),
            ("rate_limit_principal", Outcome::Pass),
            ("query", Outcome::Pass),
            ("content_type", Outcome::Pass),
            ("body", Outcome::Pass),
            ("body_contents", Outcome::Skip),
        ]
    );
    // No certificate here: one valid for the listed names is assumed.
    assert_eq!(report.assumptions.len(), 1, "{:?}", report.assumptions);
    assert_eq!(report.route.as_deref(), Some("report"));
    assert_eq!(report.principal.as_deref(), Some("key:reader"));
    assert!(report.answer.forwarded);
    let charged = &report.steps[6].detail;
    assert!(charged.contains("ip-minute 1/60s (0 left)"), "{charged}");
    let upstream = report.upstream.as_ref().unwrap();
    assert_eq!(upstream.target, "/api/report?days=7");
    let header = |name: &str| {
        upstream
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-tradehabit-principal"), Some("key:reader"));
    assert_eq!(header("x-tradehabit-scopes"), Some("read"));
    assert_eq!(header("x-api-key"), None, "the key is consumed");
    let answer_headers = &report.answer.headers;
    assert!(answer_headers
        .iter()
        .any(|(n, v)| n == "access-control-allow-origin" && v == "https://app.example"));
    assert!(answer_headers.iter().any(|(n, _)| n == "ratelimit"));
}

#[tokio::test]
async fn a_refusal_shows_the_check_the_reason_and_the_envelope() {
    let report = explain(policy(), &get("https://api.example/api/report"))
        .await
        .unwrap();
    let last = report.steps.last().unwrap();
    assert_eq!(
        (last.check, last.outcome),
        ("authenticate", Outcome::Refuse)
    );
    assert_eq!(report.answer.status, Some(401));
    assert_eq!(report.answer.reason, Some("auth.missing"));
    let envelope = report.answer.envelope.as_ref().unwrap();
    assert_eq!(envelope["status"], "ERROR");
    assert_eq!(envelope["message"], "authentication required");
    assert!(report.upstream.is_none());
    let human = report.human();
    assert!(human.contains("Answer: 401 Unauthorized"), "{human}");
    assert!(human.contains("\"status\":\"ERROR\""), "{human}");
}

#[tokio::test]
async fn the_host_check_is_the_real_one() {
    let report = explain(policy(), &reader("https://other.example/api/report"))
        .await
        .unwrap();
    assert_eq!(report.answer.status, Some(421));
    let last = report.steps.last().unwrap();
    assert_eq!((last.check, last.outcome), ("host", Outcome::Refuse));
}

#[tokio::test]
async fn a_certificate_not_readable_here_is_assumed_and_said() {
    let text = POLICY.replace("names = [\"api.example\"]\n", "");
    let config = Config::from_toml(&text).unwrap();
    let report = explain(config, &reader("https://api.example/api/report"))
        .await
        .unwrap();
    assert!(report.answer.forwarded);
    assert_eq!(report.assumptions.len(), 1);
    assert!(report.assumptions[0].contains("assumed to be valid for api.example"));
}

#[tokio::test]
async fn the_rate_limiters_charged_are_the_dry_runs_own() {
    // Two requests on the same rate-limit state: the second is over the
    // per-IP quota of one a minute, as on the live gateway.
    let config = policy();
    let (limits, note) = setup::fresh_rate_limits(&config).unwrap();
    assert!(note.is_none());
    let request = reader("https://api.example/api/report");
    let first = explain_with(config.clone(), &limits, &request)
        .await
        .unwrap();
    assert!(first.answer.forwarded);
    let second = explain_with(config.clone(), &limits, &request)
        .await
        .unwrap();
    assert_eq!(second.answer.status, Some(429));
    assert_eq!(second.answer.reason, Some("rate_limit.exceeded"));
    // `explain` charges fresh buckets each time: nothing is kept.
    for _ in 0..2 {
        let fresh = explain(config.clone(), &request).await.unwrap();
        assert!(fresh.answer.forwarded);
    }
}

#[tokio::test]
async fn a_redis_store_is_replaced_by_memory_and_said() {
    let text = POLICY.replace(
        "[cors]",
        "[rate_limit]\nstore = \"redis\"\nredis = { address = \"redis://127.0.0.1:1\" }\n\n[cors]",
    );
    let config = Config::from_toml(&text).unwrap();
    let request = reader("https://api.example/api/report");
    // Nothing listens on port 1: the memory store answers, and charges.
    let report = explain(config, &request).await.unwrap();
    assert!(report.answer.forwarded);
    let step = report
        .steps
        .iter()
        .find(|s| s.check == "rate_limit_ip")
        .unwrap();
    assert_eq!(step.outcome, Outcome::Pass);
    assert!(
        report
            .assumptions
            .iter()
            .any(|a| a.contains("store = \"redis\"") && a.contains("in-memory")),
        "{:?}",
        report.assumptions
    );
    assert!(report.human().contains("in-memory"), "{}", report.human());
}

#[tokio::test]
async fn credentials_are_never_shown() {
    let mut request = get("https://api.example/api/open");
    request.headers = vec![
        "Authorization: Bearer secret-token-value".into(),
        "Cookie: session=secret-cookie-value".into(),
    ];
    let report = explain(policy(), &request).await.unwrap();
    // `auth = "none"`: the credential is the upstream's and is passed on,
    // but the report does not print it.
    let upstream = report.upstream.as_ref().unwrap();
    assert!(upstream
        .headers
        .iter()
        .any(|(n, v)| n == "authorization" && v == "<redacted>"));
    for text in [report.human(), report.json()] {
        assert!(!text.contains("secret-token-value"), "{text}");
        assert!(!text.contains("secret-cookie-value"), "{text}");
    }
    // The stand-in caller's key is not shown either.
    let report = explain(policy(), &reader("https://api.example/api/report"))
        .await
        .unwrap();
    assert!(!report.json().contains("th_"), "{}", report.json());
}

#[tokio::test]
async fn a_preflight_is_answered_before_authentication() {
    let mut request = get("https://api.example/api/report");
    request.method = "OPTIONS".into();
    request.headers = vec![
        "Origin: https://app.example".into(),
        "Access-Control-Request-Method: GET".into(),
    ];
    let report = explain(policy(), &request).await.unwrap();
    assert_eq!(report.answer.status, Some(204));
    assert_eq!(report.route.as_deref(), Some("report"));
    assert_eq!(report.steps.last().unwrap().outcome, Outcome::Answer);
    assert!(!checks(&report).iter().any(|(c, _)| *c == "authenticate"));
}

#[tokio::test]
async fn bad_command_line_words_are_errors() {
    for (method, url) in [
        ("GET", "http://api.example/api/report"),
        ("GET", "/api/report"),
        ("G ET", "https://api.example/"),
    ] {
        let request = ExplainRequest {
            method: method.into(),
            url: url.into(),
            ..ExplainRequest::default()
        };
        assert!(explain(policy(), &request).await.is_err(), "{method} {url}");
    }
    let mut request = get("https://api.example/api/report");
    request.headers = vec!["no colon".into()];
    assert!(explain(policy(), &request).await.is_err());
}

const TESTS: &str = r#"
[callers.reader]
scopes = ["read"]

[[tests]]
name = "reader reads"
method = "GET"
url = "https://api.example/api/report"
caller = "reader"
expect = { status = "forwarded", route = "report", principal = "key:reader", forwarded_headers = { "x-tradehabit-scopes" = "read" } }

[[tests]]
name = "reader reads again, on fresh buckets"
method = "GET"
url = "https://api.example/api/report"
caller = "reader"
expect = { status = "forwarded", not_forwarded_headers = ["x-api-key"] }

[[tests]]
name = "anonymous is refused"
method = "GET"
url = "https://api.example/api/report"
expect = { status = 401, check = "auth", reason = "auth.missing" }
"#;

#[tokio::test]
async fn policy_tests_pass_on_the_policy_they_describe() {
    let run = policy_tests::run(&|| Config::from_toml(POLICY), TESTS)
        .await
        .unwrap();
    assert_eq!((run.passed, run.failed), (3, 0), "{run}");
    // The open route has no test: said, but not a failure.
    assert_eq!(run.uncovered, ["open"]);
    assert!(run.to_string().contains("routes no test reaches: open"));
}

#[tokio::test]
async fn policy_tests_catch_a_dropped_scope_with_a_diff() {
    let opened = POLICY.replace("scopes = [\"read\"]\n", "");
    let tests = TESTS.replace(
        "[[tests]]\nname = \"anonymous",
        "[[tests]]\nname = \"no scope, no read\"\nmethod = \"GET\"\nurl = \"https://api.example/api/report\"\ncaller = \"nobody\"\nexpect = { status = 403, reason = \"authz.missing_scope\" }\n\n[[tests]]\nname = \"anonymous",
    );
    let tests = format!("[callers.nobody]\nscopes = []\n{tests}");
    let closed = policy_tests::run(&|| Config::from_toml(POLICY), &tests)
        .await
        .unwrap();
    assert_eq!(closed.failed, 0, "{closed}");
    let run = policy_tests::run(&|| Config::from_toml(&opened), &tests)
        .await
        .unwrap();
    assert_eq!(run.failed, 1, "{run}");
    let text = run.to_string();
    assert!(text.contains("FAIL no scope, no read"), "{text}");
    assert!(
        text.contains("status: expected \"403\", got \"forwarded\""),
        "{text}"
    );
    assert!(text.contains("reason: expected \"authz.missing_scope\", got none"));
}

#[tokio::test]
async fn policy_tests_files_are_checked() {
    let load = || Config::from_toml(POLICY);
    // Unknown keys, a caller not defined, and no tests at all are errors.
    let typo = TESTS.replace("expect = { status = 401", "expect = { stauts = 401");
    assert!(policy_tests::run(&load, &typo).await.is_err());
    let unknown_caller = TESTS.replace("caller = \"reader\"", "caller = \"writer\"");
    assert!(policy_tests::run(&load, &unknown_caller).await.is_err());
    assert!(policy_tests::run(&load, "").await.is_err());
    let word = TESTS.replace(
        "status = \"forwarded\", route",
        "status = \"forward\", route",
    );
    let error = policy_tests::run(&load, &word).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("not \"forward\""),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_token_endpoint_answer_is_shown_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s".repeat(40)).unwrap();
    let text = format!(
        "[tokens]\nsecret = {{ file = \"secret\" }}\nsession = {{ enabled = true }}\n{POLICY}"
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::from_file(&path).unwrap();
    let mut request = get("https://api.example/auth/session");
    request.method = "POST".into();
    request.headers = vec!["Origin: https://app.example".into()];
    let report = explain(config, &request).await.unwrap();
    assert_eq!(report.answer.status, Some(200));
    let last = report.steps.last().unwrap();
    assert_eq!((last.check, last.outcome), ("endpoint", Outcome::Answer));
    assert!(report.answer.envelope.is_none());
    let json = report.json();
    assert!(!json.contains("eyJ"), "no token in: {json}");
}
