//! The Redis store against a real `redis-server` (Debian package
//! `redis-server`, installed by `scripts/test.sh`; the tests fail without
//! it): what each serving thread keeps for itself.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::tests::MINIMAL;

/// How long a starting server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A `redis-server` of the test's own on a Unix socket; killed on drop.
struct Redis {
    socket: PathBuf,
    child: Child,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        let redis = Redis { socket, child };
        let began = Instant::now();
        while !redis.command("PING").starts_with("+PONG") {
            assert!(began.elapsed() < READY_WITHIN, "redis-server answers");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// One inline command's raw reply ("" while it cannot be reached).
    fn command(&self, line: &str) -> String {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(format!("{line}\r\n").as_bytes());
        let mut reply = vec![0u8; 16 * 1024];
        let n = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

    /// Scripts run so far (`INFO commandstats`).
    fn evalsha_calls(&self) -> u64 {
        let stats = self.command("INFO commandstats");
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// A policy using it, refusing while it cannot answer, `quota` per IP.
    fn policy(&self, pool_size: usize, quota: &str) -> Config {
        let route = MINIMAL.replace(
            "methods = [\"GET\"]",
            &format!(
                "methods = [\"GET\"]\nauth = \"none\"\nrate_limit = {{ per_ip = [\"{quota}\"] }}"
            ),
        );
        let store = format!(
            "[rate_limit]\nstore = \"redis\"\n[rate_limit.redis]\naddress = \"unix:{}\"\n\
             pool_size = {pool_size}\ntimeout = \"2s\"\non_store_error = \"deny\"\n",
            self.socket.display()
        );
        Config::from_toml(&format!("{store}\n{route}")).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn decide(limits: &RateLimits, config: &Config, client: IpAddr) -> Result<(), StatusCode> {
    let route = &config.routes[0];
    let owner = Owner::Route {
        name: &route.name,
        path: &route.path,
    };
    let stage = Stage::Ip(client);
    limits
        .check(
            config,
            owner,
            &route.checks.quotas,
            stage,
            &Trail::default(),
        )
        .await
        .map(drop)
        .map_err(|refused| refused.status())
}

/// Runs `work` as serving thread `index`, on a runtime of its own that
/// ends with it (and with it every connection task it started).
fn as_serving_thread<T: Send + 'static>(
    index: usize,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        crate::shard::enter(index);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(work)
    })
    .join()
    .unwrap()
}

#[test]
fn each_serving_thread_decides_on_a_connection_it_opened_itself() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let config = Arc::new(redis.policy(2, "1000/minute"));
    let limits = Arc::new(
        RateLimits::new(
            &config.checks.rate_limit,
            crate::metrics::Metrics::new().rate_limit_store(),
            2,
        )
        .unwrap(),
    );
    let client: IpAddr = "192.0.2.1".parse().unwrap();

    // Thread 0 decides, then its runtime (and its connection's task) ends.
    let (l, c) = (Arc::clone(&limits), Arc::clone(&config));
    assert!(as_serving_thread(0, async move {
        decide(&l, &c, client).await.is_ok()
    }));
    // Thread 1 never uses thread 0's connection: every decision is made.
    let (l, c) = (Arc::clone(&limits), Arc::clone(&config));
    let decided = as_serving_thread(1, async move {
        let mut decided = Vec::new();
        for _ in 0..4 {
            decided.push(decide(&l, &c, client).await.is_ok());
        }
        decided
    });
    assert_eq!(
        decided, [true; 4],
        "no call crossed to thread 0's connection"
    );
    let store = limits.redis.as_ref().unwrap();
    assert_eq!(store.open_per_thread(), [1, 1], "pool_size 2: one each");
}

#[tokio::test]
async fn a_refused_client_is_answered_without_asking_redis_again() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let config = redis.policy(1, "1/minute");
    let limits = RateLimits::new(
        &config.checks.rate_limit,
        crate::metrics::Metrics::new().rate_limit_store(),
        1,
    )
    .unwrap();
    let flooder: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(decide(&limits, &config, flooder).await, Ok(()));
    assert_eq!(
        decide(&limits, &config, flooder).await,
        Err(StatusCode::TOO_MANY_REQUESTS)
    );
    // (The first call also met `NOSCRIPT`, counted by Redis as a call.)
    let asked = redis.evalsha_calls();
    for _ in 0..20 {
        assert_eq!(
            decide(&limits, &config, flooder).await,
            Err(StatusCode::TOO_MANY_REQUESTS)
        );
    }
    assert_eq!(redis.evalsha_calls(), asked, "the flood cost no round trip");

    // Another client, and the same client under other quotas, ask Redis.
    let other: IpAddr = "192.0.2.2".parse().unwrap();
    assert_eq!(decide(&limits, &config, other).await, Ok(()));
    let reloaded = redis.policy(1, "5/hour");
    assert_eq!(decide(&limits, &reloaded, flooder).await, Ok(()));
    assert_eq!(redis.evalsha_calls(), asked + 2);
}
