//! The audit log on a full disk, end to end: the real gateway over TLS in
//! front of the real worker, its audit file on a 256 KiB tmpfs filled to
//! the last byte under traffic, then freed.
//!
//! With `audit.on_failure = "refuse"` requests get 503 in the envelope with
//! `Retry-After` once a line could not be written; with `"continue"` they
//! pass. Either way every lost line is counted
//! (`tradehabit_gateway_audit_write_failures_total`), the diagnostic log
//! stays a handful of lines, no torn line is left in the file, and when
//! space returns writing resumes with a chained `audit_gap` record that
//! `verify` reports as a gap, not a broken chain.
//!
//! Mounting the tmpfs needs root (CI runs as root): under `CI=true` a
//! failed mount fails the test; elsewhere it is skipped with a message.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tradehabit_e2e::attack::{Stack, ROUTES};
use tradehabit_gateway::audit::verify;

/// Requests sent while the disk is full.
const REQUESTS_WHILE_FULL: usize = 150;
/// The default `audit.failure_log_interval`, in seconds.
const SUMMARY_INTERVAL_SECS: u64 = 60;

/// A 256 KiB tmpfs, unmounted on drop.
struct TmpFs {
    dir: tempfile::TempDir,
}

impl TmpFs {
    fn mount() -> Option<TmpFs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match mounted {
            Ok(out) if out.status.success() => return Some(TmpFs { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(error) => error.to_string(),
        };
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "cannot mount a tmpfs ({why}); CI runs as root and must run this test"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs ({why}); run as root, as CI does");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        // Lazy: after a failed assertion the gateway may still hold the file.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let block = vec![0u8; 4096];
    while file.write(&block).is_ok_and(|n| n > 0) {}
    while file.write(&[0]).is_ok_and(|n| n > 0) {}
    path
}

/// The gateway's diagnostics (everything at info and above), captured by
/// this test binary's one subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn get() -> &'static Captured {
        static CAPTURED: OnceLock<Captured> = OnceLock::new();
        CAPTURED.get_or_init(|| {
            let captured = Captured::default();
            tracing_subscriber::fmt()
                .with_writer(captured.clone())
                .with_ansi(false)
                .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
                .init();
            captured
        })
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The lines written since `mark` that speak of the audit log.
    fn audit_lines_since(&self, mark: usize) -> Vec<String> {
        let text = self.0.lock().unwrap()[mark..].to_vec();
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|line| line.contains("audit log"))
            .map(str::to_string)
            .collect()
    }
}

/// One test at a time: the diagnostics are process-wide.
fn serial() -> &'static tokio::sync::Mutex<()> {
    static SERIAL: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    SERIAL.get_or_init(|| tokio::sync::Mutex::new(()))
}

fn lost_metric(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tradehabit_gateway_audit_write_failures_total "))
        .unwrap_or_else(|| panic!("no audit_write_failures_total in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// The lost-lines counter once each of the `answered` requests so far has
/// its line in the file or counted as lost: a serving thread writes its
/// lines in batches a moment after answering (`audit.flush_interval`).
async fn settled(stack: &Stack, log: &Path, answered: u64) -> u64 {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lost = lost_metric(&stack.metrics().await);
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let written = text
            .lines()
            .filter(|line| line.contains("\"event\":\"request\""))
            .count() as u64;
        if written + lost >= answered || Instant::now() > deadline {
            return lost;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What one full-disk run saw.
struct Run {
    /// The statuses answered while the disk was full, in order.
    while_full: Vec<u16>,
    /// The counter after the full phase, and at the end.
    lost: u64,
    lost_at_end: u64,
    /// Diagnostic lines about the audit log while full, and after freeing.
    diagnostics_full: Vec<String>,
    diagnostics_after: Vec<String>,
    /// Seconds the full phase took (bounds the summaries).
    full_secs: u64,
    /// Statuses after the space came back.
    after: Vec<u16>,
    /// The audit file at the end.
    log: Vec<u8>,
}

/// Starts the stack with its chained audit log on a tmpfs, serves a few
/// requests, fills the disk, serves [`REQUESTS_WHILE_FULL`] (`concurrency`
/// at a time), frees the space and serves a few more.
async fn full_disk(on_failure: &str, concurrency: usize) -> Option<Run> {
    let _serial = serial().lock().await;
    let captured = Captured::get();
    let fs = TmpFs::mount()?;
    let log = fs.path().join("audit.log");
    let audit = format!(
        "[audit]\noutput = \"{}\"\nhash_chain = true\non_failure = \"{on_failure}\"\n",
        log.display()
    );
    let stack = Stack::start_with(|_| audit, ROUTES).await;
    for _ in 0..3 {
        assert_eq!(stack.get("/api/health").await.status, 200);
    }

    let filler = fill(fs.path());
    let mark = captured.len();
    let started = Instant::now();
    let mut while_full = Vec::new();
    for _ in 0..REQUESTS_WHILE_FULL / concurrency {
        let batch = (0..concurrency).map(|_| stack.get("/api/health"));
        for reply in futures_util::future::join_all(batch).await {
            if reply.status == 503 {
                assert_eq!(reply.headers["retry-after"], "5", "{reply:?}");
                assert_eq!(reply.headers["content-type"], "application/json");
                assert_eq!(reply.json()["status"], "ERROR", "{reply:?}");
                assert!(reply.headers.contains_key("strict-transport-security"));
            }
            while_full.push(reply.status.as_u16());
        }
    }
    let full_secs = started.elapsed().as_secs();
    let lost = settled(&stack, &log, 3 + REQUESTS_WHILE_FULL as u64).await;
    let diagnostics_full = captured.audit_lines_since(mark);

    std::fs::remove_file(filler).expect("free the space");
    let mark = captured.len();
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(stack.get("/api/health").await.status.as_u16());
    }
    let lost_at_end = lost_metric(&stack.metrics().await);
    let diagnostics_after = captured.audit_lines_since(mark);
    stack.stop().await;
    let log = std::fs::read(&log).expect("the audit log");
    Some(Run {
        while_full,
        lost,
        lost_at_end,
        diagnostics_full,
        diagnostics_after,
        full_secs,
        after,
        log,
    })
}

/// What both policies share: counted, quiet, whole lines, a verified gap.
fn assert_counted_quiet_whole_and_resumed(run: &Run) {
    assert!(run.lost > 0, "lines were lost while the disk was full");
    assert_eq!(run.lost_at_end, run.lost, "nothing lost after recovery");
    assert_eq!(run.after, [200, 200, 200], "writing resumed");

    // No flood: the first failure, at most one summary per interval.
    let bound = 2 + run.full_secs / SUMMARY_INTERVAL_SECS;
    assert!(
        !run.diagnostics_full.is_empty() && run.diagnostics_full.len() as u64 <= bound,
        "{} diagnostic lines for {} lost lines (bound {bound}):\n{}",
        run.diagnostics_full.len(),
        run.lost,
        run.diagnostics_full.join("\n")
    );
    assert!(run.diagnostics_full[0].contains("failed"));
    assert!(
        run.diagnostics_after
            .iter()
            .any(|line| line.contains("written again") && line.contains("lost_lines")),
        "a recovery line: {:?}",
        run.diagnostics_after
    );

    // Whole lines only, and the chain intact with one gap of them all.
    assert_eq!(
        run.log.last(),
        Some(&b'\n'),
        "the file ends with a whole line"
    );
    let text = String::from_utf8(run.log.clone()).expect("UTF-8 lines");
    for (number, line) in text.lines().enumerate() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "line {} is torn: {line:?}",
            number + 1
        );
    }
    let verified = verify(text.as_bytes()).expect("the chain is intact");
    assert_eq!(verified.gaps.len(), 1, "{:?}", verified.gaps);
    assert_eq!(verified.gaps[0].lost_lines, run.lost);
    let after_gap = verified.lines - verified.gaps[0].line;
    assert!(after_gap >= 3, "the requests after recovery are logged");
}

#[tokio::test]
async fn refuse_answers_503_while_the_audit_disk_is_full_and_recovers_with_a_gap() {
    // One at a time, so the count of lines lost is exact.
    let Some(run) = full_disk("refuse", 1).await else {
        return;
    };
    let first_refused = run
        .while_full
        .iter()
        .position(|&status| status == 503)
        .unwrap_or_else(|| panic!("no 503 while the disk was full: {:?}", run.while_full));
    assert!(
        run.while_full[..first_refused].iter().all(|&s| s == 200)
            && run.while_full[first_refused..].iter().all(|&s| s == 503),
        "200s while lines still fit, then only 503s: {:?}",
        run.while_full
    );
    // Every refusal's own line is lost, plus the one line whose failure
    // was discovered: the request that was already being answered.
    let refused = (run.while_full.len() - first_refused) as u64;
    assert_eq!(run.lost, refused + 1);
    assert_counted_quiet_whole_and_resumed(&run);
}

#[tokio::test]
async fn continue_serves_while_the_audit_disk_is_full_and_recovers_with_a_gap() {
    // Under load: ten requests at a time.
    let Some(run) = full_disk("continue", 10).await else {
        return;
    };
    assert!(
        run.while_full.iter().all(|&status| status == 200),
        "{:?}",
        run.while_full
    );
    assert_counted_quiet_whole_and_resumed(&run);
}
