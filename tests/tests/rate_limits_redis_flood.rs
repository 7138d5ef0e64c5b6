//! A client flooding a route limited in the Redis store, through a real
//! gateway over TLS (`docs/security-controls.md`, F-33): once Redis refused
//! it, each serving thread refuses it from memory until Redis' wait ends,
//! so the flood costs Redis one script per serving thread instead of one
//! per request; the client sees the same 429 and every refusal has its
//! audit line.

#[path = "redis_support/server.rs"]
mod server;

use std::time::Duration;

use server::RedisServer;
use tradehabit_e2e::attack::{Stack, ROUTES, SAFETY};

/// Requests of the flood after the one the quota admits.
const FLOOD: usize = 40;

/// Scripts Redis has run so far (`INFO commandstats`).
fn evalsha_calls(redis: &RedisServer) -> usize {
    redis
        .command("INFO commandstats")
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flooding_client_costs_redis_one_script_per_serving_thread() {
    let store = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(store.path());
    let routes = ROUTES.replace(
        "name = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\nauth = \"none\"\n",
        "name = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\nauth = \"none\"\n\
         rate_limit = { per_ip = [\"1/hour\"] }\n",
    );
    assert_ne!(routes, ROUTES, "the health route got its quota");
    let policy = |dir: &std::path::Path| {
        format!(
            "{}\n[audit]\noutput = \"{}/audit.log\"\n",
            redis.policy("deny"),
            dir.display()
        )
    };
    let stack = Stack::start_with(policy, &routes).await;
    let admitted = stack.get("/api/health").await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    let before = evalsha_calls(&redis);

    for attempt in 0..FLOOD {
        let refused = stack.get("/api/health").await;
        assert_eq!(refused.status, 429, "attempt {attempt}: {}", refused.text());
        assert_eq!(refused.json()["status"], "ERROR");
        let wait: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&wait), "attempt {attempt}: {wait}");
        let usage = refused.headers["ratelimit"].to_str().unwrap();
        assert!(usage.starts_with("\"ip-hour\";r=0;"), "{usage}");
    }

    // At most one refusal asked per serving thread (one per core by
    // default).
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let calls = evalsha_calls(&redis) - before;
    assert!(
        (1..=threads).contains(&calls),
        "{calls} scripts for {FLOOD} refused requests on {threads} serving threads"
    );

    // Every refusal is audited as before.
    let audited = async {
        loop {
            let refusals = stack
                .audit_lines()
                .iter()
                .filter(|l| l["status"] == 429 && l["reason"] == "rate_limit.exceeded")
                .count();
            if refusals == FLOOD {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(SAFETY, audited)
        .await
        .unwrap_or_else(|_| panic!("one audit line per refusal: {:?}", stack.audit_lines()));
    stack.stop().await;
}
