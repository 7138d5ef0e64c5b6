//! The one-command local stack: a fresh self-signed certificate, a
//! development policy covering every endpoint of the legacy API, and the
//! worker as a supervised child on a private socket — then the gateway on
//! `https://127.0.0.1:8443`.
//!
//! Everything lives in one directory (default `.dev`, git-ignored):
//! `cert.pem`, `key.pem` (mode 0600), `gateway.toml`, and `run/` (mode
//! 0700) holding the worker's socket. All of it is rewritten on each start.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Config;
use crate::lifecycle::{Gateway, Handle};

/// Where the dev stack listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// `POST /api/analyze`: the legacy 2 MiB file limit plus room for the
/// multipart framing around it.
const UPLOAD_BODY_LIMIT: u64 = 2 * 1024 * 1024 + 64 * 1024;
/// JSON bodies (settings, goals).
const JSON_BODY_LIMIT: u64 = 64 * 1024;
/// Routes that take no body.
const NO_BODY_LIMIT: u64 = 1024;

/// Every endpoint of `spec/legacy-api.md` (mentor routes are out of scope)
/// plus the worker's `DELETE /api/session`: name, path, methods, body limit.
/// The shipped example policy lists the same routes (a test checks it).
pub(crate) const LEGACY_ROUTES: &[(&str, &str, &[&str], u64)] = &[
    ("analyze", "/api/analyze", &["POST"], UPLOAD_BODY_LIMIT),
    ("summary", "/api/summary", &["GET"], NO_BODY_LIMIT),
    ("trades", "/api/trades", &["GET"], NO_BODY_LIMIT),
    ("losses", "/api/losses", &["GET"], NO_BODY_LIMIT),
    ("revenge", "/api/revenge", &["GET"], NO_BODY_LIMIT),
    ("risk-sizing", "/api/risk-sizing", &["GET"], NO_BODY_LIMIT),
    (
        "excessive-risk",
        "/api/excessive-risk",
        &["GET"],
        NO_BODY_LIMIT,
    ),
    ("stop-loss", "/api/stop-loss", &["GET"], NO_BODY_LIMIT),
    (
        "winrate-payoff",
        "/api/winrate-payoff",
        &["GET"],
        NO_BODY_LIMIT,
    ),
    ("insights", "/api/insights", &["GET"], NO_BODY_LIMIT),
    ("goals", "/api/goals", &["GET"], NO_BODY_LIMIT),
    (
        "goals-calculate",
        "/api/goals/calculate",
        &["POST"],
        JSON_BODY_LIMIT,
    ),
    (
        "settings",
        "/api/settings",
        &["GET", "POST"],
        JSON_BODY_LIMIT,
    ),
    ("health", "/api/health", &["GET"], NO_BODY_LIMIT),
    ("session-delete", "/api/session", &["DELETE"], NO_BODY_LIMIT),
];

/// How to run the dev stack.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Directory for the certificate, key, policy and socket.
    pub dir: PathBuf,
    /// The worker program and leading arguments; `--socket <path>` is
    /// appended.
    pub worker_command: Vec<OsString>,
    /// The HTTPS address, default [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
}

/// Runs the dev stack until `shutdown` resolves; `SIGHUP` re-reads
/// `gateway.toml` in the directory.
pub async fn run(options: DevOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let handle = start(&options).await?;
    crate::lifecycle::serve_until(handle, shutdown).await
}

/// Prepares the directory, starts the gateway and its worker, and prints
/// the URL and a ready-to-paste `curl`.
pub async fn start(options: &DevOptions) -> anyhow::Result<Handle> {
    let config = prepare(options)?;
    let handle = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    print_banner(&options.dir, handle.https_addr());
    Ok(handle)
}

/// Writes the certificate, key and policy into `options.dir` and returns
/// the validated policy.
pub fn prepare(options: &DevOptions) -> anyhow::Result<Config> {
    let dir = &options.dir;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let run_dir = dir.join("run");
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run_dir)
        .with_context(|| format!("creating {}", run_dir.display()))?;
    fs::set_permissions(&run_dir, Permissions::from_mode(0o700))?;

    let generated = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .context("generating the development certificate")?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    fs::write(&cert_path, generated.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(&key_path, generated.key_pair.serialize_pem().as_bytes())?;

    let policy = policy_text(options, &cert_path, &key_path, &run_dir.join("worker.sock"))?;
    let policy_path = dir.join("gateway.toml");
    fs::write(&policy_path, policy)
        .with_context(|| format!("writing {}", policy_path.display()))?;
    Config::from_file(&policy_path).context("the generated development policy is invalid")
}

/// Writes a file only its owner can read, whatever was there before.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    Ok(())
}

fn policy_text(
    options: &DevOptions,
    cert: &Path,
    key: &Path,
    socket: &Path,
) -> anyhow::Result<String> {
    let quote = |text: &str| toml::Value::String(text.to_string()).to_string();
    let path_text = |path: &Path| {
        path.to_str()
            .map(quote)
            .with_context(|| format!("{} is not UTF-8", path.display()))
    };
    let mut command = Vec::new();
    for part in &options.worker_command {
        let part = part
            .to_str()
            .with_context(|| format!("worker command part {part:?} is not UTF-8"))?;
        command.push(quote(part));
    }
    command.push(quote("--socket"));
    command.push(quote("{socket}"));

    let mut text = format!(
        "# Development policy written by `tradehabit-gateway dev`; rewritten on every start.\n\
         [server]\nlisten = {listen}\nshutdown_timeout = \"5s\"\n\n\
         [tls]\ncert = {cert}\nkey = {key}\n\n\
         [upstream]\naddress = {address}\n\n\
         [upstream.spawn]\ncommand = [{command}]\n",
        listen = quote(&options.listen.to_string()),
        cert = path_text(cert)?,
        key = path_text(key)?,
        address = quote(&format!(
            "unix:{}",
            socket.to_str().context("socket path is not UTF-8")?
        )),
        command = command.join(", "),
    );
    for (name, path, methods, body_limit) in LEGACY_ROUTES {
        let methods: Vec<String> = methods.iter().map(|m| quote(m)).collect();
        text.push_str(&format!(
            "\n[[routes]]\nname = {}\npath = {}\nmethods = [{}]\nbody_limit = {body_limit}\n",
            quote(name),
            quote(path),
            methods.join(", "),
        ));
    }
    Ok(text)
}

fn print_banner(dir: &Path, https: SocketAddr) {
    let cert = dir.join("cert.pem");
    let cert = cert.display();
    let url = format!("https://{https}");
    println!();
    println!("TradeHabit development stack is up");
    println!("  gateway:     {url}");
    println!("  certificate: {cert} (self-signed, localhost and 127.0.0.1)");
    println!("  policy:      {}", dir.join("gateway.toml").display());
    println!("  credential:  none needed yet: the development routes are unauthenticated");
    println!();
    println!("Upload the sample CSV and read the summary:");
    println!("  curl --cacert {cert} -F file=@examples/sample-orders.csv {url}/api/analyze");
    println!("  curl --cacert {cert} {url}/api/summary");
    println!();
    println!("Stop with Ctrl-C.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathMatch;

    #[test]
    fn prepare_writes_a_valid_policy_and_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let options = DevOptions {
            dir: dir.path().join(".dev"),
            worker_command: vec!["/opt/worker bin".into(), "--flag".into()],
            listen: DEFAULT_LISTEN.parse().unwrap(),
        };
        let config = prepare(&options).unwrap();
        assert_eq!(config.routes.len(), LEGACY_ROUTES.len());
        let spawn = config.upstream.spawn.as_ref().unwrap();
        assert_eq!(
            spawn.command,
            ["/opt/worker bin", "--flag", "--socket", "{socket}"]
        );
        let mode = |p: &str| {
            fs::metadata(options.dir.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("key.pem"), 0o600);
        assert_eq!(mode("run"), 0o700);
        // A second start rewrites everything and still validates.
        prepare(&options).unwrap();
    }

    #[test]
    fn the_example_policy_routes_match_the_dev_routes() {
        let text = include_str!("../../config/gateway.example.toml");
        let config = Config::from_toml(text).expect("the shipped example policy is valid");
        let listed: Vec<_> = config
            .routes
            .iter()
            .map(|r| {
                assert_eq!(r.path_match, PathMatch::Exact);
                let methods: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
                (
                    r.name.clone(),
                    r.path.clone(),
                    methods.join(","),
                    r.body_limit,
                )
            })
            .collect();
        let expected: Vec<_> = LEGACY_ROUTES
            .iter()
            .map(|(name, path, methods, limit)| {
                (
                    name.to_string(),
                    path.to_string(),
                    methods.join(","),
                    *limit,
                )
            })
            .collect();
        assert_eq!(listed, expected);
    }
}
