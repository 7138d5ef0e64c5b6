//! Cell text as pandas and the legacy's Python read it: missing-value
//! tokens, `str.strip()`, case-insensitive comparisons, the order type's
//! stop kinds, and the spreadsheet-formula check for text we echo back.

use crate::analysis::num::py_isspace;

/// The pandas missing-value tokens: a cell whose whole text is one of these
/// is missing, in every column (`docs/quirks.md`, E-27).
const NA_TOKENS: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "<NA>", "N/A", "n/a", "NA", "-1.#IND", "-1.#QNAN", "1.#IND",
    "1.#QNAN", "-NaN", "-nan", "NaN", "nan", "NULL", "null", "None",
];

/// Whether a cell's whole text is a missing-value token.
pub fn is_na(cell: &str) -> bool {
    NA_TOKENS.contains(&cell)
}

/// Python's `str.strip()`, with an ASCII fast path.
pub(super) fn py_strip(text: &str) -> &str {
    if text.is_ascii() {
        text.trim_matches(|c: char| {
            c.is_ascii_whitespace() || matches!(c, '\u{0b}' | '\u{1c}'..='\u{1f}')
        })
    } else {
        text.trim_matches(py_isspace)
    }
}

/// `text.lower() == word` for an ASCII `word`.
pub(super) fn lower_eq(text: &str, word: &str) -> bool {
    if text.is_ascii() {
        text.eq_ignore_ascii_case(word)
    } else {
        text.to_lowercase() == word
    }
}

/// `(contains "stop", is "stop" or "stop limit")` on the lower-cased order
/// type.
pub(super) fn stop_kind(order_type: &str) -> (bool, bool) {
    if order_type.is_ascii() {
        let contains = order_type
            .as_bytes()
            .windows(4)
            .any(|window| window.eq_ignore_ascii_case(b"stop"));
        let is_risk_type = order_type.eq_ignore_ascii_case("stop")
            || order_type.eq_ignore_ascii_case("stop limit");
        (contains, contains && is_risk_type)
    } else {
        let lower = order_type.to_lowercase();
        (
            lower.contains("stop"),
            lower == "stop" || lower == "stop limit",
        )
    }
}

/// A cell that a spreadsheet would evaluate as a formula. The caller passes
/// the value as we echo it (`B/S` trimmed) or with its leading spaces
/// removed (`Contract`, `Order ID`), because spreadsheet imports skip
/// leading spaces before deciding that a cell is a formula
/// (`docs/quirks.md`, "CSV-injection defence").
pub fn formula_like(text: &str) -> bool {
    matches!(
        text.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}
