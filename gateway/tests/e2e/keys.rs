//! The key and audit tooling: `keygen` checked against the policy's routes
//! and keys, `keygen --append` into `[api_keys] keys_file` (in force after a
//! reload), `pseudonym`, `verify-audit` on an empty file, and `/readyz`
//! while the audit log cannot be written under `audit.on_failure =
//! "refuse"`.

use std::path::Path;
use std::process::{Command, Output};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::audit::admin_get;
use crate::support::{request, Policy, Proto, TestGateway};

const PEPPER: &str = "pepper-pepper-pepper-pepper-pepper-40";
const PSEUDONYM_KEY: &str = "pseudonym-key-0123456789";

/// Two routes, one requiring `read`, one `analyze`.
const ROUTES: &str = r#"
[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
scopes = ["read"]

[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
scopes = ["analyze"]
"#;

fn gateway(args: &[&str], policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(args)
        .arg("--config")
        .arg(policy)
        .output()
        .unwrap()
}

/// A policy in `dir` with [`ROUTES`], a pepper, a keys file and `keys`.
fn policy(dir: &Path, keys: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("pepper"), PEPPER).unwrap();
    std::fs::write(dir.join("pseudonym"), PSEUDONYM_KEY).unwrap();
    if !dir.join("keys.toml").exists() {
        std::fs::write(dir.join("keys.toml"), "# keys added by keygen --append\n").unwrap();
    }
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
             [upstream]\naddress = \"unix:/x.sock\"\n\
             [audit]\npseudonym_key = {{ file = \"pseudonym\" }}\n\
             [api_keys]\npepper = {{ file = \"pepper\" }}\nkeys_file = \"keys.toml\"\nkeys = [{keys}]\n\
             {ROUTES}"
        ),
    )
    .unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn keygen_refuses_scopes_no_route_requires_empty_scopes_and_a_duplicate_id() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "0".repeat(64);
    let path = policy(
        dir.path(),
        &format!("{{ id = \"ci\", hash = \"{hash}\", scopes = [\"read\"] }}"),
    );
    let typo = gateway(
        &["keygen", "--id", "new", "--scopes", "analyse,raed"],
        &path,
    );
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("no route requires the scope \"analyse\""),
        "{}",
        stderr(&typo)
    );
    assert!(stderr(&typo).contains("analyze, read"), "{}", stderr(&typo));
    assert!(typo.stdout.is_empty(), "no key is printed");

    let empty = gateway(&["keygen", "--id", "new"], &path);
    assert!(!empty.status.success());
    assert!(
        stderr(&empty).contains("no scopes given"),
        "{}",
        stderr(&empty)
    );

    let duplicate = gateway(&["keygen", "--id", "ci", "--scopes", "read"], &path);
    assert!(!duplicate.status.success());
    assert!(
        stderr(&duplicate).contains("\"ci\" is listed already"),
        "{}",
        stderr(&duplicate)
    );

    let good = gateway(
        &["keygen", "--id", "new", "--scopes", "read,analyze"],
        &path,
    );
    assert!(good.status.success(), "{}", stderr(&good));
}

#[tokio::test]
async fn keygen_appends_to_the_keys_file_and_a_reload_puts_the_key_in_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pepper"), PEPPER).unwrap();
    std::fs::write(dir.path().join("keys.toml"), "").unwrap();
    let checks = "[api_keys]\npepper = { file = \"pepper\" }\nkeys_file = \"keys.toml\"\n";
    let (gateway_, _upstream) = TestGateway::with_upstream_in(
        dir,
        Policy {
            checks: checks.to_string(),
            routes: ROUTES.to_string(),
            ..Policy::default()
        },
    )
    .await;
    let policy_path = gateway_.dir.path().join("gateway.toml");
    let out = gateway(
        &["keygen", "--id", "ops", "--scopes", "read", "--append"],
        &policy_path,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let key = String::from_utf8(out.stdout).unwrap();
    let key = key.lines().next().unwrap().to_string();
    assert!(key.starts_with("th_"));
    let file = std::fs::read_to_string(gateway_.dir.path().join("keys.toml")).unwrap();
    assert!(file.contains("[[keys]]\nid = \"ops\""), "{file}");
    assert!(!file.contains(&key), "the keys file never holds the key");

    let with_key = || {
        let mut summary = request("GET", "/api/summary", "");
        summary
            .headers_mut()
            .insert("x-api-key", key.parse().unwrap());
        summary
    };
    let client = gateway_.client();
    let before = client.send(Proto::H1, with_key()).await;
    assert_eq!(before.status, 401, "not in force before the reload");
    gateway_
        .handle()
        .reload()
        .expect("the reload takes the keys file");
    let after = client.send(Proto::H1, with_key()).await;
    assert_eq!(after.status, 200, "in force after the reload");

    let again = gateway(
        &["keygen", "--id", "ops", "--scopes", "read", "--append"],
        &policy_path,
    );
    assert!(
        !again.status.success(),
        "the appended id is known: {}",
        stderr(&again)
    );
    gateway_.shutdown().await;
}

#[test]
fn pseudonym_is_the_audit_logs_hmac_of_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), "");
    let mut mac = Hmac::<Sha256>::new_from_slice(PSEUDONYM_KEY.as_bytes()).unwrap();
    mac.update(b"key:ci");
    let expected = &hex::encode(mac.finalize().into_bytes())[..32];
    for principal in ["key:ci", "ci"] {
        let out = gateway(&["pseudonym", principal], &path);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), expected);
    }
}

#[test]
fn verify_audit_on_an_empty_file_says_so_with_exit_status_3() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .arg("verify-audit")
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
}

#[tokio::test]
async fn readyz_is_not_ready_while_the_audit_log_refuses_traffic() {
    // `/dev/full`: every audit write fails with ENOSPC.
    let (gateway_, _upstream) = TestGateway::with_upstream(Policy {
        audit: "output = \"/dev/full\"\non_failure = \"refuse\"\n".to_string(),
        ..Policy::default()
    })
    .await;
    let admin = gateway_.handle().admin_addr();
    assert_eq!(
        admin_get(admin, "/readyz").await.0,
        200,
        "nothing failed yet"
    );
    // This request's audit line is the first that cannot be written.
    let _ = gateway_.client().get("/api/echo").await;
    let refused = gateway_.client().get("/api/echo").await;
    assert_eq!(refused.status, 503, "requests are refused");
    let (status, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit log cannot be written"), "{body}");
    gateway_.shutdown().await;
}
