//! Golden replay over the real socket: every fixture's request sequence,
//! sent as HTTP/1.1 with real multipart uploads, answers as the legacy
//! backend did (rules in `harness/golden.rs`, whose own tests are at the
//! end of this file).

mod harness;

use harness::golden::{self, Rules, CSV_GOLDENS};
use harness::TestWorker;
use serde_json::{json, Value};

#[tokio::test]
async fn every_csv_golden_sequence_matches_over_the_socket() {
    let mut failures = Vec::new();
    for name in CSV_GOLDENS {
        let worker = TestWorker::start_legacy().await;
        let mismatches = golden::replay(worker.socket(), None, &golden::load(name)).await;
        failures.extend(mismatches.into_iter().map(|m| format!("{name}: {m}")));
        worker.stop().await;
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_errors_sequence_matches_against_a_fresh_worker() {
    let worker = TestWorker::start_legacy().await;
    let mismatches = golden::replay(worker.socket(), None, &golden::load("errors")).await;
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    worker.stop().await;
}

/// Seven principals replay their sequences at the same time on one worker:
/// if any of them saw another's upload or thresholds, its numbers would
/// differ from its golden file.
#[tokio::test]
async fn sequences_of_different_principals_interleaved_do_not_see_each_other() {
    let worker = std::sync::Arc::new(TestWorker::start_legacy().await);
    let mut replays = tokio::task::JoinSet::new();
    for name in CSV_GOLDENS {
        let worker = std::sync::Arc::clone(&worker);
        replays.spawn(async move {
            let principal = format!("jwt:test|{name}");
            let mismatches =
                golden::replay(worker.socket(), Some(&principal), &golden::load(name)).await;
            mismatches
                .into_iter()
                .map(|m| format!("{name}: {m}"))
                .collect::<Vec<_>>()
        });
    }
    let mut failures = Vec::new();
    while let Some(result) = replays.join_next().await {
        failures.extend(result.expect("replay task"));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// The comparison helper itself.

fn rules() -> Rules {
    Rules::of(&json!({
        "ignore_paths": ["$..trades[*].id", "$..losses[*].tradeId"],
        "free_text_keys": ["diagnostic", "diagnostic_text", "message"]
    }))
}

fn mismatches(expected: Value, actual: Value) -> Vec<String> {
    let mut out = Vec::new();
    rules().compare(&expected, &actual, "$", None, &mut out);
    out
}

#[test]
fn ids_under_trades_and_losses_are_ignored_but_goal_ids_are_not() {
    assert!(mismatches(
        json!({"trades": [{"id": "a", "pnl": 1.0}], "losses": [{"tradeId": "x"}]}),
        json!({"trades": [{"id": "b", "pnl": 1.0}], "losses": [{"tradeId": "y"}]})
    )
    .is_empty());
    assert_eq!(
        mismatches(
            json!({"goals": [{"id": "g1"}]}),
            json!({"goals": [{"id": "g2"}]})
        )
        .len(),
        1
    );
    assert_eq!(
        mismatches(
            json!({"trades": [{"id": "a"}]}),
            json!({"trades": [{"id": 7}]})
        )
        .len(),
        1,
        "an ignored id must still be a string"
    );
}

#[test]
fn numbers_are_compared_type_exactly() {
    assert_eq!(
        mismatches(json!({"pnl": 15.0}), json!({"pnl": 15})).len(),
        1
    );
    assert_eq!(mismatches(json!({"n": 3}), json!({"n": 3.0})).len(), 1);
    assert_eq!(
        mismatches(json!({"x": 0.35}), json!({"x": 0.350_000_000_000_1})).len(),
        1
    );
    assert!(mismatches(json!({"n": 3, "x": 0.35}), json!({"n": 3, "x": 0.35})).is_empty());
    let negative_zero: Value = serde_json::from_str(r#"{"pnl": -0.0}"#).unwrap();
    assert_eq!(mismatches(negative_zero, json!({"pnl": 0.0})).len(), 1);
}

#[test]
fn free_text_must_be_a_non_empty_string_of_any_wording() {
    assert!(mismatches(json!({"message": "a"}), json!({"message": "b"})).is_empty());
    assert_eq!(
        mismatches(json!({"message": "a"}), json!({"message": ""})).len(),
        1
    );
    assert_eq!(
        mismatches(json!({"diagnostic": "a"}), json!({"diagnostic": null})).len(),
        1
    );
}

#[test]
fn keys_nulls_booleans_and_array_order_matter() {
    assert_eq!(
        mismatches(json!({"a": 1}), json!({"a": 1, "b": 2})).len(),
        1
    );
    assert_eq!(mismatches(json!({"a": null}), json!({"a": false})).len(), 1);
    assert_eq!(mismatches(json!([1, 2]), json!([2, 1])).len(), 2);
    assert_eq!(mismatches(json!([1, 2]), json!([1])).len(), 1);
    assert_eq!(
        mismatches(json!({"x": {"$nonfinite": "NaN"}}), json!({"x": 1.0})).len(),
        1
    );
}

#[test]
fn every_golden_upload_payload_rebuilds_to_its_recorded_hash() {
    for name in CSV_GOLDENS.iter().copied().chain(["errors"]) {
        let file = golden::load(name);
        for step in file["requests"].as_array().unwrap() {
            if let Some(upload) = step.get("upload").filter(|u| u.is_object()) {
                golden::upload_bytes(&file, upload);
            }
        }
    }
}
