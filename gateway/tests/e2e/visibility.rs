//! What is in force, visible from outside: the policy hash, the last
//! reload and the certificate's expiry as metrics, and a refused reload as
//! one diagnostic line (JSON with `--log-format json`) naming the
//! restart-only settings.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use crate::audit::{admin_get, sample};
use crate::support::{Cert, Policy, TestGateway};

/// rcgen's default `notAfter` (4096-01-01T00:00:00Z), in Unix seconds.
const RCGEN_DEFAULT_NOT_AFTER: f64 = 67_090_118_400.0;

fn sha256_of(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn metrics_show_the_policy_hash_the_last_reload_and_the_certificate_expiry() {
    let (gateway, _upstream) = TestGateway::with_upstream(Policy::default()).await;
    let admin = gateway.handle().admin_addr();
    let policy = gateway.dir.path().join("gateway.toml");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    let info = format!(
        "tradehabit_gateway_config_info{{sha256=\"{}\"}} 1",
        sha256_of(&policy)
    );
    assert!(metrics.contains(&info), "{info} missing from:\n{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "tradehabit_gateway_certificate_not_after_timestamp_seconds"
        ),
        RCGEN_DEFAULT_NOT_AFTER
    );
    let started = sample(
        &metrics,
        "tradehabit_gateway_config_last_reload_success_timestamp_seconds",
    );
    assert!(started > 1.7e9, "{started}");

    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("\n# edited\n");
    std::fs::write(&policy, text).unwrap();
    gateway
        .handle()
        .reload()
        .expect("the edited policy reloads");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    let info = format!(
        "tradehabit_gateway_config_info{{sha256=\"{}\"}} 1",
        sha256_of(&policy)
    );
    assert!(metrics.contains(&info), "{info} missing from:\n{metrics}");
    assert_eq!(
        metrics.matches("tradehabit_gateway_config_info{").count(),
        1,
        "{metrics}"
    );
    let reloaded = sample(
        &metrics,
        "tradehabit_gateway_config_last_reload_success_timestamp_seconds",
    );
    assert!(reloaded >= started, "{reloaded} < {started}");
    gateway.shutdown().await;
}

/// Reads `stderr` lines until one contains `wanted`; that line.
fn line_with(lines: &mut impl Iterator<Item = String>, wanted: &str) -> String {
    lines
        .find(|line| line.contains(wanted))
        .unwrap_or_else(|| panic!("no stderr line with {wanted:?}"))
}

#[test]
fn a_refused_reload_is_one_json_line_naming_restart_only_settings() {
    let dir = tempfile::tempdir().unwrap();
    Cert::generate().write(dir.path());
    let path = TestGateway::write_policy(dir.path(), &Policy::default());
    let good = std::fs::read_to_string(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut lines = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let hangup = || {
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    };
    let listening: serde_json::Value =
        serde_json::from_str(&line_with(&mut lines, "gateway listening")).unwrap();
    assert_eq!(listening["sha256"], sha256_of(&path));
    // Wait on readiness: the handler is installed.
    line_with(&mut lines, "SIGHUP reloads");

    // Two problems at once: one line holding both.
    let broken = good
        .replacen("body_limit = 1024", "body_limit = 0", 1)
        .replacen("max_length = 16", "max_length = 0", 1);
    std::fs::write(&path, broken).unwrap();
    hangup();
    let refused = line_with(&mut lines, "reload refused");
    let refused: serde_json::Value = serde_json::from_str(&refused).expect("one JSON line");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("2 problem(s)") && error.contains(r#"routes["echo"]"#),
        "{refused}"
    );
    assert!(!error.contains('\n'), "{refused}");

    // A restart-only change: named.
    std::fs::write(&path, good.replacen("127.0.0.1:0", "127.0.0.1:1", 1)).unwrap();
    hangup();
    let refused: serde_json::Value =
        serde_json::from_str(&line_with(&mut lines, "reload refused")).unwrap();
    assert!(
        refused["restart_only"]
            .as_str()
            .unwrap()
            .contains("server.listen"),
        "{refused}"
    );

    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
}

#[tokio::test]
async fn a_reload_changes_the_readiness_path_probed() {
    let (gateway, _upstream) = TestGateway::with_upstream(Policy::default()).await;
    let admin = gateway.handle().admin_addr();
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    // The test upstream answers `/api/busy` with 503.
    let busy = Policy {
        upstream: "ready_path = \"/api/busy\"\n".to_string(),
        ..Policy::default()
    };
    TestGateway::write_policy(gateway.dir.path(), &busy);
    gateway.handle().reload().expect("ready_path reloads");
    let (status, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 503, "the new ready_path is probed: {body}");
    gateway.shutdown().await;
}

/// The `selftest` command: JSON on stdout, exit status 1 when a check
/// fails. The test policy's routes are open, so the credential check fails.
#[tokio::test(flavor = "multi_thread")]
async fn the_selftest_command_prints_json_and_exits_1_on_a_failed_check() {
    let (gateway, _upstream) = TestGateway::with_upstream(Policy::default()).await;
    let url = format!("https://localhost:{}", gateway.addr().port());
    let ca = gateway.dir.path().join("cert.pem");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
            .args(["selftest", &url, "--json", "--protected-path", "/api/echo"])
            .arg("--ca")
            .arg(ca)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let result = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["result"].clone())
    };
    assert_eq!(
        result("no credential → 401 envelope"),
        Some("fail".into()),
        "{report}"
    );
    assert_eq!(result("TLS 1.1 refused"), Some("pass".into()), "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("check(s) failed"));
    gateway.shutdown().await;
}
