//! The `scale` profile of `compose.yaml` (docs/scaling.md): HAProxy in TCP
//! mode before two gateways, two workers and Redis, with the same hardening
//! as the default stack (the checks every service gets are in
//! `ops_compose.rs`). Pinned here: the workers and Redis have no network,
//! each socket volume is shared by its server and the two gateways only,
//! only the balancer publishes a port, the workers trust only the gateways'
//! uid and the shared key, and the scale policy (`deploy/scale/`) agrees
//! with what compose gives the containers.
//!
//! Needs `docker-compose`, `haproxy` (to check its configuration, offline)
//! and `git`; without them these tests fail and say how to install them.

#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::BTreeSet;

use tools::{
    assert_success, load_yaml, read_repo_file, require_tool, run_in_repo, str_at, strings_at,
};
use yaml_rust2::Yaml;

const COMPOSE: &str = "compose.yaml";
const SCALE_POLICY: &str = "deploy/scale/gateway.toml";
const DEFAULT_POLICY: &str = "deploy/policy/gateway.toml";
const HAPROXY_CONFIG: &str = "deploy/scale/haproxy/haproxy.cfg";
const GATEWAYS: [&str; 2] = ["scale-gateway-1", "scale-gateway-2"];
const WORKERS: [(&str, &str); 2] = [
    ("scale-worker-1", "worker-1-socket"),
    ("scale-worker-2", "worker-2-socket"),
];
const REDIS: &str = "scale-redis";
const BALANCER: &str = "scale-balancer";
const HMAC_SECRET: &str = "upstream_hmac_key";
const GATEWAY_SECRETS: [&str; 4] = [
    "jwt_hs256_secret",
    "api_key_pepper",
    "audit_pseudonym_key",
    HMAC_SECRET,
];

fn compose() -> Yaml {
    load_yaml(COMPOSE)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let node = &compose["services"][name];
    assert!(!node.is_badvalue(), "{COMPOSE} has no service `{name}`");
    node
}

fn toml_file(relative: &str) -> toml::Table {
    read_repo_file(relative)
        .parse()
        .unwrap_or_else(|error| panic!("{relative} is not valid TOML: {error}"))
}

/// `(source, target, read_only)` of each short-syntax volume.
fn mounts(service: &Yaml, name: &str) -> Vec<(String, String, bool)> {
    strings_at(service, "volumes", name)
        .iter()
        .map(|text| {
            let parts: Vec<&str> = text.split(':').collect();
            assert!((2..=3).contains(&parts.len()), "{name}: volume `{text}`");
            let read_only = parts
                .get(2)
                .is_some_and(|mode| mode.split(',').any(|f| f == "ro"));
            (parts[0].to_owned(), parts[1].to_owned(), read_only)
        })
        .collect()
}

/// The argument after `flag` in the service's `command` list.
fn flag(service: &Yaml, name: &str, flag: &str) -> String {
    let command = strings_at(service, "command", name);
    let at = command
        .iter()
        .position(|arg| arg == flag)
        .unwrap_or_else(|| panic!("{name}: command has no {flag}: {command:?}"));
    command
        .get(at + 1)
        .unwrap_or_else(|| panic!("{name}: {flag} has no value"))
        .clone()
}

fn uid_of(service: &Yaml, name: &str) -> String {
    str_at(service, "user", name)
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn docker_compose_config_accepts_the_scale_profile() {
    let docker_compose = require_tool(
        "docker-compose",
        "apt-get update && apt-get install -y docker-compose",
    );
    let output = run_in_repo(
        &docker_compose,
        ["-f", COMPOSE, "--profile", "scale", "config", "-q"],
    );
    assert_success("docker-compose --profile scale config -q", &output);
}

#[test]
fn the_scale_profile_is_a_balancer_two_gateways_two_workers_and_redis() {
    let compose = compose();
    let names: BTreeSet<String> = tools::keys_of(&compose["services"], "services")
        .into_iter()
        .filter(|name| strings_at(service(&compose, name), "profiles", name) == ["scale"])
        .collect();
    let expected: BTreeSet<String> = [BALANCER, REDIS]
        .into_iter()
        .chain(GATEWAYS)
        .chain(WORKERS.map(|(worker, _)| worker))
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected, "services of the scale profile");
    // Official images, pinned to a major version.
    assert!(str_at(service(&compose, REDIS), "image", REDIS).starts_with("redis:7"));
    assert!(str_at(service(&compose, BALANCER), "image", BALANCER).starts_with("haproxy:2."));
}

#[test]
fn scale_workers_have_no_network_and_trust_only_the_gateways_and_the_key() {
    let compose = compose();
    let gateway_uid = uid_of(service(&compose, GATEWAYS[0]), GATEWAYS[0]);
    for (name, volume) in WORKERS {
        let worker = service(&compose, name);
        assert_eq!(worker["network_mode"].as_str(), Some("none"), "{name}");
        for key in ["ports", "expose", "networks", "tmpfs"] {
            assert!(worker[key].is_badvalue(), "{name} should have no `{key}`");
        }
        let mounts = mounts(worker, name);
        assert_eq!(mounts.len(), 1, "{name} mounts only its socket volume");
        let (source, target, _) = &mounts[0];
        assert_eq!(source, volume, "{name}");
        let socket = flag(worker, name, "--socket");
        assert_eq!(
            std::path::Path::new(&socket).parent(),
            Some(std::path::Path::new(target.as_str())),
            "{name}: the socket is in its volume"
        );
        assert_eq!(
            flag(worker, name, "--allowed-peer-uids"),
            gateway_uid,
            "{name}"
        );
        assert_eq!(
            flag(worker, name, "--hmac-key-file"),
            format!("/run/secrets/{HMAC_SECRET}"),
            "{name}"
        );
        assert_eq!(strings_at(worker, "secrets", name), [HMAC_SECRET], "{name}");
    }
}

#[test]
fn redis_has_no_network_no_port_and_no_persistence() {
    let compose = compose();
    let redis = service(&compose, REDIS);
    assert_eq!(redis["network_mode"].as_str(), Some("none"));
    assert!(redis["ports"].is_badvalue() && redis["secrets"].is_badvalue());
    assert_eq!(flag(redis, REDIS, "--port"), "0", "no TCP listener");
    assert_eq!(flag(redis, REDIS, "--save"), "", "no snapshots");
    assert_eq!(
        flag(redis, REDIS, "--appendonly"),
        "no",
        "no append-only file"
    );
    let mounts = mounts(redis, REDIS);
    assert_eq!(mounts.len(), 1, "Redis mounts only its socket volume");
    assert_eq!(mounts[0].0, "redis-socket");
    let socket = flag(redis, REDIS, "--unixsocket");
    assert!(socket.starts_with(&format!("{}/", mounts[0].1)), "{socket}");
}

#[test]
fn each_scale_socket_volume_is_shared_by_its_server_and_the_two_gateways_only() {
    let compose = compose();
    let servers = WORKERS
        .iter()
        .map(|(worker, volume)| (*worker, *volume))
        .chain([(REDIS, "redis-socket")]);
    for (server, volume) in servers {
        let mut users = BTreeSet::new();
        let mut targets = BTreeSet::new();
        for name in tools::keys_of(&compose["services"], "services") {
            for (source, target, _) in mounts(service(&compose, &name), &name) {
                if source == volume {
                    users.insert(name.clone());
                    targets.insert(target);
                }
            }
        }
        let expected: BTreeSet<String> = [server, GATEWAYS[0], GATEWAYS[1]]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(users, expected, "services mounting {volume}");
        assert_eq!(
            targets.len(),
            1,
            "{volume} is mounted at one path everywhere"
        );
        let options = &compose["volumes"][volume]["driver_opts"];
        assert_eq!(options["type"].as_str(), Some("tmpfs"), "{volume}: tmpfs");
        let mount_options = str_at(options, "o", volume);
        for required in ["uid=65532", "gid=65532", "mode=0750", "noexec"] {
            assert!(
                mount_options.split(',').any(|option| option == required),
                "{volume}: mount option {required}"
            );
        }
    }
}

#[test]
fn only_the_balancer_publishes_and_it_passes_tcp_to_both_gateways_by_readiness() {
    let compose = compose();
    let policy = toml_file(SCALE_POLICY);
    let port = |key: &str| -> String {
        let listen = policy[key]["listen"].as_str().unwrap();
        listen.rsplit(':').next().unwrap().to_owned()
    };
    let (https, admin) = (port("server"), port("admin"));
    for name in GATEWAYS
        .iter()
        .chain(WORKERS.map(|(w, _)| w).iter())
        .chain([&REDIS])
    {
        assert!(
            service(&compose, name)["ports"].is_badvalue(),
            "{name} publishes"
        );
    }
    let balancer = service(&compose, BALANCER);
    assert_eq!(
        strings_at(balancer, "ports", BALANCER),
        [format!("8445:{https}")]
    );
    assert_eq!(
        mounts(balancer, BALANCER),
        [(
            "./deploy/scale/haproxy".to_owned(),
            "/usr/local/etc/haproxy".to_owned(),
            true
        )]
    );
    let config = read_repo_file(HAPROXY_CONFIG);
    assert!(config.contains("mode tcp"), "TCP passthrough");
    assert!(config.contains("option httpchk GET /readyz"));
    for gateway in GATEWAYS {
        let line = format!("{gateway}:{https} check port {admin}");
        assert!(config.contains(&line), "{HAPROXY_CONFIG} needs `{line}`");
    }
    let haproxy = require_tool("haproxy", "apt-get update && apt-get install -y haproxy");
    let output = run_in_repo(&haproxy, ["-c", "-f", HAPROXY_CONFIG]);
    assert_success("haproxy -c", &output);
}

#[test]
fn the_scale_policy_agrees_with_compose() {
    let compose = compose();
    let policy = toml_file(SCALE_POLICY);
    let upstream = policy["upstream"].as_table().expect("[upstream]");
    let addresses: Vec<String> = upstream["addresses"]
        .as_array()
        .expect("upstream.addresses")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let sockets: Vec<String> = WORKERS
        .iter()
        .map(|(w, _)| format!("unix:{}", flag(service(&compose, w), w, "--socket")))
        .collect();
    assert_eq!(addresses, sockets, "upstream.addresses");
    assert_eq!(
        upstream["hmac_key"]["file"].as_str(),
        Some(format!("/run/secrets/{HMAC_SECRET}").as_str())
    );
    let rate_limit = policy["rate_limit"].as_table().expect("[rate_limit]");
    assert_eq!(rate_limit["store"].as_str(), Some("redis"));
    assert_eq!(
        rate_limit["redis"]["address"].as_str().map(str::to_owned),
        Some(format!(
            "unix:{}",
            flag(service(&compose, REDIS), REDIS, "--unixsocket")
        ))
    );
    assert!(
        policy.get("plain_http").is_none(),
        "HTTPS only behind the balancer"
    );
    assert_eq!(
        policy["routes"],
        toml_file(DEFAULT_POLICY)["routes"],
        "the scale policy's routes must be those of {DEFAULT_POLICY}"
    );

    let git = require_tool("git", "apt-get update && apt-get install -y git");
    for (index, name) in GATEWAYS.iter().enumerate() {
        let gateway = service(&compose, name);
        let mounts = mounts(gateway, name);
        assert!(
            mounts.contains(&("./deploy/scale".into(), "/etc/tradehabit".into(), true)),
            "{name}: the scale policy, read-only"
        );
        let tls = mounts
            .iter()
            .find(|(source, _, _)| source == "scale-gateway-tls")
            .unwrap_or_else(|| panic!("{name}: the shared TLS volume"));
        assert_eq!(
            tls.2,
            index == 1,
            "{name}: only the first writes the certificate"
        );
        assert_eq!(
            strings_at(gateway, "secrets", name),
            GATEWAY_SECRETS,
            "{name}"
        );
    }
    let file = str_at(&compose["secrets"][HMAC_SECRET], "file", HMAC_SECRET);
    assert_eq!(file, format!("./deploy/secrets/{HMAC_SECRET}"));
    let output = run_in_repo(&git, ["check-ignore", "-q", file.trim_start_matches("./")]);
    assert_success("git check-ignore (the key is never committed)", &output);
    assert!(
        read_repo_file("deploy/make-dev-secrets.sh").contains(HMAC_SECRET),
        "deploy/make-dev-secrets.sh creates {HMAC_SECRET}"
    );
}
