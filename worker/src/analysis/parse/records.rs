//! The CSV dialect's corners that the `csv` reader does not decide the way
//! pandas does: whitespace-only lines and a quoted field left open at the
//! end of the input.

/// pandas skips lines made only of spaces and tabs (unless quoted).
pub(super) fn is_whitespace_line(record: &csv::StringRecord, source: &[u8]) -> bool {
    if record.len() != 1 {
        return false;
    }
    let field = record[0].as_bytes();
    if field.is_empty() || !field.iter().all(|b| *b == b' ' || *b == b'\t') {
        return false;
    }
    let start = record.position().map(|p| p.byte() as usize).unwrap_or(0);
    source.get(start) != Some(&b'"')
}

/// Whether the last record (from its start) leaves a quoted field open.
pub(super) fn unterminated_quote(tail: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &byte in tail {
        let separator = matches!(byte, b',' | b'\n' | b'\r');
        state = match state {
            State::FieldStart if byte == b'"' => State::Quoted,
            State::FieldStart | State::Unquoted if separator => State::FieldStart,
            State::FieldStart | State::Unquoted => State::Unquoted,
            State::Quoted if byte == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            State::QuoteInQuoted if byte == b'"' => State::Quoted,
            State::QuoteInQuoted if separator => State::FieldStart,
            State::QuoteInQuoted => State::Unquoted,
        };
    }
    state == State::Quoted
}
