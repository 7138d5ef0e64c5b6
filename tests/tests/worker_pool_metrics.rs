//! The gateway's `/metrics` with several workers (docs/audit-and-metrics.md,
//! "Metrics"): real workers on their own Unix sockets, a real gateway over
//! TLS listing both, API-key users spread over them.
//!
//! * every worker's metrics are in the one document, each sample labelled
//!   with the worker's index in `upstream.addresses` (never its socket
//!   path), each family declared once: `promtool check metrics` parses it;
//! * a worker that does not answer the scrape is reported by
//!   `tradehabit_gateway_worker_scrape_up{worker="…"} 0`, and the other
//!   worker's metrics are still there.
//!
//! Needs `promtool` (Debian package `prometheus`); without it the test fails
//! and says how to install it.

#[path = "pool_support/stack.rs"]
mod stack;
#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use stack::{prepare_dir, start_gateway, upload, users, RunningWorker};
use tokio::net::TcpStream;
use tradehabit_worker::config::Config as WorkerConfig;

/// Each user's worker follows from the workers' socket paths, which are
/// in a new temporary directory each run: with 8 users, all of them landed
/// on one worker about once in 128 runs. With 24, about once in 8 million.
const USERS: usize = 24;
const SESSIONS: &str = "tradehabit_worker_sessions_active";
const SCRAPE_UP: &str = "tradehabit_gateway_worker_scrape_up";

/// `GET /metrics` on the admin listener (plain HTTP).
async fn scrape(admin: SocketAddr) -> String {
    let stream = TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/metrics")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the sample line that starts with `series ` (exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.split(' ').next().unwrap().parse().unwrap())
}

/// The document parses as one exposition: one `# TYPE` per family, no
/// sample line twice, and promtool's parser accepts it (its lint findings,
/// exit code 3, are about OpenMetrics counter naming, which the 0.0.4 text
/// linter does not know; a parse error is exit code 1).
fn assert_valid(text: &str) {
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(families.insert(name), "second # TYPE for {name}:\n{text}");
        } else if !line.starts_with('#') {
            let key = line.rsplit_once(' ').unwrap().0;
            assert!(series.insert(key), "sample twice: {line}");
        }
    }
    assert_eq!(text.matches("# EOF").count(), 1, "one document");
    let promtool = tools::require_tool(
        "promtool",
        "apt-get update && apt-get install -y prometheus",
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        matches!(output.status.code(), Some(0 | 3)) && !said.contains("parsing error"),
        "promtool check metrics refused the document ({:?}): {said}\n{text}",
        output.status
    );
}

#[tokio::test]
async fn metrics_carry_every_worker_and_report_one_that_does_not_answer() {
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
    let mut workers: Vec<_> = sockets
        .iter()
        .map(|socket| Some(RunningWorker::start(WorkerConfig::new(socket))))
        .collect();
    let users = users(USERS);
    let paths = [sockets[0].as_path(), sockets[1].as_path()];
    let gateway = start_gateway(dir.path(), &paths, &users, r#"eject_for = "1h""#).await;
    for user in &users {
        let (status, body) = upload(gateway.https_addr(), &cert, user).await;
        assert_eq!(status, 200, "upload: {body}");
    }
    let admin = gateway.admin_addr();

    let text = scrape(admin).await;
    assert_valid(&text);
    let per_worker: Vec<f64> = (0..2)
        .map(|i| {
            sample(&text, &format!("{SESSIONS}{{worker=\"{i}\"}}"))
                .unwrap_or_else(|| panic!("no sessions of worker {i} in:\n{text}"))
        })
        .collect();
    assert_eq!(
        per_worker.iter().sum::<f64>(),
        USERS as f64,
        "{per_worker:?}"
    );
    assert!(
        per_worker.iter().all(|n| *n > 0.0),
        "spread: {per_worker:?}"
    );
    for i in 0..2 {
        let up = sample(&text, &format!("{SCRAPE_UP}{{worker=\"{i}\"}}"));
        assert_eq!(up, Some(1.0), "worker {i} answered:\n{text}");
    }
    assert_eq!(
        sample(&text, "tradehabit_gateway_upstream_workers_configured"),
        Some(2.0)
    );
    for socket in &sockets {
        let path = socket.display().to_string();
        assert!(!text.contains(&path), "socket path {path} published");
    }

    workers[1].take().unwrap().kill().await;
    let text = scrape(admin).await;
    assert_valid(&text);
    assert_eq!(
        sample(&text, &format!("{SCRAPE_UP}{{worker=\"1\"}}")),
        Some(0.0),
        "the silent worker is reported:\n{text}"
    );
    assert_eq!(
        sample(&text, &format!("{SCRAPE_UP}{{worker=\"0\"}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("{SESSIONS}{{worker=\"0\"}}")),
        Some(per_worker[0])
    );
    assert!(
        !text.contains(&format!("{SESSIONS}{{worker=\"1\"}}")),
        "{text}"
    );

    gateway.shutdown().await;
    for worker in workers.iter_mut().filter_map(Option::take) {
        worker.stop().await;
    }
}
