//! `compose.yaml` and the policy file it mounts (`deploy/policy/gateway.toml`):
//! docker-compose accepts the file, and the hardening the stack promises is
//! pinned here: the worker (and the legacy backend) have no network and no
//! secrets, every service runs read-only, without capabilities or privilege
//! escalation, as non-root, with memory/pids/CPU caps; one socket volume per
//! gateway/server pair and nothing else shared; the policy mounted read-only;
//! secrets as compose secrets from git-ignored files; and the policy's paths,
//! ports and secret files agree with what compose gives the containers.
//!
//! Needs `docker-compose` (Debian package `docker-compose`, used offline, no
//! engine) and `git`; without them these tests fail and say how to install
//! them. Images and `docker compose up` are not exercised (no container
//! engine in CI): see docs/containers.md.

#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tools::{
    assert_failure, assert_success, keys_of, load_yaml, read_repo_file, repo_root, run_in,
    run_in_repo, str_at, strings_at,
};
use yaml_rust2::Yaml;

const COMPOSE: &str = "compose.yaml";
const POLICY: &str = "deploy/policy/gateway.toml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
/// Where every socket volume is mounted, in gateways and servers alike.
const SOCKET_DIR: &str = "/run/tradehabit";
const POLICY_DIR: &str = "/etc/tradehabit";
const TLS_DIR: &str = "/var/lib/tradehabit/tls";
const GATEWAY_SECRETS: &[&str] = &["jwt_hs256_secret", "api_key_pepper", "audit_pseudonym_key"];
/// The value of the two variables the legacy app insists on
/// (`docs/quirks.md`, H-17); a
/// placeholder, so that no credential is ever committed here.
const LEGACY_PLACEHOLDER: &str = "unused-mentor-routes-are-not-forwarded";

/// Every endpoint of the legacy API except the out-of-scope mentor routes
/// (`docs/quirks.md`, H-17), plus the worker's `DELETE /api/session`
/// (`docs/worker.md`, "Endpoints the worker adds").
const API_ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/api/analyze"),
    ("GET", "/api/summary"),
    ("GET", "/api/trades"),
    ("GET", "/api/losses"),
    ("GET", "/api/revenge"),
    ("GET", "/api/risk-sizing"),
    ("GET", "/api/excessive-risk"),
    ("GET", "/api/stop-loss"),
    ("GET", "/api/winrate-payoff"),
    ("GET", "/api/insights"),
    ("GET", "/api/goals"),
    ("POST", "/api/goals/calculate"),
    ("GET", "/api/settings"),
    ("POST", "/api/settings"),
    ("GET", "/api/health"),
    ("DELETE", "/api/session"),
];

fn docker_compose() -> PathBuf {
    tools::require_tool(
        "docker-compose",
        "apt-get update && apt-get install -y docker-compose",
    )
}

fn compose() -> Yaml {
    load_yaml(COMPOSE)
}

fn policy() -> toml::Table {
    read_repo_file(POLICY)
        .parse()
        .unwrap_or_else(|error| panic!("{POLICY} is not valid TOML: {error}"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let node = &compose["services"][name];
    assert!(!node.is_badvalue(), "{COMPOSE} has no service `{name}`");
    node
}

fn service_names(compose: &Yaml) -> Vec<String> {
    keys_of(&compose["services"], "services")
}

fn profiles(service: &Yaml, name: &str) -> Vec<String> {
    strings_at(service, "profiles", name)
}

/// A volume as written in short syntax, `source:target[:mode]`.
#[derive(Debug)]
struct Mount {
    source: String,
    target: String,
    read_only: bool,
}

fn mounts(service: &Yaml, name: &str) -> Vec<Mount> {
    strings_at(service, "volumes", name)
        .iter()
        .map(|text| {
            let parts: Vec<&str> = text.split(':').collect();
            match parts.as_slice() {
                [source, target] => Mount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only: false,
                },
                [source, target, mode] => Mount {
                    source: source.to_string(),
                    target: target.to_string(),
                    read_only: mode.split(',').any(|flag| flag == "ro"),
                },
                _ => panic!("{name}: volume `{text}` is not `source:target[:mode]`"),
            }
        })
        .collect()
}

/// A published port as written in short syntax: `[ip:]host:container`.
#[derive(Debug)]
struct Published {
    host_ip: Option<String>,
    container_port: u16,
}

fn published(service: &Yaml, name: &str) -> Vec<Published> {
    strings_at(service, "ports", name)
        .iter()
        .map(|text| {
            let parts: Vec<&str> = text.split(':').collect();
            let (host_ip, container) = match parts.as_slice() {
                [_host, container] => (None, container),
                [ip, _host, container] => (Some(ip.to_string()), container),
                _ => panic!("{name}: port `{text}` is not `[ip:]host:container`"),
            };
            Published {
                host_ip,
                container_port: container
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: port `{text}` has no numeric target")),
            }
        })
        .collect()
}

/// The environment of a service as name → value (mapping or list syntax).
fn environment(service: &Yaml, name: &str) -> BTreeMap<String, String> {
    match &service["environment"] {
        Yaml::BadValue | Yaml::Null => BTreeMap::new(),
        Yaml::Hash(map) => map
            .iter()
            .map(|(key, value)| {
                let key = key
                    .as_str()
                    .expect("environment names are strings")
                    .to_string();
                let value = match value {
                    Yaml::String(text) => text.clone(),
                    Yaml::Integer(number) => number.to_string(),
                    Yaml::Boolean(flag) => flag.to_string(),
                    other => panic!("{name}: environment {key} has value {other:?}"),
                };
                (key, value)
            })
            .collect(),
        Yaml::Array(_) => strings_at(service, "environment", name)
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => (entry.clone(), String::new()),
            })
            .collect(),
        other => panic!("{name}: environment should be a mapping or list, got {other:?}"),
    }
}

/// The value following `flag` in a service's `command` list.
fn command_flag(service: &Yaml, name: &str, flag: &str) -> String {
    let command = strings_at(service, "command", name);
    let at = command
        .iter()
        .position(|arg| arg == flag)
        .unwrap_or_else(|| panic!("{name}: command {command:?} has no `{flag}`"));
    command
        .get(at + 1)
        .unwrap_or_else(|| panic!("{name}: `{flag}` has no value"))
        .clone()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("`{address}` is not host:port"))
}

fn table<'a>(policy: &'a toml::Table, key: &str) -> &'a toml::Table {
    policy
        .get(key)
        .and_then(toml::Value::as_table)
        .unwrap_or_else(|| panic!("{POLICY} has no [{key}] table"))
}

fn string<'a>(table: &'a toml::Table, key: &str, context: &str) -> &'a str {
    table
        .get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("{POLICY}: {context}.{key} should be a string"))
}

/// Every `{ file = "..." }` secret source anywhere in the policy, with the
/// key path it sits under.
fn secret_files(value: &toml::Value, path: &str, found: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, child) in table {
                let child_path = format!("{path}.{key}");
                if let (true, Some(file)) = (
                    is_secret_key(key),
                    child.get("file").and_then(toml::Value::as_str),
                ) {
                    found.push((child_path.clone(), file.to_string()));
                }
                secret_files(child, &child_path, found);
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                secret_files(item, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// Policy keys that name a secret. Their value must be a source table
/// (`{ file = … }` or `{ env = … }`), never the secret itself.
fn is_secret_key(key: &str) -> bool {
    matches!(key, "secret" | "pepper" | "pseudonym_key")
        || key.ends_with("_secret")
        || key.ends_with("_key")
}

fn secret_literals(value: &toml::Value, path: &str, found: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, child) in table {
                let child_path = format!("{path}.{key}");
                if is_secret_key(key) && !child.is_table() {
                    found.push(child_path.clone());
                }
                secret_literals(child, &child_path, found);
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                secret_literals(item, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn docker_compose_config_accepts_the_compose_file() {
    let output = run_in_repo(&docker_compose(), ["-f", COMPOSE, "config", "-q"]);
    assert_success("docker-compose -f compose.yaml config -q", &output);
}

/// The control for the test above: the validator really reads the file and
/// refuses an unknown key (here a misspelt `read_only`).
#[test]
fn docker_compose_config_refuses_a_misspelt_key() {
    let original = read_repo_file(COMPOSE);
    assert!(original.contains("read_only: true"));
    let broken = original.replacen("read_only: true", "read_onyl: true", 1);
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join(COMPOSE), broken).expect("write the broken copy");
    let output = run_in(
        &docker_compose(),
        ["-f", COMPOSE, "config", "-q"],
        dir.path(),
    );
    assert_failure("docker-compose config on a misspelt key", &output);
}

#[test]
fn the_default_stack_is_gateway_and_worker_and_profiles_add_the_rest() {
    let compose = compose();
    let mut by_profile: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        let profiles = profiles(service, &name);
        if profiles.is_empty() {
            by_profile
                .entry("(default)".into())
                .or_default()
                .insert(name);
        } else {
            for profile in profiles {
                by_profile.entry(profile).or_default().insert(name.clone());
            }
        }
    }
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("(default)", &["gateway", "worker"][..]),
        ("legacy", &["legacy", "legacy-gateway"][..]),
        ("monitoring", &["prometheus"][..]),
        (
            "scale",
            &[
                "scale-balancer",
                "scale-gateway-1",
                "scale-gateway-2",
                "scale-redis",
                "scale-worker-1",
                "scale-worker-2",
            ][..],
        ),
    ]
    .into_iter()
    .map(|(profile, names)| {
        (
            profile.to_string(),
            names.iter().map(|n| n.to_string()).collect(),
        )
    })
    .collect();
    assert_eq!(by_profile, expected, "services by profile");

    // A service only depends on services that run whenever it runs: a
    // default service on default ones, a profile's on its own or default.
    let default = &expected["(default)"];
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        let own = profiles(service, &name);
        for dependency in strings_at(service, "depends_on", &name) {
            let dependency_profiles = profiles(self::service(&compose, &dependency), &dependency);
            assert!(
                default.contains(&dependency)
                    || dependency_profiles
                        .iter()
                        .any(|profile| own.contains(profile)),
                "{name} depends on {dependency}, which does not always run with it"
            );
        }
    }
}

#[test]
fn the_worker_has_no_network_no_secrets_and_only_its_socket() {
    let compose = compose();
    let worker = service(&compose, "worker");
    assert_eq!(
        worker["network_mode"].as_str(),
        Some("none"),
        "worker network_mode"
    );
    for key in ["ports", "expose", "networks", "secrets", "tmpfs"] {
        assert!(
            worker[key].is_badvalue(),
            "the worker should have no `{key}`"
        );
    }
    let mounts = mounts(worker, "worker");
    assert_eq!(
        mounts.len(),
        1,
        "the worker mounts only its socket volume: {mounts:?}"
    );
    assert_eq!(mounts[0].source, "worker-socket");
    assert_eq!(mounts[0].target, SOCKET_DIR);
    let socket = command_flag(worker, "worker", "--socket");
    assert_eq!(Path::new(&socket).parent(), Some(Path::new(SOCKET_DIR)));
}

#[test]
fn the_legacy_backend_is_cut_off_the_same_way() {
    let compose = compose();
    let legacy = service(&compose, "legacy");
    assert_eq!(
        legacy["network_mode"].as_str(),
        Some("none"),
        "legacy network_mode"
    );
    for key in ["ports", "expose", "networks", "secrets", "build"] {
        assert!(
            legacy[key].is_badvalue(),
            "the legacy service should have no `{key}`"
        );
    }
    assert_eq!(
        legacy["pull_policy"].as_str(),
        Some("never"),
        "the legacy image is built locally (deploy/legacy/build.sh), never pulled"
    );
    let mounts = mounts(legacy, "legacy");
    assert_eq!(
        mounts.len(),
        1,
        "the legacy service mounts only its socket volume"
    );
    assert_eq!(mounts[0].source, "legacy-socket");
    assert_eq!(mounts[0].target, SOCKET_DIR);
    let env = environment(legacy, "legacy");
    assert_eq!(
        env.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ASSISTANT_ID", "OPENAI_API_KEY"],
        "legacy environment"
    );
    for (key, value) in &env {
        assert_eq!(
            value, LEGACY_PLACEHOLDER,
            "legacy {key} must stay a placeholder"
        );
    }
}

#[test]
fn every_service_is_read_only_unprivileged_non_root_and_capped() {
    let compose = compose();
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        assert_eq!(
            service["read_only"].as_bool(),
            Some(true),
            "{name}: read_only"
        );
        assert_eq!(
            strings_at(service, "cap_drop", &name),
            ["ALL"],
            "{name}: cap_drop"
        );
        assert!(service["cap_add"].is_badvalue(), "{name}: no cap_add");
        assert!(
            strings_at(service, "security_opt", &name).contains(&"no-new-privileges:true".into()),
            "{name}: security_opt no-new-privileges:true"
        );
        assert!(
            !matches!(service["privileged"].as_bool(), Some(true)),
            "{name}: privileged"
        );
        for key in ["pid", "ipc", "userns_mode"] {
            assert_ne!(service[key].as_str(), Some("host"), "{name}: {key}: host");
        }
        assert_ne!(
            service["network_mode"].as_str(),
            Some("host"),
            "{name}: host network"
        );

        let memory = str_at(service, "mem_limit", &name);
        assert_eq!(
            service["memswap_limit"].as_str(),
            Some(memory),
            "{name}: memswap_limit equal to mem_limit (no swap)"
        );
        let pids = service["pids_limit"].as_i64();
        assert!(
            matches!(pids, Some(1..=4096)),
            "{name}: pids_limit {pids:?}"
        );
        assert!(
            service["cpus"].as_f64().is_some_and(|cpus| cpus > 0.0),
            "{name}: cpus"
        );

        let user = str_at(service, "user", &name);
        let uid = user.split(':').next().unwrap_or_default();
        assert!(
            uid.parse::<u32>().is_ok_and(|uid| uid != 0),
            "{name}: user `{user}` should be a numeric non-root uid"
        );
        for mount in mounts(service, &name) {
            assert!(
                !mount.source.contains("docker.sock"),
                "{name}: mounts the Docker socket"
            );
        }
    }
}

#[test]
fn gateways_publish_https_and_http_but_never_the_admin_port() {
    let compose = compose();
    let policy = policy();
    let admin_port = port_of(string(table(&policy, "admin"), "listen", "admin"));
    let https_port = port_of(string(table(&policy, "server"), "listen", "server"));
    let http_port = port_of(string(table(&policy, "plain_http"), "listen", "plain_http"));

    let gateway: BTreeSet<u16> = published(service(&compose, "gateway"), "gateway")
        .iter()
        .map(|port| port.container_port)
        .collect();
    assert_eq!(
        gateway,
        BTreeSet::from([https_port, http_port]),
        "gateway ports"
    );
    let legacy: BTreeSet<u16> = published(service(&compose, "legacy-gateway"), "legacy-gateway")
        .iter()
        .map(|port| port.container_port)
        .collect();
    assert_eq!(legacy, BTreeSet::from([https_port]), "legacy-gateway ports");

    for name in service_names(&compose) {
        let service = service(&compose, &name);
        for port in published(service, &name) {
            assert_ne!(
                port.container_port, admin_port,
                "{name} publishes the admin port"
            );
        }
        assert!(service["expose"].is_badvalue(), "{name}: no `expose`");
    }
    for port in published(service(&compose, "prometheus"), "prometheus") {
        assert_eq!(
            port.host_ip.as_deref(),
            Some("127.0.0.1"),
            "Prometheus is published on the host's loopback only"
        );
    }
}

#[test]
fn each_socket_volume_is_in_memory_and_shared_by_one_gateway_and_one_server() {
    let compose = compose();
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in service_names(&compose) {
        for mount in mounts(service(&compose, &name), &name) {
            if mount.target == SOCKET_DIR {
                users.entry(mount.source).or_default().push(name.clone());
            }
        }
    }
    assert_eq!(
        users,
        BTreeMap::from([
            (
                "legacy-socket".to_string(),
                vec!["legacy".to_string(), "legacy-gateway".to_string()]
            ),
            (
                "worker-socket".to_string(),
                vec!["gateway".to_string(), "worker".to_string()]
            ),
        ]),
        "services mounting each socket volume"
    );
    for volume in users.keys() {
        let options = &compose["volumes"][volume.as_str()]["driver_opts"];
        assert_eq!(options["type"].as_str(), Some("tmpfs"), "{volume}: tmpfs");
        let mount_options = str_at(options, "o", volume);
        for required in ["uid=65532", "gid=65532", "mode=0750", "noexec"] {
            assert!(
                mount_options.split(',').any(|option| option == required),
                "{volume}: mount option {required} (got {mount_options})"
            );
        }
        // Nobody else mounts a socket volume anywhere else.
        for name in service_names(&compose) {
            for mount in mounts(service(&compose, &name), &name) {
                if &mount.source == volume {
                    assert_eq!(mount.target, SOCKET_DIR, "{name} mounts {volume} elsewhere");
                }
            }
        }
    }
}

#[test]
fn the_policy_is_mounted_read_only_and_secrets_are_compose_secrets_from_ignored_files() {
    let compose = compose();
    let git = tools::require_tool("git", "apt-get update && apt-get install -y git");
    // The legacy gateway runs the legacy-compatible policy, which reads
    // only the audit key (tests/ops_compose_legacy.rs).
    for (name, folder, secrets) in [
        ("gateway", "./deploy/policy", GATEWAY_SECRETS),
        (
            "legacy-gateway",
            "./deploy/legacy-policy",
            &["audit_pseudonym_key"][..],
        ),
    ] {
        let service = service(&compose, name);
        let policy_mounts: Vec<Mount> = mounts(service, name)
            .into_iter()
            .filter(|mount| mount.target == POLICY_DIR)
            .collect();
        assert_eq!(policy_mounts.len(), 1, "{name}: one mount at {POLICY_DIR}");
        assert_eq!(policy_mounts[0].source, folder, "{name}: policy folder");
        assert!(
            policy_mounts[0].read_only,
            "{name}: the policy must be mounted :ro"
        );
        assert_eq!(
            strings_at(service, "secrets", name),
            secrets,
            "{name}: secrets"
        );
    }
    let declared = keys_of(&compose["secrets"], "secrets");
    assert_eq!(
        declared.iter().collect::<BTreeSet<_>>(),
        GATEWAY_SECRETS
            .iter()
            // The `scale` profile's signing key (tests/ops_compose_scale.rs).
            .chain(&["upstream_hmac_key"])
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect(),
        "top-level secrets"
    );
    for secret in GATEWAY_SECRETS {
        let file = str_at(&compose["secrets"][*secret], "file", secret);
        assert_eq!(
            file,
            format!("./deploy/secrets/{secret}"),
            "secret {secret}"
        );
        let relative = file.trim_start_matches("./");
        let output = run_in_repo(&git, ["check-ignore", "-q", relative]);
        assert_success(
            &format!("git check-ignore {relative} (must never be committed)"),
            &output,
        );
    }
}

#[test]
fn no_secret_is_an_environment_literal_in_compose_or_the_policy() {
    let compose = compose();
    for name in service_names(&compose) {
        if name == "legacy" {
            continue; // its two placeholders are pinned in their own test
        }
        for key in environment(service(&compose, &name), &name).keys() {
            let upper = key.to_ascii_uppercase();
            assert!(
                !["SECRET", "PEPPER", "PASSWORD", "TOKEN", "KEY"]
                    .iter()
                    .any(|word| upper.contains(word)),
                "{name}: environment `{key}` looks like a secret; use a compose secret"
            );
        }
    }
    let mut literals = Vec::new();
    secret_literals(&toml::Value::Table(policy()), "policy", &mut literals);
    assert!(
        literals.is_empty(),
        "secrets written into {POLICY} instead of {{ file = … }}: {literals:?}"
    );
}

#[test]
fn the_policy_agrees_with_the_paths_and_secrets_compose_provides() {
    let compose = compose();
    let policy = policy();
    let gateway = service(&compose, "gateway");
    let worker = service(&compose, "worker");

    // The gateway reads the policy file compose mounts.
    let config = command_flag(gateway, "gateway", "--config");
    assert_eq!(Path::new(&config).parent(), Some(Path::new(POLICY_DIR)));
    let file_name = Path::new(&config).file_name().expect("a file name");
    assert!(
        repo_root().join("deploy/policy").join(file_name).is_file(),
        "{config} is not in deploy/policy/"
    );
    assert_eq!(
        command_flag(
            service(&compose, "legacy-gateway"),
            "legacy-gateway",
            "--config"
        ),
        config
    );

    // The gateway forwards to the socket the worker binds.
    let socket = command_flag(worker, "worker", "--socket");
    assert_eq!(
        string(table(&policy, "upstream"), "address", "upstream"),
        format!("unix:{socket}")
    );

    // The certificate lives in the writable TLS volume.
    let tls = table(&policy, "tls");
    for key in ["cert", "key"] {
        let path = string(tls, key, "tls");
        assert_eq!(
            Path::new(path).parent(),
            Some(Path::new(TLS_DIR)),
            "tls.{key}"
        );
    }
    assert_eq!(
        tls.get("self_signed_if_missing")
            .and_then(toml::Value::as_bool),
        Some(true)
    );
    for (name, volume) in [
        ("gateway", "gateway-tls"),
        ("legacy-gateway", "legacy-gateway-tls"),
    ] {
        let service = service(&compose, name);
        assert!(
            mounts(service, name)
                .iter()
                .any(|mount| mount.source == volume && mount.target == TLS_DIR && !mount.read_only),
            "{name}: writable {volume} at {TLS_DIR}"
        );
    }

    // Every secret file the policy names is one compose mounts, and every
    // compose secret is used.
    let mut files = Vec::new();
    secret_files(&toml::Value::Table(policy.clone()), "policy", &mut files);
    let mut used = BTreeSet::new();
    for (key, file) in &files {
        let name = file
            .strip_prefix("/run/secrets/")
            .unwrap_or_else(|| panic!("{key}: `{file}` is not under /run/secrets/"));
        assert!(
            GATEWAY_SECRETS.contains(&name),
            "{key}: `{name}` is not a compose secret"
        );
        used.insert(name);
    }
    assert_eq!(
        used,
        GATEWAY_SECRETS.iter().copied().collect(),
        "secrets used by the policy"
    );

    // The audit log goes where docs/containers.md reads it.
    assert_eq!(string(table(&policy, "audit"), "output", "audit"), "stdout");

    // Prometheus scrapes the admin port the policy opens.
    let admin = string(table(&policy, "admin"), "listen", "admin");
    assert!(
        admin.starts_with("0.0.0.0:"),
        "in a container the admin listener must not be loopback-only"
    );
    let prometheus = read_repo_file(PROMETHEUS_CONFIG);
    assert!(
        prometheus.contains(&format!("\"gateway:{}\"", port_of(admin))),
        "{PROMETHEUS_CONFIG} should scrape gateway:{}",
        port_of(admin)
    );
    let monitoring = service(&compose, "prometheus");
    assert!(
        mounts(monitoring, "prometheus")
            .iter()
            .any(|mount| mount.source == "./deploy/prometheus" && mount.read_only),
        "Prometheus mounts deploy/prometheus read-only"
    );
}

#[test]
fn the_policy_routes_every_legacy_endpoint_and_nothing_of_the_mentor() {
    let policy = policy();
    let routes = policy
        .get("routes")
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{POLICY} has no [[routes]]"));
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for route in routes {
        let route = route.as_table().expect("each [[routes]] is a table");
        let name = string(route, "name", "routes[]");
        let path = string(route, "path", name);
        // `match` defaults to "exact" in the gateway.
        assert!(
            route
                .get("match")
                .is_none_or(|m| m.as_str() == Some("exact")),
            "{name}: exact paths only"
        );
        assert!(
            !path.starts_with("/api/mentor"),
            "{name}: mentor routes are out of scope"
        );
        let methods: Vec<&str> = route
            .get("methods")
            .and_then(toml::Value::as_array)
            .unwrap_or_else(|| panic!("{name}: methods"))
            .iter()
            .map(|method| method.as_str().expect("methods are strings"))
            .collect();
        for method in methods {
            assert!(
                served.insert((method.to_string(), path.to_string())),
                "{method} {path} is routed twice"
            );
        }
    }
    for (method, path) in API_ENDPOINTS {
        assert!(
            served.contains(&(method.to_string(), path.to_string())),
            "{POLICY} has no route for {method} {path}"
        );
    }
}
