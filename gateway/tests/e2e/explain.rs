//! `explain` predicts the live gateway: the same requests sent over real
//! TLS to a running gateway and explained on the same policy file get the
//! same status, the same envelope, and the same head at the upstream.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tradehabit_gateway::checks::api_key::keygen;
use tradehabit_gateway::checks::secret::Secret;
use tradehabit_gateway::explain::{explain, ExplainRequest};
use tradehabit_gateway::Config;

use crate::support::*;

const PEPPER: &str = "explain-pepper-explain-pepper-0123456789";

const ROUTES: &str = r#"
[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
scopes = ["read"]
content_types = []
query = { sigma = { type = "float", min = 0.1, max = 5.0 } }

[[routes]]
name = "settings"
path = "/api/settings"
methods = ["POST"]
body_limit = 64
scopes = ["settings"]
content_types = ["application/json"]

[[routes]]
name = "open"
path = "/api/open"
methods = ["GET"]
auth = "none"
"#;

#[tokio::test]
async fn explain_predicts_what_the_live_gateway_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pepper"), PEPPER).unwrap();
    let pepper = Secret::new(PEPPER.as_bytes().to_vec());
    let reader = keygen(&pepper, "reader", &["read".into()], &mut rand::rngs::OsRng).unwrap();
    let checks = format!(
        "[cors]\nallowed_origins = [\"https://app.example\"]\n\
         [api_keys]\npepper = {{ file = \"pepper\" }}\nkeys = [{}]\n",
        reader.policy_entry
    );
    let policy = Policy {
        checks,
        routes: ROUTES.to_string(),
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream_in(dir, policy).await;
    let policy_file = gw.dir.path().join("gateway.toml");
    let key = format!("X-API-Key: {}", reader.key);
    let cases: Vec<(&str, &str, Vec<String>, &str)> = vec![
        ("GET", "/api/summary?sigma=1", vec![key.clone()], ""),
        ("GET", "/api/summary", vec![], ""),
        ("GET", "/api/summary?sigma=9", vec![key.clone()], ""),
        ("GET", "/api/summary?debug=1", vec![key.clone()], ""),
        ("DELETE", "/api/summary", vec![key.clone()], ""),
        ("GET", "/api/nothing", vec![key.clone()], ""),
        (
            "POST",
            "/api/settings",
            vec![key.clone(), "Content-Type: application/json".into()],
            "{}",
        ),
        (
            "POST",
            "/api/settings",
            vec![
                "Origin: https://evil.example".into(),
                "Content-Type: application/json".into(),
            ],
            "{}",
        ),
        (
            "GET",
            "/api/open",
            vec![
                "Origin: https://app.example".into(),
                "X-TradeHabit-Principal: key:admin".into(),
            ],
            "",
        ),
    ];
    let client = gw.client();
    for (method, path, headers, body) in cases {
        // Header names only: the key is a credential.
        let names: Vec<&str> = headers.iter().filter_map(|h| h.split(':').next()).collect();
        let label = format!("{method} {path} {names:?}");
        let before = up.seen().len();
        let mut request = Request::builder().method(method).uri(path);
        for line in &headers {
            let (name, value) = line.split_once(':').unwrap();
            request = request.header(name.trim(), value.trim());
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let live = client.send(Proto::H1, request).await;
        let seen = up.seen();
        let forwarded_live = seen.len() > before;

        let config = Config::from_file(&policy_file).unwrap();
        let predicted = explain(
            config,
            &ExplainRequest {
                method: method.into(),
                url: format!("https://localhost{path}"),
                headers,
                body_size: (!body.is_empty()).then_some(body.len() as u64),
                client_ip: Some("127.0.0.1".parse().unwrap()),
                ..ExplainRequest::default()
            },
        )
        .await
        .unwrap();
        let predicted: serde_json::Value = serde_json::from_str(&predicted.json()).unwrap();
        let answer = &predicted["answer"];
        assert_eq!(
            answer["forwarded"], forwarded_live,
            "{label}: {predicted:#}"
        );
        if !forwarded_live {
            assert_eq!(answer["status"], live.status.as_u16(), "{label}");
            // The same envelope but for its request id, per request.
            let (mut predicted_envelope, mut live_envelope) =
                (answer["envelope"].clone(), live.json());
            for envelope in [&mut predicted_envelope, &mut live_envelope] {
                let id = envelope.as_object_mut().unwrap().remove("request_id");
                assert!(id.is_some_and(|id| id.is_string()), "{label}: {envelope}");
            }
            assert_eq!(predicted_envelope, live_envelope, "{label}");
            continue;
        }
        assert_same_head(&label, seen.last().unwrap(), &predicted["upstream"]);
    }
    gw.shutdown().await;
}

/// The head at the upstream: every header the upstream saw, with the same
/// value (the request id is per request; credentials are shown redacted),
/// and nothing more.
fn assert_same_head(label: &str, at_upstream: &Seen, upstream: &serde_json::Value) {
    assert_eq!(upstream["target"], at_upstream.target, "{label}");
    let mut predicted_names = Vec::new();
    for pair in upstream["headers"].as_array().unwrap() {
        let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        predicted_names.push(name.to_owned());
        let seen_value = at_upstream.headers.get(name);
        assert!(seen_value.is_some(), "{label}: {name} not seen upstream");
        if name != "x-request-id" && value != "<redacted>" {
            assert_eq!(seen_value.unwrap(), value, "{label}: {name}");
        }
    }
    for name in at_upstream.headers.keys() {
        let framing = name == "content-length" || name == "transfer-encoding";
        assert!(
            framing || predicted_names.iter().any(|n| n == name.as_str()),
            "{label}: {name} seen upstream, not predicted"
        );
    }
}
