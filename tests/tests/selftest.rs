//! `tradehabit-gateway selftest` against the real gateway in front of the
//! real worker: every check passes on a sound policy, and the checks that
//! guard a control fail when the policy weakens it (HSTS switched off, a
//! lookalike origin allowed).

use std::path::Path;

use tradehabit_e2e::attack::Stack;
use tradehabit_e2e::policy::{api_key, api_keys_table};
use tradehabit_gateway::selftest::{self, Credential, Options, Outcome, Report};

const PEPPER: &str = "selftest-e2e-pepper-selftest-e2e-pepper";
const ORIGIN: &str = "https://app.example.test";

/// The legacy API's shape with credentials: an open, rate-limited health
/// route, a read route, a settings route and the upload route.
const ROUTES: &str = r#"
[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
body_limit = 1024
rate_limit = { per_ip = ["600/minute"] }

[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
body_limit = 1024
scopes = ["read"]
rate_limit = { per_ip = ["600/minute"], per_principal = ["600/minute"] }

[[routes]]
name = "settings"
path = "/api/settings"
methods = ["GET", "POST"]
body_limit = 65536
scopes = ["settings"]

[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = { field = "file", extensions = [".csv"], max_file_bytes = 2097152 }
"#;

/// Every check the self-test runs, by name.
const CHECKS: [&str; 19] = [
    "TLS 1.0 refused",
    "TLS 1.1 refused",
    "TLS 1.2 accepted",
    "TLS 1.3 accepted",
    "ALPN h2 and http/1.1",
    "certificate covers the host name",
    "certificate not about to expire",
    "HSTS on a success answer",
    "HSTS on an error answer",
    "security headers",
    "CORS allowed origin",
    "CORS `null` origin refused",
    "CORS lookalike origins refused",
    "CORS unlisted origin refused",
    "no credential → 401 envelope",
    "rate-limit headers",
    "the credential is accepted",
    "oversized body → 413 before the upload completes",
    "unlisted Host refused",
];

/// The stack with `extra` policy tables (e.g. `[headers]`) and `origins`
/// allowed; returns it with an API key holding every scope.
async fn start(extra: &str, origins: &[&str]) -> (Stack, String) {
    let key = api_key(PEPPER, "selftest", &["read", "settings", "analyze"]);
    let origins = serde_json::to_string(origins).unwrap();
    let entry = key.policy_entry.clone();
    let stack = Stack::start_with(
        move |dir: &Path| {
            format!(
                "[plain_http]\nlisten = \"127.0.0.1:0\"\nhttps_port = 8443\n\n{extra}\n\n\
                 [cors]\nallowed_origins = {origins}\n\n{}",
                api_keys_table(dir, PEPPER, &[&entry])
            )
        },
        ROUTES,
    )
    .await;
    (stack, key.key)
}

async fn selftest(stack: &Stack, key: &str) -> Report {
    let options = Options {
        ca: Some(stack.dir().join("cert.pem")),
        credential: Some(Credential::ApiKey(key.to_string())),
        origins: vec![ORIGIN.to_string()],
        plain_http: stack.plain_http_addr().map(|addr| format!("http://{addr}")),
        ..Options::new(format!("https://localhost:{}", stack.addr().port()))
    };
    selftest::run(&options).await.expect("the target is usable")
}

fn failed(report: &Report) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| c.result == Outcome::Fail)
        .map(|c| c.name)
        .collect()
}

#[tokio::test]
async fn every_check_passes_against_the_real_gateway_and_worker() {
    let (stack, key) = start("", &[ORIGIN]).await;
    let report = selftest(&stack, &key).await;
    let rendered = report.render();
    println!("{rendered}");
    assert_eq!(report.count(Outcome::Fail), 0, "{rendered}");
    assert_eq!(report.count(Outcome::Skip), 0, "{rendered}");
    for name in CHECKS {
        assert!(
            report.checks.iter().any(|c| c.name == name),
            "{name} missing:\n{rendered}"
        );
    }
    assert!(rendered.contains("[ASVS 5.0 3.4.1; RFC 6797"), "{rendered}");
    assert!(!rendered.contains(&key), "the key is never printed");
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(json["checks"][0]["result"], "pass");
    stack.stop().await;
}

#[tokio::test]
async fn hsts_switched_off_fails_the_hsts_checks() {
    let (stack, key) = start("[headers]\nhsts_max_age = 0\n", &[ORIGIN]).await;
    let report = selftest(&stack, &key).await;
    assert_eq!(
        failed(&report),
        ["HSTS on a success answer", "HSTS on an error answer"],
        "{}",
        report.render()
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_lookalike_origin_allowed_fails_the_lookalike_check() {
    let lookalike = "https://app.example.test.selftest.invalid";
    let (stack, key) = start("", &[ORIGIN, lookalike]).await;
    let report = selftest(&stack, &key).await;
    assert_eq!(
        failed(&report),
        ["CORS lookalike origins refused"],
        "{}",
        report.render()
    );
    stack.stop().await;
}

/// The control for the TLS-version checks, which the gateway can never
/// fail (rustls speaks nothing below TLS 1.2): `openssl s_server` offering
/// only TLS 1.1 is caught.
#[tokio::test]
async fn a_server_accepting_tls_1_1_fails_the_tls_1_1_check() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        generated.key_pair.serialize_pem(),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-tls1_1"])
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("-key")
        .arg(dir.path().join("key.pem"))
        // The distribution's configuration may forbid TLS 1.1 outright.
        .env("OPENSSL_CONF", "/dev/null")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run openssl s_server (scripts/test.sh installs openssl)");
    // Wait on readiness: the port accepts.
    let ready = tokio::time::timeout(selftest_patience(), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    if ready.is_err() {
        let _ = server.kill();
        panic!("openssl s_server did not listen on {port}");
    }
    let options = Options {
        ca: Some(dir.path().join("cert.pem")),
        ..Options::new(format!("https://localhost:{port}"))
    };
    let report = selftest::run(&options).await.expect("the target is usable");
    let _ = server.kill();
    let _ = server.wait();
    let result = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check"))
            .clone()
    };
    let tls11 = result("TLS 1.1 refused");
    assert_eq!(tls11.result, Outcome::Fail, "{}", report.render());
    assert!(tls11.detail.contains("ServerHello"), "{}", report.render());
    assert_eq!(
        result("TLS 1.0 refused").result,
        Outcome::Pass,
        "{}",
        report.render()
    );
}

/// A safety net for the helper server's start-up; never asserted on.
fn selftest_patience() -> std::time::Duration {
    std::time::Duration::from_secs(20)
}
