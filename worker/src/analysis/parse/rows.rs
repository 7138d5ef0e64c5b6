//! Data rows → the order table: each row becomes an [`Order`]; a filled
//! row with a quantity and a fill time is also a fill candidate, checked
//! and typed once the whole column is known ([`TableBuilder::finish`]).

use std::collections::HashMap;

use super::cells::{formula_like, is_na, lower_eq, py_strip, stop_kind};
use super::columns::Columns;
use super::order_id::IdColumn;
use super::timestamp::parse_timestamp;
use super::{
    CellProblem, Fill, Order, OrderId, OrderTable, ParseError, Side, COL_ORDER_ID, COL_PRICE,
    COL_QTY, COL_SIDE, COL_SYMBOL,
};
use crate::analysis::num::{pandas_float, py_float};

/// Prices and quantities at or above this are out of range.
const MAX_PRICE_OR_QUANTITY: f64 = 1e15;

/// One data row's fields, shifted past an implicit index column.
pub(super) struct Row<'r> {
    pub(super) record: &'r csv::StringRecord,
    /// Leading fields that are an implicit index (`docs/quirks.md`, E-26).
    pub(super) lead: usize,
    /// 1-based line where the record starts.
    pub(super) line: usize,
}

impl Row<'_> {
    /// The cell's text (empty beyond a short row's end).
    fn cell(&self, column: usize) -> &str {
        self.record.get(self.lead + column).unwrap_or("")
    }

    /// The cell's text unless it is a missing-value token.
    fn value(&self, column: usize) -> Option<&str> {
        Some(self.cell(column)).filter(|cell| !is_na(cell))
    }
}

/// A fill candidate, before the quantity and `Order ID` columns are typed.
struct PendingFill {
    order: u32,
    quantity: f64,
    price: Result<f64, CellProblem>,
    id_text: Option<Box<str>>,
}

/// The order table under construction, and what is known about the file
/// so far.
pub(super) struct TableBuilder {
    columns: Columns,
    pub(super) table: OrderTable,
    symbol_ids: HashMap<String, u32>,
    side_ids: HashMap<String, u32>,
    last_symbol: Option<u32>,
    /// The first problem found in a fill's side, contract or quantity.
    first_cell_error: Option<ParseError>,
    /// The first line with a non-numeric quantity (the whole column fails).
    quantity_bad_line: Option<usize>,
    order_ids: IdColumn,
    pending: Vec<PendingFill>,
}

impl TableBuilder {
    pub(super) fn new(columns: Columns) -> Self {
        Self {
            columns,
            table: OrderTable::default(),
            symbol_ids: HashMap::new(),
            side_ids: HashMap::new(),
            last_symbol: None,
            first_cell_error: None,
            quantity_bad_line: None,
            order_ids: IdColumn::default(),
            pending: Vec::new(),
        }
    }

    /// Reads one data row.
    pub(super) fn add_row(&mut self, row: &Row<'_>) {
        let columns = self.columns;
        let status = row.value(columns.status).map(py_strip);
        let filled = status == Some("Filled");
        let canceled = status.is_some_and(|status| lower_eq(status, "canceled"));
        let side_text = row.value(columns.side).map(py_strip);
        let side = self.side(side_text);
        let symbol_text = row.value(columns.symbol);
        let symbol = symbol_text.map(|text| self.symbol(text));
        if symbol.is_some() {
            self.last_symbol = symbol;
        }
        let ts = row.value(columns.timestamp).and_then(parse_timestamp);
        let fill_ts = row.value(columns.fill_time).and_then(parse_timestamp);
        self.table.any_ts |= ts.is_some();
        self.table.any_fill_ts |= fill_ts.is_some();
        let (is_stop, risk_type) = row
            .value(columns.order_type)
            .map_or((false, false), |order_type| stop_kind(py_strip(order_type)));
        let (stop_present, stop_price) = self.stop_price(row);
        let quantity = self.quantity(row);
        let id_text = columns.order_id.and_then(|column| {
            let cell = row.cell(column);
            let missing = is_na(cell);
            self.order_ids.observe(cell, missing);
            (!missing).then_some(cell)
        });
        let order = self.table.orders.len() as u32;
        let is_fill = filled && quantity.is_some_and(|q| q > 0.0) && fill_ts.is_some();
        if is_fill {
            if let Some((column, problem)) = fill_problem(side, side_text, symbol_text, quantity) {
                self.first_cell_error.get_or_insert(ParseError::Cell {
                    line: row.line,
                    column,
                    problem,
                });
            }
            self.pending.push(PendingFill {
                order,
                quantity: quantity.unwrap_or(0.0),
                price: price(row.value(columns.price)),
                id_text: id_text.map(Into::into),
            });
        }
        self.table.orders.push(Order {
            line: row.line as u32,
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

    /// The side, interning texts other than `Buy`/`Sell`.
    fn side(&mut self, text: Option<&str>) -> Side {
        match text {
            None => Side::Missing,
            Some("Buy") => Side::Buy,
            Some("Sell") => Side::Sell,
            Some(other) => {
                let next = self.side_ids.len() as u32;
                let side_texts = &mut self.table.side_texts;
                let id = *self.side_ids.entry(other.to_owned()).or_insert_with(|| {
                    side_texts.push(other.to_owned());
                    next
                });
                Side::Other(id)
            }
        }
    }

    /// The interned id of a contract (untrimmed; `docs/quirks.md` E-19).
    fn symbol(&mut self, text: &str) -> u32 {
        let symbols = &mut self.table.symbols;
        if let Some(id) = self.last_symbol.filter(|&id| symbols[id as usize] == text) {
            return id;
        }
        if let Some(id) = self.symbol_ids.get(text) {
            return *id;
        }
        let id = symbols.len() as u32;
        symbols.push(text.to_owned());
        self.symbol_ids.insert(text.to_owned(), id);
        id
    }

    /// `(cell present, value)`; a non-numeric cell is remembered, as it
    /// turns the whole column into text.
    fn stop_price(&mut self, row: &Row<'_>) -> (bool, f64) {
        match row.value(self.columns.stop_price) {
            None => (false, f64::NAN),
            Some(cell) => match pandas_float(cell) {
                Some(value) => (true, value),
                None => {
                    self.table.stop_price_bad_line.get_or_insert(row.line);
                    (true, f64::NAN)
                }
            },
        }
    }

    /// The quantity; a non-numeric cell is remembered (the legacy crashed
    /// on the whole column).
    fn quantity(&mut self, row: &Row<'_>) -> Option<f64> {
        let cell = row.value(self.columns.quantity)?;
        let value = pandas_float(cell);
        if value.is_none() {
            self.quantity_bad_line.get_or_insert(row.line);
        }
        value
    }

    /// The table, or the first problem in file order: a non-numeric
    /// quantity column first, then the earliest bad fill cell, then a
    /// formula-like text `Order ID`.
    pub(super) fn finish(self) -> Result<OrderTable, ParseError> {
        let Self {
            columns,
            mut table,
            first_cell_error,
            quantity_bad_line,
            order_ids,
            pending,
            ..
        } = self;
        if let Some(line) = quantity_bad_line {
            return Err(ParseError::Cell {
                line,
                column: COL_QTY,
                problem: CellProblem::NotANumber,
            });
        }
        let line_of = |fill: &PendingFill| table.orders[fill.order as usize].line as usize;
        let first_price_error = pending.iter().find_map(|fill| {
            let problem = fill.price.as_ref().err()?;
            Some(ParseError::Cell {
                line: line_of(fill),
                column: COL_PRICE,
                problem: problem.clone(),
            })
        });
        let first_error = match (first_cell_error, first_price_error) {
            (Some(cell), Some(price)) => Some(if error_line(&cell) <= error_line(&price) {
                cell
            } else {
                price
            }),
            (cell, price) => cell.or(price),
        };
        if let Some(error) = first_error {
            return Err(error);
        }
        let kind = order_ids.kind(columns.order_id.is_some());
        let mut fills = Vec::with_capacity(pending.len());
        for fill in pending {
            let line = line_of(&fill);
            let order_id = kind.order_id(fill.id_text);
            if matches!(&order_id, OrderId::Str(text) if formula_like(text.trim_start_matches(' ')))
            {
                return Err(ParseError::Cell {
                    line,
                    column: COL_ORDER_ID,
                    problem: CellProblem::FormulaLike,
                });
            }
            let order = &table.orders[fill.order as usize];
            fills.push(Fill {
                order: fill.order,
                qty: fill.quantity.trunc() as i64,
                price: fill.price.unwrap_or(f64::NAN),
                time: order.fill_ts.unwrap_or(0),
                order_id,
            });
        }
        table.fills = fills;
        Ok(table)
    }
}

/// What is wrong with a fill's side, contract or quantity, checked in this
/// order (`docs/quirks.md`, E-21 and "CSV-injection defence").
fn fill_problem(
    side: Side,
    side_text: Option<&str>,
    symbol_text: Option<&str>,
    quantity: Option<f64>,
) -> Option<(&'static str, CellProblem)> {
    if side == Side::Missing {
        Some((COL_SIDE, CellProblem::Missing))
    } else if side_text.is_some_and(formula_like) {
        Some((COL_SIDE, CellProblem::FormulaLike))
    } else if symbol_text.is_none() {
        Some((COL_SYMBOL, CellProblem::Missing))
    } else if symbol_text.is_some_and(|text| formula_like(text.trim_start_matches(' '))) {
        Some((COL_SYMBOL, CellProblem::FormulaLike))
    } else if quantity.is_some_and(|q| q.is_nan() || q >= MAX_PRICE_OR_QUANTITY) {
        Some((COL_QTY, CellProblem::OutOfRange))
    } else {
        None
    }
}

/// A fill's price: finite and below the range limit (`docs/quirks.md`,
/// E-22).
fn price(cell: Option<&str>) -> Result<f64, CellProblem> {
    let cell = cell.ok_or(CellProblem::Missing)?;
    match py_float(cell) {
        Some(value) if value.is_finite() && value.abs() < MAX_PRICE_OR_QUANTITY => Ok(value),
        Some(value) if value.is_nan() => Err(CellProblem::Missing),
        Some(_) => Err(CellProblem::OutOfRange),
        None => Err(CellProblem::NotANumber),
    }
}

/// The line of a cell error (0 for others, which do not occur here).
fn error_line(error: &ParseError) -> usize {
    match error {
        ParseError::Cell { line, .. } => *line,
        _ => 0,
    }
}
