//! The one-command local stack: a fresh self-signed certificate, a
//! development policy covering every endpoint of the legacy API, and the
//! worker as a supervised child on a private socket — then the gateway on
//! `https://127.0.0.1:8443`.
//!
//! Everything lives in one directory (default `.dev`, git-ignored):
//! `cert.pem`, `key.pem`, `api_key_pepper` and `token_secret` (mode 0600),
//! `gateway.toml`, and `run/` (mode 0700) holding the worker's socket. All
//! of it is rewritten on each start, including a fresh development API key
//! (all scopes) that the banner prints once. The policy applies the same
//! checks as the shipped example, minus rate limits; browser sessions
//! (`POST /auth/session`) are on for a front end on `localhost:5173`.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::RngCore;

use tradehabit_shared::routes::ROUTES;

use crate::checks::api_key;
use crate::checks::secret::Secret;
use crate::config::Config;
use crate::lifecycle::{Gateway, Handle};

/// Where the dev stack listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// The development key's scopes: everything the routes ask for.
const DEV_SCOPES: &[&str] = &["analyze", "read", "settings"];

/// Checks per route of the API's route table ([`ROUTES`]), beyond name,
/// path, method and body limit (the shipped example policy uses the same
/// rules).
const ROUTE_CHECKS: &[(&str, &str)] = &[
    (
        "analyze",
        "scopes = [\"analyze\"]\nupload = {}\nquery = { sigma = { type = \"float\", min = 0.1, max = 5.0 }, sigma_risk = { type = \"float\", min = 0.1, max = 5.0 }, k = { type = \"float\", min = 0.1, max = 10.0 } }",
    ),
    (
        "losses",
        "query = { sigma = { type = \"float\", min = 0.1, max = 5.0 }, symbol = { type = \"string\", max_length = 32 } }",
    ),
    ("revenge", "query = { k = { type = \"float\", min = 0.1, max = 10.0 } }"),
    ("risk-sizing", "query = { vr = { type = \"float\", min = 0.01, max = 5.0 } }"),
    ("excessive-risk", "query = { sigma = { type = \"float\", min = 0.1, max = 5.0 } }"),
    (
        "insights",
        "query = { vr = { type = \"float\", min = 0.01, max = 5.0 }, sigma_loss = { type = \"float\", min = 0.1, max = 5.0 }, sigma_risk = { type = \"float\", min = 0.1, max = 5.0 }, k = { type = \"float\", min = 0.1, max = 10.0 } }",
    ),
    ("goals-calculate", "json = { max_depth = 8 }"),
    ("settings-write", "scopes = [\"settings\"]\njson = { max_depth = 2 }"),
    ("health", "auth = \"none\""),
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
    /// The admin listener (metrics, health), default
    /// [`crate::config::DEFAULT_ADMIN_LISTEN`].
    pub admin_listen: SocketAddr,
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
    let prepared = prepare(options)?;
    let handle = Gateway::start(prepared.config)
        .await
        .context("starting the gateway")?;
    print_banner(
        &options.dir,
        handle.https_addr(),
        handle.admin_addr(),
        &prepared.api_key,
    );
    Ok(handle)
}

/// Writes the certificate, key, secrets and policy into `options.dir` and
/// returns the validated policy with the development API key.
pub fn prepare(options: &DevOptions) -> anyhow::Result<Prepared> {
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

    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    crate::tls::write_self_signed(&cert_path, &key_path)
        .context("generating the development certificate")?;

    let pepper = random_secret();
    write_private(&dir.join("api_key_pepper"), pepper.as_bytes())?;
    write_private(&dir.join("token_secret"), random_secret().as_bytes())?;
    let scopes: Vec<String> = DEV_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let key = api_key::keygen(
        &Secret::new(pepper.into_bytes()),
        "dev",
        &scopes,
        &mut rand::rngs::OsRng,
    )
    .context("generating the development API key")?;

    let policy = policy_text(
        options,
        &cert_path,
        &key_path,
        &run_dir.join("worker.sock"),
        &key.policy_entry,
    )?;
    let policy_path = dir.join("gateway.toml");
    fs::write(&policy_path, policy)
        .with_context(|| format!("writing {}", policy_path.display()))?;
    let config =
        Config::from_file(&policy_path).context("the generated development policy is invalid")?;
    Ok(Prepared {
        config,
        api_key: key.key,
    })
}

/// What [`prepare`] made: the policy, and the development API key (shown
/// once, never written to disk).
pub struct Prepared {
    /// The validated development policy.
    pub config: Config,
    /// The development API key, with every scope.
    pub api_key: String,
}

/// 32 random bytes as hex: a pepper or an HMAC key.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
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
    api_key_entry: &str,
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
         [admin]\nlisten = {admin}\n\n\
         [tls]\ncert = {cert}\nkey = {key}\n\n\
         [upstream]\naddress = {address}\n\n\
         [upstream.spawn]\ncommand = [{command}]\n\n\
         [cors]\nallowed_origins = [\"http://localhost:5173\", \"http://127.0.0.1:5173\"]\n\n\
         [api_keys]\npepper = {{ file = \"api_key_pepper\" }}\nkeys = [{api_key_entry}]\n\n\
         [tokens]\nsecret = {{ file = \"token_secret\" }}\n\
         session = {{ enabled = true, scopes = [{scopes}] }}\n\
         exchange = {{ enabled = true }}\n",
        listen = quote(&options.listen.to_string()),
        admin = quote(&options.admin_listen.to_string()),
        cert = path_text(cert)?,
        key = path_text(key)?,
        address = quote(&format!(
            "unix:{}",
            socket.to_str().context("socket path is not UTF-8")?
        )),
        command = command.join(", "),
        scopes = DEV_SCOPES
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(", "),
    );
    // Every route of the API's route table, one method each.
    for route in ROUTES {
        text.push_str(&format!(
            "\n[[routes]]\nname = {}\npath = {}\nmethods = [{}]\nbody_limit = {}\n",
            quote(route.name),
            quote(route.path),
            quote(route.method),
            route.body.policy_limit_bytes(),
        ));
        let checks = ROUTE_CHECKS
            .iter()
            .find(|(name, _)| *name == route.name)
            .map_or("scopes = [\"read\"]", |(_, checks)| checks);
        text.push_str(checks);
        text.push('\n');
    }
    Ok(text)
}

/// The sample export shipped with the workspace, as an absolute path (the
/// banner's commands work from any directory).
fn sample_csv() -> PathBuf {
    let shipped = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sample-orders.csv"
    ));
    shipped
        .canonicalize()
        .unwrap_or_else(|_| shipped.to_path_buf())
}

fn print_banner(dir: &Path, https: SocketAddr, admin: SocketAddr, api_key: &str) {
    // Absolute paths: the commands are pasted into any shell, anywhere.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let cert = dir.join("cert.pem");
    let cert = cert.display();
    let sample = sample_csv();
    let sample = sample.display();
    let url = format!("https://{https}");
    println!();
    println!("TradeHabit development stack is up");
    println!("  gateway:     {url}");
    println!("  certificate: {cert} (self-signed, localhost and 127.0.0.1)");
    println!("  policy:      {}", dir.join("gateway.toml").display());
    println!("  metrics:     http://{admin}/metrics (admin listener, plain HTTP)");
    println!("  credential:  X-API-Key: {api_key}");
    println!("               (development only, every scope; a new one on each start)");
    println!();
    println!("Upload the sample CSV and read the summary:");
    println!(
        "  curl --cacert {cert} -H 'X-API-Key: {api_key}' -F file=@{sample} {url}/api/analyze"
    );
    println!("  curl --cacert {cert} -H 'X-API-Key: {api_key}' {url}/api/summary");
    println!();
    println!("Python examples (docs/scripting.md):");
    println!(
        "  TRADEHABIT_URL={url} TRADEHABIT_CA_CERT={cert} TRADEHABIT_API_KEY={api_key} python3 {}",
        sample_csv()
            .parent()
            .map_or_else(
                || "examples".into(),
                |dir| dir.join("python/upload_and_read.py")
            )
            .display()
    );
    println!();
    println!("Stop with Ctrl-C.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathMatch;

    #[test]
    fn the_banner_names_the_sample_by_an_absolute_path() {
        let sample = sample_csv();
        assert!(
            sample.is_absolute() && sample.is_file(),
            "{}",
            sample.display()
        );
    }

    #[test]
    fn prepare_writes_a_valid_policy_and_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let options = DevOptions {
            dir: dir.path().join(".dev"),
            worker_command: vec!["/opt/worker bin".into(), "--flag".into()],
            listen: DEFAULT_LISTEN.parse().unwrap(),
            admin_listen: crate::config::DEFAULT_ADMIN_LISTEN.parse().unwrap(),
        };
        let prepared = prepare(&options).unwrap();
        let config = prepared.config;
        assert_eq!(config.routes.len(), ROUTES.len());
        // The printed key works against the written policy.
        let key = config
            .checks
            .auth
            .api_keys()
            .check(prepared.api_key.as_bytes(), time::OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(key.scopes.len(), DEV_SCOPES.len());
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
        assert_eq!(mode("api_key_pepper"), 0o600);
        assert_eq!(mode("token_secret"), 0o600);
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
        let expected: Vec<_> = ROUTES
            .iter()
            .map(|route| {
                (
                    route.name.to_string(),
                    route.path.to_string(),
                    route.method.to_string(),
                    route.body.policy_limit_bytes(),
                )
            })
            .collect();
        assert_eq!(listed, expected);
    }
}
