//! The dependency policy in `deny.toml`: cargo-deny finds only allowed
//! licenses, no banned crates and only crates.io sources in the workspace's
//! dependency tree (`Cargo.lock`; cargo may fetch missing crate manifests
//! from crates.io, nothing else).
//!
//! Advisories are not checked here: that needs the RustSec database from
//! GitHub, which CI cannot reach (see the comment in `deny.toml`).
//!
//! Needs `cargo-deny` (`cargo install --locked cargo-deny`, about two and a
//! half minutes on two cores); without it these tests fail and say so.

#[path = "ops_support/tools.rs"]
mod tools;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Output;

use tools::{assert_failure, assert_success, repo_root, run_in_repo};

/// cargo, as the test runner was started (so the same toolchain).
fn cargo() -> PathBuf {
    tools::require_tool(
        "cargo-deny",
        "cargo install --locked cargo-deny (about 2.5 minutes on 2 cores)",
    );
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

fn cargo_deny<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all: Vec<std::ffi::OsString> = ["deny", "--locked", "--color", "never"]
        .iter()
        .map(Into::into)
        .collect();
    all.extend(args.into_iter().map(|arg| arg.as_ref().to_os_string()));
    run_in_repo(&cargo(), all)
}

#[test]
fn dependency_tree_passes_the_license_ban_and_source_policy() {
    let config = repo_root().join("deny.toml");
    assert!(config.is_file(), "deny.toml is missing");
    let output = cargo_deny(["check", "licenses", "bans", "sources"]);
    assert_success("cargo deny check licenses bans sources", &output);
}

/// The control for the test above: the same run fails when the policy
/// forbids something the tree really contains, so "passed" means checked.
#[test]
fn cargo_deny_fails_when_the_policy_forbids_what_the_tree_holds() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let strict = dir.path().join("deny.toml");
    std::fs::write(
        &strict,
        "[bans]\ndeny = [{ crate = \"serde\", reason = \"control\" }]\n\
         [licenses]\nallow = [\"MIT\"]\n",
    )
    .expect("write the strict policy");

    let bans = cargo_deny([
        "--config".as_ref(),
        strict.as_os_str(),
        "check".as_ref(),
        "bans".as_ref(),
    ]);
    assert_failure("cargo deny check bans with serde banned", &bans);
    let stderr = String::from_utf8_lossy(&bans.stderr);
    assert!(
        stderr.contains("banned"),
        "expected a ban finding, got:\n{stderr}"
    );

    let licenses = cargo_deny([
        "--config".as_ref(),
        strict.as_os_str(),
        "check".as_ref(),
        "licenses".as_ref(),
    ]);
    assert_failure("cargo deny check licenses allowing MIT only", &licenses);
    let stderr = String::from_utf8_lossy(&licenses.stderr);
    assert!(
        stderr.contains("rejected"),
        "expected a license finding, got:\n{stderr}"
    );
}
