//! The text of one audit line: exactly the JSON object serde_json writes
//! for the derived `Serialize` of [`Record`] (the same keys in the same
//! order, the same escaping, `null` for what is absent), written without
//! scanning the fixed key names for characters to escape, and with the
//! values' scan cut short when, as nearly always, there is nothing to
//! escape (`docs/benchmarks.md`, "Smaller futures"). The tests below hold
//! the two writers together.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::Record;

/// Room for a whole line at once: a request's line is about 400 bytes
/// (a long user agent or path makes it grow once).
const LINE_CAPACITY: usize = 512;

/// The line of `record`, without its newline.
pub(super) fn to_json(record: &Record<'_>) -> String {
    let mut out = String::with_capacity(LINE_CAPACITY);
    head(&mut out, record);
    outcome(&mut out, record.decision, record.reason);
    middle(&mut out, record);
    sent(&mut out, record.bytes_out, record.duration_ms);
    tail(&mut out, record);
    out
}

/// The line of a request whose body is still being sent, written at once
/// but for what only the body's end tells: the decision (a client stall
/// changes it), the bytes sent and the duration. Nothing of the request
/// has to be kept meanwhile but this text.
pub(super) struct Unfinished {
    text: String,
    /// Where the decision and reason go.
    outcome_at: usize,
    /// Where the bytes sent and the duration go.
    sent_at: usize,
}

impl Unfinished {
    pub(super) fn of(record: &Record<'_>) -> Unfinished {
        let mut text = String::with_capacity(LINE_CAPACITY);
        head(&mut text, record);
        let outcome_at = text.len();
        middle(&mut text, record);
        let sent_at = text.len();
        tail(&mut text, record);
        Unfinished {
            text,
            outcome_at,
            sent_at,
        }
    }

    /// The whole line, as [`to_json`] writes the record with these values.
    #[cfg(test)]
    pub(super) fn finish(
        &self,
        decision: &str,
        reason: Option<&str>,
        bytes_out: Option<u64>,
        duration_ms: Option<u64>,
    ) -> String {
        let mut out = String::with_capacity(self.text.len() + 96);
        self.finish_into(&mut out, decision, reason, bytes_out, duration_ms);
        out
    }

    /// [`Unfinished::finish`] appended to `out` (a thread's audit buffer).
    pub(super) fn finish_into(
        &self,
        out: &mut String,
        decision: &str,
        reason: Option<&str>,
        bytes_out: Option<u64>,
        duration_ms: Option<u64>,
    ) {
        out.push_str(&self.text[..self.outcome_at]);
        outcome(out, decision, reason);
        out.push_str(&self.text[self.outcome_at..self.sent_at]);
        sent(out, bytes_out, duration_ms);
        out.push_str(&self.text[self.sent_at..]);
    }
}

/// From `{` to the status.
fn head(out: &mut String, record: &Record<'_>) {
    out.push_str("{\"ts\":");
    string(out, &record.ts);
    out.push_str(",\"event\":");
    string(out, record.event);
    out.push_str(",\"request_id\":");
    optional(out, record.request_id.as_deref());
    out.push_str(",\"client_ip\":");
    address(out, record.client_ip);
    out.push_str(",\"method\":");
    optional(out, record.method.as_deref());
    out.push_str(",\"route\":");
    optional(out, record.route.as_deref());
    out.push_str(",\"path\":");
    optional(out, record.path.as_deref());
    out.push_str(",\"status\":");
    number(out, record.status.map(u64::from));
}

fn outcome(out: &mut String, decision: &str, reason: Option<&str>) {
    out.push_str(",\"decision\":");
    string(out, decision);
    out.push_str(",\"reason\":");
    optional(out, reason);
}

/// Who, and the bytes received.
fn middle(out: &mut String, record: &Record<'_>) {
    out.push_str(",\"auth_method\":");
    optional(out, record.auth_method);
    out.push_str(",\"principal\":");
    optional(out, record.principal.as_deref());
    out.push_str(",\"bytes_in\":");
    number(out, record.bytes_in);
}

fn sent(out: &mut String, bytes_out: Option<u64>, duration_ms: Option<u64>) {
    out.push_str(",\"bytes_out\":");
    number(out, bytes_out);
    out.push_str(",\"duration_ms\":");
    number(out, duration_ms);
}

/// From the upstream's time to `}`.
fn tail(out: &mut String, record: &Record<'_>) {
    out.push_str(",\"upstream_ms\":");
    number(out, record.upstream_ms);
    out.push_str(",\"tls_version\":");
    optional(out, record.tls_version);
    out.push_str(",\"alpn\":");
    optional(out, record.alpn.as_deref());
    out.push_str(",\"user_agent\":");
    optional(out, record.user_agent.as_deref());
    if let Some(prev_hash) = &record.prev_hash {
        out.push_str(",\"prev_hash\":");
        string(out, prev_hash);
    }
    out.push('}');
}

/// A JSON string. Text with nothing to escape is copied as it is; anything
/// else goes through serde_json, which escapes the quote, the backslash and
/// the control characters (and only those).
fn string(out: &mut String, text: &str) {
    if is_plain(text.as_bytes()) {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string always serialises"));
    }
}

/// Whether `bytes` holds nothing JSON escapes: no control character, no
/// quote, no backslash. Eight bytes at a time: a word has a byte below
/// 0x20 exactly when `(w - 0x20…20) & !w & 0x80…80` is not zero, and a
/// byte equal to `b` exactly when the same holds for `w ^ b…b` below 1
/// (bytes of 0x80 and up never count: `!w` clears their top bit).
fn is_plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let below = |word: u64, n: u64| word.wrapping_sub(ONES * n) & !word & HIGH;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        if below(word, 0x20) | below(word ^ QUOTE, 1) | below(word ^ BACKSLASH, 1) != 0 {
            return false;
        }
    }
    !words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn optional(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.push_str("null"),
    }
}

fn number(out: &mut String, value: Option<u64>) {
    match value {
        Some(value) => out.push_str(itoa::Buffer::new().format(value)),
        None => out.push_str("null"),
    }
}

/// An address as a JSON string (its text never needs escaping).
fn address(out: &mut String, ip: IpAddr) {
    out.push('"');
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn the_word_scan_finds_every_byte_json_escapes_wherever_it_is() {
        let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        // Every byte value at every place of texts up to 19 bytes long
        // (two words and a remainder), among plain bytes, high ones too.
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    text[(at + 1) % len] = 0xE9;
                    text[at] = b;
                    let expected = !text.iter().any(|&b| escaped(b));
                    assert_eq!(is_plain(&text), expected, "byte {b:#04x} at {at} of {len}");
                }
            }
        }
        assert!(is_plain(b""));
    }

    fn bare() -> Record<'static> {
        Record::connection_event(
            "2026-11-28T03:04:05.678Z".to_owned(),
            "connection_refused",
            "192.0.2.1".parse().unwrap(),
            "accept",
            "accept.connection_cap",
        )
    }

    fn full(text: &'static str) -> Record<'static> {
        Record {
            ts: "2026-11-28T03:04:05.678Z".to_owned(),
            event: "request",
            request_id: Some(Cow::Borrowed(text)),
            client_ip: "2001:db8::17".parse().unwrap(),
            method: Some(Cow::Borrowed("GET")),
            route: Some(Cow::Borrowed(text)),
            path: Some(Cow::Owned(format!("/api/{text}"))),
            status: Some(200),
            decision: "allowed",
            reason: None,
            auth_method: Some("jwt"),
            principal: Some(text.to_owned()),
            bytes_in: Some(0),
            bytes_out: Some(u64::MAX),
            duration_ms: Some(12),
            upstream_ms: Some(3),
            tls_version: Some("TLSv1_3"),
            alpn: Some(Cow::Borrowed("h2")),
            user_agent: Some(Cow::Borrowed(text)),
            prev_hash: Some(format!("{text}0f")),
        }
    }

    #[test]
    fn the_line_is_what_serde_json_writes() {
        let mut records = vec![bare()];
        for text in [
            "",
            "plain text",
            "audit-test\"},\"forged\":{\"",
            "back\\slash",
            "new\nline\r\ttab\u{0}\u{1f}",
            "del\u{7f} é ü 中文 🚀",
            "\u{2028}\u{2029}",
        ] {
            records.push(full(text));
        }
        for ip in [
            "0.0.0.0",
            "10.0.0.255",
            "255.255.255.255",
            "::1",
            "::ffff:192.0.2.1",
        ] {
            let mut record = full("plain");
            record.client_ip = ip.parse().unwrap();
            records.push(record);
        }
        for record in &records {
            let expected = serde_json::to_string(record).unwrap();
            assert_eq!(to_json(record), expected);
            // Written in two steps, with the body's values at the end.
            let unfinished = Unfinished::of(record);
            let finished = unfinished.finish(
                record.decision,
                record.reason,
                record.bytes_out,
                record.duration_ms,
            );
            assert_eq!(finished, expected);
            // And it is one JSON object on one line.
            assert!(!to_json(record).contains('\n'));
            let _: serde_json::Value = serde_json::from_str(&to_json(record)).unwrap();
        }
    }
}
