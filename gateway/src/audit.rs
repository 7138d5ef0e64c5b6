//! Audit: one JSON line per request and per connection-level security
//! event, written after the answer is decided.
//!
//! In: what the pipeline learnt about a request (the [`Exchange`]: its
//! arrival, trail and decision, `exchange.rs`) or a connection event. Out: one line to stdout or an
//! append-only file (`[audit] output`), optionally hash-chained
//! (`audit/chain.rs`); a serving thread buffers its lines and writes them
//! in batches (`audit/batch.rs`, `audit.flush_interval`). A response with
//! an empty body gets its line when its head is ready; any other when its
//! body ends, fails or is dropped, with the bytes actually sent and the
//! time until then — still exactly one line. A forwarded answer abandoned because the client stopped
//! reading for `limits.send_timeout` is logged with decision `send`,
//! reason `send.client_stalled` (`docs/security-controls.md`, F-4); its
//! `bytes_out` counts what was handed to the connection, at most one chunk
//! more than the client received.
//!
//! Privacy by construction: a line is the fixed [`Record`] struct, so only
//! its fields can ever appear — never query strings, bodies,
//! `Authorization`, cookies, API keys, tokens or CSV content. Principals
//! appear only as HMAC-SHA256 pseudonyms under `[audit] pseudonym_key`.
//! Every string is escaped as serde_json escapes it (`audit/line.rs`), so a
//! hostile user agent or path cannot forge a line.

mod batch;
pub(crate) mod chain;
mod decision;
mod diagnostics;
mod line;
mod writer;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::StatusCode;
use http_body::Body as _;
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::body::Body;
use crate::config::{self, AuditOnFailure, AuditOutput, PseudonymKey};
use crate::exchange::{Decision, Exchange};

pub use chain::{verify, Broken, Gap, Verified};
pub(crate) use decision::decision;
pub use writer::OpenError;
use writer::{Sink, Writer};

/// Pseudonyms are this many hex characters of the HMAC (128 bits).
const PSEUDONYM_HEX_CHARS: usize = 32;

/// One audit line. The field set is the allowlist; names are stable
/// (`docs/runbook.md` and `docs/audit-and-metrics.md` use them).
#[derive(Debug, Serialize)]
struct Record<'a> {
    ts: String,
    event: &'static str,
    request_id: Option<Cow<'a, str>>,
    client_ip: IpAddr,
    method: Option<Cow<'a, str>>,
    route: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
    status: Option<u16>,
    decision: &'static str,
    reason: Option<&'static str>,
    auth_method: Option<&'static str>,
    principal: Option<String>,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    duration_ms: Option<u64>,
    upstream_ms: Option<u64>,
    tls_version: Option<&'static str>,
    alpn: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    /// Only with `hash_chain`; `hash` is appended after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_hash: Option<String>,
}

impl Record<'static> {
    /// The line of a connection-level event: no request fields.
    fn connection_event(
        ts: String,
        event: &'static str,
        client_ip: IpAddr,
        decision: &'static str,
        reason: &'static str,
    ) -> Record<'static> {
        Record {
            ts,
            event,
            request_id: None,
            client_ip,
            method: None,
            route: None,
            path: None,
            status: None,
            decision,
            reason: Some(reason),
            auth_method: None,
            principal: None,
            bytes_in: None,
            bytes_out: None,
            duration_ms: None,
            upstream_ms: None,
            tls_version: None,
            alpn: None,
            user_agent: None,
            prev_hash: None,
        }
    }
}

/// A connection-level security event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConnectionEvent {
    /// The TLS handshake failed or timed out.
    TlsHandshakeFailed { is_timeout: bool },
    /// A connection cap was reached; the connection was closed at once.
    ConnectionRefused,
    /// hyper closed an HTTP/1.1 connection over its request head (timed
    /// out after some bytes, too large, malformed), or h2 an HTTP/2
    /// connection over a protocol violation: no request exists.
    RequestHeadFailed(crate::conn::HeadError),
    /// An HTTP/1.1 connection was closed because the client took none of
    /// the answers already handed to it for `limits.send_timeout` (a stall
    /// with a body in flight is on that request's line instead).
    SendStalled,
}

/// The audit log: its sink (destination, chain state, lost lines), the
/// pseudonym key, and whether it is failing now.
pub(crate) struct Log {
    sink: Mutex<Sink>,
    key: Option<PseudonymKey>,
    /// Set while the last write failed; every request reads it, without
    /// the lock, to apply `audit.on_failure`.
    failing: AtomicBool,
    /// Lines that could not be written, for `audit_write_failures_total`.
    lost_total: Arc<AtomicU64>,
    /// The serving threads' buffers (`audit.flush_interval`).
    batches: batch::Batches,
}

impl Log {
    /// Opens the destination (a file is created if missing, appended to).
    /// Warns once when no pseudonym key is configured.
    pub(crate) fn open(config: &config::Audit) -> Result<Log, OpenError> {
        let writer = match &config.output {
            AuditOutput::Stdout => Writer::Stdout { torn: false },
            AuditOutput::File(path) => Writer::file(path, config.file_mode)?,
        };
        if config.pseudonym_key.is_none() {
            tracing::warn!(
                "audit.pseudonym_key is not set: principals are logged as null; \
                 set it to attribute requests without logging identities"
            );
        }
        let diagnostics = diagnostics::Diagnostics::new(config.failure_log_interval);
        let sink = Sink::new(writer, config.hash_chain, diagnostics);
        Ok(Log {
            lost_total: sink.lost_total(),
            sink: Mutex::new(sink),
            key: config.pseudonym_key.clone(),
            failing: AtomicBool::new(false),
            batches: batch::Batches::new(config.flush_interval),
        })
    }

    /// Reopens the file (after logrotate moved it); stdout is left alone.
    /// The lines buffered so far are written to the old file first. The
    /// hash chain carries on across files.
    pub(crate) fn reopen(&self) -> Result<(), OpenError> {
        self.flush_all();
        self.lock().writer.reopen()
    }

    /// Makes the calling thread a serving thread with its own buffer of
    /// lines (`audit/batch.rs`); it calls [`Log::flush_here`] before its
    /// runtime parks and [`Log::leave`] when it stops.
    pub(crate) fn enter(&self) {
        self.batches.enter();
    }

    /// Writes the calling serving thread's buffered lines, if any.
    pub(crate) fn flush_here(&self) {
        self.batches.flush_here(|batch| self.flush(batch));
    }

    /// Writes the calling serving thread's last lines and ends its
    /// buffering.
    pub(crate) fn leave(&self) {
        self.batches.leave(|batch| self.flush(batch));
    }

    /// Writes every serving thread's buffered lines (reopen, shutdown).
    pub(crate) fn flush_all(&self) {
        self.batches.flush_all(|batch| self.flush(batch));
    }

    /// Writes one buffer with one `write` (its lines whole; after a failure
    /// line by line, the lines that fail lost and counted) and empties it.
    fn flush(&self, batch: &mut batch::Batch) {
        let written = self.lock().write_lines(&batch.text, batch.lines);
        batch.clear();
        self.failing.store(!written, Ordering::Release);
    }

    /// The count of lines that could not be written so far.
    pub(crate) fn lost_lines(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost_total)
    }

    /// Whether a request may pass under `on_failure`: always with
    /// `Continue`; with `Refuse` only if the log takes lines. While it is
    /// failing, each call tries to write the pending gap record, so the
    /// first request after space returns passes again.
    pub(crate) fn admits(&self, on_failure: AuditOnFailure) -> bool {
        if on_failure == AuditOnFailure::Continue || !self.failing.load(Ordering::Acquire) {
            return true;
        }
        let mut sink = self.lock();
        let resumed = sink.resume();
        self.failing.store(!resumed, Ordering::Release);
        resumed
    }

    /// Writes the line for one answered request.
    #[cfg(test)]
    fn request(&self, exchange: &Exchange<'_>, status: StatusCode, bytes_out: Option<u64>) {
        self.write(self.request_record(exchange, status, bytes_out));
    }

    /// The line for one answered request: the exchange, the status it was
    /// answered with and the bytes sent (when known).
    fn request_record<'a>(
        &self,
        exchange: &Exchange<'a>,
        status: StatusCode,
        bytes_out: Option<u64>,
    ) -> Record<'a> {
        let Exchange {
            conn,
            started,
            trail,
            decision,
            bytes_in,
            ..
        } = *exchange;
        let authenticated = trail.principal();
        Record {
            ts: rfc3339_ms(started.arrived_at()),
            event: "request",
            request_id: Some(Cow::Borrowed(exchange.request_id())),
            client_ip: exchange.identity.client_ip,
            method: Some(Cow::Borrowed(started.method().as_str())),
            route: trail.route().map(Cow::Borrowed),
            path: Some(Cow::Borrowed(started.path())),
            status: Some(status.as_u16()),
            decision: decision.outcome,
            reason: decision
                .reason
                .or_else(|| trail.rate_limit_skipped_reason()),
            auth_method: authenticated.map(|(method, _)| method),
            principal: authenticated.and_then(|(_, id)| self.pseudonym(id)),
            bytes_in: Some(bytes_in),
            bytes_out,
            duration_ms: Some(millis(exchange.duration())),
            upstream_ms: exchange.upstream_duration().map(millis),
            tls_version: conn.tls.version,
            alpn: conn.tls.alpn.as_deref().map(Cow::Borrowed),
            user_agent: started.user_agent(),
            prev_hash: None,
        }
    }

    /// Writes the line for a connection-level event from `peer`.
    pub(crate) fn connection(&self, event: ConnectionEvent, peer: SocketAddr) {
        let (event, decision, reason) = match event {
            ConnectionEvent::TlsHandshakeFailed { is_timeout: false } => {
                ("tls_handshake_failed", "tls", "tls.handshake_failed")
            }
            ConnectionEvent::TlsHandshakeFailed { is_timeout: true } => {
                ("tls_handshake_failed", "tls", "tls.handshake_timeout")
            }
            ConnectionEvent::ConnectionRefused => {
                ("connection_refused", "accept", "accept.connection_cap")
            }
            ConnectionEvent::RequestHeadFailed(error) => (error.event(), "http", error.reason()),
            ConnectionEvent::SendStalled => {
                let stalled = Decision::CLIENT_STALLED;
                let reason = stalled.reason.unwrap_or("send.client_stalled");
                ("send_stalled", stalled.outcome, reason)
            }
        };
        let ts = rfc3339_ms(OffsetDateTime::now_utc());
        self.write(Record::connection_event(
            ts,
            event,
            peer.ip(),
            decision,
            reason,
        ));
    }

    /// The keyed-hash pseudonym of a principal id.
    fn pseudonym(&self, principal: &str) -> Option<String> {
        let key = self.key.as_ref()?;
        Some(pseudonym(key, principal))
    }

    /// Writes one line (after a gap record if lines were lost), or on a
    /// serving thread appends it to the thread's buffer. The line is
    /// serialised before any lock is taken; `prev_hash` and `hash`, when
    /// chained, are added by the sink under its lock, in the order lines
    /// are written.
    fn write(&self, mut record: Record<'_>) {
        record.prev_hash = None;
        self.write_line(line::to_json(&record));
    }

    /// Writes one line's text (see [`Log::write`]).
    fn write_line(&self, line: String) {
        if let Some(line) = self.batches.append(line, |batch| self.flush(batch)) {
            self.write_now(line);
        }
    }

    /// Writes one line's text at once, outside any thread's buffer.
    fn write_now(&self, mut line: String) {
        line.push('\n');
        // Not a serving thread (or no buffering): a blocking write under a
        // short std lock, and the request path learns of a failure at once.
        let written = self.lock().write_lines(&line, 1);
        self.failing.store(!written, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Log {
    /// Writes the line of one answered request, whose response head is
    /// ready: at once when its body is empty, otherwise when the body ends,
    /// fails or is dropped, with the bytes sent, the duration until then,
    /// and — when the exchange's send progress says the client stalled —
    /// the stall as its decision. The status and the bytes out are taken
    /// from the response.
    pub(crate) fn answered(
        self: &Arc<Self>,
        exchange: &Exchange<'_>,
        response: http::Response<Body>,
    ) -> http::Response<Body> {
        let bytes_out = response.body().size_hint().exact();
        let record = self.request_record(exchange, response.status(), bytes_out);
        if response.body().is_end_stream() {
            self.write(record);
            return response;
        }
        // Written now but for the body's values: nothing of the request
        // is kept until the body ends but this text.
        let unfinished = line::Unfinished::of(&record);
        let (decision, reason) = (record.decision, record.reason);
        // The serving thread's own handle on the log (`shard.rs`): the
        // log's reference count, next to which `failing` is read per
        // request, is not written per request.
        let log = crate::shard::local(self);
        let (at, progress) = (exchange.started.instant(), exchange.progress.cloned());
        response.map(|body| {
            crate::body::counted(body, move |sent| {
                // A refusal keeps its reason: the stall did not change what
                // the gateway decided (the metric still counts it).
                let (decision, reason) =
                    if reason.is_none() && progress.is_some_and(|p| p.is_stalled()) {
                        let stalled = Decision::CLIENT_STALLED;
                        (stalled.outcome, stalled.reason)
                    } else {
                        (decision, reason)
                    };
                let duration_ms = Some(millis(crate::clock::elapsed(at)));
                let finish = |out: &mut String| {
                    unfinished.finish_into(out, decision, reason, Some(sent), duration_ms);
                };
                // Into the thread's buffer, or written at once as a line.
                if let Err(finish) = log.batches.append_with(finish, |batch| log.flush(batch)) {
                    let mut line = String::new();
                    finish(&mut line);
                    log.write_now(line);
                }
            })
        })
    }
}

/// The pseudonym the audit log writes for `principal` (`key:<id>`,
/// `jwt:<iss>|<sub>`) under the policy's `audit.pseudonym_key`; `None` when
/// the policy sets no key. The `pseudonym` command prints it.
pub fn pseudonym_for(config: &config::Config, principal: &str) -> Option<String> {
    config
        .audit
        .pseudonym_key
        .as_ref()
        .map(|key| pseudonym(key, principal))
}

/// HMAC-SHA256 of `principal` under `key`, the first
/// [`PSEUDONYM_HEX_CHARS`] hex characters.
fn pseudonym(key: &PseudonymKey, principal: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(principal.as_bytes());
    let mut hex = hex::encode(mac.finalize().into_bytes());
    hex.truncate(PSEUDONYM_HEX_CHARS);
    hex
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `2026-11-28T03:04:05.678Z`. Each serving thread formats the date and
/// time of a second once and reuses it for the lines within that second;
/// only the milliseconds are written per line.
fn rfc3339_ms(at: OffsetDateTime) -> String {
    const SECOND: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].");
    thread_local! {
        /// The Unix second last formatted on this thread, and its text.
        static LAST_SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let at = at.to_offset(time::UtcOffset::UTC);
    LAST_SECOND.with_borrow_mut(|(second, text)| {
        if *second != at.unix_timestamp() {
            *text = at.format(SECOND).expect("a UTC time formats");
            *second = at.unix_timestamp();
        }
        let mut line = String::with_capacity(text.len() + 4);
        line.push_str(text);
        let ms = at.millisecond();
        for digit in [ms / 100, ms / 10 % 10, ms % 10] {
            line.push(char::from(
                b'0' + u8::try_from(digit).expect("a millisecond digit"),
            ));
        }
        line.push('Z');
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnInfo, TlsInfo};
    use crate::exchange::{Started, Trail};
    use crate::identity::Identity;
    use http::{HeaderValue, Request};
    use std::path::PathBuf;

    #[test]
    fn timestamps_match_the_full_format_across_seconds_and_offsets() {
        const FULL: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let start = time::macros::datetime!(2028-02-29 23:59:58.998 UTC);
        // Forwards over a second, a day and a leap day's end, then back
        // in time (a clock step), then the same instant seen from another
        // offset: each must read as the full format of its UTC time.
        let mut instants: Vec<OffsetDateTime> = (0..2_500)
            .map(|ms| start + Duration::from_millis(ms))
            .collect();
        instants.push(start - Duration::from_secs(3_600));
        instants.push(start.to_offset(time::macros::offset!(+05:30)));
        instants.push(time::macros::datetime!(1999-12-31 23:59:59.000 UTC));
        for at in instants {
            let expected = at.to_offset(time::UtcOffset::UTC).format(FULL).unwrap();
            assert_eq!(rfc3339_ms(at), expected, "{at}");
        }
    }

    fn file_log(dir: &std::path::Path, hash_chain: bool) -> (Log, PathBuf) {
        let path = dir.join("audit.log");
        let log = Log::open(&config::Audit {
            output: AuditOutput::File(path.clone()),
            hash_chain,
            pseudonym_key: Some(PseudonymKey(b"0123456789abcdef0123".to_vec())),
            on_failure: config::DEFAULT_AUDIT_ON_FAILURE,
            failure_log_interval: config::DEFAULT_AUDIT_FAILURE_LOG_INTERVAL,
            file_mode: config::DEFAULT_AUDIT_FILE_MODE,
            flush_interval: config::DEFAULT_AUDIT_FLUSH_INTERVAL,
        })
        .unwrap();
        (log, path)
    }

    fn request_line(log: &Log, user_agent: &str, principal: Option<&str>) {
        let request = Request::builder()
            .uri("/api/analyze?token=SECRET")
            .header("user-agent", user_agent)
            .body(())
            .unwrap();
        let trail = Trail::default();
        trail.routed("analyze");
        if let Some(principal) = principal {
            trail.authenticated("jwt", principal);
        }
        let conn = ConnInfo {
            peer: "192.0.2.7:5000".parse().unwrap(),
            tls: TlsInfo::default(),
        };
        let identity = Identity {
            client_ip: "192.0.2.7".parse().unwrap(),
            request_id: HeaderValue::from_static("req-1"),
        };
        let exchange = Exchange {
            conn: &conn,
            identity: &identity,
            started: &Started::now(&request),
            trail: &trail,
            decision: Decision::ALLOWED,
            bytes_in: 10,
            progress: None,
            answered_at: std::time::Instant::now(),
        };
        log.request(&exchange, StatusCode::OK, Some(20));
    }

    #[test]
    fn a_line_is_the_allowlist_and_hides_the_query() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path(), false);
        request_line(&log, "curl\"},\"forged\":{\"", None);
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(!text.contains("SECRET"));
        let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(json["path"], "/api/analyze");
        assert!(
            json.get("forged").is_none(),
            "quotes in the user agent are escaped"
        );
        assert_eq!(json["route"], "analyze");
        assert_eq!(json["decision"], "allowed");
        assert!(json["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json.as_object().unwrap().len(), 19);
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_never_the_id() {
        let key = PseudonymKey(b"0123456789abcdef".to_vec());
        let other = PseudonymKey(b"fedcba9876543210".to_vec());
        let a = pseudonym(&key, "trader-42");
        assert_eq!(a, pseudonym(&key, "trader-42"));
        assert_ne!(a, pseudonym(&key, "trader-43"));
        assert_ne!(a, pseudonym(&other, "trader-42"));
        assert_eq!(a.len(), PSEUDONYM_HEX_CHARS);
        assert!(!a.contains("trader"));
    }

    #[test]
    fn principal_is_logged_as_its_pseudonym() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path(), false);
        request_line(&log, "ua", Some("trader-42"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("trader-42"));
        let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(json["auth_method"], "jwt");
        assert_eq!(
            json["principal"].as_str().unwrap().len(),
            PSEUDONYM_HEX_CHARS
        );
    }

    #[test]
    fn chained_lines_verify_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path(), true);
        request_line(&log, "ua", None);
        log.connection(
            ConnectionEvent::TlsHandshakeFailed { is_timeout: false },
            "192.0.2.7:5000".parse().unwrap(),
        );
        log.reopen().unwrap();
        request_line(&log, "ua", None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify(text.as_bytes()).unwrap().lines, 3);
        let edited = text.replacen("192.0.2.7", "192.0.2.8", 1);
        assert_eq!(verify(edited.as_bytes()).unwrap_err().line, 1);
    }

    #[test]
    fn a_new_audit_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path(), false);
        request_line(&log, "ua", None);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "audit file mode {mode:o}");
    }

    #[test]
    fn a_failing_destination_refuses_or_continues_and_counts_every_lost_line() {
        // `/dev/full`: every write fails with ENOSPC.
        let log = Log::open(&config::Audit {
            output: AuditOutput::File(PathBuf::from("/dev/full")),
            hash_chain: true,
            pseudonym_key: None,
            on_failure: AuditOnFailure::Refuse,
            failure_log_interval: config::DEFAULT_AUDIT_FAILURE_LOG_INTERVAL,
            file_mode: config::DEFAULT_AUDIT_FILE_MODE,
            flush_interval: config::DEFAULT_AUDIT_FLUSH_INTERVAL,
        })
        .unwrap();
        assert!(log.admits(AuditOnFailure::Refuse), "nothing failed yet");
        request_line(&log, "ua", None);
        request_line(&log, "ua", None);
        assert_eq!(log.lost_lines().load(Ordering::Relaxed), 2);
        assert!(!log.admits(AuditOnFailure::Refuse));
        assert!(log.admits(AuditOnFailure::Continue));
        // A failed try of the gap record loses no line.
        assert_eq!(log.lost_lines().load(Ordering::Relaxed), 2);
    }

    #[test]
    fn lost_lines_leave_a_chained_gap_record_when_writing_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_log(dir.path(), true);
        request_line(&log, "ua", None);
        // Point the writer at `/dev/full` for two lines, then back.
        let file = std::mem::replace(
            &mut log.lock().writer,
            writer::Writer::file(std::path::Path::new("/dev/full"), 0o600).unwrap(),
        );
        request_line(&log, "ua", None);
        request_line(&log, "ua", None);
        assert!(!log.admits(AuditOnFailure::Refuse));
        log.lock().writer = file;
        assert!(
            log.admits(AuditOnFailure::Refuse),
            "the gap record is written"
        );
        request_line(&log, "ua", None);
        let text = std::fs::read_to_string(&path).unwrap();
        let verified = verify(text.as_bytes()).unwrap();
        assert_eq!(verified.lines, 3);
        assert_eq!(verified.gaps.len(), 1);
        assert_eq!((verified.gaps[0].line, verified.gaps[0].lost_lines), (2, 2));
        let gap: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(gap["event"], "audit_gap");
        assert_eq!(gap["reason"], "audit.lines_lost");
    }
}
