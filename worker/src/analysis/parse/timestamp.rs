//! Order times: the export's `M/D/YYYY H:M:S` cells → seconds since
//! 1970-01-01 (no time zone, as the legacy read them), and back to the
//! `YYYY-MM-DDTHH:MM:SS` text the API writes. Calendar arithmetic goes
//! through the `time` crate; this module only reads the grammar.

use time::{Date, Duration, Month};

use crate::analysis::num::py_isspace;

/// Day 0 of the day numbers used here.
const UNIX_EPOCH: Date = time::macros::date!(1970 - 01 - 01);

const SECONDS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a date.
pub fn epoch_day(date: Date) -> i64 {
    (date - UNIX_EPOCH).whole_days()
}

/// The date of `year`-`month`-`day` (proleptic Gregorian), if it exists.
pub fn calendar_date(year: u32, month: u32, day: u32) -> Option<Date> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

/// Parses `M/D/YYYY<ws>H:M:S` into seconds since 1970-01-01. Month and day
/// take one or two digits (the day also a space and one digit), the year
/// four; hours, minutes and seconds one or two digits, seconds up to 61
/// rolling over into the next minute. Anything else is `None`: the cell is
/// silently missing (`docs/quirks.md`, E-17).
pub fn parse_timestamp(cell: &str) -> Option<i64> {
    let bytes = cell.as_bytes();
    let mut pos = 0usize;
    let month = one_or_two_digits(bytes, &mut pos)?;
    expect(bytes, &mut pos, b'/')?;
    let day = if bytes.get(pos) == Some(&b' ') {
        pos += 1;
        digit(bytes, &mut pos)?
    } else {
        one_or_two_digits(bytes, &mut pos)?
    };
    expect(bytes, &mut pos, b'/')?;
    let mut year = 0u32;
    for _ in 0..4 {
        year = year * 10 + digit(bytes, &mut pos)?;
    }
    // At least one whitespace character (Python's `\s`), on characters.
    let rest = &cell[pos..];
    let time_text = rest.trim_start_matches(py_isspace);
    if time_text.len() == rest.len() {
        return None;
    }
    let bytes = time_text.as_bytes();
    let mut pos = 0usize;
    let hour = one_or_two_digits(bytes, &mut pos)?;
    expect(bytes, &mut pos, b':')?;
    let minute = one_or_two_digits(bytes, &mut pos)?;
    expect(bytes, &mut pos, b':')?;
    let second = one_or_two_digits(bytes, &mut pos)?;
    if pos != bytes.len() || hour > 23 || minute > 59 || second > 61 || year == 0 {
        return None;
    }
    let date = calendar_date(year, month, day)?;
    Some(
        epoch_day(date) * SECONDS_PER_DAY
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second),
    )
}

fn digit(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let byte = *bytes.get(*pos)?;
    if byte.is_ascii_digit() {
        *pos += 1;
        Some(u32::from(byte - b'0'))
    } else {
        None
    }
}

/// One digit, or two (a leading zero allowed).
fn one_or_two_digits(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let first = digit(bytes, pos)?;
    Some(match digit(bytes, pos) {
        Some(second) => first * 10 + second,
        None => first,
    })
}

fn expect(bytes: &[u8], pos: &mut usize, wanted: u8) -> Option<()> {
    if bytes.get(*pos) == Some(&wanted) {
        *pos += 1;
        Some(())
    } else {
        None
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, the API's time text.
pub fn iso(seconds: i64) -> String {
    // Times come from `parse_timestamp` (years 1 to 10000) or are 0; the
    // `large-dates` feature keeps year 10000 in range.
    let date = UNIX_EPOCH + Duration::days(seconds.div_euclid(SECONDS_PER_DAY));
    let (year, month, day) = date.to_calendar_date();
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        year,
        u8::from(month),
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Option<String> {
        parse_timestamp(s).map(iso)
    }

    #[test]
    fn timestamp_grammar() {
        assert_eq!(
            ts("01/02/2024 7:11:00").as_deref(),
            Some("2024-01-02T07:11:00")
        );
        assert_eq!(
            ts("1/2/2024 7:11:00").as_deref(),
            Some("2024-01-02T07:11:00")
        );
        assert_eq!(
            ts("12/03/2024 10:52:02").as_deref(),
            Some("2024-12-03T10:52:02")
        );
        assert_eq!(
            ts("01/ 2/2024 7:11:00").as_deref(),
            Some("2024-01-02T07:11:00")
        );
        assert_eq!(
            ts("01/02/2024  7:11:00").as_deref(),
            Some("2024-01-02T07:11:00")
        );
        assert_eq!(
            ts("01/02/2024\t7:11:00").as_deref(),
            Some("2024-01-02T07:11:00")
        );
        assert_eq!(
            ts("01/02/2024 7:11:60").as_deref(),
            Some("2024-01-02T07:12:00")
        );
        assert_eq!(
            ts("12/31/2024 23:59:61").as_deref(),
            Some("2025-01-01T00:00:01")
        );
        assert_eq!(
            ts("02/29/2024 0:00:00").as_deref(),
            Some("2024-02-29T00:00:00")
        );
        assert_eq!(
            ts("01/02/0001 1:00:00").as_deref(),
            Some("0001-01-02T01:00:00")
        );
        for bad in [
            " 01/02/2024 7:11:00",
            "01/02/2024 7:11:00 ",
            "01/02/2024 7:11:00.5",
            "01/02/2024 7:11:00 AM",
            "2024-01-02 07:11:00",
            "01/02/24 7:11:00",
            "01/02/2024 7:11",
            "01-02-2024 7:11:00",
            "02/30/2024 7:11:00",
            "02/29/2023 7:11:00",
            "13/02/2024 7:11:00",
            "00/02/2024 7:11:00",
            "01/00/2024 7:11:00",
            "01/32/2024 7:11:00",
            "01/02/2024 24:00:00",
            "01/02/2024 7:60:00",
            "01/02/2024 7:11:62",
            "01/02/20247:11:00",
            "01/02/0000 7:11:00",
            "001/02/2024 7:11:00",
            "",
        ] {
            assert_eq!(ts(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_range_ends_survive_the_round_trip() {
        assert_eq!(
            ts("1/1/0001 0:00:00").as_deref(),
            Some("0001-01-01T00:00:00")
        );
        assert_eq!(
            ts("12/31/9999 23:59:61").as_deref(),
            Some("10000-01-01T00:00:01")
        );
        assert_eq!(iso(0), "1970-01-01T00:00:00");
        assert_eq!(iso(-1), "1969-12-31T23:59:59");
    }
}
