//! The cost of a rate-limit decision in each store, for
//! `benches/rate-limit-store.sh` (which starts a `redis-server` and sets
//! `TRADEHABIT_BENCH_REDIS`): CPU time of the gateway's thread per
//! decision, Redis' own CPU per decision, and the latency percentiles, one
//! decision at a time and with many in flight. Ignored by default (it
//! needs Redis and prints numbers rather than checking them); results are
//! in `docs/benchmarks.md`.

use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::MINIMAL;

/// Decisions per measured run.
const CALLS: usize = 20_000;
/// Distinct client addresses the calls cycle through.
const CLIENTS: u32 = 5_000;
/// Requests in flight in the concurrent run.
const IN_FLIGHT: usize = 64;

fn policy(store: &str) -> Config {
    quotas(store, "\"1000000/minute\", \"1000000/day\"")
}

/// A flood: one client over a `1/hour` quota, every decision but the first
/// refused.
fn flood_policy(store: &str) -> Config {
    quotas(store, "\"1/hour\"")
}

fn quotas(store: &str, per_ip: &str) -> Config {
    let route = MINIMAL.replace(
        "methods = [\"GET\"]",
        &format!("methods = [\"GET\"]\nauth = \"none\"\nrate_limit = {{ per_ip = [{per_ip}] }}"),
    );
    Config::from_toml(&format!("{store}\n{route}")).unwrap()
}

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

fn client(i: usize) -> IpAddr {
    let n = u32::try_from(i).unwrap_or(0) % CLIENTS;
    IpAddr::from([10, 0, (n >> 8) as u8, n as u8])
}

async fn decide(limits: &RateLimits, config: &Config, i: usize) -> Duration {
    let (took, decided) = decide_as(limits, config, client(i)).await;
    assert!(decided, "every decision allows");
    took
}

async fn decide_as(limits: &RateLimits, config: &Config, client: IpAddr) -> (Duration, bool) {
    let route = &config.routes[0];
    let began = Instant::now();
    let decided = limits
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
        .await;
    (began.elapsed(), decided.is_ok())
}

/// One client flooding a `1/hour` quota, one decision at a time.
async fn flood(name: &str, config: &Config, address: Option<&str>) {
    let limits = RateLimits::new(
        &config.checks.rate_limit,
        crate::metrics::Metrics::new().rate_limit_store(),
        1,
    )
    .unwrap();
    let flooder = client(0);
    decide_as(&limits, config, flooder).await; // the quota's one request (or an earlier run's)
    let (cpu, server) = (thread_cpu(), redis_cpu(address).await);
    let mut latencies = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let (took, allowed) = decide_as(&limits, config, flooder).await;
        assert!(!allowed, "the flood is refused");
        latencies.push(took);
    }
    let cpu_us = (thread_cpu() - cpu).as_secs_f64() * 1e6 / CALLS as f64;
    let server_us = (redis_cpu(address).await - server) * 1e6 / CALLS as f64;
    latencies.sort();
    println!(
        "{name:>14} flood (refused): gateway CPU {cpu_us:6.1} µs/decision, redis CPU {server_us:5.1} µs, \
         p50 {:6.1} µs, p99 {:6.1} µs",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// Redis' own CPU seconds so far (`INFO cpu`), 0 for the memory store.
async fn redis_cpu(address: Option<&str>) -> f64 {
    let Some(address) = address else { return 0.0 };
    let url = match address.strip_prefix("unix:") {
        Some(path) => format!("unix://{path}"),
        None => address.to_owned(),
    };
    let client = ::redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = ::redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

async fn run(name: &str, config: &Config, address: Option<&str>) {
    let limits = RateLimits::new(
        &config.checks.rate_limit,
        crate::metrics::Metrics::new().rate_limit_store(),
        1,
    )
    .unwrap();
    for i in 0..1_000 {
        decide(&limits, config, i).await; // warm up: connections, script
    }
    let (cpu, server) = (thread_cpu(), redis_cpu(address).await);
    let mut latencies = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        latencies.push(decide(&limits, config, i).await);
    }
    let cpu_us = (thread_cpu() - cpu).as_secs_f64() * 1e6 / CALLS as f64;
    let server_us = (redis_cpu(address).await - server) * 1e6 / CALLS as f64;
    latencies.sort();
    println!(
        "{name:>14} sequential: gateway CPU {cpu_us:6.1} µs/decision, redis CPU {server_us:5.1} µs, \
         p50 {:6.1} µs, p99 {:6.1} µs",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    let began = Instant::now();
    let (cpu, server) = (thread_cpu(), redis_cpu(address).await);
    let mut latencies = Vec::with_capacity(CALLS);
    for batch in 0..CALLS / IN_FLIGHT {
        let calls = (0..IN_FLIGHT).map(|j| decide(&limits, config, batch * IN_FLIGHT + j));
        latencies.extend(futures_util::future::join_all(calls).await);
    }
    let done = latencies.len() as f64;
    let cpu_us = (thread_cpu() - cpu).as_secs_f64() * 1e6 / done;
    let server_us = (redis_cpu(address).await - server) * 1e6 / done;
    latencies.sort();
    println!(
        "{name:>14} {IN_FLIGHT} in flight: gateway CPU {cpu_us:6.1} µs/decision, redis CPU {server_us:5.1} µs, \
         p50 {:6.1} µs, p99 {:6.1} µs, {:.0} decisions/s on one thread",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        done / began.elapsed().as_secs_f64()
    );
}

#[tokio::test]
#[ignore = "a benchmark: run by benches/rate-limit-store.sh with a redis-server"]
async fn rate_limit_store_cost() {
    run("memory", &policy(""), None).await;
    flood("memory", &flood_policy(""), None).await;
    let address = std::env::var("TRADEHABIT_BENCH_REDIS")
        .expect("TRADEHABIT_BENCH_REDIS names the redis-server to measure");
    // `TRADEHABIT_BENCH_POOL`: another `pool_size` than the default.
    let pool = std::env::var("TRADEHABIT_BENCH_POOL")
        .map(|n| format!("pool_size = {n}\n"))
        .unwrap_or_default();
    let store = format!(
        "[rate_limit]\nstore = \"redis\"\n[rate_limit.redis]\naddress = \"{address}\"\n{pool}"
    );
    let name = format!("redis {}", address.split(':').next().unwrap_or(""));
    run(&name, &policy(&store), Some(&address)).await;
    flood(&name, &flood_policy(&store), Some(&address)).await;
}
