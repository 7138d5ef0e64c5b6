//! Golden replay: send a golden file's request sequence over the socket and
//! compare every answer with the legacy backend's (`tests/fixtures/GOLDEN.md`).
//!
//! Comparison rules (the same as the engine's parity test, `docs/worker.md`):
//! * the values at the file's `ignore_paths` (`$..trades[*].id`,
//!   `$..losses[*].tradeId`) are not compared, but must be strings;
//! * the file's `free_text_keys` (`diagnostic`, `diagnostic_text`,
//!   `message`) must be non-empty strings where the golden has a string;
//! * everything else is compared exactly and type-exactly: same key sets,
//!   same array lengths and orders, integers stay integers and floats stay
//!   floats (bit-equal, so `-0.0` stays `-0.0`), same strings, booleans,
//!   `null`s; status codes and `Content-Type: application/json` too.
//!
//! `errors.json` was captured from the unpatched legacy backend, so where
//! `docs/quirks.md` changes an answer the expectation follows the
//! decision instead of the capture:
//! * a legacy 500, and a non-finite numeric query parameter (`nan`, `inf`)
//!   that the legacy accepted, become a 400 error envelope (H-4 … H-7,
//!   E-20 … E-22);
//! * a failed upload leaves the previous upload in place (H-5, H-6): the
//!   group's later probes are compared with the same probes taken right
//!   after the same baseline upload in group `no-file-part`;
//! * a refused settings update changes nothing (H-4): thresholds are
//!   tracked from the updates that succeeded.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{fixtures, request, Answer, Form, Transport};

/// Names of the golden files (without `.json`).
pub const CSV_GOLDENS: &[&str] = &[
    "gen-seed1",
    "gen-seed2",
    "gen-seed3",
    "legacy-314-trades",
    "legacy-8-trades-1-no-stop",
    "legacy-all-no-stops",
    "legacy-test-data",
];

/// The numeric query parameters of the API.
const NUMERIC_PARAMS: &[&str] = &["sigma", "sigma_risk", "k", "vr", "sigma_loss"];

/// The group whose probes show the state right after a baseline upload.
const KEPT_STATE_GROUP: &str = "no-file-part";

/// Loads `tests/fixtures/golden/<name>.json`.
pub fn load(name: &str) -> Value {
    let path = fixtures().join("golden").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).expect("golden file");
    serde_json::from_str(&text).expect("golden JSON")
}

/// Replays a golden file as `principal` and returns every mismatch.
pub async fn replay<T: Transport + ?Sized>(
    transport: &T,
    principal: Option<&str>,
    golden: &Value,
) -> Vec<String> {
    let rules = Rules::of(golden);
    let is_errors = golden["kind"] == "errors";
    let kept_probes = if is_errors {
        probes_of_group(golden, KEPT_STATE_GROUP)
    } else {
        HashMap::new()
    };
    let mut thresholds = default_thresholds();
    let mut upload_kept_in_group: Option<String> = None;
    let mut mismatches = Vec::new();

    for step in golden["requests"].as_array().expect("requests") {
        let name = step["name"].as_str().unwrap_or("?");
        let label = format!("step {} ({name})", step["step"]);
        let group = step["group"].as_str().map(str::to_owned);
        if upload_kept_in_group.is_some() && upload_kept_in_group != group {
            upload_kept_in_group = None;
        }

        let answer = transport.send(build_request(golden, step, principal)).await;

        let golden_status = step["status"].as_u64().unwrap_or(0);
        let diverges = is_errors && (golden_status == 500 || has_non_finite_param(step));
        if diverges {
            check_decided_refusal(&label, &answer, &mut mismatches);
            if step["method"] == "POST" && step["path"] == "/api/analyze" {
                upload_kept_in_group = group.clone();
            }
            continue;
        }

        let mut expected_status = golden_status;
        let mut expected = step["response"].clone();
        if upload_kept_in_group.is_some() {
            if let Some(kept) = kept_probes.get(name) {
                expected_status = kept["status"].as_u64().unwrap_or(0);
                expected = kept["response"].clone();
            }
        }
        if is_errors && step["path"] == "/api/settings" {
            follow_thresholds(step, &mut thresholds, &mut expected);
        }

        if u64::from(answer.status.as_u16()) != expected_status {
            mismatches.push(format!(
                "{label}: status {} instead of {expected_status}: {}",
                answer.status,
                truncate(&answer.text())
            ));
            continue;
        }
        if answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            != Some("application/json")
        {
            mismatches.push(format!("{label}: content type is not application/json"));
        }
        match serde_json::from_slice::<Value>(&answer.body) {
            Ok(actual) => rules.compare(&expected, &actual, &label, None, &mut mismatches),
            Err(error) => mismatches.push(format!("{label}: body is not JSON: {error}")),
        }
    }
    mismatches
}

/// Builds the HTTP request for one step.
fn build_request(
    golden: &Value,
    step: &Value,
    principal: Option<&str>,
) -> http::Request<Full<Bytes>> {
    let method = Method::from_bytes(step["method"].as_str().expect("method").as_bytes()).unwrap();
    let url = step["url"].as_str().expect("url");
    let builder = request(method, url, principal);
    if let Some(upload) = step.get("upload").filter(|u| u.is_object()) {
        let content = upload_bytes(golden, upload);
        let mut form = Form::new();
        if let Some(extra) = upload["extra_form"].as_object() {
            for (name, value) in extra {
                form = form.field(name, value.as_str().unwrap_or_default());
            }
        }
        if let Some(field) = upload["field"].as_str() {
            form = form.file(
                field,
                upload["filename"].as_str().unwrap_or_default(),
                &content,
            );
        }
        let (content_type, body) = form.finish();
        return builder
            .header("content-type", content_type)
            .body(Full::new(body))
            .unwrap();
    }
    let (text, content_type) = if let Some(raw) = step.get("raw_body").filter(|r| r.is_object()) {
        (raw["text"].as_str(), raw["content_type"].as_str())
    } else {
        (
            step["body_text"].as_str(),
            step["body_content_type"].as_str(),
        )
    };
    let builder = match content_type {
        Some(content_type) => builder.header("content-type", content_type),
        None => builder,
    };
    builder
        .body(Full::new(Bytes::from(text.unwrap_or_default().to_owned())))
        .unwrap()
}

/// Rebuilds an upload's bytes (fixture CSV, base CSV, inline base64 or a
/// recipe) and checks its SHA-256.
pub fn upload_bytes(golden: &Value, upload: &Value) -> Vec<u8> {
    let csv_dir = fixtures().join("csv");
    let read = |name: &str| std::fs::read(csv_dir.join(name)).expect("fixture CSV");
    let bytes = if let Some(inline) = upload["content_b64"].as_str() {
        base64::engine::general_purpose::STANDARD
            .decode(inline)
            .expect("base64 payload")
    } else if let Some(recipe) = upload.get("recipe").filter(|r| r.is_object()) {
        let base = read(golden["base_csv"].as_str().expect("base_csv"));
        let total = recipe["total_bytes"].as_u64().expect("total_bytes") as usize;
        match recipe["kind"].as_str() {
            Some("pad") => {
                let pad = recipe["pad"].as_str().unwrap_or("\n").as_bytes();
                let mut out = base;
                while out.len() < total {
                    out.extend_from_slice(pad);
                }
                out.truncate(total);
                out
            }
            Some("repeat") => base.iter().copied().cycle().take(total).collect(),
            other => panic!("unknown recipe {other:?}"),
        }
    } else {
        match upload["source"].as_str() {
            Some("csv") => read(golden["csv"].as_str().expect("csv")),
            Some("base") => read(golden["base_csv"].as_str().expect("base_csv")),
            other => panic!("unknown upload source {other:?}"),
        }
    };
    if let Some(expected) = upload["sha256"].as_str() {
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            expected,
            "rebuilt upload payload {:?}",
            upload["filename"]
        );
    }
    bytes
}

/// A decided refusal: a 400 error envelope.
fn check_decided_refusal(label: &str, answer: &Answer, mismatches: &mut Vec<String>) {
    if answer.status != 400 {
        mismatches.push(format!(
            "{label}: expected a 400 (docs/quirks.md) but got {}: {}",
            answer.status,
            truncate(&answer.text())
        ));
        return;
    }
    let ok = serde_json::from_slice::<Value>(&answer.body).is_ok_and(|body| {
        body["status"] == "ERROR"
            && body["details"].is_array()
            && body["message"].as_str().is_some_and(|m| !m.is_empty())
    });
    if !ok {
        mismatches.push(format!("{label}: 400 without the error envelope"));
    }
}

fn has_non_finite_param(step: &Value) -> bool {
    let Some(query) = step["query"].as_object() else {
        return false;
    };
    query.iter().any(|(name, value)| {
        NUMERIC_PARAMS.contains(&name.as_str())
            && value.as_str().is_some_and(|text| {
                let word = text
                    .trim()
                    .trim_start_matches(['+', '-'])
                    .to_ascii_lowercase();
                matches!(word.as_str(), "nan" | "inf" | "infinity")
            })
    })
}

/// Probe steps of a group, by name.
fn probes_of_group(golden: &Value, group: &str) -> HashMap<String, Value> {
    golden["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|step| step["group"] == group && step["method"] == "GET")
        .filter_map(|step| Some((step["name"].as_str()?.to_owned(), step.clone())))
        .collect()
}

fn default_thresholds() -> Map<String, Value> {
    serde_json::from_str(r#"{"k":1.0,"sigma_loss":1.0,"sigma_risk":1.5,"vr":0.35}"#).unwrap()
}

/// Applies a successful settings update to the tracked thresholds and
/// puts them into the expected answer.
fn follow_thresholds(step: &Value, thresholds: &mut Map<String, Value>, expected: &mut Value) {
    if step["status"] != 200 {
        return;
    }
    match step["method"].as_str() {
        Some("POST") => {
            if let Some(updated) = expected["updated"].as_object() {
                for (key, value) in updated {
                    thresholds.insert(key.clone(), value.clone());
                }
            }
            expected["thresholds"] = Value::Object(thresholds.clone());
        }
        Some("GET") => *expected = Value::Object(thresholds.clone()),
        _ => {}
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

/// A golden file's comparison rules.
/// Whether `key` is one of the two keys our envelope adds to the legacy
/// one, with a valid value (a wrong value is reported in `out`).
fn envelope_addition(key: &str, value: &Value, out: &mut Vec<String>) -> bool {
    match key {
        "code" => {
            let listed = value
                .as_str()
                .is_some_and(tradehabit_shared::codes::is_listed);
            if !listed {
                out.push(format!("code {value} is not listed in docs/errors.md"));
            }
            true
        }
        "request_id" => {
            if value.as_str().is_none_or(str::is_empty) {
                out.push(format!(
                    "request_id must be a non-empty string, got {value}"
                ));
            }
            true
        }
        _ => false,
    }
}

/// A detail: a non-empty string, or a location `{"row": n}` with an
/// optional `"column"` string.
fn is_detail(detail: &Value) -> bool {
    match detail {
        Value::String(text) => !text.is_empty(),
        Value::Object(location) => {
            location.get("row").is_some_and(Value::is_u64)
                && location.get("column").is_none_or(Value::is_string)
                && location.keys().all(|k| k == "row" || k == "column")
        }
        _ => false,
    }
}

pub struct Rules {
    /// `(array key, field)` pairs from `ignore_paths` like
    /// `$..trades[*].id`.
    ignored: Vec<(String, String)>,
    free_text: Vec<String>,
}

impl Rules {
    /// The rules stated in a golden file.
    pub fn of(golden: &Value) -> Self {
        let ignored = golden["ignore_paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|path| {
                let (array, field) = path.strip_prefix("$..")?.split_once("[*].")?;
                Some((array.to_owned(), field.to_owned()))
            })
            .collect();
        let free_text = golden["free_text_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Self { ignored, free_text }
    }

    fn is_ignored(&self, array_key: Option<&str>, field: &str) -> bool {
        array_key.is_some_and(|array| self.ignored.iter().any(|(a, f)| a == array && f == field))
    }

    /// Compares `actual` with `expected` at `path`; `array_key` is the key
    /// of the array `expected` is an element of, if any.
    pub fn compare(
        &self,
        expected: &Value,
        actual: &Value,
        path: &str,
        array_key: Option<&str>,
        out: &mut Vec<String>,
    ) {
        match (expected, actual) {
            (Value::Object(exp), Value::Object(act)) => {
                if exp.contains_key("$nonfinite") {
                    out.push(format!(
                        "{path}: golden is non-finite; we must never emit it"
                    ));
                    return;
                }
                let missing: Vec<_> = exp.keys().filter(|k| !act.contains_key(*k)).collect();
                // The only difference allowed from the legacy envelope: a
                // listed `code` and a `request_id` (`docs/errors.md`).
                let is_envelope = exp.get("status") == Some(&Value::from("ERROR"));
                let extra: Vec<_> = act
                    .keys()
                    .filter(|k| !exp.contains_key(*k))
                    .filter(|k| !(is_envelope && envelope_addition(k, &act[k.as_str()], out)))
                    .collect();
                if !missing.is_empty() || !extra.is_empty() {
                    out.push(format!(
                        "{path}: keys differ: missing {missing:?}, extra {extra:?}"
                    ));
                }
                for (key, exp_value) in exp {
                    let Some(act_value) = act.get(key) else {
                        continue;
                    };
                    let here = format!("{path}.{key}");
                    if self.is_ignored(array_key, key) {
                        if !(exp_value.is_string() && act_value.is_string()) {
                            out.push(format!("{here}: id must be a string, got {act_value}"));
                        }
                    } else if key == "details" && exp.get("status") == Some(&Value::from("ERROR")) {
                        // The legacy always sent `[]`; ours carry the
                        // specific facts (row, column, parameter): any list
                        // of non-empty strings is acceptable, followed by
                        // file locations as data (`docs/errors.md`).
                        let facts = act_value.as_array();
                        if facts.is_none_or(|facts| !facts.iter().all(is_detail)) {
                            out.push(format!(
                                "{here}: must be a list of strings, got {act_value}"
                            ));
                        }
                    } else if self.free_text.iter().any(|k| k == key) && exp_value.is_string() {
                        if act_value.as_str().is_none_or(str::is_empty) {
                            out.push(format!(
                                "{here}: must be a non-empty string, got {act_value}"
                            ));
                        }
                    } else {
                        self.compare(exp_value, act_value, &here, Some(key), out);
                    }
                }
            }
            (Value::Array(exp), Value::Array(act)) => {
                if exp.len() != act.len() {
                    out.push(format!(
                        "{path}: {} elements instead of {}",
                        act.len(),
                        exp.len()
                    ));
                    return;
                }
                for (index, (e, a)) in exp.iter().zip(act).enumerate() {
                    self.compare(e, a, &format!("{path}[{index}]"), array_key, out);
                }
            }
            (Value::Number(exp), Value::Number(act)) => {
                let same = match (exp.as_f64(), exp.is_f64(), act.is_f64()) {
                    (Some(e), true, true) => {
                        act.as_f64().is_some_and(|a| a.to_bits() == e.to_bits())
                    }
                    (_, false, false) => exp == act,
                    _ => false,
                };
                if !same {
                    out.push(format!("{path}: {act} instead of {exp}"));
                }
            }
            _ => {
                if expected != actual {
                    out.push(format!("{path}: {actual} instead of {expected}"));
                }
            }
        }
    }
}
