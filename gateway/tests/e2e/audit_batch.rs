//! Batched audit writes (`audit.flush_interval`, `docs/audit-and-metrics.md`
//! "Batched writes"): lines from several serving threads all reach the file
//! and the chain verifies; a line is written when its thread runs out of
//! work, without further traffic; a reopen and a SIGTERM lose nothing.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tradehabit_gateway::audit::verify;

use crate::support::{Cert, Client, Policy, TestGateway, Upstream, SAFETY};

/// A policy with `threads` serving threads and a chained audit file in
/// `dir`, flushed after `flush_interval` at the latest.
fn policy(dir: &Path, threads: usize, flush_interval: &str) -> Policy {
    Policy {
        server: format!("threads = {threads}\n"),
        audit: format!(
            "output = \"{}\"\nhash_chain = true\nflush_interval = \"{flush_interval}\"\n",
            dir.join("audit.log").display()
        ),
        ..Policy::default()
    }
}

/// The lines of the audit file `name` in `dir` (none if it is missing).
fn lines_of(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Polls until `name` holds at least `count` lines (bounded by the safety
/// net); returns its lines then.
async fn wait_for_lines(dir: &Path, name: &str, count: usize) -> Vec<String> {
    let waiting = async {
        loop {
            let lines = lines_of(dir, name);
            if lines.len() >= count {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SAFETY, waiting)
        .await
        .unwrap_or_else(|_| panic!("{name}: {} line(s), not {count}", lines_of(dir, name).len()))
}

/// Sends `count` GETs, `parallel` at a time, each on a new connection (so
/// the kernel spreads them over the serving threads); all must be answered.
async fn burst(client: &Client, prefix: &str, count: usize, parallel: usize) {
    let mut sent = 0;
    while sent < count {
        let wave = parallel.min(count - sent);
        let requests = (sent..sent + wave).map(|n| {
            let client = client.clone();
            let path = format!("/api/{prefix}-{n}");
            tokio::spawn(async move { client.get(&path).await.status })
        });
        for answer in futures_util::future::join_all(requests.collect::<Vec<_>>()).await {
            assert_eq!(answer.unwrap(), 200);
        }
        sent += wave;
    }
}

/// Each path `/api/{prefix}-{n}` for `n` below `count` appears exactly once.
fn assert_each_once(lines: &[String], prefix: &str, count: usize) {
    let mut paths: Vec<String> = lines
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|json| json["path"].as_str().map(str::to_string))
        .filter(|path| path.starts_with(&format!("/api/{prefix}-")))
        .collect();
    paths.sort();
    let mut expected: Vec<String> = (0..count).map(|n| format!("/api/{prefix}-{n}")).collect();
    expected.sort();
    assert_eq!(paths, expected, "one line per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lines_of_concurrent_requests_on_several_serving_threads_are_all_written_and_chained() {
    let files = tempfile::tempdir().unwrap();
    let policy = policy(files.path(), 4, "1s");
    let (gateway, _upstream) = TestGateway::with_upstream(policy).await;
    let dir = files.path();
    burst(&gateway.client(), "many", 400, 32).await;
    let lines = wait_for_lines(dir, "audit.log", 400).await;
    assert_eq!(lines.len(), 400);
    assert_each_once(&lines, "many", 400);
    let verified = verify(lines.join("\n").as_bytes()).expect("the chain verifies");
    assert_eq!((verified.lines, verified.gaps.len()), (400, 0));
    gateway.shutdown().await;
}

/// The time bound is only looked at when a line is appended: a single
/// request's line is written because its serving thread runs out of work,
/// with no request after it (the bound here is the longest allowed).
#[tokio::test]
async fn a_single_requests_line_is_written_without_further_traffic() {
    let files = tempfile::tempdir().unwrap();
    let policy = policy(files.path(), 2, "1s");
    let (gateway, _upstream) = TestGateway::with_upstream(policy).await;
    assert_eq!(gateway.client().get("/api/alone-0").await.status, 200);
    let lines = wait_for_lines(files.path(), "audit.log", 1).await;
    assert_each_once(&lines, "alone", 1);
    gateway.shutdown().await;
}

/// A rotation (the file moved, then the reopen that `SIGHUP` triggers):
/// the lines of the requests answered before it are in the old file, the
/// others in the new one, none lost, and each file verifies, the new one
/// carrying on the old one's chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reopen_loses_no_line_and_both_files_verify() {
    let files = tempfile::tempdir().unwrap();
    let policy = policy(files.path(), 3, "1s");
    let (gateway, _upstream) = TestGateway::with_upstream(policy).await;
    let dir = files.path();
    let client = gateway.client();
    burst(&client, "before", 150, 16).await;
    std::fs::rename(dir.join("audit.log"), dir.join("audit.log.1")).unwrap();
    gateway.handle().reopen_audit_log();
    burst(&client, "after", 150, 16).await;
    gateway.shutdown().await;

    let old = lines_of(dir, "audit.log.1");
    let new = lines_of(dir, "audit.log");
    assert_eq!(old.len(), 150, "the old file holds the lines from before");
    assert_each_once(&old, "before", 150);
    assert_eq!(new.len(), 150, "the new file holds the lines from after");
    assert_each_once(&new, "after", 150);
    for lines in [&old, &new] {
        let verified = verify(lines.join("\n").as_bytes()).expect("the chain verifies");
        assert_eq!((verified.lines, verified.gaps.len()), (150, 0));
    }
    let field = |line: &str, key: &str| -> String {
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        json[key].as_str().unwrap().to_string()
    };
    assert_eq!(
        field(&new[0], "prev_hash"),
        field(old.last().unwrap(), "hash"),
        "the chain carries on across the rotation"
    );
}

/// The gateway binary stopped by SIGTERM right after a burst, with requests
/// still in flight that finish during the drain: every line is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_after_a_burst_loses_no_line() {
    const BURST: usize = 120;
    const IN_FLIGHT: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::generate();
    cert.write(dir.path());
    let upstream = Upstream::start(&TestGateway::socket_in(dir.path())).await;
    let path = TestGateway::write_policy(dir.path(), &policy(dir.path(), 2, "1s"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = stderr_lines(child.stderr.take().unwrap());
    let listening = wait_for_stderr(&stderr, "gateway listening");
    let client = Client::new(https_addr(&listening), &cert.der);

    burst(&client, "burst", BURST, 24).await;
    let gated: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/api/gated").await.status })
        })
        .collect();
    let arrived = async {
        while upstream.seen().len() < BURST + IN_FLIGHT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(SAFETY, arrived)
        .await
        .expect("the gated requests reach the upstream");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for_stderr(&stderr, "shutting down");
    // The in-flight requests are answered during the drain.
    for _ in 0..IN_FLIGHT {
        upstream.release();
    }
    for answer in gated {
        assert_eq!(answer.await.unwrap(), 200);
    }
    let exited = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let status = tokio::time::timeout(SAFETY, exited)
        .await
        .expect("the gateway stops")
        .unwrap();
    assert!(status.success(), "{status}");

    let lines = lines_of(dir.path(), "audit.log");
    assert_each_once(&lines, "burst", BURST);
    let gated_lines = lines.iter().filter(|l| l.contains("/api/gated")).count();
    assert_eq!(gated_lines, IN_FLIGHT, "the drained requests' lines");
    assert_eq!(lines.len(), BURST + IN_FLIGHT);
    let verified = verify(lines.join("\n").as_bytes()).expect("the chain verifies");
    assert_eq!(verified.lines, BURST + IN_FLIGHT);
}

/// The binary's stderr, line by line, read on a thread of its own.
fn stderr_lines(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// The next stderr line that contains `wanted` (bounded by the safety net).
fn wait_for_stderr(lines: &mpsc::Receiver<String>, wanted: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(SAFETY)
            .unwrap_or_else(|_| panic!("no stderr line with {wanted:?}"));
        if line.contains(wanted) {
            return line;
        }
    }
}

/// The HTTPS address in the JSON "gateway listening" line.
fn https_addr(line: &str) -> std::net::SocketAddr {
    let json: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    let https = json
        .get("fields")
        .and_then(|fields| fields.get("https"))
        .or_else(|| json.get("https"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no https address in {line}"));
    https.parse().unwrap()
}
