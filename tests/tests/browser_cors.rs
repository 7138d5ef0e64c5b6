//! CORS against a real browser's enforcement: headless Chromium loads a
//! page from an allowed origin and from a disallowed one (two local HTTP
//! servers on different ports); the page's script asks the gateway for a
//! browser session token, then uploads a CSV with `fetch` and a bearer
//! token (a preflighted request). From the allowed origin it must succeed;
//! from the other the browser must block it. Skipped (with a message) when
//! `/usr/bin/chromium` is not installed.

use std::path::Path;

use tokio::net::TcpListener;
use tradehabit_e2e::attack::Stack;
use tradehabit_e2e::browser::{dump_dom, serve_page, CHROMIUM};
use tradehabit_e2e::policy::tokens_table;

const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = { field = "file", extensions = [".csv"], max_file_bytes = 2097152 }

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
"#;

/// The test page: its script writes `RESULT:<status>` or
/// `RESULT:blocked` into the DOM, which `--dump-dom` prints.
fn page(gateway: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">RESULT:pending</pre><script>
(async () => {{
  const out = document.getElementById('out');
  try {{
    const s = await fetch('{gateway}/auth/session', {{ method: 'POST' }});
    const token = (await s.json()).access_token;
    const csv = 'Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status\n'
      + '1,01/02/2024 7:30:00,01/02/2024 7:30:00,Buy,MNQH4,1,21490.25,Market,,,Filled\n'
      + '2,01/02/2024 7:40:00,01/02/2024 7:40:00,Sell,MNQH4,1,21495.25,Market,,,Filled\n';
    const form = new FormData();
    form.append('file', new Blob([csv], {{ type: 'text/csv' }}), 'orders.csv');
    const r = await fetch('{gateway}/api/analyze', {{
      method: 'POST', headers: {{ 'Authorization': 'Bearer ' + token }}, body: form }});
    out.textContent = 'RESULT:' + r.status;
  }} catch (e) {{
    out.textContent = 'RESULT:blocked';
  }}
}})();
</script></body></html>"#
    )
}

/// Loads `url` in a fresh headless Chromium; returns the `RESULT:` text.
async fn load(url: &str, profile: &Path) -> String {
    let dom = dump_dom(url, profile).await;
    dom.split("RESULT:")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no result in the DOM: {dom}"))
        .to_string()
}

#[tokio::test]
async fn a_real_browser_succeeds_from_an_allowed_origin_and_is_blocked_from_another() {
    if !Path::new(CHROMIUM).exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{CHROMIUM} is not installed; scripts/test.sh installs it, CI must run this test"
        );
        eprintln!("SKIPPED: {CHROMIUM} not installed (scripts/test.sh installs it)");
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed_origin = format!("http://127.0.0.1:{}", allowed.local_addr().unwrap().port());
    let other_origin = format!("http://127.0.0.1:{}", other.local_addr().unwrap().port());
    let stack = Stack::start_with(
        |dir| {
            let session =
                r#"{ enabled = true, scopes = ["analyze"], rate_limit_per_ip = ["100/minute"] }"#;
            format!(
                "[cors]\nallowed_origins = [\"{allowed_origin}\"]\n\n{}",
                tokens_table(
                    dir,
                    "browser-cors-test-secret-0123456789abcdef",
                    session,
                    None
                )
            )
        },
        ROUTES,
    )
    .await;
    let gateway = format!("https://localhost:{}", stack.addr().port());
    let pages = [
        serve_page(allowed, page(&gateway)),
        serve_page(other, page(&gateway)),
    ];
    let profiles = tempfile::tempdir().unwrap();

    let from_allowed = load(&format!("{allowed_origin}/"), &profiles.path().join("a")).await;
    assert_eq!(from_allowed, "200", "from the allowed origin");
    let from_other = load(&format!("{other_origin}/"), &profiles.path().join("b")).await;
    assert_eq!(from_other, "blocked", "from a disallowed origin");

    for task in pages {
        task.abort();
    }
    stack.stop().await;
}
