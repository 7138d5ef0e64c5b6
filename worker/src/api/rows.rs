//! The trade object of the upload reply and of `/api/trades`, written
//! straight from the [`Trade`] through serde (no intermediate value): keys
//! in sorted order, finite numbers only.

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use super::json::{Finite, JsonValue};
use crate::analysis::parse::{iso, OrderId};
use crate::analysis::trades::{Dataset, Trade};

/// One trade as the API writes it.
pub(super) struct TradeRow<'a> {
    pub(super) dataset: &'a Dataset,
    pub(super) trade: &'a Trade,
}

impl Serialize for TradeRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self { dataset, trade } = self;
        // Field order is the sorted key order the legacy wrote.
        let mut row = serializer.serialize_struct("Trade", 14)?;
        row.serialize_field("entryPrice", &Finite(trade.entry_price))?;
        row.serialize_field("entryQty", &trade.entry_qty)?;
        row.serialize_field("entryTime", &iso(trade.entry_time))?;
        row.serialize_field("exitOrderId", &OrderIdValue(&trade.exit_order_id))?;
        row.serialize_field("exitPrice", &Finite(trade.exit_price))?;
        row.serialize_field("exitQty", &trade.exit_qty)?;
        row.serialize_field("exitTime", &iso(trade.exit_time))?;
        let mut id = uuid::Uuid::encode_buffer();
        row.serialize_field("id", &*trade.id.hyphenated().encode_lower(&mut id))?;
        row.serialize_field("mistakes", &TagNames(trade))?;
        row.serialize_field("pnl", &Finite(trade.pnl))?;
        row.serialize_field("pointsLost", &Finite(trade.points_lost))?;
        row.serialize_field("riskPoints", &trade.risk_points.map(Finite))?;
        row.serialize_field("side", dataset.side_text(trade.side))?;
        row.serialize_field("symbol", dataset.symbol(trade))?;
        row.end()
    }
}

/// Every trade of a dataset, as an array of [`TradeRow`]s.
pub(super) struct TradeRows<'a>(pub(super) &'a Dataset);

impl Serialize for TradeRows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let dataset = self.0;
        let mut rows = serializer.serialize_seq(Some(dataset.trades.len()))?;
        for trade in &dataset.trades {
            rows.serialize_element(&TradeRow { dataset, trade })?;
        }
        rows.end()
    }
}

/// An `Order ID` cell with the type its column gave it (`docs/quirks.md`,
/// E-23); a missing cell is `null`.
struct OrderIdValue<'a>(&'a OrderId);

impl Serialize for OrderIdValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            OrderId::Null => serializer.serialize_unit(),
            OrderId::Int(value) => serializer.serialize_i128(*value),
            OrderId::Float(value) if value.is_finite() => serializer.serialize_f64(*value),
            OrderId::Float(_) => serializer.serialize_unit(),
            OrderId::Str(text) => serializer.serialize_str(text),
        }
    }
}

/// A trade's mistake tags by name, in pipeline order.
struct TagNames<'a>(&'a Trade);

impl Serialize for TagNames<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.tag_names())
    }
}

/// An `Order ID` as a [`JsonValue`], for replies built as values.
pub(super) fn order_id_value(id: &OrderId) -> JsonValue {
    match id {
        OrderId::Null => JsonValue::Null,
        OrderId::Int(value) => JsonValue::Int(*value),
        OrderId::Float(value) => JsonValue::float(*value),
        OrderId::Str(text) => JsonValue::string(text.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::pipeline::tag_trades;
    use crate::api::json::to_body;

    /// The trade row equals the same object built as a sorted [`JsonValue`].
    #[test]
    fn trade_row_matches_the_generic_writer() {
        let csv = b"Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Stop Price,Status\n\
A1,01/02/2024 10:00:00,01/02/2024 10:00:00,Sell,\" E\"\"S\",2,100.5,Market,,Filled\n\
B\xc3\xa9,01/02/2024 10:00:05,,Buy,\" E\"\"S\",1,,Stop,101.25,Working\n\
C2,01/02/2024 10:05:00,01/02/2024 10:05:00,Buy,\" E\"\"S\",2,100.5,Limit,,Filled\n";
        let mut dataset = crate::analysis::load(csv).unwrap();
        tag_trades(&mut dataset.trades, 1.0, 1.0, 1.5);
        let trade = &dataset.trades[0];
        let generic = JsonValue::object([
            ("symbol", JsonValue::string(dataset.symbol(trade))),
            ("side", JsonValue::string(dataset.side_text(trade.side))),
            ("riskPoints", JsonValue::float_or_null(trade.risk_points)),
            ("pointsLost", JsonValue::float(trade.points_lost)),
            ("pnl", JsonValue::float(trade.pnl)),
            (
                "mistakes",
                JsonValue::Array(trade.tag_names().map(JsonValue::string).collect()),
            ),
            ("id", JsonValue::string(trade.id.to_string())),
            ("exitTime", JsonValue::string(iso(trade.exit_time))),
            ("exitQty", JsonValue::int(trade.exit_qty)),
            ("exitPrice", JsonValue::float(trade.exit_price)),
            ("exitOrderId", order_id_value(&trade.exit_order_id)),
            ("entryTime", JsonValue::string(iso(trade.entry_time))),
            ("entryQty", JsonValue::int(trade.entry_qty)),
            ("entryPrice", JsonValue::float(trade.entry_price)),
        ]);
        let row = String::from_utf8(
            to_body(&TradeRow {
                dataset: &dataset,
                trade,
            })
            .unwrap(),
        )
        .unwrap();
        let value = String::from_utf8(to_body(&generic).unwrap()).unwrap();
        assert_eq!(row, value);
        assert!(row.contains("\"pnl\":-0.0"), "{row}");
        assert!(row.contains("\"riskPoints\":0.75"), "{row}");
    }
}
