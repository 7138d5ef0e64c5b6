//! The binary's `explain` (human and JSON) and `check-config --tests`
//! on the shipped strict policy and its policy tests, and those tests
//! catching a door opened in a copy of that policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(file)
}

/// A shipped policy (`config/NAME`) copied into `dir` next to a fresh
/// certificate and key for the example's host, which its `[tls]` then
/// names: as deployed, so nothing has to be assumed.
fn deployed(name: &str, dir: &Path) -> PathBuf {
    let names = vec!["app.tradehab.it".to_owned(), "localhost".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.key_pair.serialize_pem()).unwrap();
    let text = std::fs::read_to_string(shipped(name))
        .unwrap()
        .replace("/etc/tradehabit/tls/cert.pem", "cert.pem")
        .replace("/etc/tradehabit/tls/key.pem", "key.pem");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn explain_shows_each_check_the_answer_and_the_forwarded_head() {
    let dir = tempfile::tempdir().unwrap();
    let policy = deployed("gateway.example.toml", dir.path());
    let policy = policy.to_str().unwrap();
    let out = gateway(&[
        "explain",
        "--config",
        policy,
        "GET",
        "https://app.tradehab.it/api/summary",
        "-H",
        "Authorization: Bearer not-a-real-token-1234",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "Checks, in order:",
        "route \"summary\"",
        "authenticate",
        "REFUSE",
        "Answer: 401 Unauthorized by the gateway (check jwt, reason jwt.malformed)",
        "\"status\":\"ERROR\"",
        "authorization: <redacted>",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("not-a-real-token-1234"), "{stdout}");
    assert!(
        !stdout.contains("assumed"),
        "the certificate is read: {stdout}"
    );

    let out = gateway(&[
        "explain",
        "--config",
        policy,
        "POST",
        "https://app.tradehab.it/api/analyze?sigma=1.5",
        "-H",
        "Content-Type: multipart/form-data; boundary=b",
        "--body-size",
        "5000",
        "--caller-scopes",
        "read,analyze",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["route"], "analyze");
    assert_eq!(report["answer"]["forwarded"], true);
    assert_eq!(report["upstream"]["target"], "/api/analyze?sigma=1.5");
    let headers = report["upstream"]["headers"].as_array().unwrap();
    assert!(headers.contains(&serde_json::json!([
        "x-tradehabit-principal",
        "key:explain"
    ])));
    let steps = report["steps"].as_array().unwrap();
    let charged = steps
        .iter()
        .find(|s| s["check"] == "rate_limit_principal")
        .unwrap();
    assert_eq!(charged["outcome"], "pass");
    assert!(
        charged["detail"]
            .as_str()
            .unwrap()
            .contains("principal-minute 5/60s (4 left)"),
        "{charged}"
    );
}

#[test]
fn check_config_runs_the_shipped_policy_tests() {
    let dir = tempfile::tempdir().unwrap();
    let policy = deployed("gateway.example.toml", dir.path());
    let tests = shipped("gateway.example.tests.toml");
    let out = gateway(&[
        "check-config",
        policy.to_str().unwrap(),
        "--tests",
        tests.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // Every route of the strict policy has a test.
    assert!(!stdout.contains("routes no test reaches"), "{stdout}");
}

#[test]
fn check_config_runs_the_legacy_policy_tests() {
    let dir = tempfile::tempdir().unwrap();
    let policy = deployed("gateway.legacy.toml", dir.path());
    let tests = shipped("gateway.legacy.tests.toml");
    let out = gateway(&[
        "check-config",
        policy.to_str().unwrap(),
        "--tests",
        tests.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(!stdout.contains("routes no test reaches"), "{stdout}");
}

/// Runs the shipped tests against a copy of the strict policy with `from`
/// replaced by `to` (once, and it must be there).
fn tests_on_changed_policy(from: &str, to: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let policy = deployed("gateway.example.toml", dir.path());
    let original = std::fs::read_to_string(&policy).unwrap();
    assert_eq!(original.matches(from).count(), 1, "{from:?}");
    std::fs::write(&policy, original.replacen(from, to, 1)).unwrap();
    let tests = shipped("gateway.example.tests.toml");
    gateway(&[
        "check-config",
        policy.to_str().unwrap(),
        "--tests",
        tests.to_str().unwrap(),
    ])
}

#[test]
fn the_shipped_policy_tests_catch_a_dropped_scope() {
    let out = tests_on_changed_policy("scopes = [\"analyze\"]", "scopes = []");
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL analysing needs the analyze scope"),
        "{stdout}"
    );
    assert!(
        stdout.contains("status: expected \"403\", got \"forwarded\""),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("policy test(s) failed"));
}

#[test]
fn the_shipped_policy_tests_catch_a_widened_cors_allowlist() {
    let out = tests_on_changed_policy(
        "allowed_origins = [\"https://app.tradehab.it\"]",
        "allowed_origins = [\"https://app.tradehab.it\", \"https://evil.example\"]",
    );
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL a cross-origin write from an unlisted origin is refused"),
        "{stdout}"
    );
}

/// The `n`-th fenced block of `language` after `heading` in
/// docs/configuration.md.
fn doc_block(heading: &str, language: &str, n: usize) -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let section = &doc[doc.find(heading).expect("the section")..];
    let fence = format!("```{language}\n");
    let mut rest = section;
    for _ in 0..n {
        rest = &rest[rest.find(&fence).unwrap() + fence.len()..];
    }
    let start = rest.find(&fence).expect("the block") + fence.len();
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end].to_owned()
}

#[test]
fn the_documented_explain_output_is_what_explain_prints() {
    let dir = tempfile::tempdir().unwrap();
    let policy = deployed("gateway.example.toml", dir.path());
    let out = gateway(&[
        "explain",
        "--config",
        policy.to_str().unwrap(),
        "GET",
        "https://app.tradehab.it/api/summary",
        "-H",
        "Origin: https://app.tradehab.it",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let documented = doc_block("## Explain a decision", "text", 0);
    for line in documented.lines().filter(|l| !l.contains('…')) {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    // A line with `…` (a request id, elided headers): its other parts, in
    // order, on one line.
    for line in documented.lines().filter(|l| l.contains('…')) {
        let shown = stdout.lines().any(|out| {
            let mut rest = out;
            line.split('…').filter(|part| !part.is_empty()).all(|part| {
                rest.find(part)
                    .map(|at| rest = &rest[at + part.len()..])
                    .is_some()
            })
        });
        assert!(shown, "{line:?} missing from:\n{stdout}");
    }
}

#[test]
fn the_documented_policy_tests_pass_on_the_strict_example() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests.toml");
    std::fs::write(
        &tests,
        doc_block("### Policy tests", "toml policy-tests", 0),
    )
    .unwrap();
    let policy = deployed("gateway.example.toml", dir.path());
    let out = gateway(&[
        "check-config",
        policy.to_str().unwrap(),
        "--tests",
        tests.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}
