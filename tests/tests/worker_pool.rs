//! Several workers behind several gateways (docs/scaling.md, "The worker
//! pool"): real workers on their own Unix sockets, two real gateways over
//! TLS listing the same workers in different orders, API-key users.
//!
//! * a principal's upload and reads meet the same worker through either
//!   gateway;
//! * a killed worker affects only its principals: the others keep their
//!   200s and their own data; the first request to reach the dead worker
//!   through each gateway gets a 503 envelope telling the user to upload
//!   again (the worker is then ejected), its other principals the
//!   surviving worker's own "no trades analyzed yet" answer; they can
//!   upload again there. Never a 500 or a 502, never another user's
//!   trades.

#[path = "pool_support/stack.rs"]
mod stack;

use http::StatusCode;
use stack::{prepare_dir, start_gateway, trades, upload, users, RunningWorker, User};
use tradehabit_worker::config::Config as WorkerConfig;

/// Each user's worker follows from the workers' socket paths, which are
/// in a new temporary directory each run: with 8 users, all of them landed
/// on one worker about once in 128 runs. With 24, about once in 8 million.
const USERS: usize = 24;

/// Two workers, two gateways (the second lists the workers the other way
/// round), and every user's CSV uploaded, alternating gateways.
struct Pool {
    dir: tempfile::TempDir,
    cert: rustls::pki_types::CertificateDer<'static>,
    workers: Vec<Option<RunningWorker>>,
    gateways: Vec<tradehabit_gateway::Handle>,
    users: Vec<User>,
    /// Each user's trades as read right after the upload.
    before: Vec<String>,
}

impl Pool {
    async fn start() -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let cert = prepare_dir(dir.path());
        let sockets: Vec<_> = ["a", "b"]
            .iter()
            .map(|name| {
                let sub = dir.path().join(name);
                std::fs::create_dir(&sub).unwrap();
                sub.join("worker.sock")
            })
            .collect();
        let workers = sockets
            .iter()
            .map(|socket| Some(RunningWorker::start(WorkerConfig::new(socket))))
            .collect();
        let users = users(USERS);
        let forward = [sockets[0].as_path(), sockets[1].as_path()];
        let reverse = [sockets[1].as_path(), sockets[0].as_path()];
        let gateways = vec![
            start_gateway(dir.path(), &forward, &users, r#"eject_for = "1h""#).await,
            start_gateway(dir.path(), &reverse, &users, r#"eject_for = "1h""#).await,
        ];
        let mut pool = Pool {
            dir,
            cert,
            workers,
            gateways,
            users,
            before: Vec::new(),
        };
        for i in 0..USERS {
            let (status, body) = upload(pool.addr(i), &pool.cert, &pool.users[i]).await;
            assert_eq!(status, 200, "upload of user-{i}: {body}");
            // Read back through the other gateway.
            let (status, body) = trades(pool.addr(i + 1), &pool.cert, &pool.users[i]).await;
            assert_eq!(status, 200, "user-{i} through the other gateway: {body}");
            pool.before.push(body);
        }
        pool
    }

    /// Gateway `n` modulo two.
    fn addr(&self, n: usize) -> std::net::SocketAddr {
        self.gateways[n % 2].https_addr()
    }

    /// Asserts that `body` is `user`'s own trades and names no other
    /// user's contract.
    fn assert_own(&self, i: usize, body: &str) {
        assert!(body.contains(&self.users[i].contract), "user-{i}: {body}");
        for (j, other) in self.users.iter().enumerate() {
            if j != i && other.contract != self.users[i].contract {
                assert!(
                    !body.contains(&other.contract),
                    "user-{i} sees user-{j}'s trades"
                );
            }
        }
    }

    async fn stop(mut self) {
        for gateway in self.gateways.drain(..) {
            gateway.shutdown().await;
        }
        for worker in self.workers.iter_mut().filter_map(Option::take) {
            worker.stop().await;
        }
        drop(self.dir);
    }
}

#[tokio::test]
async fn a_principal_meets_the_same_worker_through_both_gateways() {
    let pool = Pool::start().await;
    for i in 0..USERS {
        pool.assert_own(i, &pool.before[i]);
        for gateway in 0..2 {
            let (status, body) = trades(pool.addr(gateway), &pool.cert, &pool.users[i]).await;
            assert_eq!(status, 200, "user-{i} via gateway {gateway}: {body}");
            assert_eq!(body, pool.before[i], "user-{i} via gateway {gateway}");
        }
    }
    pool.stop().await;
}

#[tokio::test]
async fn a_killed_worker_affects_only_its_principals() {
    let mut pool = Pool::start().await;
    pool.workers[0].take().unwrap().kill().await;

    // Through each gateway: each user either keeps their own data or is
    // told that the session is gone.
    let mut lost = Vec::new();
    for gateway in 0..2 {
        let mut told_to_upload = 0;
        for i in 0..USERS {
            let (status, body) = trades(pool.addr(gateway), &pool.cert, &pool.users[i]).await;
            match status {
                StatusCode::OK => {
                    assert!(!lost.contains(&i), "user-{i} got data after losing it");
                    assert_eq!(body, pool.before[i], "user-{i}");
                    pool.assert_own(i, &body);
                }
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_REQUEST => {
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(json["status"], "ERROR", "{body}");
                    let message = json["message"].as_str().unwrap();
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        assert!(message.contains("upload your file again"), "{message}");
                        told_to_upload += 1;
                    } else {
                        assert_eq!(message, "No trades have been analyzed yet");
                    }
                    if gateway == 0 {
                        lost.push(i);
                    }
                }
                other => panic!("user-{i} via gateway {gateway} got {other}: {body}"),
            }
        }
        // The first request to meet the dead worker is told; the worker is
        // ejected from then on.
        assert_eq!(told_to_upload, 1, "via gateway {gateway}");
    }
    assert!(
        !lost.is_empty() && lost.len() < USERS,
        "the users should be spread over both workers: lost {lost:?}"
    );
    for &i in &lost {
        // Uploading again works, and is seen through both gateways.
        let (status, body) = upload(pool.addr(i), &pool.cert, &pool.users[i]).await;
        assert_eq!(status, 200, "user-{i} uploads again: {body}");
        for gateway in 0..2 {
            let (status, body) = trades(pool.addr(gateway), &pool.cert, &pool.users[i]).await;
            assert_eq!(status, 200, "user-{i} via gateway {gateway}: {body}");
            pool.assert_own(i, &body);
        }
    }
    // Everyone else was never affected, through either gateway.
    for i in (0..USERS).filter(|i| !lost.contains(i)) {
        for gateway in 0..2 {
            let (status, body) = trades(pool.addr(gateway), &pool.cert, &pool.users[i]).await;
            assert_eq!(status, 200, "user-{i} via gateway {gateway}: {body}");
            assert_eq!(body, pool.before[i]);
        }
    }
    pool.stop().await;
}
