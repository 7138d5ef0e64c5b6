//! JSON the way the legacy (Flask's provider over Python's `json`) reads
//! and writes it: keys sorted, compact, ASCII-only, Python `int` vs `float`
//! kept apart, floats in Python's `repr` form. Reading accepts `NaN`,
//! `Infinity`, arbitrary-size integers and duplicate keys (last wins).
//! Writing refuses non-finite floats: we never emit `NaN`/`Infinity` (H-7).

use crate::analysis::num::py_repr;

/// A JSON value with Python's number types.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    /// `null` / `None`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A Python int that fits in an i128.
    Int(i128),
    /// A larger Python int, as its decimal digits.
    BigInt(String),
    /// A Python float.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<J>),
    /// An object, in insertion order (written sorted).
    Obj(Vec<(String, J)>),
    /// Already-serialised JSON (compact, sorted, finite), written verbatim.
    Raw(String),
}

/// A non-finite float met while writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFinite;

impl J {
    /// A string value.
    pub fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }
    /// An int value.
    pub fn i(v: impl Into<i128>) -> J {
        J::Int(v.into())
    }
    /// A float value.
    pub fn f(v: f64) -> J {
        J::Float(v)
    }
    /// An optional float (`null` for `None`).
    pub fn of(v: Option<f64>) -> J {
        v.map_or(J::Null, J::Float)
    }
    /// An object from pairs.
    pub fn obj<const N: usize>(pairs: [(&str, J); N]) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
    /// Member lookup (last occurrence wins on read, so there is only one).
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            J::Null => false,
            J::Bool(b) => *b,
            J::Int(i) => *i != 0,
            J::BigInt(_) | J::Raw(_) => true,
            J::Float(f) => *f != 0.0,
            J::Str(s) => !s.is_empty(),
            J::Arr(a) => !a.is_empty(),
            J::Obj(o) => !o.is_empty(),
        }
    }

    /// Compact, sorted, ASCII JSON plus the trailing newline.
    pub fn to_body(&self) -> Result<Vec<u8>, NonFinite> {
        let mut out = String::with_capacity(256);
        self.write(&mut out)?;
        out.push('\n');
        Ok(out.into_bytes())
    }

    /// Writes compact, sorted, ASCII JSON.
    pub fn write(&self, out: &mut String) -> Result<(), NonFinite> {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                use std::fmt::Write;
                let _ = write!(out, "{i}");
            }
            J::BigInt(s) | J::Raw(s) => out.push_str(s),
            J::Float(f) => {
                if !f.is_finite() {
                    return Err(NonFinite);
                }
                out.push_str(&py_repr(*f));
            }
            J::Str(s) => write_str(s, out),
            J::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out)?;
                }
                out.push(']');
            }
            J::Obj(m) => {
                let mut keys: Vec<&(String, J)> = m.iter().collect();
                keys.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (k, v)) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    /// Python's `repr()` of the value as `json.loads` would have built it.
    pub fn py_repr(&self) -> String {
        match self {
            J::Null => "None".into(),
            J::Bool(true) => "True".into(),
            J::Bool(false) => "False".into(),
            J::Int(i) => i.to_string(),
            J::BigInt(s) | J::Raw(s) => s.clone(),
            J::Float(f) => py_repr(*f),
            J::Str(s) => py_str_repr(s),
            J::Arr(a) => format!(
                "[{}]",
                a.iter().map(J::py_repr).collect::<Vec<_>>().join(", ")
            ),
            J::Obj(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}: {}", py_str_repr(k), v.py_repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Python's `repr(str)`.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
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

/// Writes a JSON string literal (ASCII-only, like Python's encoder).
pub fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses a body the way Python's `json.loads` does (UTF-8, optional BOM).
pub fn parse(bytes: &[u8]) -> Option<J> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.b.len() {
        return None;
    }
    Some(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn lit(&mut self, word: &str) -> bool {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }
    fn value(&mut self) -> Option<J> {
        if self.depth > 400 {
            return None;
        }
        match *self.b.get(self.i)? {
            b'{' => {
                self.depth += 1;
                self.i += 1;
                let mut m: Vec<(String, J)> = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(J::Obj(m));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return None;
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value()?;
                    if let Some(slot) = m.iter_mut().find(|(kk, _)| *kk == k) {
                        slot.1 = v;
                    } else {
                        m.push((k, v));
                    }
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            self.depth -= 1;
                            return Some(J::Obj(m));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.depth += 1;
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(J::Arr(a));
                }
                loop {
                    self.ws();
                    a.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            self.depth -= 1;
                            return Some(J::Arr(a));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(J::Str),
            b't' if self.lit("true") => Some(J::Bool(true)),
            b'f' if self.lit("false") => Some(J::Bool(false)),
            b'n' if self.lit("null") => Some(J::Null),
            b'N' if self.lit("NaN") => Some(J::Float(f64::NAN)),
            b'I' if self.lit("Infinity") => Some(J::Float(f64::INFINITY)),
            b'-' if self.lit("-Infinity") => Some(J::Float(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
    fn number(&mut self) -> Option<J> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let _ = int_start;
        let mut is_float = false;
        if self.b.get(self.i) == Some(&b'.')
            && self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit)
        {
            is_float = true;
            self.i += 1;
            while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                self.i += 1;
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                is_float = true;
                while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            } else {
                self.i = save;
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        if is_float {
            text.parse::<f64>().ok().map(J::Float)
        } else {
            match text.parse::<i128>() {
                Ok(v) => Some(J::Int(v)),
                Err(_) => {
                    let t = text.trim_start_matches('-');
                    Some(J::BigInt(if text.starts_with('-') {
                        format!("-{t}")
                    } else {
                        t.to_string()
                    }))
                }
            }
        }
    }
    fn string(&mut self) -> Option<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let c = *self.b.get(self.i)?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    self.i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{08}'),
                        b'f' => out.push('\u{0c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi)
                                && self.b.get(self.i) == Some(&b'\\')
                                && self.b.get(self.i + 1) == Some(&b'u')
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    let cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                    out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                                } else {
                                    self.i = save;
                                    out.push('\u{fffd}');
                                }
                            } else {
                                out.push(char::from_u32(hi).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {
                    // copy one UTF-8 character
                    let len = utf8_len(c);
                    let s = std::str::from_utf8(self.b.get(self.i..self.i + len)?).ok()?;
                    out.push_str(s);
                    self.i += len;
                }
            }
        }
    }
    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_like_flask() {
        let v = J::obj([
            ("b", J::f(15.0)),
            ("a", J::i(15)),
            ("c", J::f(-0.0)),
            ("d", J::s("\u{2013}\"x\"")),
            ("e", J::Arr(vec![J::Null, J::Bool(true), J::f(1e16)])),
        ]);
        assert_eq!(
            String::from_utf8(v.to_body().unwrap()).unwrap(),
            "{\"a\":15,\"b\":15.0,\"c\":-0.0,\"d\":\"\\u2013\\\"x\\\"\",\"e\":[null,true,1e+16]}\n"
        );
        assert_eq!(J::f(f64::NAN).to_body(), Err(NonFinite));
    }

    #[test]
    fn reads_like_python() {
        let v = parse(br#" {"a": 1, "a": 2.5, "n": NaN, "big": 123456789012345678901234567890123456789012, "s": "\u00e9\ud83d\ude00"} "#).unwrap();
        assert_eq!(v.get("a"), Some(&J::Float(2.5)));
        assert!(matches!(v.get("n"), Some(J::Float(f)) if f.is_nan()));
        assert!(matches!(v.get("big"), Some(J::BigInt(_))));
        assert_eq!(v.get("s"), Some(&J::s("é😀")));
        assert_eq!(parse(b"1e400"), Some(J::Float(f64::INFINITY)));
        assert_eq!(parse(b"-0"), Some(J::Int(0)));
        assert_eq!(parse(b"this is not json"), None);
        assert_eq!(parse(b"[1,]"), None);
        assert_eq!(parse(b"01"), None);
        assert_eq!(parse(b"\"a\nb\""), None);
    }

    #[test]
    fn python_repr() {
        assert_eq!(J::s("weeks").py_repr(), "'weeks'");
        assert_eq!(J::Null.py_repr(), "None");
        assert_eq!(J::s("it's").py_repr(), "\"it's\"");
        assert_eq!(J::Arr(vec![J::i(1), J::f(2.0)]).py_repr(), "[1, 2.0]");
    }
}
