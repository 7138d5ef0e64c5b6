//! Where an answer's body ends: cut from the bytes read so far, as its head
//! framed it (`head.rs`). Chunked bodies are decoded (chunk sizes with
//! `httparse`'s parser, extensions ignored, trailers read and dropped, each
//! within a bound); nothing past the body's end is ever taken as body.

use bytes::{Buf, Bytes, BytesMut};

use super::Invalid;

/// How an answer's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// None: an answer to `HEAD`, a 1xx, 204 or 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Whatever comes until the upstream closes the connection.
    UntilClose,
}

/// The longest chunk-size line (with extensions) and the most trailer
/// bytes taken before the answer is refused: a peer that sends more is
/// not framing a body.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// The body decoder's place in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of a `Content-Length` body are still to come.
    Length(u64),
    /// A chunk-size line is next.
    Size,
    /// This many bytes of a chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// Trailer lines, this many bytes of them taken so far.
    Trailers(usize),
    UntilClose,
    Done,
}

/// What one step of decoding found.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Body bytes.
    Data(Bytes),
    /// More bytes must be read first.
    More,
    /// The body has ended; what is left in the buffer is not part of it.
    Done,
}

#[derive(Debug)]
pub(crate) struct Decoder(State);

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Decoder {
        Decoder(match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Size,
            Framing::UntilClose => State::UntilClose,
        })
    }

    /// Takes the next piece of body from the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, Invalid> {
        loop {
            match self.0 {
                State::Done => return Ok(Step::Done),
                State::Length(left) => {
                    return Ok(self.counted(buf, left, State::Length, State::Done))
                }
                State::UntilClose => {
                    return Ok(match take(buf, u64::MAX) {
                        Some(data) => Step::Data(data),
                        None => Step::More,
                    });
                }
                State::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((line, size))) => {
                        buf.advance(line);
                        self.0 = if size == 0 {
                            State::Trailers(0)
                        } else {
                            State::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_CHUNK_LINE => {
                        return Ok(Step::More)
                    }
                    _ => return Err(Invalid::Chunk),
                },
                State::Data(left) => {
                    return Ok(self.counted(buf, left, State::Data, State::DataEnd))
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Invalid::Chunk);
                    }
                    buf.advance(2);
                    self.0 = State::Size;
                }
                State::Trailers(taken) => {
                    let Some(end) = buf.windows(2).position(|pair| pair == b"\r\n") else {
                        if taken + buf.len() > MAX_TRAILERS {
                            return Err(Invalid::Chunk);
                        }
                        return Ok(Step::More);
                    };
                    let taken = taken + end + 2;
                    if taken > MAX_TRAILERS {
                        return Err(Invalid::Chunk);
                    }
                    buf.advance(end + 2);
                    self.0 = if end == 0 {
                        State::Done
                    } else {
                        State::Trailers(taken)
                    };
                }
            }
        }
    }

    /// Up to `left` bytes of a counted stretch (a body's length, a
    /// chunk's data); the state after is `more` of what is left, or
    /// `then` when nothing is.
    fn counted(
        &mut self,
        buf: &mut BytesMut,
        left: u64,
        more: fn(u64) -> State,
        then: State,
    ) -> Step {
        let Some(data) = take(buf, left) else {
            return Step::More;
        };
        let left = left - data.len() as u64;
        self.0 = if left == 0 { then } else { more(left) };
        Step::Data(data)
    }

    /// Whether the body has been taken to its end.
    pub(crate) fn is_done(&self) -> bool {
        self.0 == State::Done
    }

    /// Whether the connection closing now ends the body (rather than
    /// cutting it short).
    pub(crate) fn ends_at_close(&self) -> bool {
        matches!(self.0, State::UntilClose | State::Done)
    }

    /// How many body bytes are still to come, when that is known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.0 {
            State::Length(left) => Some(left),
            State::Done => Some(0),
            _ => None,
        }
    }
}

/// Up to `most` bytes from the front of `buf`; `None` when it is empty.
fn take(buf: &mut BytesMut, most: u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    let len = usize::try_from(most).map_or(buf.len(), |most| most.min(buf.len()));
    Some(buf.split_to(len).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` one byte at a time (the worst split there is) and
    /// collects the body and what was left after it.
    fn decode_bytewise(
        framing: Framing,
        input: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>, bool), Invalid> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut rest = input.iter();
        loop {
            match decoder.decode(&mut buf)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::Done => {
                    let mut left = buf.to_vec();
                    left.extend(rest);
                    return Ok((body, left, true));
                }
                Step::More => match rest.next() {
                    Some(byte) => buf.extend_from_slice(&[*byte]),
                    None => return Ok((body, buf.to_vec(), false)),
                },
            }
        }
    }

    /// Feeds `input` at once.
    fn decode_whole(framing: Framing, input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), Invalid> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::from(input);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::Done => return Ok((body, buf.to_vec(), true)),
                Step::More => return Ok((body, buf.to_vec(), false)),
            }
        }
    }

    fn both(framing: Framing, input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), Invalid> {
        let whole = decode_whole(framing, input);
        assert_eq!(whole, decode_bytewise(framing, input), "{input:?}");
        whole
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        assert_eq!(
            both(Framing::Length(5), b"hello, next answer"),
            Ok((b"hello".to_vec(), b", next answer".to_vec(), true))
        );
        assert_eq!(
            both(Framing::Length(5), b"hel"),
            Ok((b"hel".to_vec(), vec![], false))
        );
        assert_eq!(
            both(Framing::Empty, b"xyz"),
            Ok((vec![], b"xyz".to_vec(), true))
        );
        assert_eq!(both(Framing::Length(0), b""), Ok((vec![], vec![], true)));
    }

    #[test]
    fn chunks_are_decoded_with_extensions_and_trailers_dropped() {
        let input = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\nHTTP/1.1";
        assert_eq!(
            both(Framing::Chunked, input),
            Ok((
                b"helloabcdefghijklmnopqrstuvwxyz".to_vec(),
                b"HTTP/1.1".to_vec(),
                true
            ))
        );
        assert_eq!(
            both(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\n"),
            Ok((b"abc".to_vec(), vec![], true))
        );
        assert_eq!(
            both(Framing::Chunked, b"3\r\nabc\r\n"),
            Ok((b"abc".to_vec(), vec![], false)),
            "not ended without the last chunk"
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"3\r\nabcd\r\n0\r\n\r\n"[..],
            b"z\r\nabc\r\n",
            b"-3\r\nabc\r\n",
            b"3\r\nabc0\r\n\r\n",
            b"fffffffffffffffffffff\r\n",
        ] {
            assert_eq!(
                decode_whole(Framing::Chunked, bad),
                Err(Invalid::Chunk),
                "{bad:?}"
            );
        }
        let long_line = [b"1;".as_slice(), &[b'a'; MAX_CHUNK_LINE]].concat();
        assert_eq!(
            decode_whole(Framing::Chunked, &long_line),
            Err(Invalid::Chunk)
        );
        let endless_trailer = [b"0\r\n".as_slice(), &[b'a'; MAX_TRAILERS + 1]].concat();
        assert_eq!(
            decode_whole(Framing::Chunked, &endless_trailer),
            Err(Invalid::Chunk)
        );
        let many_trailers = [
            b"0\r\n".as_slice(),
            &b"a: b\r\n".repeat(MAX_TRAILERS / 6 + 1),
        ]
        .concat();
        assert_eq!(
            decode_whole(Framing::Chunked, &many_trailers),
            Err(Invalid::Chunk)
        );
    }

    /// `body` chunked in pieces of `sizes` (cycled), each size line with
    /// `extension`, and `trailers` before the end.
    fn chunked(body: &[u8], sizes: &[usize], extension: bool, trailers: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, after) = rest.split_at((*size).clamp(1, rest.len()));
            out.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
            if extension {
                out.extend_from_slice(b";name=\"v\"");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
            rest = after;
        }
        out.extend_from_slice(b"0\r\n");
        for trailer in trailers {
            out.extend_from_slice(trailer.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Feeds `input` in pieces cut at `cuts` (positions, any order).
    fn decode_in_pieces(
        framing: Framing,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<(Vec<u8>, Vec<u8>, bool), Invalid> {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::new(framing);
        let (mut buf, mut body, mut fed) = (BytesMut::new(), Vec::new(), 0);
        loop {
            match decoder.decode(&mut buf)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::Done => {
                    let mut left = buf.to_vec();
                    left.extend_from_slice(&input[fed..]);
                    return Ok((body, left, true));
                }
                Step::More => match cuts.iter().find(|cut| **cut > fed) {
                    Some(&cut) => {
                        buf.extend_from_slice(&input[fed..cut]);
                        fed = cut;
                    }
                    None => return Ok((body, buf.to_vec(), false)),
                },
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_chunked_body_split_anywhere_decodes_to_itself_and_stops_at_its_end(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            sizes in proptest::collection::vec(1_usize..700, 1..8),
            extension in proptest::bool::ANY,
            trailers in proptest::collection::vec("[a-z]{1,8}: [ -~]{0,20}", 0..3),
            cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..12),
            next in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let mut input = chunked(&body, &sizes, extension, &trailers);
            input.extend_from_slice(&next);
            let decoded = decode_in_pieces(Framing::Chunked, &input, &cuts);
            proptest::prop_assert_eq!(decoded, Ok((body, next, true)));
        }

        #[test]
        fn any_length_body_split_anywhere_stops_at_its_length(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..12),
            next in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let mut input = body.clone();
            input.extend_from_slice(&next);
            let decoded = decode_in_pieces(Framing::Length(body.len() as u64), &input, &cuts);
            proptest::prop_assert_eq!(decoded, Ok((body, next, true)));
        }
    }

    #[test]
    fn a_body_to_the_close_takes_everything() {
        assert_eq!(
            both(Framing::UntilClose, b"all of it"),
            Ok((b"all of it".to_vec(), vec![], false))
        );
        let decoder = Decoder::new(Framing::UntilClose);
        assert!(decoder.ends_at_close());
        assert!(!Decoder::new(Framing::Chunked).ends_at_close());
        assert!(!Decoder::new(Framing::Length(1)).ends_at_close());
    }
}
