//! Rate limits against the real gateway and worker over TLS: a stage's
//! quotas are decided all or nothing (`gateway/src/checks/rate_limit.rs`).

use tradehabit_e2e::attack::{Stack, ROUTES};

/// The attack routes, with the health route limited per IP by a day quota
/// listed before a minute quota.
fn routes() -> String {
    ROUTES.replace(
        "name = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\nauth = \"none\"\n",
        "name = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\nauth = \"none\"\n\
         rate_limit = { per_ip = [\"10/day\", \"1/minute\"] }\n",
    )
}

#[tokio::test]
async fn a_request_refused_by_one_quota_spends_none_of_the_others() {
    let routes = routes();
    assert_ne!(routes, ROUTES, "the health route got its quotas");
    let stack = Stack::start_with(|_| String::new(), &routes).await;
    let first = stack.get("/api/health").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.headers["ratelimit"].to_str().unwrap(),
        "\"ip-day\";r=9;t=8640, \"ip-minute\";r=0;t=60"
    );
    // Refused by the minute quota, again and again: the day quota is not
    // touched (it used to lose a cell with every refusal).
    for attempt in 0..4 {
        let refused = stack.get("/api/health").await;
        assert_eq!(refused.status, 429, "attempt {attempt}: {}", refused.text());
        assert_eq!(refused.json()["status"], "ERROR");
        let usage = refused.headers["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            usage.contains("\"ip-day\";r=9;") && usage.contains("\"ip-minute\";r=0;"),
            "attempt {attempt}: {usage}"
        );
        assert!(refused.headers.contains_key("retry-after"));
    }
    stack.stop().await;
}
