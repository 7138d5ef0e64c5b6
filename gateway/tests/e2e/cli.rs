//! The binary's `check-config` (every problem listed, non-zero exit) and
//! `keygen` (a key that the policy then accepts).

use std::process::Command;

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"nowhere\"\n[upstream]\naddress = \"tcp://x\"\n[[routes]]\nname = \"r\"\npath = \"/a/../b\"\nmethods = [\"GET\"]\nbody_limit = -1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen:",
        "tls:",
        "upstream.address:",
        "routes[\"r\"].path:",
        "routes[\"r\"].body_limit:",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
}

#[test]
fn keygen_prints_a_key_and_an_entry_the_policy_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let pepper = dir.path().join("pepper");
    std::fs::write(&pepper, "p".repeat(40)).unwrap();
    let policy = dir.path().join("gateway.toml");
    // keygen checks the scopes against the routes: one needs each.
    let routes = "[[routes]]\nname = \"r\"\npath = \"/r\"\nmethods = [\"GET\"]\nscopes = [\"read\"]\n\
                  [[routes]]\nname = \"a\"\npath = \"/a\"\nmethods = [\"POST\"]\nscopes = [\"analyze\"]\n";
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
                [upstream]\naddress = \"unix:/x.sock\"\n";
    std::fs::write(
        &policy,
        format!("{base}[api_keys]\npepper = {{ file = \"pepper\" }}\n{routes}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(["keygen", "--config"])
        .arg(&policy)
        .args(["--id", "ci", "--scopes", "read,analyze"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let key = lines.next().unwrap();
    let entry = lines.next().unwrap();
    assert!(key.starts_with("th_"), "{stdout}");
    assert!(entry.starts_with("{ id = \"ci\", hash = \""), "{entry}");
    assert!(
        entry.contains("scopes = [\"read\", \"analyze\"]"),
        "{entry}"
    );
    assert!(!entry.contains(key), "the entry never holds the key");

    // The printed entry, pasted into a policy, authenticates the key.
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("c"), generated.cert.pem()).unwrap();
    std::fs::write(dir.path().join("k"), generated.key_pair.serialize_pem()).unwrap();
    let full = format!(
        "{base}[api_keys]\npepper = {{ file = \"pepper\" }}\nkeys = [{}]\n{routes}",
        entry.trim_end_matches(',')
    );
    std::fs::write(&policy, full).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .arg("check-config")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn keygen_without_a_pepper_fails_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("gateway.toml");
    std::fs::write(
        &policy,
        "[api_keys]\npepper = { env = \"TRADEHABIT_TEST_UNSET_PEPPER\" }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(["keygen", "--config"])
        .arg(&policy)
        .args(["--id", "ci"])
        .env_remove("TRADEHABIT_TEST_UNSET_PEPPER")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api_keys.pepper.env"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// Runs `check-config` on a policy serving `names` with a certificate for
/// `certificate_names`: whether it passed, and what it said.
fn check_names(certificate_names: &[&str], names: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let names_owned: Vec<String> = certificate_names.iter().map(|n| n.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names_owned).unwrap();
    std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        generated.key_pair.serialize_pem(),
    )
    .unwrap();
    let policy = dir.path().join("gateway.toml");
    std::fs::write(
        &policy,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{names}\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
             [upstream]\naddress = \"unix:/x.sock\"\n\
             [[routes]]\nname = \"r\"\npath = \"/r\"\nmethods = [\"GET\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .arg("check-config")
        .arg(&policy)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), said)
}

#[test]
fn check_config_refuses_names_the_certificate_does_not_cover() {
    let wildcard = &["*.example.com", "192.0.2.7"];
    for (names, uncovered) in [
        ("names = [\"example.com\"]", "example.com"),
        ("names = [\"a.b.example.com\"]", "a.b.example.com"),
        ("names = [\"app.example.com\", \"192.0.2.8\"]", "192.0.2.8"),
    ] {
        let (passed, said) = check_names(wildcard, names);
        assert!(!passed, "{names}: {said}");
        assert!(
            said.contains("server.names") && said.contains(&format!("`{uncovered}`")),
            "{names}: {said}"
        );
    }
    for names in [
        "",
        "names = [\"app.example.com\"]",
        "names = [\"APP.example.com.\", \"192.0.2.7\"]",
    ] {
        let (passed, said) = check_names(wildcard, names);
        assert!(passed, "{names}: {said}");
    }
    let (passed, said) = check_names(&["localhost", "127.0.0.1"], "names = [\"::1\"]");
    assert!(!passed, "{said}");
}
