use super::*;
use crate::config::tests::MINIMAL;

fn policy(quota: &str) -> Config {
    let limited = MINIMAL.replace(
        "methods = [\"GET\"]",
        &format!("methods = [\"GET\"]\nauth = \"none\"\nrate_limit = {{ per_ip = [\"{quota}\"] }}"),
    );
    Config::from_toml(&limited).unwrap()
}

async fn allowed(limits: &RateLimits, config: &Config, client: IpAddr) -> bool {
    let route = &config.routes[0];
    limits
        .check(
            config,
            Owner::Route {
                name: &route.name,
                path: &route.path,
            },
            &route.checks.quotas,
            Stage::Ip(client),
            &Trail::default(),
        )
        .await
        .is_ok()
}

#[tokio::test]
async fn memory_buckets_survive_a_reload_unless_the_quotas_change() {
    let client: IpAddr = "192.0.2.1".parse().unwrap();
    let before = policy("1/day");
    let limits = RateLimits::new(
        &before.checks.rate_limit,
        crate::metrics::Metrics::new().rate_limit_store(),
        1,
    )
    .unwrap();
    assert!(allowed(&limits, &before, client).await);
    assert!(!allowed(&limits, &before, client).await);

    let same = policy("1/day");
    limits.follow(&same);
    assert!(
        !allowed(&limits, &same, client).await,
        "a reload does not reset the budget"
    );
    assert_eq!(limits.tracked_keys(), 1);

    let changed = policy("2/day");
    limits.follow(&changed);
    assert_eq!(limits.tracked_keys(), 0, "the old quotas' buckets are gone");
    assert!(allowed(&limits, &changed, client).await);
    limits.purge(&changed);
    assert_eq!(limits.tracked_keys(), 1);
}
