//! Harness shared by the worker-pool and worker-trust tests: real workers
//! on their own Unix sockets and real gateways over TLS, all in-process,
//! with API-key users.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use tradehabit_e2e::policy::api_key;
use tradehabit_e2e::{send_http1, write_test_certificate};
use tradehabit_gateway::{Config, Gateway, Handle};

pub use tradehabit_e2e::worker::RunningWorker;

pub const PEPPER: &str = "pool-e2e-pepper-pool-e2e-pepper-0001";
pub const SAMPLE_CSV: &str = include_str!("../../../examples/sample-orders.csv");
const BOUNDARY: &str = "pool-boundary";
/// NinjaTrader month codes: one per user, so each user's trades name a
/// contract no other user uploaded.
const MONTHS: &[u8] = b"FGHJKMNQUVXZ";

/// A user's API key and the contract symbol of their upload.
pub struct User {
    pub key: String,
    pub policy_entry: String,
    pub contract: String,
}

/// `count` users `user-0`…, with read and analyze scopes.
pub fn users(count: usize) -> Vec<User> {
    (0..count)
        .map(|i| {
            let made = api_key(PEPPER, &format!("user-{i}"), &["read", "analyze"]);
            User {
                key: made.key,
                policy_entry: made.policy_entry,
                contract: format!("MNQ{}4", MONTHS[i % MONTHS.len()] as char),
            }
        })
        .collect()
}

/// The sample CSV with the user's own contract symbol.
pub fn csv_for(user: &User) -> String {
    SAMPLE_CSV.replace("MNQH4", &user.contract)
}

/// Writes the certificate and the pepper into `dir`; returns the
/// certificate's DER.
pub fn prepare_dir(dir: &Path) -> CertificateDer<'static> {
    let cert = write_test_certificate(dir);
    std::fs::write(dir.join("pepper"), PEPPER).unwrap();
    cert
}

/// A gateway in front of `sockets` (in that order), with `users`, and the
/// upstream settings in `upstream_extra` (TOML lines).
pub async fn start_gateway(
    dir: &Path,
    sockets: &[&Path],
    users: &[User],
    upstream_extra: &str,
) -> Handle {
    let addresses: Vec<String> = sockets
        .iter()
        .map(|s| format!("\"unix:{}\"", s.display()))
        .collect();
    let keys: Vec<&str> = users.iter().map(|u| u.policy_entry.as_str()).collect();
    let policy = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
ready_probe_interval = "1h"

[tls]
cert = "cert.pem"
key = "key.pem"

[upstream]
addresses = [{addresses}]
{upstream_extra}

[api_keys]
pepper = {{ file = "pepper" }}
keys = [{keys}]

[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = {{}}

[[routes]]
name = "trades"
path = "/api/trades"
methods = ["GET"]
scopes = ["read"]
content_types = []

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
content_types = []
"#,
        addresses = addresses.join(", "),
        keys = keys.join(", "),
    );
    let name = format!("gateway-{}.toml", rand::random::<u32>());
    let policy_path = dir.join(name);
    std::fs::write(&policy_path, policy).unwrap();
    let config = Config::from_file(&policy_path).expect("the test policy is valid");
    Gateway::start(config).await.expect("the gateway starts")
}

/// One request over HTTP/1.1 on a fresh TLS connection: status, body.
pub async fn send(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, String) {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let reply = send_http1(addr, cert, builder.body(Full::new(body.into())).unwrap()).await;
    (reply.status, reply.text())
}

/// Uploads `user`'s CSV through the gateway at `addr`.
pub async fn upload(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    user: &User,
) -> (StatusCode, String) {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"orders.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(csv_for(user).as_bytes());
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    send(
        addr,
        cert,
        "POST",
        "/api/analyze",
        &[("x-api-key", &user.key), ("content-type", &content_type)],
        body,
    )
    .await
}

/// `user`'s trades through the gateway at `addr`.
pub async fn trades(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    user: &User,
) -> (StatusCode, String) {
    send(
        addr,
        cert,
        "GET",
        "/api/trades",
        &[("x-api-key", &user.key)],
        "",
    )
    .await
}
