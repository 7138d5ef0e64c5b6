//! Cookie-carried anonymous sessions without a browser
//! (`docs/configuration.md`, "Cookie sessions";
//! `docs/security-controls.md`, F-22 and F-23): the real gateway serves a
//! page and issues the `__Host-` cookie, the real worker keeps each
//! cookie's data apart; cross-origin use is refused (CSRF), bearer tokens
//! win, the cookie never reaches the upstream, renewal slides under the
//! absolute lifetime, and `DELETE /api/session` clears it. The browser
//! side is in `browser_app.rs`.

use std::path::Path;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use tradehabit_e2e::attack::{sample_csv, Reply, Stack, SAFETY};
use tradehabit_e2e::policy::{audit_to_file, tokens_table, write_app};

const SECRET: &str = "cookie-sessions-test-secret-0123456789abcdef";
/// The page the static-files route serves.
const APP_INDEX: &[u8] = b"<!doctype html><p>app</p>";

const ROUTES: &str = r#"
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
scopes = ["analyze"]

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

/// `[tokens]` with cookie sessions of `idle` and `max` seconds, and the app.
fn policy(idle: u64, max: u64) -> impl FnOnce(&Path) -> String {
    move |dir: &Path| {
        write_app(dir, &[("index.html", APP_INDEX)]);
        let session =
            r#"{ enabled = true, scopes = ["analyze"], rate_limit_per_ip = ["100/minute"] }"#;
        let cookie =
            format!("{{ enabled = true, idle_seconds = {idle}, max_lifetime_seconds = {max} }}");
        format!(
            "{}\n{}",
            tokens_table(dir, SECRET, session, Some(&cookie)),
            audit_to_file(dir)
        )
    }
}

/// The `name=value` pair of a reply's session `Set-Cookie`, if any.
fn cookie_of(reply: &Reply) -> Option<String> {
    let set = reply.headers.get("set-cookie")?.to_str().unwrap();
    let pair = set.split(';').next().unwrap().to_owned();
    pair.starts_with("__Host-th_session=").then_some(pair)
}

/// The origin the gateway serves, as the harness names its host
/// (`Host: localhost`, no port).
fn origin(_stack: &Stack) -> String {
    "https://localhost".to_owned()
}

/// A new browser: loads the page, returns its cookie.
async fn new_browser(stack: &Stack) -> String {
    let page = stack
        .get_with(
            "/",
            &[("sec-fetch-site", "none"), ("sec-fetch-dest", "document")],
        )
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    cookie_of(&page).expect("a session cookie on the page")
}

/// `GET /api/summary` as a same-origin fetch with `cookie`.
async fn summary(stack: &Stack, cookie: &str) -> Reply {
    stack
        .get_with(
            "/api/summary",
            &[
                ("cookie", cookie),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json"),
            ],
        )
        .await
}

/// Uploads the sample with `headers`.
async fn upload(stack: &Stack, headers: &[(&str, &str)]) -> Reply {
    stack.upload("orders.csv", &sample_csv(), headers).await
}

#[tokio::test]
async fn a_page_gives_each_browser_its_own_session() {
    let stack = Stack::start_with(policy(3600, 86_400), ROUTES).await;
    let page = stack.get("/").await;
    let set = page.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in [
        "__Host-th_session=v1.",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=3600",
    ] {
        assert!(set.contains(attribute), "{attribute}: {set}");
    }
    // A page answer that sets a cookie is never stored by a cache.
    assert_eq!(page.headers["cache-control"], "no-store");
    // Assets issue nothing.
    assert!(stack
        .get("/favicon.ico")
        .await
        .headers
        .get("set-cookie")
        .is_none());

    let (alice, bob) = (new_browser(&stack).await, new_browser(&stack).await);
    assert_ne!(alice, bob);
    let origin = origin(&stack);
    let uploaded = upload(&stack, &[("cookie", &alice), ("origin", &origin)]).await;
    assert_eq!(uploaded.status, 200, "{uploaded:?}");
    let mine = summary(&stack, &alice).await;
    assert_eq!(mine.status, 200, "{mine:?}");
    assert!(
        mine.json()["total_trades"].as_u64().unwrap() > 0,
        "{mine:?}"
    );
    let theirs = summary(&stack, &bob).await;
    assert_ne!(theirs.body, mine.body, "bob must not see alice's data");
    // The audit line names a session principal, never the cookie.
    stack
        .wait_for_audit(|l| l["auth_method"] == "session")
        .await;
    let lines = stack.audit_lines();
    let value = alice.split_once('=').unwrap().1;
    assert!(!lines.iter().any(|l| l.to_string().contains(value)));
    stack.stop().await;
}

#[tokio::test]
async fn cross_origin_use_of_the_cookie_is_refused() {
    let stack = Stack::start_with(policy(3600, 86_400), ROUTES).await;
    let cookie = new_browser(&stack).await;
    let cases: [&[(&str, &str)]; 5] = [
        // A form post from another site: no Origin match.
        &[("origin", "https://evil.example")],
        // Another port is another origin.
        &[("origin", "https://localhost:1")],
        // An unsafe method must name its origin.
        &[("sec-fetch-site", "same-origin")],
        &[],
        &[("origin", "null")],
    ];
    for extra in cases {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        let refused = upload(&stack, &headers).await;
        assert_eq!(refused.status, 403, "{extra:?}: {refused:?}");
        assert_eq!(refused.json()["status"], "ERROR");
        assert_eq!(refused.json()["message"], "cross-origin request refused");
    }
    for fetch_site in ["cross-site", "same-site"] {
        let read = stack
            .get_with(
                "/api/summary",
                &[("cookie", &cookie), ("sec-fetch-site", fetch_site)],
            )
            .await;
        assert_eq!(read.status, 403, "{fetch_site}: {read:?}");
    }
    // The requests CORS lets through (no Origin, or a read) are refused by
    // the cookie's own same-origin check.
    for method in ["POST", "GET"] {
        stack
            .wait_for_audit(|l| {
                l["reason"] == "session_cookie.cross_origin" && l["method"] == method
            })
            .await;
    }
    // Without the cookie nothing is a credential: 401 as before.
    assert_eq!(upload(&stack, &[]).await.status, 401);
    stack.stop().await;
}

#[tokio::test]
async fn bearer_tokens_win_and_the_cookie_never_reaches_the_upstream() {
    let (stack, recorder) = Stack::start_recording_with(policy(3600, 86_400), ROUTES).await;
    let cookie = new_browser(&stack).await;
    let token = stack
        .send(
            Request::post("/auth/session")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let both = format!("other=1; {cookie}; theme=dark");
    let bearer = format!("Bearer {token}");
    let with_bearer = stack
        .get_with(
            "/api/summary",
            &[("cookie", &both), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(with_bearer.status, 200, "{with_bearer:?}");
    let with_cookie = summary(&stack, &both).await;
    assert_eq!(with_cookie.status, 200, "{with_cookie:?}");
    let seen = recorder.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let principals: Vec<_> = seen
        .iter()
        .map(|s| {
            s.headers["x-tradehabit-principal"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_ne!(
        principals[0], principals[1],
        "the bearer token's principal wins"
    );
    for request in &seen {
        let cookies: Vec<_> = request.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["other=1; theme=dark"], "{request:?}");
        assert!(!format!("{:?}", request.headers).contains("__Host-th_session"));
    }
    stack.stop().await;
}

#[tokio::test]
async fn logout_clears_the_cookie_and_a_cross_site_navigation_never_replaces_it() {
    let stack = Stack::start_with(policy(3600, 86_400), ROUTES).await;
    let cookie = new_browser(&stack).await;
    let origin = origin(&stack);
    assert_eq!(
        upload(&stack, &[("cookie", &cookie), ("origin", &origin)])
            .await
            .status,
        200
    );

    // A link from another site: the browser withholds the strict cookie;
    // the page reloads itself instead of starting a new session.
    let bounced = stack
        .get_with("/", &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(bounced.status, 200);
    assert!(bounced.headers.get("set-cookie").is_none());
    assert!(bounced
        .text()
        .contains("http-equiv=\"refresh\" content=\"0; url=/\""));

    let logout = stack
        .send(
            Request::delete("/api/session")
                .header("cookie", &cookie)
                .header("origin", &origin)
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(logout.status, 200, "{logout:?}");
    let cleared = logout.headers["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("__Host-th_session=;") && cleared.contains("Max-Age=0"));
    let after = summary(&stack, &cookie).await;
    assert_ne!(after.status, 200, "the session's data is gone: {after:?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_busy_session_is_renewed_until_its_absolute_lifetime() {
    // Cookies of 4 s, sessions of at most 12 s: a request every 200 ms
    // leaves 2 s for a stall of this machine before a cookie could expire.
    let stack = Stack::start_with(policy(4, 12), ROUTES).await;
    let first = new_browser(&stack).await;
    let origin = origin(&stack);
    assert_eq!(
        upload(&stack, &[("cookie", &first), ("origin", &origin)])
            .await
            .status,
        200
    );
    let began = tokio::time::Instant::now();
    let mut cookie = first.clone();
    let mut renewals = 0;
    // Kept busy: every answer past half a cookie's life brings a new one.
    loop {
        let read = summary(&stack, &cookie).await;
        if read.status != 200 {
            assert_eq!(read.status, 401, "{read:?}");
            break;
        }
        if let Some(renewed) = cookie_of(&read) {
            renewals += 1;
            cookie = renewed;
        }
        assert!(began.elapsed() < SAFETY, "the absolute lifetime ends it");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Alive past several cookie lifetimes, then ended by the 12 s cap.
    assert!(
        began.elapsed() >= Duration::from_secs(8),
        "{:?}",
        began.elapsed()
    );
    assert!(renewals >= 2, "{renewals} renewals");
    assert_eq!(
        summary(&stack, &first).await.status,
        401,
        "the first cookie expired"
    );
    stack.stop().await;
}

#[tokio::test]
async fn issuing_cookies_spends_the_session_quota_per_ip() {
    let checks = |dir: &Path| {
        write_app(dir, &[("index.html", APP_INDEX)]);
        let session =
            r#"{ enabled = true, scopes = ["analyze"], rate_limit_per_ip = ["2/minute"] }"#;
        tokens_table(dir, SECRET, session, Some("{ enabled = true }"))
    };
    let stack = Stack::start_with(checks, ROUTES).await;
    let first = new_browser(&stack).await;
    // `POST /auth/session` and the cookie share one budget.
    let token = stack
        .send(
            Request::post("/auth/session")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(token.status, 200);
    let refused = stack.get("/").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.json()["status"], "ERROR");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(cookie_of(&refused).is_none());
    // A browser with its cookie is not issuing: its page loads.
    let page = stack.get_with("/", &[("cookie", &first)]).await;
    assert_eq!(page.status, 200, "{page:?}");
    stack.stop().await;
}
