//! The `Order ID` column's type, inferred over the whole column as pandas
//! does, and each fill's id typed by it (`docs/quirks.md`, E-23).

use super::OrderId;
use crate::analysis::num::{pandas_float, pandas_int};

/// What the `Order ID` cells seen so far allow.
#[derive(Debug)]
pub(super) struct IdColumn {
    any_missing: bool,
    all_int: bool,
    all_float: bool,
    any_cell: bool,
    int_outside_i64: bool,
    int_outside_u64: bool,
}

impl Default for IdColumn {
    fn default() -> Self {
        Self {
            any_missing: false,
            all_int: true,
            all_float: true,
            any_cell: false,
            int_outside_i64: false,
            int_outside_u64: false,
        }
    }
}

/// The column type pandas gives `Order ID`.
#[derive(Debug, Clone, Copy)]
pub(super) enum IdKind {
    /// No `Order ID` column.
    Absent,
    /// int64, or uint64 when a value needs it and none is negative.
    Int,
    /// float64 (also: numbers with a missing cell, or no cell at all).
    Float,
    /// object: text, kept verbatim.
    Text,
}

impl IdColumn {
    /// Records one cell; `missing` for a missing-value token.
    pub(super) fn observe(&mut self, cell: &str, missing: bool) {
        if missing {
            self.any_missing = true;
            return;
        }
        self.any_cell = true;
        match pandas_int(cell) {
            Some(value) => {
                if value > i64::MAX as i128 || value < i64::MIN as i128 {
                    self.int_outside_i64 = true;
                }
                if value < 0 || value > u64::MAX as i128 {
                    self.int_outside_u64 = true;
                }
            }
            None => {
                self.all_int = false;
                if pandas_float(cell).is_none() {
                    self.all_float = false;
                }
            }
        }
    }

    /// The column's type once every row is seen; `present`: the column
    /// exists.
    pub(super) fn kind(&self, present: bool) -> IdKind {
        if !present {
            IdKind::Absent
        } else if !self.any_cell {
            IdKind::Float
        } else if self.all_int
            && !self.any_missing
            && (!self.int_outside_i64 || !self.int_outside_u64)
        {
            IdKind::Int
        } else if self.all_int || self.all_float {
            IdKind::Float
        } else {
            IdKind::Text
        }
    }
}

impl IdKind {
    /// A fill's id: its cell text (`None`: missing) read as this type.
    pub(super) fn order_id(self, text: Option<Box<str>>) -> OrderId {
        match (self, text) {
            (IdKind::Absent, _) | (_, None) => OrderId::Null,
            (IdKind::Int, Some(text)) => OrderId::Int(pandas_int(&text).unwrap_or(0)),
            (IdKind::Float, Some(text)) => match pandas_float(&text) {
                Some(value) if value.is_finite() => OrderId::Float(value),
                _ => OrderId::Null,
            },
            (IdKind::Text, Some(text)) => OrderId::Str(text),
        }
    }
}
