//! The header: where the columns the engine reads are, and which required
//! ones are missing, reported in the legacy's order.

use super::{
    COL_FILL_TS, COL_ORDER_ID, COL_PRICE, COL_QTY, COL_SIDE, COL_STATUS, COL_STOP, COL_SYMBOL,
    COL_TS, COL_TYPE,
};

/// Field indexes of the columns the engine reads (before the shift by an
/// implicit index column, `docs/quirks.md` E-26).
#[derive(Debug, Clone, Copy)]
pub(super) struct Columns {
    pub(super) status: usize,
    pub(super) side: usize,
    pub(super) timestamp: usize,
    pub(super) fill_time: usize,
    pub(super) quantity: usize,
    pub(super) price: usize,
    pub(super) symbol: usize,
    pub(super) order_type: usize,
    pub(super) stop_price: usize,
    /// The optional `Order ID` column.
    pub(super) order_id: Option<usize>,
}

/// Required columns the header lacks.
#[derive(Debug, Default)]
pub(super) struct MissingColumns {
    /// The legacy's checks, in its order: the first missing of `Status`,
    /// `B/S`, `Timestamp`, `Fill Time`; only when all four are there, every
    /// missing one of `Avg Fill Price`, `filledQty`, `Contract`.
    pub(super) required: Vec<&'static str>,
    /// `Type` and `Stop Price`, which the legacy needed only during the
    /// analysis (`docs/quirks.md`, E-20).
    pub(super) analysis: Vec<&'static str>,
}

impl MissingColumns {
    pub(super) fn is_empty(&self) -> bool {
        self.required.is_empty() && self.analysis.is_empty()
    }
}

impl Columns {
    /// Finds the columns in `header` (the first of duplicated names wins).
    /// Missing columns get an index no row reaches; rows are not read
    /// unless nothing is missing.
    pub(super) fn locate(header: &[String]) -> (Columns, MissingColumns) {
        let find = |name: &str| header.iter().position(|field| field == name);
        let mut missing = MissingColumns::default();
        if let Some(first) = [COL_STATUS, COL_SIDE, COL_TS, COL_FILL_TS]
            .into_iter()
            .find(|name| find(name).is_none())
        {
            missing.required.push(first);
        } else {
            missing.required.extend(
                [COL_PRICE, COL_QTY, COL_SYMBOL]
                    .into_iter()
                    .filter(|name| find(name).is_none()),
            );
        }
        missing.analysis.extend(
            [COL_TYPE, COL_STOP]
                .into_iter()
                .filter(|name| find(name).is_none()),
        );
        let index = |name: &str| find(name).unwrap_or(usize::MAX);
        let columns = Columns {
            status: index(COL_STATUS),
            side: index(COL_SIDE),
            timestamp: index(COL_TS),
            fill_time: index(COL_FILL_TS),
            quantity: index(COL_QTY),
            price: index(COL_PRICE),
            symbol: index(COL_SYMBOL),
            order_type: index(COL_TYPE),
            stop_price: index(COL_STOP),
            order_id: find(COL_ORDER_ID),
        };
        (columns, missing)
    }
}
