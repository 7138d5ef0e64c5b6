//! Path normalisation, done once: a path either is already in the one form
//! the gateway accepts, or the request is refused with 400.
//!
//! Routing matches exactly the bytes that are forwarded, so nothing may
//! change the path's meaning between the gateway and the upstream. The
//! upstream (Werkzeug, our worker) percent-decodes and may resolve dot
//! segments; a path that would decode to a different route, or climb out of
//! a prefix, is therefore refused rather than rewritten:
//!
//! * dot segments (`.`, `..`) and empty segments (`//`);
//! * a backslash, `;` (path parameters), control characters and NUL;
//! * percent-encodings of anything that could change routing after
//!   decoding: unreserved characters (`%2e`, `%41`, …), `/`, `\`, `;`, `%`
//!   (double encoding) and control bytes; and malformed escapes.
//!
//! Other escapes (`%20`, `%C3%A9`, …) pass unchanged: they cannot form a
//! route path, which is plain ASCII.

/// Checks one request or route path; `Err` says why it is refused. When a
/// path has several faults, the first of these is named: an empty
/// segment, a dot segment, then the first bad byte or escape.
pub(crate) fn check(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with `/`");
    }
    // One pass over the bytes for every rule (`docs/benchmarks.md`,
    // "Per-IP counts without a lock").
    let bytes = path.as_bytes();
    let (mut empty_segment, mut dot_segment, mut bad_byte) = (false, false, None);
    // Where the current segment starts (after its `/`).
    let mut segment = 1;
    let mut i = 1;
    while i <= bytes.len() {
        let byte = bytes.get(i).copied();
        if matches!(byte, None | Some(b'/')) {
            let text = &bytes[segment..i];
            empty_segment |= byte.is_some() && text.is_empty();
            dot_segment |= text == b"." || text == b"..";
            segment = i + 1;
            i += 1;
            continue;
        }
        let fault = match byte.unwrap_or_default() {
            b'\\' => Some("must not contain a backslash"),
            b';' => Some("must not contain `;`"),
            b if b < 0x20 || b == 0x7f => Some("must not contain control characters"),
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match decoded {
                    None => Some("contains a malformed percent-escape"),
                    Some(decoded) if changes_routing(decoded) => Some(
                        "must not percent-encode `/`, `\\`, `;`, `%`, control or unreserved characters",
                    ),
                    // The escape's two digits are not bytes of the path.
                    Some(_) => {
                        i += 3;
                        continue;
                    }
                }
            }
            _ => None,
        };
        // The first bad byte is the one named.
        bad_byte = bad_byte.or(fault);
        i += 1;
    }
    if empty_segment {
        return Err("must not contain an empty segment (`//`)");
    }
    if dot_segment {
        return Err("must not contain `.` or `..` segments");
    }
    bad_byte.map_or(Ok(()), Err)
}

/// Whether a percent-decoded byte could make the decoded path differ from
/// the matched one in a way that matters for routing.
fn changes_routing(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b';' | b'%')
        || byte < 0x20
        || byte == 0x7f
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/",
            "/api/analyze",
            "/api/goals/calculate",
            "/api/x%20y",
            "/files/caf%C3%A9",
            "/api/.well-known",
            "/api/a..b",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn tricks_are_refused() {
        for path in [
            "api/analyze",
            "/api/../admin",
            "/api/./analyze",
            "/api/..",
            "/api//analyze",
            "/api/%2e%2e/admin",
            "/api/%2E%2E/admin",
            "/api/%2e/analyze",
            "/api%2fanalyze",
            "/api%2Fanalyze",
            "/api%5canalyze",
            "/api\\analyze",
            "/api/analyze%00",
            "/api/analyze\0",
            "/api/%252e%252e/admin",
            "/api/%61nalyze",
            "/api/analyze;jsessionid=1",
            "/api/analyze%3b",
            "/api/analyze%",
            "/api/analyze%g1",
            "/api/analyze%2",
            "/api/analyze%+1",
            "*",
            "",
        ] {
            assert!(check(path).is_err(), "{path:?} should be refused");
        }
    }
}
