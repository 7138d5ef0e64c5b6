//! The binary's `check-config`: every problem listed, non-zero exit.

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
        "routes[0].path:",
        "routes[0].body_limit:",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/gateway.example.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(["check-config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
