//! CSV ingestion: the order export → an [`OrderTable`].
//!
//! The dialect is pandas' `read_csv` defaults as the legacy used them:
//! UTF-8 (BOM ignored), comma, double quotes, LF/CRLF, blank and
//! whitespace-only lines skipped, header names verbatim (first occurrence
//! of a duplicated name wins), short rows padded, a first data row wider
//! than the header turns its leading fields into an index
//! (`docs/quirks.md`, E-26), any later wider row is a structural error.
//! Cells equal to a missing-value token are missing in every column
//! (E-27).
//!
//! * `columns` — the header: column positions, missing columns;
//! * `rows` — data rows → orders and fill candidates, checked at the end;
//! * `cells` — cell text as pandas and Python read it;
//! * `order_id` — the `Order ID` column's inferred type;
//! * `records` — whitespace-only lines, a quote left open;
//! * `timestamp` — order times, through the `time` crate;
//! * `error` — [`ParseError`], each a 400 for the API.

mod cells;
mod columns;
mod error;
mod order_id;
mod records;
mod rows;
mod timestamp;

pub use cells::{formula_like, is_na};
pub use error::{CellProblem, ParseError};
pub use timestamp::{calendar_date, epoch_day, iso, parse_timestamp};

use columns::Columns;
use records::{is_whitespace_line, unterminated_quote};
use rows::{Row, TableBuilder};

/// Required columns in the legacy's check order; the last three are checked
/// together and reported as `Avg Fill Price, filledQty, Contract`.
pub const COL_STATUS: &str = "Status";
/// Side column.
pub const COL_SIDE: &str = "B/S";
/// Order event time.
pub const COL_TS: &str = "Timestamp";
/// Fill time.
pub const COL_FILL_TS: &str = "Fill Time";
/// Fill quantity.
pub const COL_QTY: &str = "filledQty";
/// Fill price.
pub const COL_PRICE: &str = "Avg Fill Price";
/// Position key.
pub const COL_SYMBOL: &str = "Contract";
/// Order type (not validated by the legacy; we require it, E-20).
pub const COL_TYPE: &str = "Type";
/// Stop price (not validated by the legacy; we require it, E-20).
pub const COL_STOP: &str = "Stop Price";
/// Optional order id.
pub const COL_ORDER_ID: &str = "Order ID";

/// A side as the detectors need it: `Buy`/`Sell` exactly, another text
/// (interned), or missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Exactly `Buy` (after trimming).
    Buy,
    /// Exactly `Sell`.
    Sell,
    /// Any other text; index into [`OrderTable::side_texts`].
    Other(u32),
    /// Missing.
    Missing,
}

/// A typed `Order ID` cell value (its type depends on the whole column).
#[derive(Debug, Clone, PartialEq)]
pub enum OrderId {
    /// Column absent, or a missing cell (the legacy's `NaN`: we write null).
    Null,
    /// Integer column.
    Int(i128),
    /// Float column.
    Float(f64),
    /// Text column, verbatim.
    Str(Box<str>),
}

/// One order row, reduced to what the engine uses.
#[derive(Debug, Clone)]
pub struct Order {
    /// 1-based line of the row.
    pub line: u32,
    /// Status trimmed equals `Filled`.
    pub filled: bool,
    /// Status trimmed and lower-cased equals `canceled`.
    pub canceled: bool,
    /// Trimmed side.
    pub side: Side,
    /// Interned `Contract`, untrimmed; `None` when missing.
    pub symbol: Option<u32>,
    /// Parsed `Timestamp`, seconds.
    pub ts: Option<i64>,
    /// Parsed `Fill Time`, seconds.
    pub fill_ts: Option<i64>,
    /// `Type` contains `stop` (trimmed, lower-cased).
    pub is_stop: bool,
    /// `Type` is exactly `stop` or `stop limit` (trimmed, lower-cased).
    pub risk_type: bool,
    /// `Stop Price` cell present (not missing).
    pub stop_present: bool,
    /// `Stop Price` value when numeric.
    pub stop_price: f64,
}

/// A fill: a row with status `Filled`, quantity > 0 and a fill time.
#[derive(Debug, Clone)]
pub struct Fill {
    /// Index into [`OrderTable::orders`].
    pub order: u32,
    /// `int(qty)`.
    pub qty: i64,
    /// Price (finite).
    pub price: f64,
    /// Fill time.
    pub time: i64,
    /// The row's order id, typed by the whole column.
    pub order_id: OrderId,
}

/// The parsed upload.
#[derive(Debug, Clone, Default)]
pub struct OrderTable {
    /// Data rows (csvRows).
    pub rows: usize,
    /// All rows, in file order.
    pub orders: Vec<Order>,
    /// Fills in file order.
    pub fills: Vec<Fill>,
    /// Interned contract names.
    pub symbols: Vec<String>,
    /// Interned side texts other than `Buy`/`Sell`.
    pub side_texts: Vec<String>,
    /// First line with a non-numeric `Stop Price` (the column is then text).
    pub stop_price_bad_line: Option<usize>,
    /// At least one row has a parsed `Timestamp`.
    pub any_ts: bool,
    /// At least one row has a parsed `Fill Time`.
    pub any_fill_ts: bool,
}

impl OrderTable {
    /// The text of a side.
    pub fn side_text(&self, side: Side) -> &str {
        match side {
            Side::Buy => "Buy",
            Side::Sell => "Sell",
            Side::Other(i) => &self.side_texts[i as usize],
            Side::Missing => "",
        }
    }
}

/// Parses CSV bytes into an order table.
pub fn parse_orders(bytes: &[u8]) -> Result<OrderTable, ParseError> {
    let source = decode(bytes)?.as_bytes();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(source);
    let mut record = csv::StringRecord::new();
    let header = read_header(&mut reader, &mut record, source)?;
    let (columns, missing) = Columns::locate(&header);
    let mut last_start = record.position().map_or(0, |p| p.byte() as usize);
    let mut last_line = record.position().map_or(1, |p| p.line() as usize);
    let mut lead = 0usize;
    let mut expected_fields = header.len();
    let mut first_row = true;
    let mut builder = TableBuilder::new(columns);
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                return Err(ParseError::UnterminatedQuote { line });
            }
        }
        if is_whitespace_line(&record, source) {
            continue;
        }
        let position = record.position().cloned();
        let line = position.as_ref().map_or(0, |p| p.line() as usize);
        last_start = position.as_ref().map_or(last_start, |p| p.byte() as usize);
        last_line = line;
        let fields = record.len();
        if first_row {
            first_row = false;
            if fields > header.len() {
                lead = fields - header.len();
                expected_fields = fields;
            }
        } else if fields > expected_fields {
            return Err(ParseError::TooManyFields {
                line,
                expected: expected_fields,
                saw: fields,
            });
        }
        builder.table.rows += 1;
        if missing.is_empty() {
            builder.add_row(&Row {
                record: &record,
                lead,
                line,
            });
        }
    }
    // pandas reports a quoted field left open at the end of the input.
    if unterminated_quote(&source[last_start.min(source.len())..]) {
        return Err(ParseError::UnterminatedQuote { line: last_line });
    }
    if !missing.required.is_empty() {
        return Err(ParseError::MissingColumns(missing.required));
    }
    if !missing.analysis.is_empty() {
        return Err(ParseError::MissingAnalysisColumns(missing.analysis));
    }
    builder.finish()
}

/// The bytes as text without a byte-order mark; not UTF-8 is an error
/// naming the line of the first bad byte.
fn decode(bytes: &[u8]) -> Result<&str, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        ParseError::NotUtf8 {
            line: 1 + valid.iter().filter(|b| **b == b'\n').count(),
        }
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// The header: the first line that is not blank.
fn read_header(
    reader: &mut csv::Reader<&[u8]>,
    record: &mut csv::StringRecord,
    source: &[u8],
) -> Result<Vec<String>, ParseError> {
    loop {
        match reader.read_record(record) {
            Ok(true) if is_whitespace_line(record, source) => continue,
            Ok(true) => return Ok(record.iter().map(str::to_owned).collect()),
            Ok(false) | Err(_) => return Err(ParseError::Empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_follow_the_legacy_order() {
        let e = parse_orders(b"Timestamp,Contract\n1,2\n").unwrap_err();
        assert_eq!(e, ParseError::MissingColumns(vec!["Status"]));
        let e = parse_orders(b"Status,B/S,Timestamp,Fill Time,Contract\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::MissingColumns(vec!["Avg Fill Price", "filledQty"])
        );
        let e = parse_orders(b"Status,B/S,Timestamp,Fill Time,Contract,filledQty,Avg Fill Price\n")
            .unwrap_err();
        assert_eq!(
            e,
            ParseError::MissingAnalysisColumns(vec!["Type", "Stop Price"])
        );
    }

    #[test]
    fn structure() {
        assert_eq!(parse_orders(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(parse_orders(b"\n\n  \n").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            parse_orders(b"\xff\xfe").unwrap_err(),
            ParseError::NotUtf8 { .. }
        ));
        let hdr =
            "Status,B/S,Timestamp,Fill Time,Contract,filledQty,Avg Fill Price,Type,Stop Price\n";
        let wide = format!("{hdr}Filled,Buy,,,ES,1,1,Market,\nFilled,Buy,,,ES,1,1,Market,,x\n");
        assert!(matches!(
            parse_orders(wide.as_bytes()).unwrap_err(),
            ParseError::TooManyFields { line: 3, .. }
        ));
        let open = format!("{hdr}Filled,Buy,,,\"ES,1,1,Market,\n");
        assert!(matches!(
            parse_orders(open.as_bytes()).unwrap_err(),
            ParseError::UnterminatedQuote { .. }
        ));
        let blank = format!("{hdr}\n   \nFilled,Buy,,,ES,1,1,Market,\r\n\r\n");
        assert_eq!(parse_orders(blank.as_bytes()).unwrap().rows, 1);
    }
}
