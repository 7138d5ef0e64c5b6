//! Bad input never panics: arbitrary bytes, CSV-shaped noise built from
//! the export's own vocabulary, and arbitrary requests, through the parser,
//! the engine and every endpoint. Every answer is valid JSON without
//! `NaN`/`Infinity`, and a 5xx never happens.

use proptest::prelude::*;
use tradehabit_worker::analysis;
use tradehabit_worker::api::{handle, Request, Session};

const HEADER: &str =
    "Order ID,Timestamp,Fill Time,B/S,Contract,filledQty,Avg Fill Price,Type,Stop Price,Status";

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Filled".to_string()),
        Just(" Filled".to_string()),
        Just("Canceled".to_string()),
        Just("Cancelled".to_string()),
        Just("Working".to_string()),
        Just("Buy".to_string()),
        Just("Sell".to_string()),
        Just("buy".to_string()),
        Just("Stop".to_string()),
        Just("Stop Limit".to_string()),
        Just("Limit".to_string()),
        Just("ES".to_string()),
        Just("NQ".to_string()),
        Just("NA".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("=1+1".to_string()),
        Just("\"a,b\"".to_string()),
        Just("\"".to_string()),
        (1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..62)
            .prop_map(|(m, d, h, mi, s)| format!("{m:02}/{d}/2024 {h}:{mi:02}:{s:02}")),
        (0u32..5).prop_map(|q| q.to_string()),
        (-1000i64..100_000).prop_map(|p| format!("{}", p as f64 / 4.0)),
        "[ -~]{0,6}",
    ]
}

fn csvish() -> impl Strategy<Value = String> {
    let row = prop::collection::vec(cell(), 0..12).prop_map(|cells| cells.join(","));
    (
        prop::collection::vec(row, 0..40),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(rows, crlf, header)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut s = if header {
                format!("{HEADER}{nl}")
            } else {
                String::new()
            };
            s.push_str(&rows.join(nl));
            s
        })
}

fn exercise(content: &[u8]) {
    let _ = analysis::load(content);
    let mut s = Session::new();
    let r = handle(&mut s, Request::upload("x.csv", content, ""));
    assert!(r.status == 200 || r.status == 400, "status {}", r.status);
    for path in [
        "/api/summary",
        "/api/trades",
        "/api/losses",
        "/api/revenge",
        "/api/risk-sizing",
        "/api/excessive-risk",
        "/api/stop-loss",
        "/api/winrate-payoff",
        "/api/insights",
        "/api/goals",
    ] {
        let r = handle(
            &mut s,
            Request {
                method: "GET",
                path,
                query: "",
                content_type: None,
                body: b"",
                upload: None,
            },
        );
        assert!(r.status == 200 || r.status == 400, "{path}: {}", r.status);
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(text).is_ok(),
            "{path}: {text}"
        );
        assert!(
            !text.contains("NaN") && !text.contains("Infinity"),
            "{path}: {text}"
        );
    }
}

/// Well-formed rows with adversarial values: trades do get built, so the
/// pipeline, statistics and texts run on odd numbers.
fn structured() -> impl Strategy<Value = String> {
    let row = (
        prop_oneof![
            Just("Filled"),
            Just("Filled"),
            Just("Canceled"),
            Just("Cancelled"),
            Just("Working"),
            Just("")
        ],
        prop_oneof![Just("Buy"), Just("Sell"), Just("buy"), Just("Short")],
        prop_oneof![Just("ES"), Just("NQ"), Just(" ES ")],
        prop_oneof![
            Just("1"),
            Just("2"),
            Just("0.5"),
            Just("1e3"),
            Just("0"),
            Just("")
        ],
        prop_oneof![
            (-400i64..400).prop_map(|p| format!("{}", 100.0 + p as f64 / 4.0)),
            Just("1e14".to_string()),
            Just("0.001".to_string()),
            Just("-5".to_string()),
        ],
        prop_oneof![
            Just("Market"),
            Just("Stop"),
            Just("Stop Limit"),
            Just("StopMarket"),
            Just("")
        ],
        prop_oneof![
            Just(String::new()),
            (0i64..800).prop_map(|p| format!("{}", p as f64 / 4.0))
        ],
        (0u32..3, 0u32..60, 0u32..60),
        prop::bool::ANY,
    )
        .prop_map(
            |(st, side, sym, qty, price, ty, stop, (h, m, s), has_fill)| {
                let t = format!("01/0{}/2024 {}:{m:02}:{s:02}", 2 + h % 2, 9 + h);
                let fill = if has_fill { t.clone() } else { String::new() };
                format!("1,{t},{fill},{side},{sym},{qty},{price},{ty},{stop},{st}")
            },
        );
    prop::collection::vec(row, 0..60).prop_map(|rows| format!("{HEADER}\n{}\n", rows.join("\n")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn structured_orders_never_panic(text in structured()) {
        exercise(text.as_bytes());
    }

    #[test]
    fn csv_shaped_noise_never_panics(text in csvish()) {
        exercise(text.as_bytes());
    }

    #[test]
    fn arbitrary_requests_never_panic(
        method in prop_oneof![Just("GET".to_string()), Just("POST".to_string()), Just("HEAD".to_string()), Just("PUT".to_string()), Just("OPTIONS".to_string()), "[A-Z]{1,7}"],
        path in prop_oneof![Just("/api/settings".to_string()), Just("/api/goals/calculate".to_string()), Just("/api/losses".to_string()), "/api/[a-z/%-]{0,20}"],
        query in "[a-z_=&%0-9.+-]{0,30}",
        body in prop_oneof![Just("{\"k\": 2}".to_string()), Just("[{\"target\": 3, \"metric\": \"days\", \"start_date\": \"2024-01-02\"}]".to_string()), "[ -~]{0,60}"],
    ) {
        let mut s = Session::new();
        let sample = include_bytes!("../../tests/fixtures/csv/legacy-8-trades-1-no-stop.csv");
        handle(&mut s, Request::upload("a.csv", sample, ""));
        let r = handle(&mut s, Request { method: &method, path: &path, query: &query, content_type: Some("application/json"), body: body.as_bytes(), upload: None });
        prop_assert!(r.status < 500);
        if !r.body.is_empty() {
            let text = std::str::from_utf8(&r.body).unwrap();
            prop_assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
    }
}

#[test]
fn fixture_mutations_never_panic() {
    // Every single-byte truncation point and a few byte flips of a real file.
    let base = include_bytes!("../../tests/fixtures/csv/legacy-8-trades-1-no-stop.csv");
    for cut in (0..base.len()).step_by(7) {
        exercise(&base[..cut]);
    }
    for (i, b) in [
        (0usize, b'"'),
        (40, b','),
        (100, b'\n'),
        (300, 0xff),
        (500, b'"'),
    ] {
        let mut v = base.to_vec();
        v[i] = b;
        exercise(&v);
    }
}
