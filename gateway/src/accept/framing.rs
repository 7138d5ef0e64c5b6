//! The framing of HTTP/1.1 requests as the client wrote it.
//!
//! [`Framing`] sits between the connection and hyper and reads the same
//! bytes hyper reads, in the same order — a head, then its body by length
//! or by chunks, then the next head — and decides what hyper is *shown*
//! ([`Shown`]). It refuses three things hyper would let through or answer
//! with its own bare response:
//!
//! * **Ambiguous heads.** hyper settles a head with both `Content-Length`
//!   and `Transfer-Encoding` by dropping `Content-Length` (RFC 9112 §6.3)
//!   and folds repeated equal `Content-Length`s into one, so `policy::shape`
//!   never sees the ambiguity. The reader parses each complete head with
//!   `httparse`, hyper's own parser, and notes the request as refused.
//! * **Heads over hyper's bounds**: longer than twice
//!   `limits.max_header_bytes`, a request line longer than that or than
//!   hyper's URI cap, or more than `limits.max_header_count` fields. hyper
//!   would answer those with a bare 431 (no security headers, no request
//!   id, no audit line). The reader shows hyper a head only line by line —
//!   a line is held back until its LF arrives — so at any moment hyper has
//!   complete lines only; when the head goes over a bound, the reader ends
//!   it right there (an empty line after the lines already shown, or a
//!   short stand-in request line if not even that was complete), notes the
//!   request as refused, and drops everything the client sends afterwards.
//!   hyper parses a head within its bounds and hands it to the service,
//!   which answers the gateway's 431 (or 414) envelope through
//!   `reject.rs` and closes the connection.
//! * **Chunked bodies that break RFC 9112 §7.1** (`chunked.rs`): the reader
//!   shows hyper the body up to the offending byte only, and the next read
//!   fails with [`BodyFramingRefused`]. hyper's body then ends in that
//!   error, `request_body` recognises it and the request gets a 400
//!   envelope naming the reason, with `Connection: close`.
//!
//! hyper hands the requests of a connection to the service one at a time in
//! the order of their heads; [`Verdicts::next_request`] numbers them and
//! names the one to refuse. Everything the reader does not follow (a
//! protocol upgrade or tunnel, an ambiguous head, a head `httparse` does
//! not parse, which hyper refuses itself) makes it pass the rest of the
//! connection through untouched, and with that ends the connection: the
//! answer to the request at which it stopped closes it
//! ([`Verdicts::ends_connection`]), and a request hyper reads after that
//! point is refused ([`HeadRefusal::Unfollowed`]), never left to hyper's
//! own rules.

mod chunked;
mod follow;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

pub(crate) use crate::conn::BodyFramingRefused;
use chunked::{ChunkedError, DataEnd, SizeLine, Step, Trailers};
pub(crate) use follow::follow;
pub use follow::Followed;

/// hyper's cap on a request target (`MAX_URI_LEN`, answered with a bare
/// 414): the reader ends a longer request line itself.
const HYPER_MAX_URI_BYTES: usize = u16::MAX as usize - 1;

/// The longest request target kept in a stand-in request line.
const STAND_IN_TARGET_BYTES: usize = 256;

/// The longest method kept in a stand-in request line.
const STAND_IN_METHOD_BYTES: usize = 32;

/// A retained buffer larger than this is given back after its head.
const KEEP_CAPACITY: usize = 4096;

/// Why a head is refused; the service turns it into the gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadRefusal {
    /// `Content-Length` and `Transfer-Encoding` together (400).
    LengthAndChunked,
    /// `Content-Length` more than once (400; hyper keeps one when they agree).
    SeveralLengths,
    /// The head is longer than hyper's bound (431).
    TooLarge,
    /// More header fields than `limits.max_header_count` (431).
    TooManyFields,
    /// The request line is longer than hyper's bound (414).
    RequestLineTooLong,
    /// A request after the point where the reader stopped following the
    /// connection (400).
    Unfollowed,
}

impl HeadRefusal {
    /// The detail of the refusal's envelope.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            Self::SeveralLengths => "several Content-Length values",
            Self::TooLarge => "the header section is too large",
            Self::TooManyFields => "too many header fields",
            Self::RequestLineTooLong => "the request line is too long",
            Self::Unfollowed => "sent after a request whose framing was not followed",
        }
    }

    const ALL: [HeadRefusal; 6] = [
        Self::LengthAndChunked,
        Self::SeveralLengths,
        Self::TooLarge,
        Self::TooManyFields,
        Self::RequestLineTooLong,
        Self::Unfollowed,
    ];

    fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|&r| r == self)
            .map_or(0, |i| i as u8 + 1)
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// What the reader found, shared with the connection's service.
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    /// The number (from 1) of the first request with a refused head; 0
    /// while there is none.
    request: AtomicU64,
    /// [`HeadRefusal::code`] of that request.
    why: AtomicU8,
    /// Requests handed to the service so far.
    served: AtomicU64,
    /// A chunked body was refused: nothing more is read.
    body_refused: AtomicBool,
    /// The reader passes the rest of the connection through unfollowed.
    passing: AtomicBool,
    /// Heads read when it started passing: later requests are not followed.
    followed_heads: AtomicU64,
}

impl Verdicts {
    /// Called by the service once per request, in order: the request's
    /// number (from 1), and why its head is refused, if it is.
    pub(crate) fn next_request(&self) -> (u64, Option<HeadRefusal>) {
        let number = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.request.load(Ordering::Acquire) == number {
            return (
                number,
                HeadRefusal::from_code(self.why.load(Ordering::Relaxed)),
            );
        }
        let is_unfollowed =
            self.is_passing() && number > self.followed_heads.load(Ordering::Relaxed);
        (number, is_unfollowed.then_some(HeadRefusal::Unfollowed))
    }

    /// Whether the answer to request `number` must be the connection's
    /// last: the reader stopped following at that request or before it.
    /// Earlier requests, read whole before it stopped (pipelined), are
    /// answered as usual.
    pub(crate) fn ends_connection(&self, number: u64) -> bool {
        self.is_passing() && number >= self.followed_heads.load(Ordering::Relaxed)
    }

    fn is_passing(&self) -> bool {
        self.passing.load(Ordering::Acquire)
    }

    /// The reader stopped following after `heads` heads.
    fn pass_after(&self, heads: u64) {
        self.followed_heads.store(heads, Ordering::Relaxed);
        self.passing.store(true, Ordering::Release);
    }

    /// Whether the reader refused a chunked body on this connection.
    pub(crate) fn body_refused(&self) -> bool {
        self.body_refused.load(Ordering::Acquire)
    }

    /// The first refused head, by request number, and why.
    fn first(&self) -> Option<(u64, HeadRefusal)> {
        let request = self.request.load(Ordering::Acquire);
        let why = HeadRefusal::from_code(self.why.load(Ordering::Relaxed))?;
        (request > 0).then_some((request, why))
    }

    fn record(&self, request: u64, why: HeadRefusal) {
        self.why.store(why.code(), Ordering::Relaxed);
        self.request.store(request, Ordering::Release);
    }
}

/// The reader's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Longest head (request line, fields, line ends, and any empty lines
    /// before the request line, which hyper counts too).
    pub(crate) head_bytes: usize,
    /// Most header fields in a head.
    pub(crate) fields: usize,
    /// Longest trailer section.
    pub(crate) trailer_bytes: usize,
}

impl Bounds {
    /// The longest request line: the head's bound, and hyper's URI cap.
    pub(crate) fn request_line_bytes(&self) -> usize {
        self.head_bytes.min(HYPER_MAX_URI_BYTES)
    }

    /// What hyper must accept for every head the reader shows it: the head
    /// bound plus the line end the reader adds when it cuts a head short.
    pub(crate) fn hyper_head_bytes(&self) -> usize {
        self.head_bytes + 2
    }
}

/// What hyper is shown of one read, in order: `released`, then the first
/// `passed` bytes of the read, then `injected`. Whatever else the read
/// held is kept back (an incomplete head line) or dropped (after a refusal).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Shown {
    /// Bytes held back by earlier reads, now complete lines.
    pub(crate) released: Vec<u8>,
    /// How many bytes from the start of this read.
    pub(crate) passed: usize,
    /// The end of a head cut short (or a stand-in request line and end).
    pub(crate) injected: Vec<u8>,
}

impl Shown {
    /// Whether hyper sees exactly the `read` bytes that came in.
    pub(crate) fn is_unchanged(&self, read: usize) -> bool {
        self.passed == read && self.released.is_empty() && self.injected.is_empty()
    }
}

/// Where in the stream the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting a request head.
    Head,
    /// This many bytes of a body with a length are still to come.
    Body(u64),
    /// In a chunk-size line.
    ChunkLine(SizeLine),
    /// This many bytes of chunk data are still to come.
    ChunkData(u64),
    /// The CRLF after chunk data.
    DataEnd(DataEnd),
    /// After the last chunk: the trailer section.
    Trailers(Trailers),
    /// Not following this connection any more: everything passes.
    Passing,
    /// A head was refused: nothing more is shown.
    HeadRefused,
    /// A chunked body was refused: nothing more is shown, reads fail.
    BodyRefused(ChunkedError),
}

/// Follows the framing of one HTTP/1.1 connection's requests.
#[derive(Debug)]
pub(crate) struct Framing {
    phase: Phase,
    bounds: Bounds,
    /// The head read so far, without the empty lines before its request
    /// line.
    pending: Vec<u8>,
    /// Where the current (incomplete) line starts in `pending`.
    line_start: usize,
    /// Bytes of the current line that earlier reads held back.
    held: usize,
    /// The head's length as hyper counts it (with leading empty lines).
    head_len: usize,
    /// Whether the head's request line is complete.
    has_request_line: bool,
    /// Header fields of the head so far.
    fields: usize,
    /// Chunk-extension bytes of the current body.
    ext_bytes: usize,
    /// Heads hyper has been shown so far (each becomes a request).
    heads: u64,
    found: Arc<Verdicts>,
}

impl Framing {
    pub(crate) fn new(bounds: Bounds, found: Arc<Verdicts>) -> Self {
        Framing {
            phase: Phase::Head,
            bounds,
            pending: Vec::new(),
            line_start: 0,
            held: 0,
            head_len: 0,
            has_request_line: false,
            fields: 0,
            ext_bytes: 0,
            heads: 0,
            found,
        }
    }

    /// Why reads must fail: the chunked body the reader refused.
    pub(crate) fn body_refusal(&self) -> Option<BodyFramingRefused> {
        match self.phase {
            Phase::BodyRefused(why) => Some(BodyFramingRefused(why)),
            _ => None,
        }
    }

    /// Whether a head was refused: nothing the client sends is shown.
    pub(crate) fn is_discarding(&self) -> bool {
        self.phase == Phase::HeadRefused
    }

    /// Follows `input`, the next bytes the client sent: what hyper sees.
    pub(crate) fn read(&mut self, input: &[u8]) -> Shown {
        let mut shown = Shown::default();
        let mut at = 0;
        while at < input.len() {
            match self.phase {
                Phase::HeadRefused | Phase::BodyRefused(_) => break,
                Phase::Passing => at = input.len(),
                Phase::Body(left) | Phase::ChunkData(left) => {
                    let taken = left.min((input.len() - at) as u64);
                    at += taken as usize;
                    let left = left - taken;
                    self.phase = match (self.phase, left) {
                        (Phase::Body(_), 0) => Phase::Head,
                        (Phase::Body(_), _) => Phase::Body(left),
                        (_, 0) => Phase::DataEnd(DataEnd::new()),
                        (_, _) => Phase::ChunkData(left),
                    };
                }
                Phase::ChunkLine(_) | Phase::DataEnd(_) | Phase::Trailers(_) => {
                    if let Err(why) = self.chunked_byte(input[at]) {
                        self.phase = Phase::BodyRefused(why);
                        self.found.body_refused.store(true, Ordering::Release);
                        break;
                    }
                    at += 1;
                }
                Phase::Head => {
                    at = self.head_line(input, at, &mut shown);
                    if self.phase == Phase::Head || self.phase == Phase::HeadRefused {
                        // A head line shows itself when it is complete.
                        continue;
                    }
                }
            }
            shown.passed = at;
        }
        if self.phase == Phase::Head {
            self.held = self.pending.len() - self.line_start;
        }
        shown
    }

    /// One byte of a chunked body's framing.
    fn chunked_byte(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.phase = match self.phase {
            Phase::ChunkLine(mut line) => match line.feed(byte)? {
                Step::More => Phase::ChunkLine(line),
                Step::Size { size, ext_bytes } => {
                    self.ext_bytes += ext_bytes;
                    if self.ext_bytes > chunked::MAX_EXT_BYTES_PER_BODY {
                        return Err(ChunkedError::ExtensionsTooLong);
                    }
                    match size {
                        0 => Phase::Trailers(Trailers::new(
                            self.bounds.trailer_bytes,
                            self.bounds.fields,
                        )),
                        size => Phase::ChunkData(size),
                    }
                }
            },
            Phase::DataEnd(mut end) => match end.feed(byte)? {
                true => Phase::ChunkLine(SizeLine::new()),
                false => Phase::DataEnd(end),
            },
            Phase::Trailers(mut trailers) => match trailers.feed(byte)? {
                true => Phase::Head,
                false => Phase::Trailers(trailers),
            },
            other => other,
        };
        Ok(())
    }

    /// Takes head bytes from `input[at..]` up to the end of the current
    /// line (or of the input); returns where it stopped. A complete line
    /// within the bounds is shown (with what earlier reads held back of
    /// it); a head over a bound is cut short and refused.
    fn head_line(&mut self, input: &[u8], at: usize, shown: &mut Shown) -> usize {
        let rest = &input[at..];
        let line_end = rest.iter().position(|&b| b == b'\n');
        let piece = &rest[..line_end.map_or(rest.len(), |i| i + 1)];
        if let Some(why) = self.over_bound(piece.len()) {
            if !self.has_request_line {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&piece[..piece.len().min(STAND_IN_TARGET_BYTES * 2)]);
                shown.injected = stand_in_request_line(&line);
            }
            self.refuse_head(why, shown);
            return input.len();
        }
        self.pending.extend_from_slice(piece);
        self.head_len += piece.len();
        let end = at + piece.len();
        if line_end.is_none() {
            return end;
        }
        let line = &self.pending[self.line_start..];
        let is_empty = line == b"\r\n" || line == b"\n";
        if !is_empty && self.has_request_line {
            self.fields += 1;
            if self.fields > self.bounds.fields {
                self.refuse_head(HeadRefusal::TooManyFields, shown);
                return input.len();
            }
        }
        // The line is complete and within the bounds: hyper may see it.
        if self.held > 0 {
            let held = self.line_start..self.line_start + self.held;
            shown.released.extend_from_slice(&self.pending[held]);
            self.held = 0;
        }
        shown.passed = end;
        match (is_empty, self.has_request_line) {
            // Empty lines before a request line are skipped (RFC 9112 §2.2).
            (true, false) => self.pending.clear(),
            (true, true) => self.head_ended(),
            (false, _) => self.has_request_line = true,
        }
        self.line_start = self.pending.len();
        end
    }

    /// Whether `more` further bytes of the current line break a bound, and
    /// which one breaks first (the request line's on a tie).
    fn over_bound(&self, more: usize) -> Option<HeadRefusal> {
        let head_at = (self.head_len + more > self.bounds.head_bytes)
            .then(|| self.bounds.head_bytes + 1 - self.head_len);
        let line = self.pending.len() - self.line_start;
        let line_bound = self.bounds.request_line_bytes();
        let line_at =
            (!self.has_request_line && line + more > line_bound).then(|| line_bound + 1 - line);
        match (head_at, line_at) {
            (Some(head), Some(line)) if head < line => Some(HeadRefusal::TooLarge),
            (_, Some(_)) => Some(HeadRefusal::RequestLineTooLong),
            (Some(_), None) => Some(HeadRefusal::TooLarge),
            (None, None) => None,
        }
    }

    /// Ends the current head short: hyper is shown the lines it already
    /// has (or the stand-in request line already in `shown.injected`) and
    /// an empty line, the service is told why, and nothing more is shown.
    fn refuse_head(&mut self, why: HeadRefusal, shown: &mut Shown) {
        self.heads += 1;
        self.found.record(self.heads, why);
        shown.injected.extend_from_slice(b"\r\n");
        self.phase = Phase::HeadRefused;
        self.pending = Vec::new();
        self.held = 0;
    }

    fn head_ended(&mut self) {
        self.heads += 1;
        let mut fields = vec![httparse::EMPTY_HEADER; self.bounds.fields];
        let mut request = httparse::Request::new(&mut fields);
        let next = match request.parse(&self.pending) {
            Ok(httparse::Status::Complete(_)) => next_phase(&request),
            _ => Err(None),
        };
        self.phase = match next {
            Ok(phase) => phase,
            Err(found) => {
                if let Some(why) = found {
                    self.found.record(self.heads, why);
                }
                self.found.pass_after(self.heads);
                Phase::Passing
            }
        };
        self.pending.clear();
        if self.pending.capacity() > KEEP_CAPACITY {
            self.pending.shrink_to(KEEP_CAPACITY);
        }
        self.head_len = 0;
        self.has_request_line = false;
        self.fields = 0;
        self.ext_bytes = 0;
    }
}

/// A request line hyper accepts in place of one too long to show: the
/// client's method and the start of its target, so that the audit line
/// names them. Without a method that is a token (nothing but empty lines,
/// or garbage) it is a line hyper refuses as malformed (its bare 400, like
/// any malformed head), never an invented request.
fn stand_in_request_line(line: &[u8]) -> Vec<u8> {
    let method_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let method = &line[..method_len];
    if method.is_empty()
        || method_len == line.len()
        || method.len() > STAND_IN_METHOD_BYTES
        || !method.iter().all(|&b| chunked::is_tchar(b))
    {
        return b"\0\r\n".to_vec();
    }
    let after = line.get(method_len + 1..).unwrap_or_default();
    let target_len = after
        .iter()
        .take(STAND_IN_TARGET_BYTES)
        .position(|&b| !(0x21..=0x7e).contains(&b))
        .unwrap_or(after.len().min(STAND_IN_TARGET_BYTES));
    let target: &[u8] = match &after[..target_len] {
        [] => b"/",
        target => target,
    };
    [method, b" ", target, b" HTTP/1.1\r\n"].concat()
}

/// What follows a parsed head: its body's framing, or (as the error) the
/// end of the following, with the refusal that ended it if there was one.
fn next_phase(request: &httparse::Request<'_, '_>) -> Result<Phase, Option<HeadRefusal>> {
    let mut lengths = 0usize;
    let mut length = None;
    let mut chunked = None;
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = digits(field.value);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides (hyper refuses anything else).
            let last = field.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if field.name.eq_ignore_ascii_case("upgrade") {
            return Err(None);
        }
    }
    if chunked.is_some() && lengths > 0 {
        return Err(Some(HeadRefusal::LengthAndChunked));
    }
    if lengths > 1 {
        return Err(Some(HeadRefusal::SeveralLengths));
    }
    if request.method == Some("CONNECT") {
        return Err(None);
    }
    match (chunked, length) {
        (Some(true), _) => Ok(Phase::ChunkLine(SizeLine::new())),
        (None, _) if lengths == 0 => Ok(Phase::Head),
        (None, Some(0)) => Ok(Phase::Head),
        (None, Some(bytes)) => Ok(Phase::Body(bytes)),
        // hyper refuses these heads and closes the connection.
        (Some(false), _) | (None, None) => Err(None),
    }
}

/// A `Content-Length` value as hyper reads it: ASCII digits only.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}
