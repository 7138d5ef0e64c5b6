//! The text of one audit line: exactly the JSON object serde_json writes
//! for the derived `Serialize` of [`Record`] (the same keys in the same
//! order, the same escaping, `null` for what is absent), written without
//! scanning the fixed key names for characters to escape, and with the
//! values' scan cut short when, as nearly always, there is nothing to
//! escape (`docs/benchmarks.md`, "The audit line"). The tests below hold
//! the two writers together.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::Record;

/// The line of `record`, without its newline.
pub(super) fn to_json(record: &Record<'_>) -> String {
    let mut out = String::with_capacity(320);
    out.push_str("{\"ts\":");
    string(&mut out, &record.ts);
    out.push_str(",\"event\":");
    string(&mut out, record.event);
    out.push_str(",\"request_id\":");
    optional(&mut out, record.request_id.as_deref());
    out.push_str(",\"client_ip\":");
    address(&mut out, record.client_ip);
    out.push_str(",\"method\":");
    optional(&mut out, record.method.as_deref());
    out.push_str(",\"route\":");
    optional(&mut out, record.route.as_deref());
    out.push_str(",\"path\":");
    optional(&mut out, record.path.as_deref());
    out.push_str(",\"status\":");
    number(&mut out, record.status.map(u64::from));
    out.push_str(",\"decision\":");
    string(&mut out, record.decision);
    out.push_str(",\"reason\":");
    optional(&mut out, record.reason);
    out.push_str(",\"auth_method\":");
    optional(&mut out, record.auth_method);
    out.push_str(",\"principal\":");
    optional(&mut out, record.principal.as_deref());
    out.push_str(",\"bytes_in\":");
    number(&mut out, record.bytes_in);
    out.push_str(",\"bytes_out\":");
    number(&mut out, record.bytes_out);
    out.push_str(",\"duration_ms\":");
    number(&mut out, record.duration_ms);
    out.push_str(",\"upstream_ms\":");
    number(&mut out, record.upstream_ms);
    out.push_str(",\"tls_version\":");
    optional(&mut out, record.tls_version);
    out.push_str(",\"alpn\":");
    optional(&mut out, record.alpn.as_deref());
    out.push_str(",\"user_agent\":");
    optional(&mut out, record.user_agent.as_deref());
    if let Some(prev_hash) = &record.prev_hash {
        out.push_str(",\"prev_hash\":");
        string(&mut out, prev_hash);
    }
    out.push('}');
    out
}

/// A JSON string. Text with nothing to escape is copied as it is; anything
/// else goes through serde_json, which escapes the quote, the backslash and
/// the control characters (and only those).
fn string(out: &mut String, text: &str) {
    let plain = !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string always serialises"));
    }
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

    fn bare() -> Record<'static> {
        Record {
            ts: "2026-11-28T03:04:05.678Z".to_owned(),
            event: "connection_refused",
            request_id: None,
            client_ip: "192.0.2.1".parse().unwrap(),
            method: None,
            route: None,
            path: None,
            status: None,
            decision: "accept",
            reason: Some("accept.connection_cap"),
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
            // And it is one JSON object on one line.
            assert!(!to_json(record).contains('\n'));
            let _: serde_json::Value = serde_json::from_str(&to_json(record)).unwrap();
        }
    }
}
