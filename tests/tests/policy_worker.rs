//! The gateway's policy checks in front of the real worker: the real
//! gateway over TLS, the real worker on a private Unix socket, both
//! in-process.
//!
//! * the seed document's three security tests (an executable upload, a
//!   3 MB upload, a hostile `Origin`);
//! * one principal cannot read another's trades, and forging the identity
//!   header does not help;
//! * two anonymous browser sessions get separate data spaces.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tradehabit_gateway::checks::api_key::keygen;
use tradehabit_gateway::checks::secret::Secret;
use tradehabit_gateway::{Config, Gateway, Handle};

const PEPPER: &str = "worker-e2e-pepper-worker-e2e-pepper-01";
const SAMPLE_CSV: &str = include_str!("../../examples/sample-orders.csv");
const BOUNDARY: &str = "policy-worker-boundary";

/// The gateway and the worker, and the two users' keys.
struct Stack {
    _dir: tempfile::TempDir,
    gateway: Option<Handle>,
    stop_worker: Option<oneshot::Sender<()>>,
    worker: tokio::task::JoinHandle<()>,
    cert: CertificateDer<'static>,
    alice: String,
    bob: String,
}

impl Stack {
    async fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("worker.sock");
        let listening =
            tradehabit_worker::serve::Worker::new(tradehabit_worker::config::Config::new(&socket))
                .bind()
                .expect("the worker binds its socket");
        let (stop_worker, stopped) = oneshot::channel::<()>();
        let worker = tokio::spawn(async move {
            listening
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });

        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            generated.key_pair.serialize_pem(),
        )
        .unwrap();
        std::fs::write(dir.path().join("pepper"), PEPPER).unwrap();
        std::fs::write(dir.path().join("token_secret"), "t".repeat(40)).unwrap();
        let pepper = Secret::new(PEPPER.as_bytes().to_vec());
        let scopes = vec!["read".to_string(), "analyze".to_string()];
        let alice = keygen(&pepper, "alice", &scopes, &mut rand::rngs::OsRng).unwrap();
        let bob = keygen(&pepper, "bob", &scopes, &mut rand::rngs::OsRng).unwrap();

        let policy = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[tls]
cert = "cert.pem"
key = "key.pem"

[upstream]
address = "unix:{socket}"

[cors]
allowed_origins = ["http://127.0.0.1:5173", "http://localhost:5173", "https://tradehabit-frontend.replit.app", "https://app.tradehab.it"]

[api_keys]
pepper = {{ file = "pepper" }}
keys = [{alice}, {bob}]

[tokens]
secret = {{ file = "token_secret" }}
session = {{ enabled = true, scopes = ["read", "analyze"] }}

[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = {{}}
query = {{ sigma = {{ type = "float", min = 0.1, max = 5.0 }} }}

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
            socket = socket.display(),
            alice = alice.policy_entry,
            bob = bob.policy_entry,
        );
        let policy_path = dir.path().join("gateway.toml");
        std::fs::write(&policy_path, policy).unwrap();
        let config = Config::from_file(&policy_path).expect("the test policy is valid");
        let gateway = Gateway::start(config).await.expect("the gateway starts");
        Stack {
            _dir: dir,
            gateway: Some(gateway),
            stop_worker: Some(stop_worker),
            worker,
            cert: generated.cert.der().clone(),
            alice: alice.key,
            bob: bob.key,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gateway.as_ref().unwrap().https_addr()
    }

    /// One request over HTTP/1.1 on a fresh TLS connection.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(self.addr()).await.unwrap();
        let stream = TlsConnector::from(Arc::new(tls))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = sender
            .send_request(builder.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        if let Some(stop) = self.stop_worker.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.worker).await;
    }
}

fn upload(filename: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[tokio::test]
async fn the_seed_documents_security_tests_pass_in_front_of_the_worker() {
    let stack = Stack::start().await;
    let ct = multipart();
    let key = stack.alice.clone();
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("x-api-key", &key), ("content-type", &ct)],
            upload("test.exe", b"malicious"),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["status"], "ERROR");
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("x-api-key", &key), ("content-type", &ct)],
            upload("test.csv", &vec![b'a'; 3 * 1024 * 1024]),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    let (status, headers, json) = stack
        .send(
            "GET",
            "/api/health",
            &[("origin", "https://malicious.com")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert!(
        json.get("Status").is_some(),
        "the worker's health answer: {json}"
    );
    assert!(headers.get("access-control-allow-origin").is_none());
    stack.stop().await;
}

#[tokio::test]
async fn one_principal_cannot_read_anothers_trades() {
    let stack = Stack::start().await;
    let (alice, bob) = (stack.alice.clone(), stack.bob.clone());
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("x-api-key", &alice), ("content-type", &multipart())],
            upload("orders.csv", SAMPLE_CSV.as_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let uploaded = json["meta"]["tradesDetected"].as_u64().unwrap();
    assert!(uploaded > 0);

    let (status, _, json) = stack
        .send("GET", "/api/trades", &[("x-api-key", &alice)], "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(json["trades"].as_array().unwrap().len() as u64, uploaded);

    // Bob sees no trades, even when he claims to be Alice.
    for forged in [vec![], vec![("x-tradehabit-principal", "key:alice")]] {
        let mut headers = forged.clone();
        headers.push(("x-api-key", bob.as_str()));
        let (status, _, json) = stack.send("GET", "/api/trades", &headers, "").await;
        assert_eq!(status, 400, "{json}");
        assert!(json.get("trades").is_none(), "{json}");
    }
    // Without credentials, nothing at all.
    let (status, _, _) = stack
        .send(
            "GET",
            "/api/trades",
            &[("x-tradehabit-principal", "key:alice")],
            "",
        )
        .await;
    assert_eq!(status, 401);
    stack.stop().await;
}

#[tokio::test]
async fn browser_sessions_get_separate_data_spaces() {
    let stack = Stack::start().await;
    let token =
        |json: &serde_json::Value| format!("Bearer {}", json["access_token"].as_str().unwrap());
    let (status, _, first) = stack.send("POST", "/auth/session", &[], "").await;
    assert_eq!(status, 200);
    let (_, _, second) = stack.send("POST", "/auth/session", &[], "").await;
    let (first, second) = (token(&first), token(&second));
    let (status, _, json) = stack
        .send(
            "POST",
            "/api/analyze",
            &[("authorization", &first), ("content-type", &multipart())],
            upload("orders.csv", SAMPLE_CSV.as_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        stack
            .send("GET", "/api/trades", &[("authorization", &first)], "")
            .await
            .0,
        200
    );
    assert_eq!(
        stack
            .send("GET", "/api/trades", &[("authorization", &second)], "")
            .await
            .0,
        400
    );
    stack.stop().await;
}
