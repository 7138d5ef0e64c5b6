//! The heads on the gateway's own upstream exchange: the request's written
//! in one buffer, the answer's parsed with `httparse` (hyper's parser) and
//! its framing decided as RFC 9112 §6.3 says, strictly: anything that
//! could make the gateway and the upstream disagree on where the answer
//! ends is refused (`docs/architecture.md`, "The upstream hop").

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::decode::Framing;
use super::Invalid;

/// The most header fields an answer may have (hyper's client allows as
/// many).
const MAX_FIELDS: usize = 100;

/// `httparse`'s defaults: strict (no obs-fold, no space before a colon, no
/// invalid field skipped).
fn strict() -> httparse::ParserConfig {
    httparse::ParserConfig::default()
}

/// Room for an answer's fields, left uninitialised: `httparse` writes the
/// ones it finds (zeroing all of them first cost about 450 instructions per
/// parse).
fn no_fields<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_FIELDS] {
    [const { MaybeUninit::uninit() }; MAX_FIELDS]
}

/// Writes the head of a bodiless request: origin-form target, HTTP/1.1,
/// the fields of `headers` (already rewritten for the upstream hop, with
/// no `Content-Length`), and `Content-Length: 0` for a method whose
/// requests usually carry a body, so the upstream does not wait for one.
pub(super) fn write_request(out: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the head of an answer says, before its fields are copied out.
#[derive(Debug, PartialEq)]
pub(super) struct Head {
    /// Its length in bytes, up to and including the empty line.
    pub(super) len: usize,
    pub(super) status: StatusCode,
    pub(super) framing: Framing,
    /// Whether the connection may carry another request after this answer:
    /// HTTP/1.1, no `Connection: close`, a length not read to the close.
    pub(super) keep_alive: bool,
}

impl Head {
    /// A 1xx answer (never a 101, refused by [`parse`]): skipped, the real
    /// one follows.
    pub(super) fn is_interim(&self) -> bool {
        self.status.is_informational()
    }
}

/// Parses the head at the start of `buf`: `None` while it is incomplete.
/// `method` is the request's (a `HEAD` answer has no body).
pub(super) fn parse(buf: &[u8], method: &Method) -> Result<Option<Head>, Invalid> {
    let mut fields = no_fields();
    let mut answer = httparse::Response::new(&mut []);
    let len = match strict().parse_response_with_uninit_headers(&mut answer, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Invalid::TooManyFields),
        Err(_) => return Err(Invalid::Head),
    };
    let http10 = answer.version == Some(0);
    let status = answer
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(Invalid::Head)?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Invalid::Upgrade);
    }
    let mut keep_alive = !http10;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for field in answer.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            for item in field.value.split(|b| *b == b',') {
                let value = content_length(item.trim_ascii())?;
                if length.is_some_and(|seen| seen != value) {
                    return Err(Invalid::Length);
                }
                length = Some(value);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The request asked for no transfer coding (no `TE`), so only
            // `chunked` may come, once: anything else would reach the
            // client still coded, or be read to a different end.
            for coding in field.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if coding.is_empty() {
                    continue;
                }
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(Invalid::TransferEncoding);
                }
                chunked = true;
            }
            if !chunked {
                return Err(Invalid::TransferEncoding);
            }
        } else if name.eq_ignore_ascii_case("connection")
            && field
                .value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            keep_alive = false;
        }
    }
    let framing = if status.is_informational()
        || *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if chunked {
        // Both, or an encoding on HTTP/1.0: the two sides could read
        // different lengths (response splitting); nginx refuses both too.
        if length.is_some() || http10 {
            return Err(Invalid::TransferEncoding);
        }
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
    }))
}

/// One `Content-Length` value: digits only (no sign, no space inside).
fn content_length(value: &[u8]) -> Result<u64, Invalid> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Invalid::Length);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(Invalid::Length)
}

/// Fills `headers` (emptied) with the fields of the complete head `head`,
/// each value a slice of it, not a copy. A `Content-Length` that does not
/// frame the body forwarded (chunked, read to the close, a 204) is left
/// out; hop-by-hop fields are the caller's to strip.
pub(super) fn fields(
    head: &Bytes,
    framing: &Framing,
    headers: &mut HeaderMap,
) -> Result<(), Invalid> {
    let mut fields = no_fields();
    let mut answer = httparse::Response::new(&mut []);
    let parsed = strict().parse_response_with_uninit_headers(&mut answer, head, &mut fields);
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return Err(Invalid::Head);
    }
    headers.clear();
    let keep_length = matches!(framing, Framing::Length(_))
        || (framing == &Framing::Empty
            && answer.code.is_some_and(|code| code != 204 && code >= 200));
    for field in answer.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| Invalid::Head)?;
        if name == CONTENT_LENGTH && !keep_length {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value))
            .map_err(|_| Invalid::Head)?;
        headers.append(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Invalid> {
        parse(text.as_bytes(), &Method::GET)
    }

    fn framing(text: &str) -> Result<(Framing, bool), Invalid> {
        head(text).map(|head| {
            let head = head.expect("a complete head");
            (head.framing, head.keep_alive)
        })
    }

    #[test]
    fn a_request_head_is_one_buffer_with_a_length_for_bodied_methods() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("api.example"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        write_request(&mut out, &Method::GET, "/api/x?y=1", &headers);
        assert_eq!(
            out,
            b"GET /api/x?y=1 HTTP/1.1\r\nhost: api.example\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        out.clear();
        write_request(&mut out, &Method::POST, "/", &HeaderMap::new());
        assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn an_incomplete_head_asks_for_more() {
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Len"), Ok(None));
        assert_eq!(head(""), Ok(None));
    }

    #[test]
    fn the_framing_follows_rfc_9112() {
        let ok = "HTTP/1.1 200 OK\r\n";
        assert_eq!(
            framing(&format!("{ok}Content-Length: 12\r\n\r\n")),
            Ok((Framing::Length(12), true))
        );
        assert_eq!(
            framing(&format!(
                "{ok}Content-Length: 12, 12\r\nContent-Length: 12\r\n\r\n"
            )),
            Ok((Framing::Length(12), true)),
            "repeated equal values are one length"
        );
        assert_eq!(
            framing(&format!("{ok}Transfer-Encoding: Chunked\r\n\r\n")),
            Ok((Framing::Chunked, true))
        );
        assert_eq!(
            framing(&format!("{ok}\r\n")),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            framing(&format!(
                "{ok}Connection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"
            )),
            Ok((Framing::Length(0), false))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"),
            Ok((Framing::Length(2), false)),
            "HTTP/1.0 connections are not kept"
        );
        for bodiless in ["204 No Content", "304 Not Modified"] {
            assert_eq!(
                framing(&format!("HTTP/1.1 {bodiless}\r\nContent-Length: 5\r\n\r\n")),
                Ok((Framing::Empty, true))
            );
        }
        let to_head = parse(
            format!("{ok}Content-Length: 5\r\n\r\n").as_bytes(),
            &Method::HEAD,
        );
        assert_eq!(to_head.unwrap().unwrap().framing, Framing::Empty);
        let interim = head("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(interim.is_interim());
        assert_eq!(interim.framing, Framing::Empty);
    }

    #[test]
    fn ambiguous_lengths_are_refused() {
        let ok = "HTTP/1.1 200 OK\r\n";
        for bad in [
            format!("{ok}Content-Length: 12\r\nContent-Length: 13\r\n\r\n"),
            format!("{ok}Content-Length: 12, 13\r\n\r\n"),
            format!("{ok}Content-Length: +12\r\n\r\n"),
            format!("{ok}Content-Length: 1 2\r\n\r\n"),
            format!("{ok}Content-Length: \r\n\r\n"),
            format!("{ok}Content-Length: 99999999999999999999999\r\n\r\n"),
        ] {
            assert_eq!(head(&bad), Err(Invalid::Length), "{bad:?}");
        }
        for bad in [
            format!("{ok}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            format!("{ok}Transfer-Encoding: chunked, chunked\r\n\r\n"),
            format!("{ok}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            format!("{ok}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            format!("{ok}Transfer-Encoding: chunked, gzip\r\n\r\n"),
            format!("{ok}Transfer-Encoding: identity\r\n\r\n"),
            format!("{ok}Transfer-Encoding: ,\r\n\r\n"),
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
        ] {
            assert_eq!(head(&bad), Err(Invalid::TransferEncoding), "{bad:?}");
        }
        assert_eq!(
            head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
            Err(Invalid::Upgrade)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
            Err(Invalid::Head),
            "obs-fold"
        );
        assert_eq!(head("HTTP/1.1 2000 OK\r\n\r\n"), Err(Invalid::Head));
        assert_eq!(head("HTTP/2 200 OK\r\n\r\n"), Err(Invalid::Head));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            head(&format!("{ok}{many}\r\n")),
            Err(Invalid::TooManyFields)
        );
    }

    #[test]
    fn fields_are_slices_of_the_head_and_a_length_that_frames_nothing_goes() {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 3\r\nSet-Cookie: x\r\nSet-Cookie: y\r\n\r\n";
        let bytes = Bytes::from(text);
        let mut headers = HeaderMap::new();
        headers.insert("stale", HeaderValue::from_static("from the request"));
        fields(&bytes, &Framing::Length(3), &mut headers).unwrap();
        assert_eq!(headers.len(), 4);
        assert!(headers.get("stale").is_none());
        assert_eq!(headers["content-length"], "3");
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        fields(&bytes, &Framing::Chunked, &mut headers).unwrap();
        assert!(headers.get("content-length").is_none());
    }
}
