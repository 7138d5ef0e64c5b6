//! A chunked request body as RFC 9112 §7.1 writes it, checked byte by byte
//! so that the reader can stop the stream at the first byte that breaks
//! the grammar, before hyper has seen a complete bad line.
//!
//! ```text
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF ) CRLF
//! ```
//!
//! What the gateway accepts, precisely:
//!
//! * a chunk size of 1 to [`MAX_SIZE_DIGITS`] hex digits (leading zeros
//!   count), nothing before it;
//! * whitespace (SP, HTAB) only where the grammar's BWS allows it: before a
//!   `;`, after a `;`, around an `=` — never at the end of the line, so
//!   `2 ` followed by CRLF is refused;
//! * extension names and token values of `tchar`s, quoted values with
//!   `qdtext` and `quoted-pair`s; at most [`MAX_EXT_BYTES_PER_LINE`] bytes of
//!   extensions on one line and [`MAX_EXT_BYTES_PER_BODY`] in one body;
//! * every line ended by CRLF (no bare LF, no CR without LF), and the chunk
//!   data followed by exactly CRLF;
//! * no control byte anywhere (NUL, DEL, any C0 byte other than HTAB);
//! * a trailer section of `token ":" value` lines (no obs-fold), bounded like
//!   a head: at most the policy's `max_header_bytes` bytes and
//!   `max_header_count` fields.

/// Most hex digits in a chunk size: 16 cover any `u64`.
pub(crate) const MAX_SIZE_DIGITS: u8 = 16;

/// Most bytes of chunk extensions on one chunk-size line.
pub(crate) const MAX_EXT_BYTES_PER_LINE: usize = 1024;

/// Most bytes of chunk extensions over one body (hyper's own cap is 16 KiB;
/// this one answers first, with the gateway's reason).
pub(crate) const MAX_EXT_BYTES_PER_BODY: usize = 8 * 1024;

pub(crate) use crate::conn::ChunkedError;

/// A byte RFC 9110 calls a control: C0 other than HTAB, and DEL.
fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

fn is_space(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Where in a chunk-size line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// In the size's digits.
    Digits,
    /// BWS after the size or a value: a `;` must follow.
    SpaceBeforeSemicolon,
    /// After `;` (and BWS): an extension name must follow.
    AfterSemicolon,
    /// In an extension name.
    Name,
    /// BWS after a name: `=` or `;` must follow.
    SpaceAfterName,
    /// After `=` (and BWS): a value must follow.
    AfterEquals,
    /// In a token value.
    Token,
    /// In a quoted value.
    Quoted,
    /// After a backslash in a quoted value.
    Escaped,
    /// Right after a quoted value.
    AfterQuoted,
    /// After CR: LF must follow.
    Cr,
}

/// A chunk-size line being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SizeLine {
    at: At,
    digits: u8,
    size: u64,
    ext_bytes: usize,
}

/// What one byte did to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The line goes on.
    More,
    /// The line ended (CRLF): the chunk's size and its extension bytes.
    Size { size: u64, ext_bytes: usize },
}

impl SizeLine {
    pub(crate) fn new() -> Self {
        SizeLine {
            at: At::Digits,
            digits: 0,
            size: 0,
            ext_bytes: 0,
        }
    }

    /// Takes the line's next byte.
    pub(crate) fn feed(&mut self, byte: u8) -> Result<Step, ChunkedError> {
        if self.at == At::Cr {
            return match byte {
                b'\n' => Ok(Step::Size {
                    size: self.size,
                    ext_bytes: self.ext_bytes,
                }),
                _ => Err(ChunkedError::LineEnd),
            };
        }
        match byte {
            b'\n' => return Err(ChunkedError::LineEnd),
            b'\r' => return self.carriage_return(),
            _ => {}
        }
        if self.at != At::Digits {
            self.ext_bytes += 1;
            if self.ext_bytes > MAX_EXT_BYTES_PER_LINE {
                return Err(ChunkedError::ExtensionsTooLong);
            }
        }
        if is_control(byte) {
            return Err(ChunkedError::ControlByte);
        }
        self.at = self.next(byte)?;
        Ok(Step::More)
    }

    fn carriage_return(&mut self) -> Result<Step, ChunkedError> {
        match self.at {
            At::Digits if self.digits == 0 => Err(ChunkedError::NotHex),
            At::Digits | At::Name | At::Token | At::AfterQuoted => {
                self.at = At::Cr;
                Ok(Step::More)
            }
            At::SpaceBeforeSemicolon | At::SpaceAfterName => Err(ChunkedError::Whitespace),
            At::AfterSemicolon | At::AfterEquals => Err(ChunkedError::Extension),
            At::Quoted | At::Escaped => Err(ChunkedError::ControlByte),
            At::Cr => Err(ChunkedError::LineEnd),
        }
    }

    /// The state after a byte that is neither CR, LF nor a control.
    fn next(&mut self, byte: u8) -> Result<At, ChunkedError> {
        use ChunkedError::{Extension, NotHex, TooManyDigits, Whitespace};
        let space = is_space(byte);
        Ok(match self.at {
            At::Digits => match byte {
                _ if byte.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > MAX_SIZE_DIGITS {
                        return Err(TooManyDigits);
                    }
                    let digit = (byte as char).to_digit(16).unwrap_or(0);
                    self.size = (self.size << 4) | u64::from(digit);
                    At::Digits
                }
                b';' if self.digits > 0 => At::AfterSemicolon,
                _ if space && self.digits > 0 => At::SpaceBeforeSemicolon,
                _ => return Err(NotHex),
            },
            At::SpaceBeforeSemicolon => match byte {
                b';' => At::AfterSemicolon,
                _ if space => At::SpaceBeforeSemicolon,
                _ => return Err(Whitespace),
            },
            At::AfterSemicolon => match byte {
                _ if space => At::AfterSemicolon,
                _ if is_tchar(byte) => At::Name,
                _ => return Err(Extension),
            },
            At::Name => match byte {
                b'=' => At::AfterEquals,
                b';' => At::AfterSemicolon,
                _ if space => At::SpaceAfterName,
                _ if is_tchar(byte) => At::Name,
                _ => return Err(Extension),
            },
            At::SpaceAfterName => match byte {
                b'=' => At::AfterEquals,
                b';' => At::AfterSemicolon,
                _ if space => At::SpaceAfterName,
                _ => return Err(Whitespace),
            },
            At::AfterEquals => match byte {
                b'"' => At::Quoted,
                _ if space => At::AfterEquals,
                _ if is_tchar(byte) => At::Token,
                _ => return Err(Extension),
            },
            At::Token => match byte {
                b';' => At::AfterSemicolon,
                _ if space => At::SpaceBeforeSemicolon,
                _ if is_tchar(byte) => At::Token,
                _ => return Err(Extension),
            },
            // qdtext and quoted-pair: any byte but controls (refused above).
            At::Quoted => match byte {
                b'"' => At::AfterQuoted,
                b'\\' => At::Escaped,
                _ => At::Quoted,
            },
            At::Escaped => At::Quoted,
            At::AfterQuoted => match byte {
                b';' => At::AfterSemicolon,
                _ if space => At::SpaceBeforeSemicolon,
                _ => return Err(Extension),
            },
            At::Cr => return Err(ChunkedError::LineEnd),
        })
    }
}

/// The CRLF after a chunk's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataEnd {
    seen_cr: bool,
}

impl DataEnd {
    pub(crate) fn new() -> Self {
        DataEnd { seen_cr: false }
    }

    /// Takes the next byte; `true` once the CRLF is complete.
    pub(crate) fn feed(&mut self, byte: u8) -> Result<bool, ChunkedError> {
        match (self.seen_cr, byte) {
            (false, b'\r') => {
                self.seen_cr = true;
                Ok(false)
            }
            (true, b'\n') => Ok(true),
            _ => Err(ChunkedError::DataNotEnded),
        }
    }
}

/// Where in a trailer line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailerAt {
    LineStart,
    Name,
    Value,
    /// CR after a field.
    FieldCr,
    /// CR on an empty line: the section ends with the LF.
    EndCr,
}

/// The trailer section after the last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailers {
    at: TrailerAt,
    bytes: usize,
    fields: usize,
    max_bytes: usize,
    max_fields: usize,
}

impl Trailers {
    pub(crate) fn new(max_bytes: usize, max_fields: usize) -> Self {
        Trailers {
            at: TrailerAt::LineStart,
            bytes: 0,
            fields: 0,
            max_bytes,
            max_fields,
        }
    }

    /// Takes the next byte; `true` once the section has ended.
    pub(crate) fn feed(&mut self, byte: u8) -> Result<bool, ChunkedError> {
        use ChunkedError::{ControlByte, LineEnd, TrailerField, TrailersTooLarge};
        self.bytes += 1;
        if self.bytes > self.max_bytes {
            return Err(TrailersTooLarge);
        }
        self.at = match (self.at, byte) {
            (TrailerAt::EndCr, b'\n') => return Ok(true),
            (TrailerAt::FieldCr, b'\n') => {
                self.fields += 1;
                if self.fields > self.max_fields {
                    return Err(TrailersTooLarge);
                }
                TrailerAt::LineStart
            }
            (TrailerAt::EndCr | TrailerAt::FieldCr, _) | (_, b'\n') => return Err(LineEnd),
            (TrailerAt::LineStart, b'\r') => TrailerAt::EndCr,
            (TrailerAt::Value, b'\r') => TrailerAt::FieldCr,
            (_, b'\r') => return Err(TrailerField),
            (_, _) if is_control(byte) => return Err(ControlByte),
            (TrailerAt::LineStart | TrailerAt::Name, _) if is_tchar(byte) => TrailerAt::Name,
            (TrailerAt::Name, b':') => TrailerAt::Value,
            // obs-fold, an empty name, a bad name byte
            (TrailerAt::LineStart | TrailerAt::Name, _) => return Err(TrailerField),
            (TrailerAt::Value, _) => TrailerAt::Value,
        };
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a whole chunk-size line: its size, or the first error.
    fn line(text: &[u8]) -> Result<u64, ChunkedError> {
        let mut line = SizeLine::new();
        for (i, &byte) in text.iter().enumerate() {
            if let Step::Size { size, .. } = line.feed(byte)? {
                assert_eq!(i + 1, text.len(), "ended early: {text:?}");
                return Ok(size);
            }
        }
        panic!("did not end: {text:?}");
    }

    #[test]
    fn well_formed_lines_give_their_size() {
        let cases: [(&[u8], u64); 10] = [
            (b"0\r\n", 0),
            (b"2\r\n", 2),
            (b"00000000000000ff\r\n", 255),
            (b"ffffffffffffffff\r\n", u64::MAX),
            (b"A;ext\r\n", 10),
            (b"a;name=value\r\n", 10),
            (b"1 ; a = b ;c\r\n", 1),
            (b"1;a=\"q \\\" ;\t\x80\"\r\n", 1),
            (b"1;a=\"\";b=c\r\n", 1),
            (b"1\t;a\t=\t\"x\"\t;b\r\n", 1),
        ];
        for (text, size) in cases {
            assert_eq!(line(text), Ok(size), "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn lenient_lines_are_refused_with_their_reason() {
        use ChunkedError::*;
        let too_long_ext = format!("1;a={}\r\n", "v".repeat(MAX_EXT_BYTES_PER_LINE));
        let cases: [(&[u8], ChunkedError); 22] = [
            (b"2 \r\n", Whitespace),
            (b"2\t\r\n", Whitespace),
            (b"2;a \r\n", Whitespace),
            (b"2;a=b \r\n", Whitespace),
            (b"2;a\0b\r\n", ControlByte),
            (b"2;a=\"\0\"\r\n", ControlByte),
            (b"2;a=\x7f\r\n", ControlByte),
            (b"2\n", LineEnd),
            (b"2;a\n", LineEnd),
            (b"2\rx", LineEnd),
            (b"\r\n", NotHex),
            (b" 2\r\n", NotHex),
            (b"0x5\r\n", NotHex),
            (b"-5\r\n", NotHex),
            (b"+5\r\n", NotHex),
            (b"5 5\r\n", Whitespace),
            (b"00000000000000000\r\n", TooManyDigits),
            (b"2;\r\n", Extension),
            (b"2;=b\r\n", Extension),
            (b"2;a=\r\n", Extension),
            (b"2;a=b=c\r\n", Extension),
            (too_long_ext.as_bytes(), ExtensionsTooLong),
        ];
        for (text, why) in cases {
            assert_eq!(line(text), Err(why), "{:?}", String::from_utf8_lossy(text));
        }
        assert_eq!(line(b"2;a=\"x\"y\r\n"), Err(Extension));
        assert_eq!(line(b"2;a=\"x\r\n"), Err(ControlByte));
    }

    #[test]
    fn every_reason_has_its_own_detail() {
        let details: std::collections::HashSet<_> =
            ChunkedError::ALL.iter().map(|e| e.detail()).collect();
        assert_eq!(details.len(), ChunkedError::ALL.len());
    }

    fn trailers(text: &[u8]) -> Result<bool, ChunkedError> {
        let mut trailers = Trailers::new(64, 2);
        let mut ended = false;
        for &byte in text {
            assert!(!ended, "bytes after the end: {text:?}");
            ended = trailers.feed(byte)?;
        }
        Ok(ended)
    }

    #[test]
    fn trailers_are_field_lines_within_bounds() {
        assert_eq!(trailers(b"\r\n"), Ok(true));
        assert_eq!(trailers(b"X-Sum: 1\r\nY:\t2 3\r\n\r\n"), Ok(true));
        assert_eq!(trailers(b"X-Sum: 1\r\n"), Ok(false));
        use ChunkedError::*;
        let cases: [(&[u8], ChunkedError); 8] = [
            (b"X: 1\n\r\n", LineEnd),
            (b"\n", LineEnd),
            (b"X: a\0b\r\n\r\n", ControlByte),
            (b" X: 1\r\n\r\n", TrailerField),
            (b"X 1\r\n\r\n", TrailerField),
            (b": 1\r\n\r\n", TrailerField),
            (b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", TrailersTooLarge),
            (&[b'x'; 65], TrailersTooLarge),
        ];
        for (text, why) in cases {
            assert_eq!(
                trailers(text),
                Err(why),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn chunk_data_must_end_with_crlf() {
        let mut end = DataEnd::new();
        assert_eq!(end.feed(b'\r'), Ok(false));
        assert_eq!(end.feed(b'\n'), Ok(true));
        assert_eq!(DataEnd::new().feed(b'X'), Err(ChunkedError::DataNotEnded));
        assert_eq!(DataEnd::new().feed(b'\n'), Err(ChunkedError::DataNotEnded));
    }
}
