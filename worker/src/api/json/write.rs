//! Reply bodies through serde_json, written as Flask wrote them: compact,
//! keys sorted, ASCII-only (everything outside `' '..='~'` as `\uXXXX`
//! UTF-16 escapes), floats as Python's `repr` (`15.0`, `1e+16`, `-0.0`),
//! one trailing newline.
//!
//! serde_json writes non-finite floats as `null`; the legacy wrote invalid
//! JSON (`NaN`) there. We do neither: [`JsonValue`] floats and [`Finite`]
//! numbers refuse to serialise when not finite, and [`to_body`] reports
//! [`NonFinite`] so that the API answers 400 instead (`docs/quirks.md`,
//! H-7).

use std::io;

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::ser::Formatter;

use super::JsonValue;
use crate::analysis::num::py_repr;

/// A non-finite float met while writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite;

/// Serialises `value` as a reply body: compact, sorted, ASCII JSON and a
/// newline.
pub fn to_body(value: &impl Serialize) -> Result<Vec<u8>, NonFinite> {
    let mut body = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut body, PythonFormatter);
    value.serialize(&mut serializer).map_err(|_| NonFinite)?;
    body.push(b'\n');
    Ok(body)
}

/// A float that must be finite to be written (Python `repr` text).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finite(pub f64);

impl Serialize for Finite {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.0.is_finite() {
            return Err(S::Error::custom("a non-finite float cannot be written"));
        }
        serializer.serialize_f64(self.0)
    }
}

impl Serialize for JsonValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::Int(value) => serializer.serialize_i128(*value),
            Self::BigInt(digits) => serde_json::value::RawValue::from_string(digits.clone())
                .map_err(S::Error::custom)?
                .serialize(serializer),
            Self::Float(value) => Finite(*value).serialize(serializer),
            Self::String(text) => serializer.serialize_str(text),
            Self::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(members) => {
                let mut sorted: Vec<&(String, JsonValue)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let mut map = serializer.serialize_map(Some(sorted.len()))?;
                for (key, value) in sorted {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

/// serde_json's compact formatter with Python's float text and
/// `ensure_ascii` string escaping. serde_json itself escapes `"`, `\` and
/// the control characters below U+0020 as Python does (short forms for
/// `\b \f \n \r \t`, lower-case `\u00XX` otherwise); this adds the rest.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(py_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.bytes().all(|byte| byte <= b'~') {
            return writer.write_all(fragment.as_bytes());
        }
        let mut plain_from = 0;
        for (at, c) in fragment.char_indices() {
            if c <= '~' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[plain_from..at])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            plain_from = at + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[plain_from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &JsonValue) -> String {
        String::from_utf8(to_body(value).unwrap()).unwrap()
    }

    #[test]
    fn strings_are_escaped_like_python_ensure_ascii() {
        let value = JsonValue::string("a\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é😀/\\\"");
        assert_eq!(
            text(&value),
            "\"a\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\u00e9\\ud83d\\ude00/\\\\\\\"\"\n"
        );
    }

    #[test]
    fn numbers_keep_python_types_and_text() {
        let big = "-123456789012345678901234567890123456789012345";
        let value = JsonValue::Array(vec![
            JsonValue::int(-7),
            JsonValue::Int(i128::MAX),
            JsonValue::BigInt(big.into()),
            JsonValue::float(0.1),
            JsonValue::float(1e-5),
            JsonValue::float(2.5e20),
        ]);
        assert_eq!(
            text(&value),
            format!("[-7,{},{big},0.1,1e-05,2.5e+20]\n", i128::MAX)
        );
    }

    #[test]
    fn non_finite_numbers_are_refused_anywhere() {
        let nested =
            JsonValue::object([("a", JsonValue::Array(vec![JsonValue::float(f64::INFINITY)]))]);
        assert_eq!(to_body(&nested), Err(NonFinite));
        assert_eq!(to_body(&Finite(f64::NAN)), Err(NonFinite));
        assert_eq!(to_body(&Finite(-0.0)).unwrap(), b"-0.0\n");
    }

    #[test]
    fn object_keys_are_sorted_by_code_point() {
        let value = JsonValue::object([
            ("b", JsonValue::Null),
            ("B", JsonValue::Null),
            ("a", JsonValue::Null),
            ("é", JsonValue::Null),
        ]);
        assert_eq!(
            text(&value),
            "{\"B\":null,\"a\":null,\"b\":null,\"\\u00e9\":null}\n"
        );
    }
}
