//! Numeric helpers that reproduce the legacy's Python/numpy arithmetic
//! (`docs/quirks.md`, E-15, E-16): `py_round`, `np_round`, median, plain sums, number
//! formatting for texts and Python's `float()` / pandas number grammars.

/// Python's `round(x, n)` on a float: round the exact binary value to `n`
/// decimals, ties to even, return the nearest double.
pub fn py_round(x: f64, n: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(n as i32);
    let scaled = x * scale;
    // Exact fast path: `y + r` is exactly `x × 10^n` (the error of a product
    // is representable and `mul_add` computes it exactly), so the decimal
    // rounding of the exact value can be decided from `y` and the sign of
    // `r`; then `k / 10^n` is the double nearest to the decimal `k / 10^n`.
    if scaled.abs() < 4.0e15 {
        let error = x.mul_add(scale, -scaled);
        let fl = scaled.floor();
        let frac = scaled - fl;
        let rounded = if frac != 0.5 {
            scaled.round()
        } else if error > 0.0 {
            fl + 1.0
        } else if error < 0.0 {
            fl
        } else {
            scaled.round_ties_even()
        };
        let out = rounded / scale;
        return if out == 0.0 { 0.0f64.copysign(x) } else { out };
    }
    let text = format!("{:.*}", n as usize, x);
    text.parse::<f64>().unwrap_or(x)
}

/// numpy's `round(x, n)`: multiply, round half to even, divide.
pub fn np_round(x: f64, n: u32) -> f64 {
    let scale = 10f64.powi(n as i32);
    (x * scale).round_ties_even() / scale
}

/// Python's integer `round(x)` (half to even).
pub fn py_round_int(x: f64) -> i64 {
    if x.is_finite() {
        x.round_ties_even() as i64
    } else {
        0
    }
}

/// Median of a list: sort ascending; middle element, or `(a + b) / 2`.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Python's built-in `sum()` (3.11) over floats, started from the integer 0:
/// `None` stands for the integer 0 of an empty sum.
pub fn plain_sum<I: IntoIterator<Item = f64>>(xs: I) -> Option<f64> {
    let mut acc: Option<f64> = None;
    for x in xs {
        acc = Some(match acc {
            None => 0.0 + x,
            Some(sum) => sum + x,
        });
    }
    acc
}

/// `f"{x:.nf}"`.
pub fn fixed(x: f64, n: usize) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    format!("{:.*}", n, x)
}

/// `f"{x:.1%}"`.
pub fn pct1(x: f64) -> String {
    format!("{}%", fixed(x * 100.0, 1))
}

/// Python's `repr(float)`: shortest round-trip, always with a fractional
/// part or an exponent (`1.0`, `0.35`, `1e+16`, `1e-05`, `-0.0`).
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let magnitude = x.abs();
    if magnitude == 0.0 || (1e-4..1e16).contains(&magnitude) {
        let text = format!("{:?}", x);
        if text.contains('.') || text.contains('e') || text.contains("inf") || text.contains("NaN")
        {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let text = format!("{:e}", x);
        // Rust: `1.5e20`, `1e-5`; Python: `1.5e+20`, `1e-05`.
        let (mant, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(exp_digits) => ('-', exp_digits),
            None => ('+', exp),
        };
        let digits = if digits.len() < 2 {
            format!("0{digits}")
        } else {
            digits.to_string()
        };
        format!("{mant}e{sign}{digits}")
    }
}

/// Python's `str.isspace()` for one character.
pub fn py_isspace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\r'
            | '\u{1c}'..='\u{1f}'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `float(text)` for a `str` argument: surrounding whitespace,
/// sign, decimal/exponent forms, single underscores between digits,
/// `nan`/`inf`/`infinity` in any case. `None` when Python raises.
pub fn py_float(text: &str) -> Option<f64> {
    let trimmed = if text.is_ascii() {
        text.trim_matches(|c: char| {
            c.is_ascii_whitespace() || matches!(c, '\u{0b}' | '\u{1c}'..='\u{1f}')
        })
    } else {
        text.trim_matches(py_isspace)
    };
    if trimmed.is_empty() {
        return None;
    }
    // Common case: plain decimal text, which Rust's parser reads exactly as
    // Python does (both correctly rounded, same grammar without `_`).
    if trimmed
        .bytes()
        .all(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return trimmed.parse::<f64>().ok();
    }
    let (neg, body) = match trimmed.as_bytes()[0] {
        b'+' => (false, &trimmed[1..]),
        b'-' => (true, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let lower = body.to_ascii_lowercase();
    let special = match lower.as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    if let Some(value) = special {
        return Some(if neg { -value } else { value });
    }
    let bytes = body.as_bytes();
    // Validate the decimal grammar with underscores only between digits.
    let mut clean = String::with_capacity(bytes.len() + 1);
    if neg {
        clean.push('-');
    }
    let mut i = 0;
    let mut digits_before = 0;
    let mut digits_after = 0;
    // integer part
    i = scan_digits(bytes, i, &mut clean, &mut digits_before)?;
    if i < bytes.len() && bytes[i] == b'.' {
        clean.push('.');
        i += 1;
        i = scan_digits(bytes, i, &mut clean, &mut digits_after)?;
    }
    if digits_before + digits_after == 0 {
        return None;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        clean.push('e');
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            clean.push(bytes[i] as char);
            i += 1;
        }
        let mut exp_digits = 0;
        i = scan_digits(bytes, i, &mut clean, &mut exp_digits)?;
        if exp_digits == 0 {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    clean.parse::<f64>().ok()
}

/// Digits with single underscores between them. Returns the new index, or
/// `None` on a misplaced underscore.
fn scan_digits(bytes: &[u8], mut i: usize, out: &mut String, count: &mut usize) -> Option<usize> {
    let mut last_digit = false;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte.is_ascii_digit() {
            out.push(byte as char);
            *count += 1;
            last_digit = true;
            i += 1;
        } else if byte == b'_' {
            if !last_digit || i + 1 >= bytes.len() || !bytes[i + 1].is_ascii_digit() {
                return None;
            }
            last_digit = false;
            i += 1;
        } else {
            break;
        }
    }
    Some(i)
}

fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// pandas' C-parser float conversion of one cell (surrounding ASCII spaces,
/// sign, decimal and exponent forms; `inf`/`infinity` words without spaces).
pub fn pandas_float(cell: &str) -> Option<f64> {
    let lower = cell.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let trimmed = cell.trim_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let bytes = trimmed.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut i = 0;
    if bytes[0] == b'+' || bytes[0] == b'-' {
        i = 1;
    }
    let mut digits = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    trimmed.parse::<f64>().ok()
}

/// pandas' integer conversion of one cell (surrounding ASCII spaces, sign,
/// digits). `None` when it is not an integer or does not fit in an i128.
pub fn pandas_int(cell: &str) -> Option<i128> {
    let trimmed = cell.trim_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let bytes = trimmed.as_bytes();
    let digits = match bytes.first() {
        Some(b'+') | Some(b'-') => &bytes[1..],
        _ => bytes,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() <= 18 {
        let value = digits
            .iter()
            .fold(0i128, |a, d| a * 10 + (d - b'0') as i128);
        return Some(if bytes[0] == b'-' { -value } else { value });
    }
    trimmed.parse::<i128>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_round_examples() {
        let cases = [
            (0.875, 0.88),
            (0.625, 0.62),
            (0.125, 0.12),
            (0.375, 0.38),
            (1.875, 1.88),
            (2.675, 2.67),
            (1.005, 1.0),
            (0.145, 0.14),
            (36.355, 36.35),
            (-0.725, -0.72),
        ];
        for (x, want) in cases {
            assert_eq!(py_round(x, 2), want, "{x}");
        }
        assert!(py_round(-0.0, 2).is_sign_negative());
        assert!(py_round(-0.001, 2).is_sign_negative());
        assert_eq!(py_round(5.234999999999999, 2), 5.23);
        assert_eq!(py_round_int(12.5), 12);
        assert_eq!(py_round_int(87.5), 88);
        assert_eq!(py_round_int(0.5), 0);
        assert_eq!(py_round_int(1.5), 2);
    }

    #[test]
    fn np_round_examples() {
        assert_eq!(np_round(2.675, 2), 2.68);
        assert_eq!(np_round(1.115, 2), 1.12);
        assert_eq!(np_round(0.285, 2), 0.28);
        assert_eq!(np_round(5.234999999999999, 2), 5.24);
    }

    #[test]
    fn py_round_agrees_with_formatting() {
        // The fast path must agree with the exact (formatting) path.
        let mut x = 0.0005f64;
        for i in 0..200_000 {
            let v = x * if i % 2 == 0 { 1.0 } else { -1.0 };
            for n in [1u32, 2, 4] {
                let slow: f64 = format!("{:.*}", n as usize, v).parse().unwrap();
                assert_eq!(py_round(v, n).to_bits(), slow.to_bits(), "{v} {n}");
            }
            x += 0.00137;
        }
    }

    #[test]
    fn py_round_exact_ties_and_random_bits() {
        let slow = |v: f64, n: u32| -> f64 { format!("{:.*}", n as usize, v).parse().unwrap() };
        for den in [2.0, 8.0, 16.0, 32.0, 64.0, 1024.0] {
            for i in -20_000..20_000 {
                let v = i as f64 / den;
                for n in [0u32, 1, 2, 4] {
                    assert_eq!(py_round(v, n).to_bits(), slow(v, n).to_bits(), "{v} {n}");
                }
            }
        }
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // exponents from about 2^-30 to 2^40
            let exp = 993 + (s >> 58) % 70;
            let v = f64::from_bits((s & 0x800f_ffff_ffff_ffff) | (exp << 52));
            for n in [1u32, 2, 4] {
                assert_eq!(py_round(v, n).to_bits(), slow(v, n).to_bits(), "{v} {n}");
            }
        }
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr(1.0), "1.0");
        assert_eq!(py_repr(0.35), "0.35");
        assert_eq!(py_repr(-0.0), "-0.0");
        assert_eq!(py_repr(1e16), "1e+16");
        assert_eq!(py_repr(1.5e20), "1.5e+20");
        assert_eq!(py_repr(1e-5), "1e-05");
        assert_eq!(py_repr(0.0001), "0.0001");
        assert_eq!(py_repr(9999999999999998.0), "9999999999999998.0");
        assert_eq!(py_repr(1.2345678901234568e19), "1.2345678901234567e+19");
    }

    #[test]
    fn python_float_grammar() {
        assert_eq!(py_float(" 2 "), Some(2.0));
        assert_eq!(py_float("1_0"), Some(10.0));
        assert_eq!(py_float("1_000.000_1e1_0"), Some(1000.0001e10));
        assert_eq!(py_float(".5"), Some(0.5));
        assert_eq!(py_float("5."), Some(5.0));
        assert_eq!(py_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(py_float("nan").unwrap().is_nan());
        for bad in [
            "", " ", "_1", "1_", "1__0", "1_.5", "1._5", "0x10", "abc", ".", "e5", "1e", "+-1",
            "1e_5",
        ] {
            assert_eq!(py_float(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pandas_grammars() {
        assert_eq!(pandas_float(" 21490.25 "), Some(21490.25));
        assert_eq!(pandas_float("1e5"), Some(1e5));
        assert_eq!(pandas_float("+3"), Some(3.0));
        assert_eq!(pandas_float("5."), Some(5.0));
        assert_eq!(pandas_float("1_0"), None);
        assert_eq!(pandas_float("+nan"), None);
        assert_eq!(pandas_int("0042"), Some(42));
        assert_eq!(pandas_int(" -7 "), Some(-7));
        assert_eq!(pandas_int("4.0"), None);
    }

    #[test]
    fn plain_sum_is_int_zero_when_empty() {
        assert_eq!(plain_sum(Vec::<f64>::new()), None);
        assert_eq!(plain_sum(vec![0.1, 0.2]), Some(0.1 + 0.2));
    }
}
