//! The static-files route kind (`docs/configuration.md`, "Serving the web
//! app"): the real gateway serves a temporary app directory next to the
//! real worker. Index and client-side-route fallback, content types,
//! caching, strong ETags and 304, HEAD, precompressed variants, the CSP of
//! HTML, streamed large files, and the refusals: traversal, encoded dots,
//! hidden files, symlinks (`docs/security-controls.md`, F-21).

use std::path::Path;

use http::Request;
use http_body_util::Full;
use tradehabit_e2e::attack::Stack;
use tradehabit_e2e::policy::write_app;

const INDEX: &str = "<!doctype html><html><head><script type=\"module\" src=\"/assets/index-3f9a1c2b.js\"></script></head><body><div id=\"root\"></div></body></html>";
const SCRIPT: &str = "console.log('app');";
const SECRET: &str = "outside-the-root-secret";

const ROUTES: &str = r#"
[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"

[[routes]]
name = "app"
path = "/"
match = "prefix"
methods = ["GET"]
auth = "none"
static_files = { root = "app" }
"#;

/// The app directory a bundler would write, plus a secret outside it and
/// symlinks pointing there.
fn app_with_traps(dir: &Path) -> String {
    let app = dir.join("app");
    let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    write_app(
        dir,
        &[
            ("index.html", INDEX.as_bytes()),
            ("assets/index-3f9a1c2b.js", SCRIPT.as_bytes()),
            ("assets/index-3f9a1c2b.js.br", b"BROTLI-BYTES"),
            ("assets/index-3f9a1c2b.js.gz", b"GZIP-BYTES"),
            ("demo.csv", b"a,b\n1,2\n"),
            (".env", SECRET.as_bytes()),
            ("big.bin", &big),
        ],
    );
    std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), app.join("linked.txt")).unwrap();
    std::fs::create_dir_all(dir.join("outside")).unwrap();
    std::fs::write(dir.join("outside/inner.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink(dir.join("outside"), app.join("linkdir")).unwrap();
    String::new()
}

async fn start() -> Stack {
    Stack::start_with(app_with_traps, ROUTES).await
}

#[tokio::test]
async fn the_index_and_client_side_routes_are_served_revalidated_with_a_strict_csp() {
    let stack = start().await;
    for path in ["/", "/dashboard", "/trades/12"] {
        let page = stack.get(path).await;
        assert_eq!(page.status, 200, "{path}: {page:?}");
        assert_eq!(page.text(), INDEX, "{path}");
        let header = |name: &str| page.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "text/html; charset=utf-8");
        assert_eq!(header("cache-control"), "no-cache");
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(header("etag").starts_with('"'), "a strong ETag");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    // Assets keep the gateway's own CSP; a CSV is text.
    let csv = stack.get("/demo.csv").await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    // A missing asset, a directory without an index, an unknown API path:
    // 404 envelopes, never the index.
    for path in ["/missing.js", "/assets/", "/assets", "/api/nothing"] {
        let missing = stack.get(path).await;
        assert_eq!(missing.status, 404, "{path}: {missing:?}");
        assert_eq!(missing.json()["status"], "ERROR", "{path}");
    }
    // The API route in front still answers.
    assert_eq!(stack.get("/api/health").await.status, 200);
    stack.stop().await;
}

#[tokio::test]
async fn hashed_assets_are_immutable_with_etags_304_and_head() {
    let stack = start().await;
    let path = "/assets/index-3f9a1c2b.js";
    let asset = stack.get(path).await;
    assert_eq!(asset.status, 200);
    assert_eq!(asset.text(), SCRIPT);
    assert_eq!(
        asset.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        asset.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(asset.headers["vary"], "Accept-Encoding");
    let etag = asset.headers["etag"].to_str().unwrap().to_owned();

    let again = stack.get_with(path, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"].to_str().unwrap(), etag);
    let weak = format!("\"other\", W/{etag}");
    assert_eq!(
        stack
            .get_with(path, &[("if-none-match", &weak)])
            .await
            .status,
        304
    );
    let changed = stack
        .get_with(path, &[("if-none-match", "\"stale\"")])
        .await;
    assert_eq!(changed.status, 200);

    let head = stack
        .send(Request::head(path).body(Full::default()).unwrap())
        .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers["content-length"],
        SCRIPT.len().to_string().as_str()
    );
    assert_eq!(head.headers["etag"].to_str().unwrap(), etag);

    // Only GET and HEAD; no body.
    let post = stack
        .send(Request::post(path).body(Full::default()).unwrap())
        .await;
    assert_eq!(post.status, 405);
    stack.stop().await;
}

#[tokio::test]
async fn precompressed_variants_follow_accept_encoding() {
    let stack = start().await;
    let path = "/assets/index-3f9a1c2b.js";
    let br = stack
        .get_with(path, &[("accept-encoding", "gzip, deflate, br")])
        .await;
    assert_eq!(br.status, 200);
    assert_eq!(br.headers["content-encoding"], "br");
    assert_eq!(&br.body[..], b"BROTLI-BYTES");
    assert_eq!(br.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(br.headers["vary"], "Accept-Encoding");
    let gzip = stack
        .get_with(path, &[("accept-encoding", "gzip, br;q=0")])
        .await;
    assert_eq!(gzip.headers["content-encoding"], "gzip");
    assert_eq!(&gzip.body[..], b"GZIP-BYTES");
    let plain = stack
        .get_with(path, &[("accept-encoding", "identity")])
        .await;
    assert!(!plain.headers.contains_key("content-encoding"));
    assert_eq!(plain.text(), SCRIPT);
    // Each variant its own validator.
    let tags = [&br, &gzip, &plain].map(|r| r.headers["etag"].clone());
    assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
    stack.stop().await;
}

#[tokio::test]
async fn nothing_outside_the_root_is_reachable() {
    let stack = start().await;
    for path in ["/linked.txt", "/linkdir/inner.txt", "/.env"] {
        let refused = stack.get(path).await;
        assert_eq!(refused.status, 404, "{path}: {refused:?}");
        assert!(!refused.text().contains(SECRET), "{path}");
        assert_eq!(refused.json()["status"], "ERROR");
    }
    for path in [
        "/%2e%2e/secret.txt",
        "/assets/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
    ] {
        let refused = stack.get(path).await;
        assert_eq!(refused.status, 400, "{path}: {refused:?}");
        assert!(!refused.text().contains(SECRET), "{path}");
    }
    let raw = stack
        .raw(b"GET /../secret.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(!raw.contains(SECRET));
    stack.stop().await;
}

#[tokio::test]
async fn large_files_are_streamed_whole() {
    let stack = start().await;
    let big = stack.get("/big.bin").await;
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 5 * 1024 * 1024);
    assert!(big
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(big.headers["content-type"], "application/octet-stream");
    stack.stop().await;
}

#[tokio::test]
async fn http2_serves_the_same_files_and_head() {
    let stack = start().await;
    let uri = |path: &str| format!("https://localhost{path}");
    let replies = stack
        .send_h2(vec![
            Request::get(uri("/dashboard"))
                .body(Full::default())
                .unwrap(),
            Request::head(uri("/assets/index-3f9a1c2b.js"))
                .body(Full::default())
                .unwrap(),
            Request::get(uri("/linked.txt"))
                .body(Full::default())
                .unwrap(),
        ])
        .await;
    assert_eq!(replies[0].status, 200);
    assert_eq!(replies[0].text(), INDEX);
    assert_eq!(replies[1].status, 200);
    assert!(replies[1].body.is_empty());
    assert_eq!(
        replies[1].headers["content-length"],
        SCRIPT.len().to_string().as_str()
    );
    assert_eq!(replies[2].status, 404);
    assert!(!replies[2].text().contains(SECRET));
    stack.stop().await;
}
