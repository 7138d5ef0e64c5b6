//! JSON the way the legacy (Flask's provider over Python's `json`) reads
//! and writes it.
//!
//! * [`JsonValue`]: a JSON value that keeps Python's `int` and `float`
//!   apart, as `json.loads` builds it.
//! * [`parse`] (in `read`): request bodies, accepting what Python accepts —
//!   `NaN`, `Infinity`, integers of any size, duplicate keys (the last value
//!   wins, in the first key's place).
//! * [`to_body`] (in `write`): every reply body, through serde_json with a
//!   formatter that writes what Flask wrote: keys sorted, compact,
//!   ASCII-only, floats in Python's `repr` form. Non-finite floats are
//!   refused, so `NaN`/`Infinity` is never written (`docs/quirks.md`, H-7).

mod read;
mod write;

pub use read::parse;
pub use write::{to_body, Finite, NonFinite};

use crate::analysis::num::py_repr;

/// A JSON value with Python's number types.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// `null` / `None`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A Python int that fits in an i128.
    Int(i128),
    /// A larger Python int, as its decimal digits (with a leading `-` when
    /// negative).
    BigInt(String),
    /// A Python float.
    Float(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<JsonValue>),
    /// An object, in insertion order (written with its keys sorted).
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    /// A string value.
    pub fn string(value: impl Into<String>) -> Self {
        Self::String(value.into())
    }

    /// An int value.
    pub fn int(value: impl Into<i128>) -> Self {
        Self::Int(value.into())
    }

    /// An int value from a count.
    pub fn count(value: usize) -> Self {
        Self::Int(value as i128)
    }

    /// A float value.
    pub fn float(value: f64) -> Self {
        Self::Float(value)
    }

    /// An optional float (`null` for `None`).
    pub fn float_or_null(value: Option<f64>) -> Self {
        value.map_or(Self::Null, Self::Float)
    }

    /// An object from `(key, value)` pairs.
    pub fn object<const N: usize>(members: [(&str, JsonValue); N]) -> Self {
        Self::Object(
            members
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }

    /// Member lookup (a parsed object holds each key once).
    pub fn get(&self, key: &str) -> Option<&JsonValue> {
        match self {
            Self::Object(members) => members
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// Python truthiness.
    pub fn is_truthy(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Bool(value) => *value,
            Self::Int(value) => *value != 0,
            Self::BigInt(_) => true,
            Self::Float(value) => *value != 0.0,
            Self::String(text) => !text.is_empty(),
            Self::Array(items) => !items.is_empty(),
            Self::Object(members) => !members.is_empty(),
        }
    }

    /// Python's `repr()` of the value as `json.loads` would have built it.
    pub fn py_repr(&self) -> String {
        match self {
            Self::Null => "None".into(),
            Self::Bool(true) => "True".into(),
            Self::Bool(false) => "False".into(),
            Self::Int(value) => value.to_string(),
            Self::BigInt(digits) => digits.clone(),
            Self::Float(value) => py_repr(*value),
            Self::String(text) => py_str_repr(text),
            Self::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(JsonValue::py_repr)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Object(members) => format!(
                "{{{}}}",
                members
                    .iter()
                    .map(|(key, value)| format!("{}: {}", py_str_repr(key), value.py_repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Python's `repr(str)`.
pub fn py_str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_like_flask() {
        let value = JsonValue::object([
            ("b", JsonValue::float(15.0)),
            ("a", JsonValue::int(15)),
            ("c", JsonValue::float(-0.0)),
            ("d", JsonValue::string("\u{2013}\"x\"")),
            (
                "e",
                JsonValue::Array(vec![
                    JsonValue::Null,
                    JsonValue::Bool(true),
                    JsonValue::float(1e16),
                ]),
            ),
        ]);
        assert_eq!(
            String::from_utf8(to_body(&value).unwrap()).unwrap(),
            "{\"a\":15,\"b\":15.0,\"c\":-0.0,\"d\":\"\\u2013\\\"x\\\"\",\"e\":[null,true,1e+16]}\n"
        );
        assert_eq!(to_body(&JsonValue::float(f64::NAN)), Err(NonFinite));
    }

    #[test]
    fn reads_like_python() {
        let value = parse(br#" {"a": 1, "a": 2.5, "n": NaN, "big": 123456789012345678901234567890123456789012, "s": "\u00e9\ud83d\ude00"} "#).unwrap();
        assert_eq!(value.get("a"), Some(&JsonValue::Float(2.5)));
        assert!(matches!(value.get("n"), Some(JsonValue::Float(f)) if f.is_nan()));
        assert!(matches!(value.get("big"), Some(JsonValue::BigInt(_))));
        assert_eq!(value.get("s"), Some(&JsonValue::string("é😀")));
        assert_eq!(parse(b"1e400"), Some(JsonValue::Float(f64::INFINITY)));
        assert_eq!(parse(b"-0"), Some(JsonValue::Int(0)));
        assert_eq!(parse(b"this is not json"), None);
        assert_eq!(parse(b"[1,]"), None);
        assert_eq!(parse(b"01"), None);
        assert_eq!(parse(b"\"a\nb\""), None);
    }

    #[test]
    fn python_repr() {
        assert_eq!(JsonValue::string("weeks").py_repr(), "'weeks'");
        assert_eq!(JsonValue::Null.py_repr(), "None");
        assert_eq!(JsonValue::string("it's").py_repr(), "\"it's\"");
        assert_eq!(
            JsonValue::Array(vec![JsonValue::int(1), JsonValue::float(2.0)]).py_repr(),
            "[1, 2.0]"
        );
    }
}
