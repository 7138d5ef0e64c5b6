//! The framing of HTTP/1.1 requests as the client wrote it.
//!
//! hyper settles a head that carries both `Content-Length` and
//! `Transfer-Encoding` by dropping `Content-Length` (RFC 9112 §6.3), and it
//! folds repeated equal `Content-Length` fields into one, so by the time
//! `policy::shape` sees the request the ambiguity is gone. The gateway
//! refuses such requests instead (a client that sends them is broken or is
//! probing for request smuggling), so it follows the framing itself:
//! [`Framing`] reads the same bytes hyper reads, in the same order — a head,
//! then its body by length or by chunks, then the next head — parses each
//! head with `httparse`, hyper's own parser, and notes the first request
//! whose head was ambiguous. hyper hands the requests of a connection to
//! the service one at a time in that same order; [`Ambiguity::next_request`]
//! numbers them and names the one to refuse.
//!
//! Anything this reader does not follow (a protocol upgrade or tunnel, a
//! head hyper will refuse anyway, a line longer than hyper allows, a chunk
//! size it cannot read) ends the reading for the connection, and with it
//! the connection: the answer being written when the reader gives up closes
//! it, and a request hyper reads after that point is refused
//! ([`Ambiguous::Unfollowed`]), never left to hyper's own rules.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Why a head's framing is ambiguous, as the refusal's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ambiguous {
    /// `Content-Length` and `Transfer-Encoding` together.
    LengthAndChunked,
    /// `Content-Length` more than once (hyper keeps one when they agree).
    SeveralLengths,
    /// A request after the point where the reader stopped following the
    /// connection.
    Unfollowed,
}

impl Ambiguous {
    /// The detail of the 400 envelope.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            Self::SeveralLengths => "several Content-Length values",
            Self::Unfollowed => "sent after a request whose framing was not followed",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::LengthAndChunked => 1,
            Self::SeveralLengths => 2,
            Self::Unfollowed => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::LengthAndChunked),
            2 => Some(Self::SeveralLengths),
            3 => Some(Self::Unfollowed),
            _ => None,
        }
    }
}

/// What the reader found, shared with the connection's service.
#[derive(Debug, Default)]
pub(crate) struct Ambiguity {
    /// The number (from 1) of the first request with an ambiguous head; 0
    /// while there is none.
    request: AtomicU64,
    /// [`Ambiguous::code`] of that request.
    why: AtomicU8,
    /// Requests handed to the service so far.
    served: AtomicU64,
    /// Whether the reader has stopped following the connection.
    stopped: AtomicBool,
    /// Heads read when it stopped: later requests are not followed.
    followed_heads: AtomicU64,
}

impl Ambiguity {
    /// Called by the service once per request, in order: the request's
    /// number (from 1), and why its head was ambiguous, if it was.
    pub(crate) fn next_request(&self) -> (u64, Option<Ambiguous>) {
        let number = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.request.load(Ordering::Acquire) == number {
            return (
                number,
                Ambiguous::from_code(self.why.load(Ordering::Relaxed)),
            );
        }
        let is_unfollowed =
            self.has_stopped() && number > self.followed_heads.load(Ordering::Relaxed);
        (number, is_unfollowed.then_some(Ambiguous::Unfollowed))
    }

    /// Whether the answer to request `number` must be the connection's
    /// last: the reader stopped following at that request or before it.
    /// Earlier requests, read whole before the reader stopped (pipelined),
    /// are answered as usual.
    pub(crate) fn ends_connection(&self, number: u64) -> bool {
        self.has_stopped() && number >= self.followed_heads.load(Ordering::Relaxed)
    }

    fn has_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn stop_after(&self, heads: u64) {
        self.followed_heads.store(heads, Ordering::Relaxed);
        self.stopped.store(true, Ordering::Release);
    }

    /// The first ambiguous request, by number, and why.
    fn first(&self) -> Option<(u64, Ambiguous)> {
        let request = self.request.load(Ordering::Acquire);
        let why = Ambiguous::from_code(self.why.load(Ordering::Relaxed))?;
        (request > 0).then_some((request, why))
    }

    fn record(&self, request: u64, why: Ambiguous) {
        self.why.store(why.code(), Ordering::Relaxed);
        self.request.store(request, Ordering::Release);
    }
}

/// Where in the stream the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting a request head.
    Head,
    /// This many bytes of a body with a length are still to come.
    Body(u64),
    /// Collecting a chunk-size line.
    ChunkLine,
    /// This many bytes of chunk data and its CRLF are still to come.
    ChunkData(u64),
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// Not following this connection any more.
    Stopped,
}

/// Follows the framing of one HTTP/1.1 connection's requests.
#[derive(Debug)]
pub(crate) struct Framing {
    phase: Phase,
    /// The head, chunk-size line or trailer line read so far.
    pending: Vec<u8>,
    /// Complete heads read so far.
    heads: u64,
    /// hyper's bound on a head; also bounds a chunk or trailer line.
    max_head_bytes: usize,
    /// hyper's bound on the number of header fields.
    max_headers: usize,
    found: Arc<Ambiguity>,
}

/// A retained buffer larger than this is given back after its head.
const KEEP_CAPACITY: usize = 4096;

impl Framing {
    pub(crate) fn new(max_head_bytes: usize, max_headers: usize, found: Arc<Ambiguity>) -> Self {
        Framing {
            phase: Phase::Head,
            pending: Vec::new(),
            heads: 0,
            max_head_bytes,
            max_headers,
            found,
        }
    }

    /// Follows `bytes`, the next bytes the client sent.
    pub(crate) fn read(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.phase {
                Phase::Stopped => break,
                Phase::Body(left) | Phase::ChunkData(left) => {
                    let taken = left.min(bytes.len() as u64);
                    bytes = &bytes[taken as usize..];
                    let left = left - taken;
                    self.phase = match (self.phase, left) {
                        (Phase::Body(_), 0) => Phase::Head,
                        (Phase::Body(_), _) => Phase::Body(left),
                        (_, 0) => Phase::ChunkLine,
                        (_, _) => Phase::ChunkData(left),
                    };
                }
                Phase::Head | Phase::ChunkLine | Phase::Trailers => {
                    let line_end = bytes.iter().position(|&b| b == b'\n');
                    let (line, rest) = bytes.split_at(line_end.map_or(bytes.len(), |i| i + 1));
                    bytes = rest;
                    self.pending.extend_from_slice(line);
                    if self.pending.len() > self.max_head_bytes {
                        self.stop();
                    } else if line_end.is_some() {
                        self.line_ended();
                    }
                }
            }
        }
        if self.phase == Phase::Stopped && !self.found.has_stopped() {
            self.found.stop_after(self.heads);
        }
    }

    /// `pending` ends with a line feed.
    fn line_ended(&mut self) {
        match self.phase {
            Phase::Head => {
                if is_empty_line(&self.pending) {
                    // Empty lines before a request line are skipped (RFC 9112 §2.2).
                    self.pending.clear();
                } else if self.pending.ends_with(b"\n\r\n") || self.pending.ends_with(b"\n\n") {
                    self.head_ended();
                }
            }
            Phase::ChunkLine => {
                self.phase = match httparse::parse_chunk_size(&self.pending) {
                    Ok(httparse::Status::Complete((_, 0))) => Phase::Trailers,
                    Ok(httparse::Status::Complete((_, size))) => match size.checked_add(2) {
                        Some(with_crlf) => Phase::ChunkData(with_crlf),
                        None => Phase::Stopped,
                    },
                    _ => Phase::Stopped,
                };
                self.pending.clear();
            }
            Phase::Trailers => {
                if is_empty_line(&self.pending) {
                    self.phase = Phase::Head;
                }
                self.pending.clear();
            }
            Phase::Body(_) | Phase::ChunkData(_) | Phase::Stopped => {}
        }
    }

    fn head_ended(&mut self) {
        self.heads += 1;
        let mut fields = vec![httparse::EMPTY_HEADER; self.max_headers];
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
                Phase::Stopped
            }
        };
        self.pending.clear();
        if self.pending.capacity() > KEEP_CAPACITY {
            self.pending.shrink_to(KEEP_CAPACITY);
        }
    }

    fn stop(&mut self) {
        self.phase = Phase::Stopped;
        self.pending = Vec::new();
    }
}

/// Reads `stream` cut into pieces at `cuts` (offsets, any order, out of
/// range ignored) with hyper's default head bounds: how many heads were read
/// and the first ambiguous request, by number, with its detail. The answer
/// must not depend on the cuts (the fuzz target checks it).
pub(crate) fn follow(stream: &[u8], cuts: &[usize]) -> (u64, Option<(u64, &'static str)>) {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let found = Arc::new(Ambiguity::default());
    let mut framing = Framing::new(16 * 1024, 100, Arc::clone(&found));
    let mut start = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        framing.read(&stream[start..cut]);
        start = cut;
    }
    let first = found.first().map(|(request, why)| (request, why.detail()));
    (framing.heads, first)
}

fn is_empty_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// What follows a parsed head: its body's framing, or (as the error) the
/// end of the reading, with the ambiguity that ended it if there was one.
fn next_phase(request: &httparse::Request<'_, '_>) -> Result<Phase, Option<Ambiguous>> {
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
        return Err(Some(Ambiguous::LengthAndChunked));
    }
    if lengths > 1 {
        return Err(Some(Ambiguous::SeveralLengths));
    }
    if request.method == Some("CONNECT") {
        return Err(None);
    }
    match (chunked, length) {
        (Some(true), _) => Ok(Phase::ChunkLine),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(chunks: &[&[u8]]) -> (Framing, Arc<Ambiguity>) {
        let found = Arc::new(Ambiguity::default());
        let mut framing = Framing::new(8192, 100, Arc::clone(&found));
        for chunk in chunks {
            framing.read(chunk);
        }
        (framing, found)
    }

    /// What the service would be told for the first `count` requests.
    fn verdicts(found: &Ambiguity, count: usize) -> Vec<Option<Ambiguous>> {
        (0..count).map(|_| found.next_request().1).collect()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn both_length_and_chunked_is_found_in_either_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        ] {
            let (framing, found) = follow(&[head, b"0\r\n\r\n"]);
            assert_eq!(framing.phase, Phase::Stopped);
            assert_eq!(verdicts(&found, 1), [Some(Ambiguous::LengthAndChunked)]);
        }
    }

    #[test]
    fn repeated_equal_lengths_are_found() {
        let head =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        let (_, found) = follow(&[head]);
        assert_eq!(verdicts(&found, 1), [Some(Ambiguous::SeveralLengths)]);
    }

    #[test]
    fn the_ambiguous_request_is_numbered_after_bodies_of_both_kinds() {
        // A request with a length, a chunked one with a trailer, a bodiless
        // one, then the ambiguous one: pipelined and split at awkward places.
        let stream: Vec<u8> = [
            &b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"[..],
            b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"4;ext=1\r\nwxyz\r\n3\r\na\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
            GET,
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]
        .concat();
        for split in [1, 2, 3, 7, 64, stream.len()] {
            let chunks: Vec<&[u8]> = stream.chunks(split).collect();
            let (framing, found) = follow(&chunks);
            assert_eq!(framing.heads, 4, "split {split}");
            assert_eq!(
                verdicts(&found, 5),
                [
                    None,
                    None,
                    None,
                    Some(Ambiguous::LengthAndChunked),
                    Some(Ambiguous::Unfollowed)
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn body_bytes_that_look_like_a_head_are_not_read_as_one() {
        let smuggled = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        );
        let chunked = format!("{:x}\r\n", smuggled.len());
        let (framing, found) = follow(&[
            head.as_bytes(),
            smuggled,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunked.as_bytes(),
            smuggled,
            b"\r\n0\r\n\r\n",
            GET,
        ]);
        assert_eq!(framing.phase, Phase::Head);
        assert_eq!(framing.heads, 3);
        assert_eq!(verdicts(&found, 3), [None, None, None]);
    }

    #[test]
    fn what_it_cannot_follow_stops_it_and_refuses_what_comes_after() {
        let cases: [&[u8]; 5] = [
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ];
        for case in cases {
            let (framing, found) = follow(&[case, GET]);
            assert_eq!(
                framing.phase,
                Phase::Stopped,
                "{:?}",
                String::from_utf8_lossy(case)
            );
            assert!(found.ends_connection(1));
            // The head it stopped at is left to the policy (or to hyper,
            // which refuses the malformed ones); anything after is refused.
            assert_eq!(
                verdicts(&found, 3),
                [
                    None,
                    Some(Ambiguous::Unfollowed),
                    Some(Ambiguous::Unfollowed)
                ]
            );
        }
    }

    #[test]
    fn a_followed_connection_never_counts_as_stopped() {
        let (framing, found) =
            follow(&[GET, GET, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"]);
        assert_eq!(framing.phase, Phase::Head);
        assert!(!found.ends_connection(3));
        assert_eq!(verdicts(&found, 3), [None, None, None]);
    }

    #[test]
    fn requests_read_whole_before_it_stopped_are_answered_as_usual() {
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        let (_, found) = follow(&[GET, GET, upgrade, GET]);
        let ends: Vec<bool> = (1..=4).map(|n| found.ends_connection(n)).collect();
        assert_eq!(ends, [false, false, true, true]);
        assert_eq!(
            verdicts(&found, 4),
            [None, None, None, Some(Ambiguous::Unfollowed)]
        );
    }

    #[test]
    fn a_head_longer_than_hyper_allows_stops_it() {
        let found = Arc::new(Ambiguity::default());
        let mut framing = Framing::new(64, 100, Arc::clone(&found));
        framing.read(b"GET / HTTP/1.1\r\nX-Long: ");
        framing.read(&[b'a'; 64]);
        assert_eq!(framing.phase, Phase::Stopped);
        assert!(found.ends_connection(1));
        assert!(framing.pending.capacity() == 0);
    }

    #[test]
    fn more_fields_than_allowed_stop_it() {
        let found = Arc::new(Ambiguity::default());
        let mut framing = Framing::new(8192, 2, Arc::clone(&found));
        framing.read(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(framing.phase, Phase::Stopped);
    }
}
