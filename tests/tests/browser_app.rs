//! The web app's API client in a real browser, served by the gateway
//! under a strict policy with cookie sessions (`docs/configuration.md`,
//! "Serving the web app" and "Cookie sessions"). Headless Chromium loads
//! a test page from a static-files route; its script calls the API
//! exactly as the app does: `fetch` with the default credentials mode
//! (`same-origin`), `Content-Type: application/json` on everything but
//! the upload, `Authorization` only from `localStorage["tradehabit_jwt"]`
//! (never set here, as the app never sets it), an empty API base URL.
//!
//! Each scenario is one Chromium run; a profile directory is one browser
//! (its cookies persist between runs). Shown: upload of the app's demo
//! CSV, summary and settings work; a second browser sees none of the
//! first one's data; a page on another origin cannot use the cookie, and a
//! link from it to the app keeps the session; a session kept busy over
//! several cookie lifetimes keeps working; logging
//! out (`DELETE /api/session`) ends it. Requires `/usr/bin/chromium`
//! (`scripts/test.sh` installs it; missing, the test fails under
//! `CI=true` and otherwise prints `SKIPPED`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tradehabit_e2e::attack::{sample_csv, Stack};
use tradehabit_e2e::browser::{dump_dom, serve_page, CHROMIUM};
use tradehabit_e2e::policy::{audit_to_file, tokens_table, write_app};

/// One cookie's lifetime in the busy-session scenario.
///
/// After any request a cookie has at least half of this left (or it is
/// renewed), so each Chromium run (a few seconds) may take up to half of
/// it before the next one; generous for a loaded machine.
const IDLE_SECONDS: u64 = 15;

const ROUTES: &str = r#"
[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"

[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = { field = "file", extensions = [".csv"], max_file_bytes = 2097152 }

[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
scopes = ["read"]
content_types = []

[[routes]]
name = "settings-read"
path = "/api/settings"
methods = ["GET"]
scopes = ["read"]
content_types = []

[[routes]]
name = "settings-write"
path = "/api/settings"
methods = ["POST"]
body_limit = 65536
scopes = ["settings"]
json = { max_depth = 2 }

[[routes]]
name = "session"
path = "/api/session"
methods = ["DELETE"]

[[routes]]
name = "app"
path = "/"
match = "prefix"
methods = ["GET"]
auth = "none"
static_files = { root = "app" }
"#;

/// The app's API client and the scenarios, in an external script: the
/// page's default Content-Security-Policy allows no inline script.
const APP_JS: &str = r#"
const BASE_URL = '';
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (!(options.body instanceof FormData)) headers['Content-Type'] = 'application/json';
  const token = localStorage.getItem('tradehabit_jwt');
  if (token) headers['Authorization'] = `Bearer ${token}`;
  const response = await fetch(BASE_URL + path, { ...options, headers });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return { status: response.status, body };
}
async function upload() {
  const csv = await (await fetch('/demo.csv')).blob();
  const form = new FormData();
  form.append('file', new File([csv], 'demo.csv', { type: 'text/csv' }));
  const analyze = await api('/api/analyze', { method: 'POST', body: form });
  const summary = await api('/api/summary');
  const before = await api('/api/settings');
  const next = { ...before.body, k: 2.5 };
  const saved = await api('/api/settings', { method: 'POST', body: JSON.stringify(next) });
  const after = await api('/api/settings');
  return { analyze: analyze.status, summary: summary.status,
           trades: summary.body && summary.body.total_trades,
           saved: saved.status, k: after.body && after.body.k };
}
async function look() {
  const summary = await api('/api/summary');
  const settings = await api('/api/settings');
  return { summary: summary.status, trades: summary.body && summary.body.total_trades,
           settings: settings.status, k: settings.body && settings.body.k };
}
async function logout() {
  const ended = await api('/api/session', { method: 'DELETE' });
  const summary = await api('/api/summary');
  return { logout: ended.status, after: summary.status };
}
const scenarios = { upload, look, logout };
(async () => {
  const out = document.getElementById('out');
  try {
    const result = await scenarios[location.hash.slice(1) || 'look']();
    out.textContent = 'RESULT:' + JSON.stringify(result) + ':END';
  } catch (e) {
    out.textContent = 'RESULT:' + JSON.stringify({ error: String(e) }) + ':END';
  }
})();
"#;

const INDEX: &str = "<!doctype html><html><head><script src=\"/app.js\" defer></script></head>\
    <body><pre id=\"out\">RESULT:{}:END</pre></body></html>";

/// A page on another origin that tries to use the gateway's cookie: reads
/// the summary with `credentials: "include"`, and posts an upload the
/// way a CSRF form would (`no-cors`, a simple request).
fn other_origin_page(gateway: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">RESULT:{{}}:END</pre><script>
(async () => {{
  let read;
  try {{
    const r = await fetch('{gateway}/api/summary', {{ credentials: 'include' }});
    read = 'read:' + r.status;
  }} catch (e) {{ read = 'blocked'; }}
  const csv = 'Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Limit Price,Stop Price,Status\n'
    + '1,01/02/2024 7:30:00,01/02/2024 7:30:00,Buy,MNQH4,1,21490.25,Market,,,Filled\n'
    + '2,01/02/2024 7:40:00,01/02/2024 7:40:00,Sell,MNQH4,1,21495.25,Market,,,Filled\n';
  const form = new FormData();
  form.append('file', new Blob([csv], {{ type: 'text/csv' }}), 'evil.csv');
  let posted;
  try {{
    await fetch('{gateway}/api/analyze', {{ method: 'POST', mode: 'no-cors', credentials: 'include', body: form }});
    posted = 'sent';
  }} catch (e) {{ posted = 'blocked'; }}
  document.getElementById('out').textContent = 'RESULT:' + JSON.stringify({{ read, posted }}) + ':END';
}})();
</script></body></html>"#
    )
}

/// The policy tables: sessions and cookie sessions, the audit log in a file.
fn tables(dir: &Path) -> String {
    let csv = sample_csv();
    write_app(
        dir,
        &[
            ("index.html", INDEX.as_bytes()),
            ("app.js", APP_JS.as_bytes()),
            ("demo.csv", &csv),
        ],
    );
    let session = r#"{ enabled = true, scopes = ["read", "analyze", "settings"], rate_limit_per_ip = ["100/minute"] }"#;
    let cookie =
        format!("{{ enabled = true, idle_seconds = {IDLE_SECONDS}, max_lifetime_seconds = 3600 }}");
    format!(
        "{}\n{}",
        tokens_table(
            dir,
            "browser-app-test-secret-0123456789abcdef",
            session,
            Some(&cookie)
        ),
        audit_to_file(dir)
    )
}

/// Loads `url` in headless Chromium with the browser profile `profile`;
/// returns what the page's script reported.
async fn run(url: &str, profile: &Path) -> Value {
    let dom = dump_dom(url, profile).await;
    let text = dom
        .split("RESULT:")
        .nth(1)
        .and_then(|rest| rest.split(":END").next())
        .unwrap_or_else(|| panic!("no result in the DOM: {dom}"));
    let text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn the_app_works_same_origin_with_one_session_per_browser() {
    if !Path::new(CHROMIUM).exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{CHROMIUM} is not installed; scripts/test.sh installs it, CI must run this test"
        );
        eprintln!("SKIPPED: {CHROMIUM} not installed (scripts/test.sh installs it)");
        return;
    }
    let stack = Stack::start_with(tables, ROUTES).await;
    let app = format!("https://localhost:{}/", stack.addr().port());
    let profiles = tempfile::tempdir().unwrap();
    let (alice, bob) = (profiles.path().join("alice"), profiles.path().join("bob"));

    // Alice uploads the demo data, reads the summary, saves a setting.
    let uploaded = run(&format!("{app}#upload"), &alice).await;
    assert_eq!(uploaded["analyze"], 200, "{uploaded}");
    assert_eq!(uploaded["summary"], 200, "{uploaded}");
    assert_eq!(uploaded["saved"], 200, "{uploaded}");
    assert_eq!(uploaded["k"], 2.5, "{uploaded}");
    let trades = uploaded["trades"].as_u64().expect("a trade count");
    assert!(trades > 0, "{uploaded}");

    // A page on another origin, in Alice's browser: her cookie is not
    // used (not sent, or refused), nothing of hers is read or changed.
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://127.0.0.1:{}/", other.local_addr().unwrap().port());
    let page = serve_page(other, other_origin_page(&app[..app.len() - 1]));
    let audit_before = stack.audit_lines().len();
    let attacked = run(&other_url, &alice).await;
    assert_eq!(attacked["read"], "blocked", "{attacked}");
    page.abort();
    let analyze = stack
        .wait_for_audit(|l| l["path"] == "/api/analyze" && l["status"] != 200)
        .await;
    assert!(analyze["principal"].is_null(), "{analyze}");
    for line in &stack.audit_lines()[audit_before..] {
        assert!(
            line["principal"].is_null(),
            "cookie used cross-origin: {line}"
        );
    }

    // Kept busy over several cookie lifetimes, Alice's session lives on.
    let began = tokio::time::Instant::now();
    let mut visits = 0;
    while began.elapsed() < Duration::from_secs(IDLE_SECONDS * 2) {
        let again = run(&format!("{app}#look"), &alice).await;
        assert_eq!(again["summary"], 200, "visit {visits}: {again}");
        assert_eq!(
            again["trades"].as_u64(),
            Some(trades),
            "visit {visits}: {again}"
        );
        assert_eq!(again["k"], 2.5, "visit {visits}: {again}");
        visits += 1;
    }

    // A link to a page of the app (a client-side route) from another site:
    // the browser withholds the strict cookie on that navigation; the
    // gateway's reload page brings it back instead of replacing her
    // session with a new one.
    let link = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link_url = format!("http://127.0.0.1:{}/", link.local_addr().unwrap().port());
    let link_page = serve_page(
        link,
        format!("<!doctype html><script>location.href = '{app}dashboard';</script>"),
    );
    let followed = run(&link_url, &alice).await;
    link_page.abort();
    assert_eq!(followed["trades"].as_u64(), Some(trades), "{followed}");
    assert_eq!(followed["k"], 2.5, "{followed}");

    // Bob, another browser, has a session of his own: none of her data.
    let bobs = run(&format!("{app}#look"), &bob).await;
    assert_eq!(bobs["settings"], 200, "{bobs}");
    assert_ne!(bobs["k"], 2.5, "{bobs}");
    assert_ne!(bobs["trades"].as_u64(), Some(trades), "{bobs}");

    // Logging out ends the session: the next call is refused, the next
    // page load starts an empty one.
    let out = run(&format!("{app}#logout"), &alice).await;
    assert_eq!(out["logout"], 200, "{out}");
    assert_eq!(out["after"], 401, "{out}");
    let fresh = run(&format!("{app}#look"), &alice).await;
    assert_ne!(fresh["trades"].as_u64(), Some(trades), "{fresh}");
    assert_ne!(fresh["k"], 2.5, "{fresh}");
    stack.stop().await;
}
