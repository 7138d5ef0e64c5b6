//! `check-config` catches what `run` would refuse: the shipped policies
//! pass, the certificate and key are loaded (missing, not a certificate,
//! not matching), `--effective` prints every resolved route, and `--admin`
//! names the changes a reload would refuse.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Policy, TestGateway};

/// Runs the binary's `check-config` with `args`.
fn check_config(args: &[&str], policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .arg("check-config")
        .args(args)
        .arg(policy)
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// A shipped policy (`config/NAME`) copied next to a fresh certificate and
/// key for `localhost`, which its `[tls]` then names.
fn shipped(name: &str, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name);
    let text = std::fs::read_to_string(source).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.key_pair.serialize_pem()).unwrap();
    let text = text
        .replace("/etc/tradehabit/tls/cert.pem", "cert.pem")
        .replace("/etc/tradehabit/tls/key.pem", "key.pem");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn both_shipped_policies_pass_check_config() {
    for name in ["gateway.example.toml", "gateway.legacy.toml"] {
        let dir = tempfile::tempdir().unwrap();
        let out = check_config(&[], &shipped(name, dir.path()));
        assert!(out.status.success(), "{name}: {}", said(&out));
    }
}

/// The policy the compose `legacy` profile runs
/// (`deploy/legacy-policy/gateway.toml`), with its container paths moved
/// into a temporary folder holding a certificate, key and audit key.
#[test]
fn the_compose_legacy_profile_policy_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/legacy-policy/gateway.toml");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        generated.key_pair.serialize_pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("audit_pseudonym_key"),
        "legacy-profile-test-pseudonym-key-0001",
    )
    .unwrap();
    let folder = format!("{}/", dir.path().display());
    let text = std::fs::read_to_string(source)
        .unwrap()
        .replace("/var/lib/tradehabit/tls/", &folder)
        .replace("/run/secrets/", &folder);
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let out = check_config(&[], &path);
    assert!(out.status.success(), "{}", said(&out));
}

#[test]
fn effective_prints_every_resolved_route() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        &["--effective"],
        &shipped("gateway.example.toml", dir.path()),
    );
    assert!(out.status.success(), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("\nroute \"").count() + 1, 16, "{stdout}");
    // An inherited default, shown resolved.
    let trades = stdout
        .split("\n\n")
        .find(|block| block.starts_with("route \"trades\""))
        .unwrap_or_else(|| panic!("{stdout}"));
    for line in [
        "GET /api/trades (exact)",
        "auth           required; scopes: read",
        "per IP: 120/minute; per principal: 60/minute",
        "limit 1024 bytes; content types: none (no body)",
    ] {
        assert!(trades.contains(line), "{line:?} missing from:\n{trades}");
    }
}

/// The certificate and key are loaded as `run` loads them; each mistake is
/// reported in plain words with the full path, once.
#[test]
fn check_config_loads_the_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let policy = shipped("gateway.legacy.toml", dir.path());
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(
        dir.path().join("other-key.pem"),
        other.key_pair.serialize_pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("public.pem"),
        other.key_pair.public_key_pem(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&policy).unwrap();
    let full = |file: &str| dir.path().join(file).display().to_string();
    let cases = [
        (
            "cert = \"tls/missing.pem\"",
            "key = \"key.pem\"",
            format!("tls.cert: {} does not exist", full("tls/missing.pem")),
        ),
        (
            "cert = \"public.pem\"",
            "key = \"key.pem\"",
            format!("tls.cert: {} holds no PEM certificate", full("public.pem")),
        ),
        (
            "cert = \"cert.pem\"",
            "key = \"other-key.pem\"",
            "does not belong to the certificate".to_owned(),
        ),
    ];
    for (cert, key, expected) in cases {
        let broken = text
            .replace("cert = \"cert.pem\"", cert)
            .replace("key = \"key.pem\"", key);
        std::fs::write(&policy, broken).unwrap();
        let out = check_config(&[], &policy);
        let said = said(&out);
        assert!(!out.status.success(), "{cert} {key}: {said}");
        assert!(said.contains(&expected), "{expected:?} missing from {said}");
        for jargon in ["KeyMismatch", "os error", "InconsistentKeys"] {
            assert!(!said.contains(jargon), "{jargon} in {said}");
        }
    }
}

#[test]
fn a_missing_policy_file_is_one_clean_line_with_its_full_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope/gateway.toml");
    let out = check_config(&[], &missing);
    let said = said(&out);
    assert!(!out.status.success());
    let expected = format!("cannot read {}: no such file", missing.display());
    assert_eq!(said.matches(&expected).count(), 1, "{said}");
    assert!(!said.contains("os error"), "{said}");
}

/// Against a running gateway's admin listener: a changed restart-only
/// setting is named; an unchanged file passes.
#[tokio::test(flavor = "multi_thread")]
async fn check_config_admin_names_changes_that_need_a_restart() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let admin = format!("http://{}", gw.handle().admin_addr());
    let path = gw.dir.path().join("gateway.toml");
    let running = std::fs::read_to_string(&path).unwrap();
    let (admin_arg, policy) = (admin.clone(), path.clone());
    let same = tokio::task::spawn_blocking(move || check_config(&["--admin", &admin_arg], &policy))
        .await
        .unwrap();
    assert!(same.status.success(), "{}", said(&same));

    let listen = gw.handle().https_addr();
    let changed = running.replace(
        &format!("listen = \"{listen}\""),
        "listen = \"127.0.0.1:1\"",
    );
    let changed = if changed == running {
        // Written as port 0 in the file.
        running.replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1)
    } else {
        changed
    };
    assert_ne!(changed, running, "the listen line was not found");
    std::fs::write(&path, changed).unwrap();
    let out = tokio::task::spawn_blocking(move || check_config(&["--admin", &admin], &path))
        .await
        .unwrap();
    let said = said(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("server.listen: differs from the running gateway's and needs a restart"),
        "{said}"
    );
    assert_eq!(
        said.matches("differs from the running").count(),
        1,
        "{said}"
    );
}
