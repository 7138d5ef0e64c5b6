//! The `legacy` profile of `compose.yaml` (docs/containers.md, "The legacy
//! backend behind the gateway"): the gateway in front of gunicorn runs the
//! legacy-compatible policy (`deploy/legacy-policy/gateway.toml`), not the
//! strict one, which would demand credentials the existing front ends never
//! send and probe a readiness path gunicorn does not serve (its `/readyz`
//! would stay 503). Checked on what `docker-compose --profile legacy config`
//! resolves, not on the raw file. `check-config` on that policy runs in
//! `gateway/tests/e2e/check_config.rs`.
//!
//! Needs `docker-compose` (used offline, no engine); without it these tests
//! fail and say how to install it.

#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tools::{assert_success, read_repo_file, repo_root, require_tool, run_in_repo, strings_at};
use yaml_rust2::{Yaml, YamlLoader};

const COMPOSE: &str = "compose.yaml";
const LEGACY_POLICY: &str = "deploy/legacy-policy/gateway.toml";
const SHIPPED_LEGACY: &str = "config/gateway.legacy.toml";
const STRICT_POLICY: &str = "deploy/policy/gateway.toml";
const POLICY_DIR: &str = "/etc/tradehabit";
const SOCKET_DIR: &str = "/run/tradehabit";

/// `docker-compose --profile legacy config`, parsed.
fn resolved() -> Yaml {
    let docker_compose = require_tool(
        "docker-compose",
        "apt-get update && apt-get install -y docker-compose",
    );
    let output = run_in_repo(
        &docker_compose,
        ["-f", COMPOSE, "--profile", "legacy", "config"],
    );
    assert_success("docker-compose --profile legacy config", &output);
    let text = String::from_utf8(output.stdout).expect("UTF-8 output");
    YamlLoader::load_from_str(&text)
        .expect("docker-compose config prints YAML")
        .remove(0)
}

fn toml_file(relative: &str) -> toml::Table {
    read_repo_file(relative)
        .parse()
        .unwrap_or_else(|error| panic!("{relative} is not valid TOML: {error}"))
}

/// `(host source, container target, read_only)` of each volume in the
/// resolved (short) syntax `source:target:mode`.
fn mounts(service: &Yaml, name: &str) -> Vec<(String, String, bool)> {
    strings_at(service, "volumes", name)
        .iter()
        .map(|volume| {
            let parts: Vec<&str> = volume.split(':').collect();
            assert!(parts.len() >= 2, "{name}: volume `{volume}`");
            (
                parts[0].to_string(),
                parts[1].to_string(),
                parts.get(2) == Some(&"ro"),
            )
        })
        .collect()
}

/// The host folder mounted at `/etc/tradehabit` (read-only).
fn policy_folder(service: &Yaml, name: &str) -> PathBuf {
    let found: Vec<_> = mounts(service, name)
        .into_iter()
        .filter(|(_, target, _)| target == POLICY_DIR)
        .collect();
    assert_eq!(found.len(), 1, "{name}: one mount at {POLICY_DIR}");
    assert!(found[0].2, "{name}: the policy folder must be read-only");
    PathBuf::from(&found[0].0)
}

/// The `--config` file of a gateway service, as a path on the host.
fn policy_file_on_host(service: &Yaml, name: &str) -> PathBuf {
    let command = strings_at(service, "command", name);
    let at = command
        .iter()
        .position(|arg| arg == "--config")
        .unwrap_or_else(|| panic!("{name}: no --config"));
    let config = Path::new(&command[at + 1]);
    let inside = config
        .strip_prefix(POLICY_DIR)
        .unwrap_or_else(|_| panic!("{name}: --config {config:?} is not under {POLICY_DIR}"));
    policy_folder(service, name).join(inside)
}

#[test]
fn the_legacy_profile_mounts_and_runs_the_legacy_compatible_policy() {
    let compose = resolved();
    let services = &compose["services"];
    let legacy_gateway = &services["legacy-gateway"];
    assert!(!legacy_gateway.is_badvalue(), "no legacy-gateway service");
    let file = policy_file_on_host(legacy_gateway, "legacy-gateway");
    assert_eq!(
        file,
        repo_root().join(LEGACY_POLICY),
        "legacy-gateway's --config resolves to {LEGACY_POLICY}"
    );
    // The default gateway keeps the strict policy.
    assert_eq!(
        policy_file_on_host(&services["gateway"], "gateway"),
        repo_root().join(STRICT_POLICY)
    );

    let policy = toml_file(LEGACY_POLICY);
    let shipped = toml_file(SHIPPED_LEGACY);
    for key in ["route_defaults", "routes", "cors"] {
        assert_eq!(
            policy.get(key),
            shipped.get(key),
            "{LEGACY_POLICY} `{key}` must be that of {SHIPPED_LEGACY}"
        );
    }
    for credentials in ["api_keys", "jwt", "sessions"] {
        assert!(
            policy.get(credentials).is_none(),
            "the legacy front ends send no credentials: no [{credentials}]"
        );
    }
    let upstream = policy["upstream"].as_table().expect("[upstream]");
    assert_eq!(
        upstream["ready_path"].as_str(),
        Some("/api/health"),
        "gunicorn serves /api/health, not the worker's /internal/ready"
    );
    // It forwards to the socket gunicorn binds on the shared volume.
    let address = upstream["address"].as_str().expect("upstream.address");
    let socket = address.strip_prefix("unix:").expect("a Unix socket");
    assert_eq!(Path::new(socket).parent(), Some(Path::new(SOCKET_DIR)));
    for name in ["legacy", "legacy-gateway"] {
        assert!(
            mounts(&services[name], name)
                .iter()
                .any(|(source, target, _)| source == "legacy-socket" && target == SOCKET_DIR),
            "{name}: legacy-socket at {SOCKET_DIR}"
        );
    }

    // It reads exactly the secrets compose gives the service.
    let text = read_repo_file(LEGACY_POLICY);
    let named: BTreeSet<&str> = text
        .split("/run/secrets/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    let given: BTreeSet<String> = legacy_gateway["secrets"]
        .as_vec()
        .expect("legacy-gateway secrets")
        .iter()
        .map(|secret| {
            secret["source"]
                .as_str()
                .expect("a secret source")
                .to_string()
        })
        .collect();
    assert_eq!(
        named,
        given.iter().map(String::as_str).collect(),
        "secrets the legacy policy reads vs those compose mounts"
    );
}
