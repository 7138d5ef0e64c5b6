//! CSV ingestion (analysis.md §2): the order export → an [`OrderTable`].
//!
//! The dialect is pandas' `read_csv` defaults as the legacy used them:
//! UTF-8 (BOM ignored), comma, double quotes, LF/CRLF, blank and
//! whitespace-only lines skipped, header names verbatim (first occurrence
//! of a duplicated name wins), short rows padded, a first data row wider
//! than the header turns its leading fields into an index (E-26), any later
//! wider row is a structural error. Cells equal to a missing-value token
//! (§2.3) are missing in every column.

use std::collections::HashMap;

use super::num::{pandas_float, pandas_int, py_float, py_isspace};

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

/// The pandas missing-value tokens (§2.3).
const NA_TOKENS: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "<NA>", "N/A", "n/a", "NA", "-1.#IND", "-1.#QNAN", "1.#IND",
    "1.#QNAN", "-NaN", "-nan", "NaN", "nan", "NULL", "null", "None",
];

/// Whether a cell's whole text is a missing-value token.
pub fn is_na(cell: &str) -> bool {
    NA_TOKENS.contains(&cell)
}

/// What is wrong with one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellProblem {
    /// A quantity that is not a number (the legacy crashed on the whole
    /// column).
    NotANumber,
    /// A filled order without a value (E-21, E-22, missing contract).
    Missing,
    /// A price or quantity that is infinite or absurdly large.
    OutOfRange,
    /// Text we echo back that starts like a spreadsheet formula.
    FormulaLike,
}

/// Why an upload cannot be analysed. Every variant is a 400 for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No bytes, or only blank lines: there is no header.
    Empty,
    /// Bytes that are not UTF-8, first bad byte at this 1-based line.
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// A data row wider than the table (pandas `ParserError`).
    TooManyFields {
        /// 1-based line.
        line: usize,
        /// Fields the table has.
        expected: usize,
        /// Fields on that line.
        saw: usize,
    },
    /// A quoted field that never closes.
    UnterminatedQuote {
        /// 1-based line where the field starts.
        line: usize,
    },
    /// Required columns missing, in the legacy's reporting order.
    MissingColumns(Vec<&'static str>),
    /// `Type` / `Stop Price` missing (legacy: 500 during analysis, E-20).
    MissingAnalysisColumns(Vec<&'static str>),
    /// One bad cell.
    Cell {
        /// 1-based line (spreadsheet row number; the header is row 1).
        line: usize,
        /// CSV header name.
        column: &'static str,
        /// What is wrong.
        problem: CellProblem,
    },
    /// A stop order that defines a trade's risk has a non-numeric
    /// `Stop Price` column (legacy: 500).
    StopPriceNotNumeric {
        /// 1-based line of the first non-numeric `Stop Price` cell.
        line: usize,
    },
    /// The file parsed but no position was ever closed (legacy: 500
    /// `division by zero`, H-5).
    NoTrades {
        /// Data rows.
        rows: usize,
        /// Filled rows used.
        fills: usize,
    },
}

impl ParseError {
    /// A message a trader can act on.
    pub fn message(&self) -> String {
        match self {
            ParseError::Empty => "The uploaded file is empty: it has no header row.".into(),
            ParseError::NotUtf8 { line } => format!(
                "The uploaded file is not UTF-8 text (first unreadable byte on line {line}). Export the orders as CSV."
            ),
            ParseError::TooManyFields { line, expected, saw } => format!(
                "The CSV format was not recognised: line {line} has {saw} fields where {expected} were expected."
            ),
            ParseError::UnterminatedQuote { line } => format!(
                "The CSV format was not recognised: a quoted field starting on line {line} is never closed."
            ),
            ParseError::MissingColumns(cols) => {
                format!("This file is missing required columns:\n{}", cols.join(", "))
            }
            ParseError::MissingAnalysisColumns(cols) => format!(
                "This file is missing columns needed for stop-loss analysis:\n{}",
                cols.join(", ")
            ),
            ParseError::Cell { line, column, problem } => match problem {
                CellProblem::NotANumber => {
                    format!("Row {line}, column '{column}': the value is not a number.")
                }
                CellProblem::Missing => {
                    format!("Row {line}, column '{column}': a filled order needs a value here.")
                }
                CellProblem::OutOfRange => {
                    format!("Row {line}, column '{column}': the number is out of range.")
                }
                CellProblem::FormulaLike => format!(
                    "Row {line}, column '{column}': the value starts like a spreadsheet formula (=, +, -, @, tab or carriage return) and was rejected."
                ),
            },
            ParseError::StopPriceNotNumeric { line } => format!(
                "Row {line}, column 'Stop Price': the value is not a number, so stop distances cannot be computed."
            ),
            ParseError::NoTrades { rows, fills } => format!(
                "No completed trades were found in this file ({rows} rows, {fills} usable fills). Trades are built from rows with Status 'Filled', a quantity and a Fill Time."
            ),
        }
    }

    /// Short client-safe facts for the envelope's `details`.
    pub fn details(&self) -> Vec<String> {
        match self {
            ParseError::Empty => vec!["empty file".into()],
            ParseError::NotUtf8 { line } => {
                vec![format!("row {line}"), "encoding: not UTF-8".into()]
            }
            ParseError::TooManyFields {
                line,
                expected,
                saw,
            } => vec![
                format!("row {line}"),
                format!("expected {expected} fields, saw {saw}"),
            ],
            ParseError::UnterminatedQuote { line } => vec![format!("row {line}")],
            ParseError::MissingColumns(cols) | ParseError::MissingAnalysisColumns(cols) => {
                cols.iter().map(|c| format!("column {c}")).collect()
            }
            ParseError::Cell { line, column, .. } => {
                vec![format!("row {line}"), format!("column {column}")]
            }
            ParseError::StopPriceNotNumeric { line } => {
                vec![format!("row {line}"), format!("column {COL_STOP}")]
            }
            ParseError::NoTrades { rows, fills } => {
                vec![
                    format!("rows {rows}"),
                    format!("fills {fills}"),
                    "trades 0".into(),
                ]
            }
        }
    }
}

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

/// Column kinds of `Order ID` as pandas infers them.
#[derive(Default)]
struct IdColumn {
    any_na: bool,
    all_int: bool,
    all_float: bool,
    any_cell: bool,
    int_overflow_i64: bool,
    int_outside_u64: bool,
}

/// Parses CSV bytes into an order table.
pub fn parse_orders(bytes: &[u8]) -> Result<OrderTable, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let upto = e.valid_up_to();
            let line = 1 + bytes[..upto].iter().filter(|b| **b == b'\n').count();
            return Err(ParseError::NotUtf8 { line });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = text.as_bytes();

    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(src);
    let mut rec = csv::StringRecord::new();

    // Header: the first non-blank line.
    let header: Vec<String> = loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {
                if is_whitespace_line(&rec, src) {
                    continue;
                }
                break rec.iter().map(str::to_string).collect();
            }
            Ok(false) => return Err(ParseError::Empty),
            Err(_) => return Err(ParseError::Empty),
        }
    };
    let mut last_start = rec.position().map(|p| p.byte() as usize).unwrap_or(0);
    let mut last_line = rec.position().map(|p| p.line() as usize).unwrap_or(1);
    let find = |name: &str| header.iter().position(|h| h == name);

    // Required columns, legacy order (legacy-api 4.1 row 5).
    let mut missing: Vec<&'static str> = Vec::new();
    for c in [COL_STATUS, COL_SIDE, COL_TS, COL_FILL_TS] {
        if find(c).is_none() {
            missing.push(c);
            break;
        }
    }
    if missing.is_empty() {
        for c in [COL_PRICE, COL_QTY, COL_SYMBOL] {
            if find(c).is_none() {
                missing.push(c);
            }
        }
    }
    let mut missing_analysis: Vec<&'static str> = Vec::new();
    for c in [COL_TYPE, COL_STOP] {
        if find(c).is_none() {
            missing_analysis.push(c);
        }
    }
    let cols_ok = missing.is_empty() && missing_analysis.is_empty();
    let idx = |name: &str| find(name).unwrap_or(usize::MAX);
    let (c_status, c_side, c_ts, c_fill, c_qty, c_price, c_sym, c_type, c_stop) = (
        idx(COL_STATUS),
        idx(COL_SIDE),
        idx(COL_TS),
        idx(COL_FILL_TS),
        idx(COL_QTY),
        idx(COL_PRICE),
        idx(COL_SYMBOL),
        idx(COL_TYPE),
        idx(COL_STOP),
    );
    let c_id = find(COL_ORDER_ID);

    let hlen = header.len();
    let mut lead = 0usize;
    let mut expected = hlen;
    let mut first = true;

    let mut table = OrderTable::default();
    let mut sym_ids: HashMap<String, u32> = HashMap::new();
    let mut side_ids: HashMap<String, u32> = HashMap::new();
    let mut last_sym: Option<u32> = None;
    let mut first_cell_error: Option<ParseError> = None;
    let mut qty_bad_line: Option<usize> = None;
    let mut idcol = IdColumn {
        all_int: true,
        all_float: true,
        ..Default::default()
    };
    // Fill candidates (before knowing whether the qty column is numeric).
    struct PendingFill {
        order: u32,
        qty: f64,
        price: Result<f64, CellProblem>,
        id_text: Option<Box<str>>,
    }
    let mut pending: Vec<PendingFill> = Vec::new();

    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => {
                let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
                return Err(ParseError::UnterminatedQuote { line });
            }
        }
        if is_whitespace_line(&rec, src) {
            continue;
        }
        let pos = rec.position().cloned();
        let line = pos.as_ref().map(|p| p.line() as usize).unwrap_or(0);
        last_start = pos
            .as_ref()
            .map(|p| p.byte() as usize)
            .unwrap_or(last_start);
        last_line = line;
        let n = rec.len();
        if first {
            first = false;
            if n > hlen {
                lead = n - hlen;
                expected = n;
            }
        } else if n > expected {
            return Err(ParseError::TooManyFields {
                line,
                expected,
                saw: n,
            });
        }
        table.rows += 1;
        if !cols_ok {
            continue;
        }
        let cell = |c: usize| -> &str { rec.get(lead + c).unwrap_or("") };
        let get = |c: usize| -> Option<&str> {
            let v = cell(c);
            if is_na(v) {
                None
            } else {
                Some(v)
            }
        };

        let status = get(c_status).map(py_strip);
        let filled = status == Some("Filled");
        let canceled = status.map(|s| lower_eq(s, "canceled")).unwrap_or(false);
        let side_trim = get(c_side).map(py_strip);
        let side = match side_trim {
            None => Side::Missing,
            Some("Buy") => Side::Buy,
            Some("Sell") => Side::Sell,
            Some(other) => {
                let next = side_ids.len() as u32;
                let id = *side_ids.entry(other.to_string()).or_insert_with(|| {
                    table.side_texts.push(other.to_string());
                    next
                });
                Side::Other(id)
            }
        };
        let sym_raw = get(c_sym);
        let symbol = sym_raw.map(|s| {
            if let Some(id) = last_sym.filter(|&id| table.symbols[id as usize] == s) {
                id
            } else if let Some(id) = sym_ids.get(s) {
                *id
            } else {
                let id = table.symbols.len() as u32;
                table.symbols.push(s.to_string());
                sym_ids.insert(s.to_string(), id);
                id
            }
        });
        if symbol.is_some() {
            last_sym = symbol;
        }
        let ts = get(c_ts).and_then(parse_timestamp);
        let fill_ts = get(c_fill).and_then(parse_timestamp);
        table.any_ts |= ts.is_some();
        table.any_fill_ts |= fill_ts.is_some();
        let (is_stop, risk_type) = match get(c_type) {
            Some(t) => stop_kind(py_strip(t)),
            None => (false, false),
        };
        let (stop_present, stop_price) = match get(c_stop) {
            None => (false, f64::NAN),
            Some(s) => match pandas_float(s) {
                Some(v) => (true, v),
                None => {
                    if table.stop_price_bad_line.is_none() {
                        table.stop_price_bad_line = Some(line);
                    }
                    (true, f64::NAN)
                }
            },
        };
        let qty = match get(c_qty) {
            None => None,
            Some(q) => match pandas_float(q) {
                Some(v) => Some(v),
                None => {
                    if qty_bad_line.is_none() {
                        qty_bad_line = Some(line);
                    }
                    None
                }
            },
        };
        // Order ID column typing.
        let id_text = match c_id {
            Some(c) => {
                let v = cell(c);
                if is_na(v) {
                    idcol.any_na = true;
                    None
                } else {
                    idcol.any_cell = true;
                    match pandas_int(v) {
                        Some(i) => {
                            if i > i64::MAX as i128 || i < i64::MIN as i128 {
                                idcol.int_overflow_i64 = true;
                            }
                            if i < 0 || i > u64::MAX as i128 {
                                idcol.int_outside_u64 = true;
                            }
                        }
                        None => {
                            idcol.all_int = false;
                            if pandas_float(v).is_none() {
                                idcol.all_float = false;
                            }
                        }
                    }
                    Some(v)
                }
            }
            None => None,
        };

        let order_index = table.orders.len() as u32;
        let is_fill = filled && qty.map(|q| q > 0.0).unwrap_or(false) && fill_ts.is_some();
        if is_fill {
            // Our decisions E-21/E-22: a fill needs a side, a contract and a
            // finite price; echoed text must not look like a formula.
            let mut problem: Option<(&'static str, CellProblem)> = None;
            if side == Side::Missing {
                problem = Some((COL_SIDE, CellProblem::Missing));
            } else if side_trim.map(formula_like).unwrap_or(false) {
                problem = Some((COL_SIDE, CellProblem::FormulaLike));
            } else if sym_raw.is_none() {
                problem = Some((COL_SYMBOL, CellProblem::Missing));
            } else if sym_raw
                .map(|s| formula_like(s.trim_start_matches(' ')))
                .unwrap_or(false)
            {
                problem = Some((COL_SYMBOL, CellProblem::FormulaLike));
            } else if qty.is_some_and(|q| q.is_nan() || q >= 1e15) {
                problem = Some((COL_QTY, CellProblem::OutOfRange));
            }
            if let Some((column, problem)) = problem {
                if first_cell_error.is_none() {
                    first_cell_error = Some(ParseError::Cell {
                        line,
                        column,
                        problem,
                    });
                }
            }
            let price = match get(c_price) {
                None => Err(CellProblem::Missing),
                Some(p) => match py_float(p) {
                    Some(v) if v.is_finite() && v.abs() < 1e15 => Ok(v),
                    Some(v) if v.is_nan() => Err(CellProblem::Missing),
                    Some(_) => Err(CellProblem::OutOfRange),
                    None => Err(CellProblem::NotANumber),
                },
            };
            pending.push(PendingFill {
                order: order_index,
                qty: qty.unwrap_or(0.0),
                price,
                id_text: id_text.map(|s| s.into()),
            });
        }
        table.orders.push(Order {
            line: line as u32,
            filled,
            canceled,
            side,
            symbol,
            ts,
            fill_ts,
            is_stop,
            risk_type,
            stop_present,
            stop_price,
        });
    }

    // pandas reports a quoted field left open at the end of the input.
    if unterminated_quote(&src[last_start.min(src.len())..]) {
        return Err(ParseError::UnterminatedQuote { line: last_line });
    }
    if !missing.is_empty() {
        return Err(ParseError::MissingColumns(missing));
    }
    if !missing_analysis.is_empty() {
        return Err(ParseError::MissingAnalysisColumns(missing_analysis));
    }
    if let Some(line) = qty_bad_line {
        return Err(ParseError::Cell {
            line,
            column: COL_QTY,
            problem: CellProblem::NotANumber,
        });
    }
    // Cell problems, in file order: price problems are found per fill.
    let mut first_price_error: Option<ParseError> = None;
    for p in &pending {
        if let Err(problem) = &p.price {
            let line = table.orders[p.order as usize].line as usize;
            first_price_error = Some(ParseError::Cell {
                line,
                column: COL_PRICE,
                problem: problem.clone(),
            });
            break;
        }
    }
    let err = match (first_cell_error, first_price_error) {
        (Some(a), Some(b)) => Some(if line_of(&a) <= line_of(&b) { a } else { b }),
        (a, b) => a.or(b),
    };
    if let Some(e) = err {
        return Err(e);
    }

    // Order ID column type (§2.6).
    enum IdKind {
        Absent,
        Int,
        Float,
        Str,
    }
    let kind = if c_id.is_none() {
        IdKind::Absent
    } else if !idcol.any_cell {
        IdKind::Float
    } else if idcol.all_int && !idcol.any_na && (!idcol.int_overflow_i64 || !idcol.int_outside_u64)
    {
        // int64, or uint64 when a value needs it and none is negative
        IdKind::Int
    } else if idcol.all_int || idcol.all_float {
        IdKind::Float
    } else {
        IdKind::Str
    };
    for p in pending {
        let order_id = match (&kind, p.id_text) {
            (IdKind::Absent, _) | (_, None) => OrderId::Null,
            (IdKind::Int, Some(t)) => OrderId::Int(pandas_int(&t).unwrap_or(0)),
            (IdKind::Float, Some(t)) => match pandas_float(&t) {
                Some(v) if v.is_finite() => OrderId::Float(v),
                _ => OrderId::Null,
            },
            (IdKind::Str, Some(t)) => {
                if formula_like(t.trim_start_matches(' ')) {
                    let line = table.orders[p.order as usize].line as usize;
                    return Err(ParseError::Cell {
                        line,
                        column: COL_ORDER_ID,
                        problem: CellProblem::FormulaLike,
                    });
                }
                OrderId::Str(t)
            }
        };
        let o = &table.orders[p.order as usize];
        table.fills.push(Fill {
            order: p.order,
            qty: p.qty.trunc() as i64,
            price: p.price.unwrap_or(f64::NAN),
            time: o.fill_ts.unwrap_or(0),
            order_id,
        });
    }
    Ok(table)
}

fn line_of(e: &ParseError) -> usize {
    match e {
        ParseError::Cell { line, .. } => *line,
        _ => 0,
    }
}

/// Python's `str.strip()`, with an ASCII fast path.
fn py_strip(s: &str) -> &str {
    if s.is_ascii() {
        s.trim_matches(|c: char| {
            c.is_ascii_whitespace() || matches!(c, '\u{0b}' | '\u{1c}'..='\u{1f}')
        })
    } else {
        s.trim_matches(py_isspace)
    }
}

/// `s.lower() == word` for an ASCII `word`.
fn lower_eq(s: &str, word: &str) -> bool {
    if s.is_ascii() {
        s.eq_ignore_ascii_case(word)
    } else {
        s.to_lowercase() == word
    }
}

/// `(contains "stop", is "stop" or "stop limit")` on the lower-cased type.
fn stop_kind(t: &str) -> (bool, bool) {
    if t.is_ascii() {
        let b = t.as_bytes();
        let contains = b.windows(4).any(|w| w.eq_ignore_ascii_case(b"stop"));
        (
            contains,
            contains && (t.eq_ignore_ascii_case("stop") || t.eq_ignore_ascii_case("stop limit")),
        )
    } else {
        let l = t.to_lowercase();
        (l.contains("stop"), l == "stop" || l == "stop limit")
    }
}

/// A cell that a spreadsheet would evaluate as a formula. The caller passes
/// the value as we echo it (`B/S` trimmed) or with its leading spaces
/// removed (`Contract`, `Order ID`), because spreadsheet imports skip
/// leading spaces before deciding that a cell is a formula.
pub fn formula_like(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// pandas skips lines made only of spaces and tabs.
fn is_whitespace_line(rec: &csv::StringRecord, src: &[u8]) -> bool {
    if rec.len() != 1 {
        return false;
    }
    let f = rec[0].as_bytes();
    if f.is_empty() || !f.iter().all(|b| *b == b' ' || *b == b'\t') {
        return false;
    }
    let start = rec.position().map(|p| p.byte() as usize).unwrap_or(0);
    src.get(start) != Some(&b'"')
}

/// Whether the last record (from its start) leaves a quoted field open.
fn unterminated_quote(tail: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum S {
        Start,
        Field,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::Start;
    for &b in tail {
        s = match s {
            S::Start => match b {
                b'"' => S::Quoted,
                b',' | b'\n' | b'\r' => S::Start,
                _ => S::Field,
            },
            S::Field => match b {
                b',' | b'\n' | b'\r' => S::Start,
                _ => S::Field,
            },
            S::Quoted => match b {
                b'"' => S::QuoteInQuoted,
                _ => S::Quoted,
            },
            S::QuoteInQuoted => match b {
                b'"' => S::Quoted,
                b',' | b'\n' | b'\r' => S::Start,
                _ => S::Field,
            },
        };
    }
    s == S::Quoted
}

/// Parses `M/D/YYYY<ws>H:M:S` (§2.7) into seconds since 1970-01-01.
/// Anything else is `None` (silently missing, E-17).
pub fn parse_timestamp(cell: &str) -> Option<i64> {
    let b = cell.as_bytes();
    let mut i = 0usize;
    let month = two_digits(b, &mut i, false)?;
    if !(1..=12).contains(&month.0) {
        return None;
    }
    expect(b, &mut i, b'/')?;
    // DAY: one or two digits, or a space followed by one digit.
    let day = if b.get(i) == Some(&b' ') {
        i += 1;
        let d = digit(b, &mut i)?;
        if d == 0 {
            return None;
        }
        d
    } else {
        let d = two_digits(b, &mut i, false)?;
        d.0
    };
    if day == 0 || day > 31 {
        return None;
    }
    expect(b, &mut i, b'/')?;
    let mut year = 0u32;
    for _ in 0..4 {
        year = year * 10 + digit(b, &mut i)?;
    }
    // WS+ (Python's \s), on characters.
    let rest = &cell[i..];
    let trimmed = rest.trim_start_matches(py_isspace);
    if trimmed.len() == rest.len() {
        return None;
    }
    let b = trimmed.as_bytes();
    let mut i = 0usize;
    let hour = two_digits(b, &mut i, true)?.0;
    expect(b, &mut i, b':')?;
    let minute = two_digits(b, &mut i, true)?.0;
    expect(b, &mut i, b':')?;
    let second = two_digits(b, &mut i, true)?.0;
    if i != b.len() || hour > 23 || minute > 59 || second > 61 {
        return None;
    }
    if year == 0 || day > days_in_month(year, month.0) {
        return None;
    }
    let days = days_from_civil(year as i64, month.0, day);
    Some(days * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64)
}

fn digit(b: &[u8], i: &mut usize) -> Option<u32> {
    let c = *b.get(*i)?;
    if c.is_ascii_digit() {
        *i += 1;
        Some((c - b'0') as u32)
    } else {
        None
    }
}

/// One or two digits; returns (value, digit count). Two-digit forms with a
/// leading zero are allowed.
fn two_digits(b: &[u8], i: &mut usize, _zero_ok: bool) -> Option<(u32, usize)> {
    let d1 = digit(b, i)?;
    match b.get(*i) {
        Some(c) if c.is_ascii_digit() => {
            *i += 1;
            Some((d1 * 10 + (c - b'0') as u32, 2))
        }
        _ => Some((d1, 1)),
    }
}

fn expect(b: &[u8], i: &mut usize, c: u8) -> Option<()> {
    if b.get(*i) == Some(&c) {
        *i += 1;
        Some(())
    } else {
        None
    }
}

fn is_leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDTHH:MM:SS` (analysis.md §10).
pub fn iso(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        y,
        m,
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
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
