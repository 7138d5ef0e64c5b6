//! Why an upload cannot be analysed: [`ParseError`], each variant a 400
//! for the API with a message a trader can act on and client-safe details
//! (`docs/quirks.md`, "Upload errors").

use super::COL_STOP;

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

    /// The envelope's stable code (`docs/errors.md`).
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Empty => "csv.empty",
            ParseError::NotUtf8 { .. } => "csv.not_utf8",
            ParseError::TooManyFields { .. } => "csv.too_many_fields",
            ParseError::UnterminatedQuote { .. } => "csv.unterminated_quote",
            ParseError::MissingColumns(_) => "csv.missing_columns",
            ParseError::MissingAnalysisColumns(_) => "csv.missing_analysis_columns",
            ParseError::Cell { problem, .. } => match problem {
                CellProblem::NotANumber => "csv.cell_not_a_number",
                CellProblem::Missing => "csv.cell_missing",
                CellProblem::OutOfRange => "csv.cell_out_of_range",
                CellProblem::FormulaLike => "csv.cell_formula_like",
            },
            ParseError::StopPriceNotNumeric { .. } => "csv.stop_price_not_numeric",
            ParseError::NoTrades { .. } => "csv.no_trades",
        }
    }

    /// Where in the file the problem is, as data: the spreadsheet row (the
    /// header is row 1) and the column when one cell is at fault.
    pub fn location(&self) -> Option<(usize, Option<&'static str>)> {
        match self {
            ParseError::NotUtf8 { line }
            | ParseError::TooManyFields { line, .. }
            | ParseError::UnterminatedQuote { line } => Some((*line, None)),
            ParseError::Cell { line, column, .. } => Some((*line, Some(column))),
            ParseError::StopPriceNotNumeric { line } => Some((*line, Some(COL_STOP))),
            ParseError::Empty
            | ParseError::MissingColumns(_)
            | ParseError::MissingAnalysisColumns(_)
            | ParseError::NoTrades { .. } => None,
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
