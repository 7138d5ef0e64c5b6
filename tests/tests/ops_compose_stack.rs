//! The compose stack without a container engine: the worker and the gateway
//! started as plain processes with exactly the arguments, environment,
//! policy file, socket layout and secret files that `compose.yaml` gives
//! their containers (all read from `compose.yaml` and the policy it mounts,
//! nothing restated here), then one request through the gateway over TLS to
//! the worker, and its audit line on the gateway's stdout.
//!
//! Container paths are mapped under a temporary root (`/run/tradehabit` →
//! `<root>/run/tradehabit`, `/run/secrets/NAME` → `<root>/run/secrets/NAME`,
//! `/etc/tradehabit` → `<root>/etc/tradehabit`, ...), and the policy's
//! `listen` addresses become free loopback ports. Nothing else changes.

#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tools::{assert_success, keys_of, load_yaml, read_repo_file, repo_root, strings_at};
use yaml_rust2::Yaml;

/// How often, and how many times, readiness is polled before giving up.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const POLL_ATTEMPTS: u32 = 300;

/// A temporary folder standing in for the containers' filesystem root.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    /// Where a container path lives in this test.
    fn host(&self, container_path: &str) -> PathBuf {
        assert!(
            container_path.starts_with('/'),
            "`{container_path}` is not an absolute container path"
        );
        self.dir.path().join(container_path.trim_start_matches('/'))
    }

    fn create_dir(&self, container_path: &str, mode: u32) -> PathBuf {
        let path = self.host(container_path);
        std::fs::create_dir_all(&path).expect("create a mapped folder");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("set folder mode");
        path
    }
}

/// The loopback ports that replace the policy's listen addresses.
#[derive(Debug, Default)]
struct Ports {
    https: u16,
    admin: u16,
}

/// A child process that is killed when the test ends, however it ends.
struct Running {
    name: &'static str,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// Panics with the process's stderr if it has already exited.
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the child") {
            panic!(
                "{} exited early ({status}); stderr:\n{}",
                self.name,
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }

    /// SIGTERM, then wait a bounded time for the exit (SIGKILL after it).
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..POLL_ATTEMPTS {
            if self.child.try_wait().expect("poll the child").is_some() {
                return;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds both binaries (a no-op when fresh) and returns their paths. The
/// selection is what `cargo test --workspace` builds (every package, its
/// binaries and its tests, so dev-dependencies count): the dependencies then
/// resolve to the same features and nothing is compiled a second time.
fn binaries() -> (PathBuf, PathBuf) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--locked", "--workspace", "--bins", "--tests"])
        .current_dir(repo_root())
        .output()
        .expect("run cargo build");
    assert_success("cargo build --workspace --bins --tests", &output);
    // This test runs from <target>/debug/deps/; the binaries sit in <target>/debug/.
    let profile_dir = std::env::current_exe()
        .expect("the test's own path")
        .parent()
        .and_then(Path::parent)
        .expect("<target>/debug")
        .to_path_buf();
    let gateway = profile_dir.join("tradehabit-gateway");
    let worker = profile_dir.join("tradehabit-worker");
    for binary in [&gateway, &worker] {
        assert!(binary.is_file(), "{} was not built", binary.display());
    }
    (gateway, worker)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buffer))
        .expect("read /dev/urandom");
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A container path or `unix:` address with its path mapped under `root`.
fn map_path_value(text: &str, root: &Root) -> Option<String> {
    if let Some(path) = text.strip_prefix("unix:/") {
        return Some(format!("unix:{}", root.host(&format!("/{path}")).display()));
    }
    text.starts_with('/')
        .then(|| root.host(text).display().to_string())
}

/// The policy as the gateway in the container reads it, with container
/// paths mapped under `root` and listen addresses moved to free ports.
fn rewrite_policy(policy: &str, root: &Root) -> (String, Ports) {
    let mut table: toml::Table = policy.parse().expect("the compose policy parses");
    let mut ports = Ports::default();
    for (section, listen) in table.iter_mut().filter_map(|(name, value)| {
        value
            .as_table_mut()
            .and_then(|section| section.get_mut("listen"))
            .map(|listen| (name.clone(), listen))
    }) {
        let port = free_port();
        *listen = toml::Value::String(format!("127.0.0.1:{port}"));
        match section.as_str() {
            "server" => ports.https = port,
            "admin" => ports.admin = port,
            _ => {}
        }
    }
    assert!(
        ports.https != 0 && ports.admin != 0,
        "[server] and [admin] listen addresses"
    );
    if let Some(plain) = table
        .get_mut("plain_http")
        .and_then(toml::Value::as_table_mut)
    {
        if plain.contains_key("https_port") {
            plain.insert(
                "https_port".into(),
                toml::Value::Integer(ports.https.into()),
            );
        }
    }
    let mut value = toml::Value::Table(table);
    map_paths(&mut value, root);
    let text = toml::to_string(&value).expect("serialise the policy");
    (text, ports)
}

fn map_paths(value: &mut toml::Value, root: &Root) {
    match value {
        toml::Value::String(text) => {
            if let Some(mapped) = map_path_value(text, root) {
                *text = mapped;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|item| map_paths(item, root)),
        toml::Value::Table(table) => table
            .iter_mut()
            .filter(|(key, _)| !URL_PATH_KEYS.contains(&key.as_str()))
            .for_each(|(_, item)| map_paths(item, root)),
        _ => {}
    }
}

/// Policy keys whose values are URL paths, not filesystem paths.
const URL_PATH_KEYS: &[&str] = &["routes", "api_prefixes", "ready_path"];

/// A service's command with container paths mapped.
fn command(service: &Yaml, name: &str, root: &Root) -> Vec<String> {
    strings_at(service, "command", name)
        .into_iter()
        .map(|arg| map_path_value(&arg, root).unwrap_or(arg))
        .collect()
}

fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match service["environment"].as_hash() {
        Some(map) => map
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Yaml::String(text) => text.clone(),
                    Yaml::Integer(number) => number.to_string(),
                    other => panic!("environment value {other:?}"),
                };
                (key.as_str().expect("a name").to_string(), value)
            })
            .collect(),
        None => BTreeMap::new(),
    }
}

/// Starts `binary` with the service's command and environment (and nothing
/// else of the test's environment), output to files under `root`.
fn start(name: &'static str, binary: &Path, service: &Yaml, root: &Root) -> Running {
    let stdout = root.dir.path().join(format!("{name}.stdout"));
    let stderr = root.dir.path().join(format!("{name}.stderr"));
    let child = Command::new(binary)
        .args(command(service, name, root))
        .env_clear()
        .envs(environment(service))
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    Running {
        name,
        child,
        stdout,
        stderr,
    }
}

/// Lays out what compose mounts into the two containers: the socket folder
/// (the shared volume), the TLS folder (its volume), the policy folder
/// (rewritten as described above) and the secret files.
fn lay_out(compose: &Yaml, root: &Root) -> Ports {
    let gateway = &compose["services"]["gateway"];
    let mut ports = None;
    for service in ["gateway", "worker"] {
        for volume in strings_at(&compose["services"][service], "volumes", service) {
            let parts: Vec<&str> = volume.split(':').collect();
            let (source, target) = (parts[0], parts[1]);
            if let Some(folder) = source.strip_prefix("./") {
                // A bind mount of a repository folder: the policy.
                let target_dir = root.create_dir(target, 0o755);
                for entry in std::fs::read_dir(repo_root().join(folder)).expect("read the folder") {
                    let path = entry.expect("a folder entry").path();
                    let mut text = std::fs::read_to_string(&path).expect("read a policy file");
                    if path
                        .extension()
                        .is_some_and(|extension| extension == "toml")
                    {
                        let (rewritten, found) = rewrite_policy(&text, root);
                        text = rewritten;
                        ports = Some(found);
                    }
                    let name = path.file_name().expect("a file name");
                    std::fs::write(target_dir.join(name), text).expect("write the policy");
                }
            } else {
                // A named volume: an empty folder owned by the services' user.
                root.create_dir(target, 0o750);
            }
        }
    }
    let secrets_dir = root.create_dir("/run/secrets", 0o700);
    for secret in strings_at(gateway, "secrets", "gateway") {
        assert!(
            keys_of(&compose["secrets"], "secrets").contains(&secret),
            "secret {secret} is not declared"
        );
        std::fs::write(secrets_dir.join(&secret), format!("{}\n", random_hex(32)))
            .expect("write a secret file");
    }
    ports.expect("the gateway mounts a policy folder")
}

fn wait_for_socket(worker: &mut Running, socket: &Path) {
    for _ in 0..POLL_ATTEMPTS {
        worker.assert_alive();
        let is_socket = socket
            .metadata()
            .map(|meta| meta.file_type().is_socket())
            .unwrap_or(false);
        if is_socket {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    panic!("the worker never created {}", socket.display());
}

/// Polls the gateway's own `healthcheck` subcommand (what the image's
/// HEALTHCHECK runs) until `/readyz` says ready.
fn wait_until_ready(gateway: &mut Running, binary: &Path, admin_port: u16) {
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    for _ in 0..POLL_ATTEMPTS {
        gateway.assert_alive();
        let ready = Command::new(binary)
            .args(["healthcheck", "--url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run the healthcheck subcommand");
        if ready.success() {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    panic!("`healthcheck --url {url}` never reported ready");
}

/// One HTTP/1.1 request over TLS, trusting only the certificate the gateway
/// generated in its TLS folder. Returns the raw response.
fn https_get(port: u16, path: &str, ca_file: &Path) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("read the generated certificate") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server = ServerName::try_from("localhost").expect("a server name");
    let connection = rustls::ClientConnection::new(Arc::new(config), server).expect("a TLS client");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    // A guard against a hung test, not a latency assertion.
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).expect("send the request");
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // A peer that closes without close_notify: the response is complete.
        Err(error) if error.kind() == ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(error) => panic!("reading the response failed: {error}"),
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[test]

fn the_compose_configuration_serves_a_request_as_plain_processes() {
    let compose = load_yaml("compose.yaml");
    let (gateway_binary, worker_binary) = binaries();
    let root = Root::new();
    let ports = lay_out(&compose, &root);
    let gateway_service = &compose["services"]["gateway"];
    let worker_service = &compose["services"]["worker"];

    // The worker first, as compose's depends_on orders them.
    let socket_arg = {
        let command = strings_at(worker_service, "command", "worker");
        let at = command
            .iter()
            .position(|arg| arg == "--socket")
            .expect("the worker's --socket");
        command[at + 1].clone()
    };
    let mut worker = start("worker", &worker_binary, worker_service, &root);
    wait_for_socket(&mut worker, &root.host(&socket_arg));

    let mut gateway = start("gateway", &gateway_binary, gateway_service, &root);
    wait_until_ready(&mut gateway, &gateway_binary, ports.admin);

    let policy: toml::Table = read_repo_file("deploy/policy/gateway.toml")
        .parse()
        .expect("the policy parses");
    let cert = policy["tls"]["cert"].as_str().expect("tls.cert");
    let response = https_get(ports.https, "/api/health", &root.host(cert));
    // curl and wrk send an IP address as the TLS server name; rustls warns
    // about it, one line per handshake, unless the gateway holds it back.
    let ip_as_server_name = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", ports.https),
        ])
        .args(["-servername", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client (scripts/test.sh installs openssl)");
    assert_success("openssl s_client -servername 127.0.0.1", &ip_as_server_name);
    gateway.stop();
    worker.stop();
    let diagnostics = std::fs::read_to_string(&gateway.stderr).expect("the gateway's stderr");
    assert!(
        !diagnostics.contains("SNI"),
        "a client's TLS oddity reached the operator's log:\n{diagnostics}"
    );
    assert!(
        !diagnostics.contains('\x1b'),
        "terminal colour codes in a log file:\n{diagnostics}"
    );

    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "status line: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nstrict-transport-security:"),
        "HSTS on the answer: {head}"
    );
    assert!(
        body.contains("\"Status\""),
        "the worker's health body: {body}"
    );

    // docs/containers.md reads the audit log as the gateway's stdout alone.
    let stdout = std::fs::read_to_string(&gateway.stdout).expect("the gateway's stdout");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("a non-JSON line on the gateway's stdout: {line}"))
        })
        .collect();
    assert!(
        lines.iter().any(|line| line["route"] == "health"
            && line["path"] == "/api/health"
            && line["status"] == 200),
        "no audit line for the request in:\n{stdout}"
    );
}
