//! Decoding a compressed request body while it streams, under a cap.
//!
//! The compressed frames come from [`Limited`] (so the bytes on the wire
//! count against the route's `body_limit`) and are fed to a push decoder
//! whose output goes to a [`CappedSink`]. The sink refuses the first write
//! that would take the decoded total past `max_decoded_bytes`, so a
//! decompression bomb costs at most the cap plus the decoder's own 32 KiB
//! window of memory, never its full decoded size.
//!
//! A failure is recorded on the [`BodyWatch`] as a [`DecodeFailure`] and the
//! stream fails; the forwarder reports it as a body fault (413 / 400) and
//! [`BodyWatch::refine`] turns that into the precise answer.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use flate2::write::GzDecoder;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::{BodyWatch, Limited};
use crate::body::BoxError;
use crate::config::Encoding;
use crate::reject::Rejection;

/// How a body is to be decoded: the route's allowance for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoding {
    /// The one encoding layer of the body.
    pub(crate) encoding: Encoding,
    /// The largest decoded body in bytes.
    pub(crate) max_decoded_bytes: u64,
}

/// Why a compressed body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeFailure {
    /// The decoded body would exceed the cap.
    #[error("decoded request body over the cap of {0} bytes")]
    TooLarge(u64),
    /// Not a valid stream of its encoding (bad header, bad data, bad
    /// checksum, truncated, trailing bytes).
    #[error("compressed request body corrupt")]
    Corrupt,
}

impl DecodeFailure {
    /// The answer for this failure.
    pub(crate) fn rejection(self) -> Rejection {
        match self {
            DecodeFailure::TooLarge(limit) => Rejection::DecodedTooLarge { limit },
            DecodeFailure::Corrupt => Rejection::EncodingCorrupt,
        }
    }
}

/// Where the decoder writes: a buffer that refuses to grow past the cap.
#[derive(Debug)]
struct CappedSink {
    out: Vec<u8>,
    total: u64,
    cap: u64,
    over: bool,
}

impl Write for CappedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let total = self.total.saturating_add(buf.len() as u64);
        if total > self.cap {
            self.over = true;
            return Err(io::Error::other("decoded body over the cap"));
        }
        self.total = total;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A push decoder for one encoding, writing into a [`CappedSink`].
struct Decoder {
    gzip: GzDecoder<CappedSink>,
}

impl Decoder {
    fn new(decoding: Decoding) -> Self {
        let sink = CappedSink {
            out: Vec::new(),
            total: 0,
            cap: decoding.max_decoded_bytes,
            over: false,
        };
        match decoding.encoding {
            Encoding::Gzip => Self {
                gzip: GzDecoder::new(sink),
            },
        }
    }

    /// Decodes one compressed chunk; the decoded bytes so far.
    fn feed(&mut self, mut data: &[u8]) -> Result<Bytes, DecodeFailure> {
        while !data.is_empty() {
            match self.gzip.write(data) {
                // The stream has ended but bytes remain: trailing garbage
                // (or a second gzip member, which is not accepted).
                Ok(0) => return Err(DecodeFailure::Corrupt),
                Ok(n) => data = &data[n..],
                Err(_) => return Err(self.why()),
            }
        }
        self.gzip.flush().map_err(|_| self.why())?;
        Ok(self.take())
    }

    /// Ends the stream: checks it is complete (trailer, checksum, size).
    fn finish(&mut self) -> Result<Bytes, DecodeFailure> {
        self.gzip.try_finish().map_err(|_| self.why())?;
        Ok(self.take())
    }

    fn why(&self) -> DecodeFailure {
        let sink = self.gzip.get_ref();
        if sink.over {
            DecodeFailure::TooLarge(sink.cap)
        } else {
            DecodeFailure::Corrupt
        }
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.gzip.get_mut().out))
    }
}

/// A compressed request body, decoded as it streams.
pub(crate) struct Decoded {
    inner: Limited,
    /// `None` once the stream has ended or failed.
    decoder: Option<Decoder>,
    watch: Arc<BodyWatch>,
}

impl Decoded {
    /// Decodes `inner` as `decoding` says; failures are reported on `watch`.
    pub(crate) fn new(inner: Limited, watch: Arc<BodyWatch>, decoding: Decoding) -> Self {
        Self {
            inner,
            decoder: Some(Decoder::new(decoding)),
            watch,
        }
    }

    /// Records a failure for the forwarder (as a body fault) and for
    /// [`BodyWatch::refine`] (precisely).
    fn fail(&mut self, failure: DecodeFailure) -> BoxError {
        self.decoder = None;
        let _ = self.watch.decode_failure.set(failure);
        let flag = match failure {
            DecodeFailure::TooLarge(_) => &self.watch.exceeded,
            DecodeFailure::Corrupt => &self.watch.malformed,
        };
        flag.store(true, Ordering::Release);
        failure.into()
    }
}

impl HttpBody for Decoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(decoder) = this.decoder.as_mut() else {
                return Poll::Ready(None);
            };
            let decoded = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => decoder.feed(&data),
                    // Trailers describe the compressed message: dropped.
                    Err(_) => continue,
                },
                Some(Err(error)) => {
                    // `Limited` has already said why (limit, broken body).
                    this.decoder = None;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    let last = decoder.finish();
                    this.decoder = None;
                    last
                }
            };
            match decoded {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(failure) => return Poll::Ready(Some(Err(this.fail(failure)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn decoder(cap: u64) -> Decoder {
        Decoder::new(Decoding {
            encoding: Encoding::Gzip,
            max_decoded_bytes: cap,
        })
    }

    /// Feeds `data` in chunks of `chunk` bytes, then finishes.
    fn decode(data: &[u8], chunk: usize, cap: u64) -> Result<Vec<u8>, DecodeFailure> {
        let mut decoder = decoder(cap);
        let mut out = Vec::new();
        for piece in data.chunks(chunk) {
            out.extend_from_slice(&decoder.feed(piece)?);
        }
        out.extend_from_slice(&decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn decodes_in_any_chunking() {
        let text: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let compressed = gzip(&text);
        for chunk in [1, 7, 1024, compressed.len()] {
            assert_eq!(
                decode(&compressed, chunk, 200_000).unwrap(),
                text,
                "{chunk}"
            );
        }
        // Exactly the cap is fine.
        assert_eq!(decode(&compressed, 512, 200_000).unwrap().len(), 200_000);
    }

    #[test]
    fn a_bomb_stops_at_the_cap_without_growing_past_it() {
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let mut decoder = decoder(100_000);
        let mut held = 0usize;
        let mut failure = None;
        for piece in bomb.chunks(16 * 1024) {
            match decoder.feed(piece) {
                Ok(bytes) => held += bytes.len(),
                Err(why) => {
                    failure = Some(why);
                    break;
                }
            }
            // Never more than the cap in the sink.
            assert!(decoder.gzip.get_ref().out.capacity() <= 100_000 + 32 * 1024);
        }
        assert_eq!(failure, Some(DecodeFailure::TooLarge(100_000)));
        assert!(held <= 100_000);
    }

    #[test]
    fn corrupt_truncated_trailing_and_empty_streams_are_corrupt() {
        let good = gzip(b"{\"a\": 1}");
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let mut bad_crc = good.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0x01;
        let truncated = &good[..good.len() - 3];
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        let cases: [(&str, &[u8]); 6] = [
            ("not gzip", b"plain text, not gzip"),
            ("flipped", &flipped),
            ("bad crc", &bad_crc),
            ("truncated", truncated),
            ("trailing", &trailing),
            ("empty", b""),
        ];
        for (name, data) in cases {
            assert_eq!(decode(data, 3, 1000), Err(DecodeFailure::Corrupt), "{name}");
        }
        assert_eq!(decode(&good, 3, 1000).unwrap(), b"{\"a\": 1}");
    }

    #[test]
    fn failures_refine_the_forwarders_answer() {
        let watch = BodyWatch::new(10);
        assert!(matches!(
            watch.refine(Rejection::BodyIncomplete),
            Rejection::BodyIncomplete
        ));
        watch
            .decode_failure
            .set(DecodeFailure::TooLarge(5))
            .unwrap();
        assert!(matches!(
            watch.refine(Rejection::BodyTooLarge { limit: 10 }),
            Rejection::DecodedTooLarge { limit: 5 }
        ));
        // Upstream faults stay upstream faults.
        assert!(matches!(
            watch.refine(Rejection::UpstreamTimeout),
            Rejection::UpstreamTimeout
        ));
    }
}
