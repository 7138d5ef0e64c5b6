//! The exact `statistics.mean`/`pstdev` and `round()` against values
//! computed by CPython 3.11 (`tests/data/python-stats.json`, generated once
//! with `statistics` and `round` on random lists: cent, quarter-tick,
//! three-decimal, mixed-sign and arbitrary doubles).

use serde_json::Value;
use tradehabit_worker::analysis::exact::{mean, pstdev};
use tradehabit_worker::analysis::num::py_round;

#[test]
fn exact_statistics_match_cpython() {
    let data: Value = serde_json::from_slice(include_bytes!("data/python-stats.json")).unwrap();
    for case in data["stats"].as_array().unwrap() {
        let xs: Vec<f64> = case["xs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want_mean = case["mean"].as_f64().unwrap();
        let want_sd = case["pstdev"].as_f64().unwrap();
        assert_eq!(mean(&xs).to_bits(), want_mean.to_bits(), "mean {xs:?}");
        assert_eq!(pstdev(&xs).to_bits(), want_sd.to_bits(), "pstdev {xs:?}");
    }
    for r in data["rounds"].as_array().unwrap() {
        let x = r[0].as_f64().unwrap();
        for (i, n) in [1u32, 2, 4].into_iter().enumerate() {
            let want = r[i + 1].as_f64().unwrap();
            assert_eq!(py_round(x, n).to_bits(), want.to_bits(), "round({x}, {n})");
        }
    }
}
