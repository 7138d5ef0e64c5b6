//! Engine behaviour pinned by worked examples (trade reconstruction, P&L,
//! stop detection, risk points, E-15) and the API-level decisions (H-4, H-7, H-16,
//! E-20…E-22, CSV-injection defence). `docs/quirks.md` points here.

use tradehabit_worker::analysis::{self, parse::ParseError, tag_trades};
use tradehabit_worker::api::{handle, Request, Session, UnknownSettings};

const HDR: &str =
    "Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Stop Price,Status\n";

#[allow(clippy::too_many_arguments)]
fn row(
    id: u32,
    ts: &str,
    fill: &str,
    side: &str,
    sym: &str,
    qty: &str,
    price: &str,
    ty: &str,
    stop: &str,
    status: &str,
) -> String {
    format!(
        "{id},01/02/2024 {ts},{},{side},{sym},{qty},{price},{ty},{stop},{status}\n",
        if fill.is_empty() {
            String::new()
        } else {
            format!("01/02/2024 {fill}")
        }
    )
}

/// A long trade 10:00:00 @ 100 → 10:05:00 @ 99 plus extra rows.
fn long_trade(extra: &str) -> String {
    format!(
        "{HDR}{}{}{extra}",
        row(1, "10:00:00", "10:00:00", "Buy", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "10:05:00", "10:05:00", "Sell", "ES", "1", "99", "Limit", "", "Filled"),
    )
}

fn stop(ts: &str, status: &str, ty: &str, side: &str, price: &str) -> String {
    row(9, ts, "", side, "ES", "1", "", ty, price, status)
}

fn verdict(csv: &str) -> (bool, Option<f64>) {
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(d.trades.len(), 1);
    (d.trades[0].no_stop, d.trades[0].risk_points)
}

#[test]
fn stop_detection_verified_cases() {
    // Stop detection cases: (extra order, tagged?, risk points)
    let cases: Vec<(String, bool, Option<f64>)> = vec![
        (
            stop("10:00:01", "Canceled", "Stop", "Sell", "95"),
            true,
            None,
        ),
        (
            stop("10:00:02", "Canceled", "Stop", "Sell", "95"),
            false,
            Some(5.0),
        ),
        (
            stop("10:00:00", "Cancelled", "Stop", "Sell", "95"),
            false,
            Some(5.0),
        ),
        (
            stop("10:05:02", "Filled", "Stop", "Sell", "95"),
            false,
            None,
        ),
        (
            stop("10:05:03", "Working", "Stop", "Sell", "95"),
            true,
            None,
        ),
        (
            stop("9:59:30", "Working", "Stop", "Sell", "95"),
            false,
            None,
        ),
        (
            stop("9:59:30", "Canceled", "Stop", "Sell", "95"),
            true,
            None,
        ),
        (
            stop("9:59:00", "Working", "Stop", "Sell", "95"),
            false,
            None,
        ),
        (stop("9:58:59", "Working", "Stop", "Sell", "95"), true, None),
        (stop("10:01:00", "Working", "Stop", "Buy", "95"), true, None),
        (
            stop("10:01:00", "Working", "Stop Limit", "Sell", "96"),
            false,
            Some(4.0),
        ),
        (
            stop("10:01:00", "Working", "TrailingStop", "Sell", "95"),
            false,
            None,
        ),
        (
            stop("10:01:00", "Working", " STOP ", "Sell", "96"),
            false,
            Some(4.0),
        ),
        (
            stop("10:01:00", "Rejected", "Stop", "Sell", "97"),
            false,
            Some(3.0),
        ),
        (stop("10:01:00", "Working", "Stop", "Sell", ""), false, None),
        (
            format!(
                "{}{}",
                stop("10:03:00", "Working", "Stop", "Sell", "94"),
                stop("10:01:00", "Working", "Stop", "Sell", "93")
            ),
            false,
            Some(7.0),
        ),
    ];
    for (extra, tagged, risk) in cases {
        assert_eq!(verdict(&long_trade(&extra)), (tagged, risk), "{extra}");
    }
    // Rule 3: canceled stop stamped exactly at the exit, within 2 s of entry.
    let quick = format!(
        "{HDR}{}{}{}",
        row(1, "10:00:00", "10:00:00", "Buy", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "10:00:01", "10:00:01", "Sell", "ES", "1", "99", "Limit", "", "Filled"),
        stop("10:00:01", "Canceled", "Stop", "Sell", "95"),
    );
    assert_eq!(verdict(&quick), (false, Some(5.0)));
    let not_quick = format!(
        "{HDR}{}{}{}",
        row(1, "11:00:00", "11:00:00", "Buy", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "11:00:02", "11:00:02", "Sell", "ES", "1", "99", "Limit", "", "Filled"),
        stop("11:00:01", "Canceled", "Stop", "Sell", "95"),
    );
    assert_eq!(verdict(&not_quick), (true, None));
}

#[test]
#[allow(clippy::type_complexity)]
fn reconstruction_worked_example() {
    // Two symbols, scale-in, partial exit, reversal.
    let csv = format!(
        "{HDR}{}{}{}{}{}{}{}{}",
        row(1, "9:00:00", "9:00:00", "Buy", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "9:01:00", "9:01:00", "Buy", "ES", "2", "101", "Market", "", "Filled"),
        row(3, "9:01:30", "9:01:30", "Sell", "NQ", "1", "500", "Market", "", "Filled"),
        row(4, "9:02:00", "9:02:00", "Sell", "ES", "1", "102", "Market", "", "Filled"),
        row(5, "9:03:00", "9:03:00", "Sell", "ES", "4", "99", "Market", "", "Filled"),
        row(6, "9:03:40", "9:03:40", "Buy", "NQ", "1", "510.5", "Market", "", "Filled"),
        row(7, "9:04:00", "9:04:00", "Buy", "ES", "2", "98", "Market", "", "Filled"),
        row(8, "9:05:00", "9:05:00", "Buy", "ES", "1", "97", "Market", "", "Filled"),
    );
    let d = analysis::load(csv.as_bytes()).unwrap();
    let got: Vec<(String, String, f64, i64, f64, i64, f64, f64)> = d
        .trades
        .iter()
        .map(|t| {
            (
                d.symbol(t).to_string(),
                d.side_text(t.side).to_string(),
                t.entry_price,
                t.entry_qty,
                t.exit_price,
                t.exit_qty,
                t.pnl,
                t.points_lost,
            )
        })
        .collect();
    let want = vec![
        ("ES", "Buy", 100.0, 1, 102.0, 1, 2.0, 2.0),
        ("ES", "Buy", 102.0, 2, 99.0, 4, -12.0, 3.0),
        ("NQ", "Sell", 500.0, 1, 510.5, 1, -10.5, 10.5),
        ("ES", "Sell", 99.0, 2, 98.0, 2, 2.0, 1.0),
    ];
    let want: Vec<_> = want
        .into_iter()
        .map(|(a, b, c, e, f, g, h, i)| (a.to_string(), b.to_string(), c, e, f, g, h, i))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn two_rounding_rules_e15_and_flat_short() {
    let csv = format!(
        "{HDR}{}{}{}",
        row(1, "10:00:00", "10:00:00", "Buy", "ES", "1", "100.235", "Market", "", "Filled"),
        row(2, "10:00:05", "", "Sell", "ES", "1", "", "Stop", "95.0", "Working"),
        row(3, "10:05:00", "10:05:00", "Sell", "ES", "1", "95.0", "Stop", "", "Filled"),
    );
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(d.trades[0].points_lost, 5.23);
    assert_eq!(d.trades[0].risk_points, Some(5.24));
    let flat = format!(
        "{HDR}{}{}",
        row(1, "10:00:00", "10:00:00", "Sell", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "10:05:00", "10:05:00", "Buy", "ES", "1", "100", "Market", "", "Filled"),
    );
    let d = analysis::load(flat.as_bytes()).unwrap();
    assert!(d.trades[0].pnl == 0.0 && d.trades[0].pnl.is_sign_negative());
}

#[test]
fn ties_in_fill_time_keep_file_order() {
    // E-14 fixed: an entry and its exit in the same second, 20 fills.
    let mut csv = String::from(HDR);
    for i in 0..10 {
        csv += &row(
            i, "10:00:00", "10:00:00", "Buy", "ES", "1", "100", "Market", "", "Filled",
        );
        csv += &row(
            i, "10:00:00", "10:00:00", "Sell", "ES", "1", "101", "Limit", "", "Filled",
        );
    }
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(d.trades.len(), 10);
    assert!(d
        .trades
        .iter()
        .all(|t| d.side_text(t.side) == "Buy" && t.pnl == 1.0));
}

#[test]
fn revenge_and_pipeline_order() {
    let csv = format!(
        "{HDR}{}{}{}{}",
        row(1, "10:00:00", "10:00:00", "Buy", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "10:05:00", "10:05:00", "Sell", "ES", "1", "90", "Market", "", "Filled"),
        row(3, "10:05:30", "10:05:30", "Buy", "ES", "1", "100", "Market", "", "Filled"),
        row(4, "10:06:00", "10:06:00", "Sell", "ES", "1", "99", "Market", "", "Filled"),
    );
    let mut d = analysis::load(csv.as_bytes()).unwrap();
    tag_trades(&mut d.trades, 1.0, 1.0, 1.5);
    let tags: Vec<Vec<&str>> = d.trades.iter().map(|t| t.tag_names().collect()).collect();
    assert_eq!(tags[0], vec!["no stop-loss order"]);
    assert_eq!(tags[1], vec!["no stop-loss order", "revenge trade"]);
    tag_trades(&mut d.trades, 1.0, 0.0, 1.5);
    assert_eq!(
        d.trades[1].tag_names().collect::<Vec<_>>(),
        vec!["no stop-loss order"]
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario read top to bottom; the limit is for non-test code
fn upload_errors_name_rows_and_columns() {
    let bad = |csv: String| analysis::load(csv.as_bytes()).unwrap_err();
    // E-21 blank side on a fill.
    let e = bad(format!(
        "{HDR}{}",
        row(1, "10:00:00", "10:00:00", "", "ES", "1", "100", "Market", "", "Filled")
    ));
    assert!(
        matches!(
            e,
            ParseError::Cell {
                line: 2,
                column: "B/S",
                ..
            }
        ),
        "{e:?}"
    );
    // E-22 missing price on a fill.
    let e = bad(format!(
        "{HDR}{}",
        row(1, "10:00:00", "10:00:00", "Buy", "ES", "1", "", "Market", "", "Filled")
    ));
    assert!(
        matches!(
            e,
            ParseError::Cell {
                line: 2,
                column: "Avg Fill Price",
                ..
            }
        ),
        "{e:?}"
    );
    // Non-numeric quantity anywhere (the legacy crashed on the column).
    let e = bad(format!(
        "{HDR}{}",
        row(1, "10:00:00", "", "Buy", "ES", "one", "", "Limit", "", "Canceled")
    ));
    assert!(
        matches!(
            e,
            ParseError::Cell {
                line: 2,
                column: "filledQty",
                ..
            }
        ),
        "{e:?}"
    );
    // CSV injection: contract and side as echoed.
    let e = bad(format!(
        "{HDR}{}",
        row(
            1,
            "10:00:00",
            "10:00:00",
            "Buy",
            "=HYPERLINK(1)",
            "1",
            "1",
            "Market",
            "",
            "Filled"
        )
    ));
    assert!(
        matches!(
            e,
            ParseError::Cell {
                column: "Contract",
                ..
            }
        ),
        "{e:?}"
    );
    let e = bad(format!(
        "{HDR}{}",
        row(
            1,
            "10:00:00",
            "10:00:00",
            "Buy",
            "  @SUM(1)",
            "1",
            "1",
            "Market",
            "",
            "Filled"
        )
    ));
    assert!(
        matches!(
            e,
            ParseError::Cell {
                column: "Contract",
                ..
            }
        ),
        "{e:?}"
    );
    let e = bad(format!(
        "{HDR}{}",
        row(1, "10:00:00", "10:00:00", " -Buy", "ES", "1", "1", "Market", "", "Filled")
    ));
    assert!(matches!(e, ParseError::Cell { column: "B/S", .. }), "{e:?}");
    // Leading spaces as in real exports are fine.
    let ok = format!(
        "{HDR}{}{}",
        row(1, "10:00:00", "10:00:00", " Buy", " ES", "1", "1", " Market", "", " Filled"),
        row(2, "10:01:00", "10:01:00", " Sell", " ES", "1", "2", " Market", "", " Filled"),
    );
    let d = analysis::load(ok.as_bytes()).unwrap();
    assert_eq!(d.symbol(&d.trades[0]), " ES");
    // E-20 missing Type / Stop Price.
    let e = bad("Status,B/S,Timestamp,Fill Time,Contract,filledQty,Avg Fill Price,Type\n".into());
    assert_eq!(e, ParseError::MissingAnalysisColumns(vec!["Stop Price"]));
    // Zero trades (H-5).
    let e = bad(format!(
        "{HDR}{}",
        row(1, "10:00:00", "10:00:00", "Buy", "ES", "1", "1", "Market", "", "Filled")
    ));
    assert!(matches!(e, ParseError::NoTrades { rows: 1, fills: 1 }));
}

#[test]
fn dialect_bom_crlf_quotes_and_order_id_typing() {
    let csv = "\u{feff}Contract,\"Avg Fill Price\",filledQty,Status,B/S,Timestamp,Fill Time,Type,Stop Price,Order ID,Extra\r\n\
               \"ES\",100,1,Filled,Buy,01/02/2024 10:00:00,01/02/2024 10:00:00,Market,,0042,x\r\n\r\n\
               ES,\"101\",1,Filled,Sell,01/02/2024 10:01:00,01/02/2024 10:01:00,Market,,0043\r\n";
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(d.rows, 2);
    assert_eq!(d.trades[0].exit_order_id, analysis::parse::OrderId::Int(43));
    let csv = csv.replace("0042", "A1");
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(
        d.trades[0].exit_order_id,
        analysis::parse::OrderId::Str("0043".into())
    );
}

fn call(
    s: &mut Session,
    method: &str,
    path: &str,
    query: &str,
    ct: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value, Vec<(&'static str, String)>) {
    let r = handle(
        s,
        Request {
            method,
            path,
            query,
            content_type: ct,
            body: body.as_bytes(),
            upload: None,
        },
    );
    let v = if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap()
    };
    (r.status, v, r.headers)
}

fn upload(s: &mut Session, name: &str, content: &[u8], query: &str) -> (u16, serde_json::Value) {
    let r = handle(s, Request::upload(name, content, query));
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/csv/legacy-8-trades-1-no-stop.csv");

#[test]
fn routing_methods_and_paths() {
    let mut s = Session::new();
    let (st, _, h) = call(&mut s, "POST", "/api/summary", "", None, "");
    assert_eq!(st, 405);
    assert_eq!(h, vec![("Allow", "GET, HEAD, OPTIONS".to_string())]);
    assert_eq!(call(&mut s, "GET", "/api/summary/", "", None, "").0, 404);
    assert_eq!(
        call(&mut s, "GET", "/api/mentor/health", "", None, "").0,
        404
    );
    assert_eq!(call(&mut s, "GET", "/static/x.js", "", None, "").0, 404);
    assert_eq!(call(&mut s, "HEAD", "/api/health", "", None, "").0, 200);
    assert_eq!(call(&mut s, "GET", "/api/%68ealth", "", None, "").0, 200);
    let (st, _, h) = call(&mut s, "OPTIONS", "/api/settings", "", None, "");
    assert_eq!(
        (st, h),
        (200, vec![("Allow", "GET, HEAD, OPTIONS, POST".to_string())])
    );
    assert_eq!(call(&mut s, "GET", "/api/analyze", "", None, "").0, 405);
}

/// `docs/quirks.md` H-19: unknown keys (`sigma`, a typo) are a 400 naming
/// them, nothing changed; the legacy ignored them, and
/// `--legacy-settings-keys` still does.
#[test]
fn unknown_settings_keys_are_refused_unless_legacy() {
    let j = Some("application/json");
    let mut s = Session::new();
    for body in [
        r#"{"sigma": 1.0}"#,
        r#"{"unknown": 1}"#,
        r#"{"vr": 0.5, "Vr": 0.6}"#,
    ] {
        let (st, v, _) = call(&mut s, "POST", "/api/settings", "", j, body);
        assert_eq!(st, 400, "{body}");
        assert_eq!(v["code"], "settings.unknown_key");
        let named = v["details"][0].as_str().unwrap();
        assert!(
            ["key sigma", "key unknown", "key Vr"].contains(&named),
            "{v}"
        );
    }
    assert_eq!(
        call(&mut s, "GET", "/api/settings", "", None, "").1["vr"],
        0.35
    );
    let mut legacy = Session::with_unknown_settings(UnknownSettings::Ignore);
    let (st, v, _) = call(
        &mut legacy,
        "POST",
        "/api/settings",
        "",
        j,
        r#"{"sigma": 1.0}"#,
    );
    assert_eq!((st, &v["updated"]), (200, &serde_json::json!({})));
    // A reset keeps the session's mode.
    call(&mut legacy, "DELETE", "/api/session", "", None, "");
    let (st, _, _) = call(&mut legacy, "POST", "/api/settings", "", j, r#"{"x": 1}"#);
    assert_eq!(st, 200);
}

#[test]
fn settings_are_atomic_and_strict() {
    let mut s = Session::new();
    assert_eq!(upload(&mut s, "a.csv", SAMPLE, "").0, 200);
    let j = Some("application/json");
    for bad in [
        r#"{"vr": 0.5, "k": "abc"}"#,
        r#"{"vr": 0.5, "k": true}"#,
        r#"{"vr": NaN}"#,
        r#"{"k": "inf"}"#,
        "[1, 2]",
        "\"x\"",
        "null",
        "{",
    ] {
        let (st, v, _) = call(&mut s, "POST", "/api/settings", "", j, bad);
        assert_eq!(st, 400, "{bad}");
        assert_eq!(v["status"], "ERROR");
    }
    assert_eq!(
        call(&mut s, "GET", "/api/settings", "", None, "").1["vr"],
        0.35
    );
    let (st, v, _) = call(
        &mut s,
        "POST",
        "/api/settings",
        "",
        Some("application/vnd.x+json"),
        r#"{"k": " 1_5 ", "vr": 1}"#,
    );
    assert_eq!(st, 200);
    assert_eq!(v["updated"], serde_json::json!({"k": 15.0, "vr": 1.0}));
    assert_eq!(
        call(
            &mut s,
            "POST",
            "/api/settings",
            "",
            Some("text/plain"),
            "{}"
        )
        .0,
        400
    );
}

#[test]
fn query_parameters_h7() {
    let mut s = Session::new();
    upload(&mut s, "a.csv", SAMPLE, "");
    for q in [
        "sigma=abc",
        "sigma=",
        "sigma=nan",
        "sigma=-inf",
        "sigma=0x10",
    ] {
        let (st, v, _) = call(&mut s, "GET", "/api/losses", q, None, "");
        assert_eq!(st, 400, "{q}");
        assert_eq!(v["details"][0], "parameter sigma");
    }
    assert_eq!(
        call(
            &mut s,
            "GET",
            "/api/losses",
            "sigma=%201_0%20&sigma=abc",
            None,
            ""
        )
        .1["sigmaUsed"],
        10.0
    );
    // Finite but overflowing values never produce Infinity.
    assert_eq!(
        call(
            &mut s,
            "GET",
            "/api/excessive-risk",
            "sigma=1e308",
            None,
            ""
        )
        .0,
        400
    );
    // A failed upload (bad parameter) keeps the previous data.
    let before = call(&mut s, "GET", "/api/trades", "", None, "").1;
    assert_eq!(upload(&mut s, "b.csv", SAMPLE, "k=x").0, 400);
    assert_eq!(call(&mut s, "GET", "/api/trades", "", None, "").1, before);
}

#[test]
fn goals_h16_errors_instead_of_500() {
    let mut s = Session::new();
    upload(&mut s, "a.csv", SAMPLE, "");
    let body = r#"[{"id": 1, "target": "5"}, {"id": 2, "start_date": 20240101}, {"id": 3, "mistake_types": 7},
                  {"id": 4, "metric": null}, {"id": 5, "target": true, "mistake_types": "revenge trade"}, 9]"#;
    let (st, v, _) = call(
        &mut s,
        "POST",
        "/api/goals/calculate",
        "",
        Some("application/json"),
        body,
    );
    assert_eq!(st, 200);
    let goals = v["goals"].as_array().unwrap();
    assert_eq!(goals.len(), 5);
    for g in &goals[..4] {
        assert!(g["error"].is_string(), "{g}");
    }
    assert_eq!(
        goals[3]["error"],
        "Unsupported metric None. Expected 'trades' or 'days'."
    );
    assert_eq!(goals[4]["goal"], true);
    assert_eq!(goals[4]["current_streak"], 8);
}

#[test]
fn fill_time_fallback_e18() {
    // No parseable Timestamp anywhere: stop detection uses Fill Time, risk
    // points never do (so they stay null).
    let csv = format!(
        "{HDR}1,x,01/02/2024 10:00:00,Buy,ES,1,100,Market,,Filled\n\
         2,x,01/02/2024 10:01:00,Sell,ES,1,,Stop,95,Working\n\
         3,x,01/02/2024 10:05:00,Sell,ES,1,99,Limit,,Filled\n"
    );
    assert_eq!(verdict(&csv), (false, None));
}

#[test]
fn inconsistent_normalisation_e19() {
    // `buy` (lower case) is a sell for reconstruction but long for P&L.
    let csv = format!(
        "{HDR}{}{}",
        row(1, "10:00:00", "10:00:00", "buy", "ES", "1", "100", "Market", "", "Filled"),
        row(2, "10:05:00", "10:05:00", "Buy", "ES", "1", "90", "Market", "", "Filled"),
    );
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(d.side_text(d.trades[0].side), "buy");
    assert_eq!(d.trades[0].pnl, -10.0);
}

#[test]
fn implicit_index_column_e26() {
    // The first data row has one field more than the header: pandas makes
    // the first column an index and every value moves one column left.
    let csv = "Status,B/S,Timestamp,Fill Time,Contract,filledQty,Avg Fill Price,Type,Stop Price\n\
               0,Filled,Buy,01/02/2024 10:00:00,01/02/2024 10:00:00,ES,1,100,Market,\n\
               1,Filled,Sell,01/02/2024 10:01:00,01/02/2024 10:01:00,ES,1,101,Market,\n";
    let d = analysis::load(csv.as_bytes()).unwrap();
    assert_eq!(d.rows, 2);
    assert_eq!(d.trades[0].pnl, 1.0);
    // Any later row wider than that is a structural error.
    let wide = format!(
        "{csv}2,Filled,Sell,01/02/2024 10:01:00,01/02/2024 10:01:00,ES,1,101,Market,,extra\n"
    );
    assert!(matches!(
        analysis::load(wide.as_bytes()).unwrap_err(),
        ParseError::TooManyFields { line: 4, .. }
    ));
}

#[test]
fn missing_value_tokens_e27() {
    // A contract literally named NA is missing: on a fill that is a 400.
    let e = analysis::load(
        format!(
            "{HDR}{}",
            row(1, "10:00:00", "10:00:00", "Buy", "NA", "1", "1", "Market", "", "Filled")
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Cell {
                column: "Contract",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn goal_progress_uncapped_and_signed_e25() {
    let mut s = Session::new();
    upload(&mut s, "a.csv", SAMPLE, "");
    let body = r#"{"goals": [{"target": 4, "mistake_types": ["revenge trade"]}, {"target": -2, "mistake_types": ["revenge trade"]}, {"target": 0, "goal": 0}]}"#;
    let (_, v, _) = call(
        &mut s,
        "POST",
        "/api/goals/calculate",
        "",
        Some("application/json"),
        body,
    );
    assert_eq!(v["goals"][0]["progress"], 2.0);
    assert_eq!(v["goals"][1]["progress"], -4.0);
    assert_eq!(v["goals"][2]["goal"], 1);
}
