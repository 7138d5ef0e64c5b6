//! Query strings as Werkzeug reads them (`&`-separated, `+` is a space,
//! percent-decoding, first occurrence wins), path decoding, and Python
//! 3.11's `datetime.fromisoformat` for goal start dates.

use time::{Date, Weekday};

use crate::analysis::parse::{calendar_date, epoch_day};

/// A parsed query string.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (without `?`).
    pub(crate) fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                (decode(key, true), decode(value, true))
            })
            .collect();
        Query { pairs }
    }
    /// The first value given for `name`.
    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The parameter names given (for error details).
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::new();
        for (key, _) in &self.pairs {
            if !seen.contains(&key.as_str()) {
                seen.push(key);
            }
        }
        seen.into_iter()
    }
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a request path the way Werkzeug does before routing.
pub(crate) fn percent_decode_path(path: &str) -> String {
    decode(path, false)
}

fn digits(bytes: &[u8], i: &mut usize, n: usize) -> Option<u32> {
    let run = bytes.get(*i..*i + n)?;
    if !run.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *i += n;
    Some(run.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32))
}

/// The date of ISO `year`-W`week`-`weekday` (1 = Monday), if that week
/// exists in that year.
fn iso_week_date(year: u32, week: u32, weekday: u32) -> Option<Date> {
    if !(1..=7).contains(&weekday) {
        return None;
    }
    let weekday = Weekday::Monday.nth_next(u8::try_from(weekday - 1).ok()?);
    Date::from_iso_week_date(i32::try_from(year).ok()?, u8::try_from(week).ok()?, weekday).ok()
}

/// Python 3.11 `datetime.fromisoformat(s).date()` as days since
/// 1970-01-01; `None` when Python would raise (the legacy then ignores the
/// start date). Dates: `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-Www[-D]`,
/// `YYYYWww[D]`; an optional single separator character and a time
/// `HH[:MM[:SS[.f…]]]` / `HHMM[SS]` with an optional `Z` or `±HH[:MM]` offset.
pub(crate) fn fromisoformat_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let year = digits(bytes, &mut i, 4)?;
    if year == 0 {
        return None;
    }
    let extended = bytes.get(i) == Some(&b'-');
    if extended {
        i += 1;
    }
    let date = if bytes.get(i) == Some(&b'W') {
        i += 1;
        let week = digits(bytes, &mut i, 2)?;
        let mut weekday = 1;
        let has_day = if extended {
            bytes.get(i) == Some(&b'-') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
        } else {
            bytes.get(i).is_some_and(u8::is_ascii_digit)
        };
        if has_day {
            if extended {
                i += 1;
            }
            weekday = digits(bytes, &mut i, 1)?;
        }
        iso_week_date(year, week, weekday)?
    } else {
        let month = digits(bytes, &mut i, 2)?;
        if extended {
            if bytes.get(i) != Some(&b'-') {
                return None;
            }
            i += 1;
        }
        let day = digits(bytes, &mut i, 2)?;
        calendar_date(year, month, day)?
    };
    let day = epoch_day(date);
    if i == bytes.len() {
        return Some(day);
    }
    // One separator character (any), then a time.
    let rest = &text[i..];
    let mut chars = rest.chars();
    chars.next()?;
    let time = chars.as_str().as_bytes();
    if valid_time(time) {
        Some(day)
    } else {
        None
    }
}

fn valid_time(time: &[u8]) -> bool {
    // Split off a timezone suffix.
    let tz_pos = time.iter().position(|c| matches!(c, b'Z' | b'+' | b'-'));
    let (time, tz) = match tz_pos {
        Some(p) => (&time[..p], Some(&time[p..])),
        None => (time, None),
    };
    let mut i = 0;
    let Some(h) = digits(time, &mut i, 2) else {
        return false;
    };
    if h > 23 {
        return false;
    }
    if i < time.len() {
        let ext = time[i] == b':';
        if ext {
            i += 1;
        }
        let Some(m) = digits(time, &mut i, 2) else {
            return false;
        };
        if m > 59 {
            return false;
        }
        if i < time.len() {
            if ext {
                if time[i] != b':' {
                    return false;
                }
                i += 1;
            }
            let Some(sec) = digits(time, &mut i, 2) else {
                return false;
            };
            if sec > 59 {
                return false;
            }
            if i < time.len() {
                if !matches!(time[i], b'.' | b',') {
                    return false;
                }
                i += 1;
                let start = i;
                while i < time.len() && time[i].is_ascii_digit() {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
        }
    }
    if i != time.len() {
        return false;
    }
    match tz {
        None => true,
        Some([b'Z']) => true,
        Some(z) if z[0] == b'Z' => false,
        Some(z) => {
            let z = &z[1..];
            let mut j = 0;
            let Some(zh) = digits(z, &mut j, 2) else {
                return false;
            };
            if zh > 23 {
                return false;
            }
            if j == z.len() {
                return true;
            }
            if z[j] == b':' {
                j += 1;
            }
            let Some(zm) = digits(z, &mut j, 2) else {
                return false;
            };
            zm <= 59 && j == z.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = Query::parse("sigma=%202%20&sigma=3&symbol=ES+Z4&empty=&flag");
        assert_eq!(q.first("sigma"), Some(" 2 "));
        assert_eq!(q.first("symbol"), Some("ES Z4"));
        assert_eq!(q.first("empty"), Some(""));
        assert_eq!(q.first("flag"), Some(""));
        assert_eq!(q.first("SIGMA"), None);
        assert_eq!(Query::parse("a=%zz%4").first("a"), Some("%zz%4"));
    }

    #[test]
    fn iso_dates() {
        let d = epoch_day(calendar_date(2024, 3, 1).unwrap());
        assert_eq!(fromisoformat_day("2024-03-01"), Some(d));
        assert_eq!(fromisoformat_day("20240301"), Some(d));
        assert_eq!(fromisoformat_day("2024-03-01T12:00:00"), Some(d));
        assert_eq!(fromisoformat_day("2024-03-01 12:00"), Some(d));
        assert_eq!(fromisoformat_day("2024-03-01T12:00:00.5+01:00"), Some(d));
        assert_eq!(fromisoformat_day("2024-W09-5"), Some(d));
        assert_eq!(fromisoformat_day("2024-13-45"), None);
        assert_eq!(fromisoformat_day("March 1"), None);
        assert_eq!(fromisoformat_day("2024-03"), None);
        assert_eq!(fromisoformat_day("2024-02-30"), None);
    }
}
