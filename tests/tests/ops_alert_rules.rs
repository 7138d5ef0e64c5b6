//! The Prometheus alert rules shipped with the stack
//! (`deploy/prometheus/alerts.yml`): promtool accepts them and passes their
//! unit tests (`alerts.test.yml`), every alert is tested both firing and
//! quiet, points at its section of `docs/runbook.md`, and uses only the
//! metric names the gateway exposes.
//!
//! Needs `promtool` (Debian package `prometheus`); without it these tests
//! fail and say how to install it.

#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::path::PathBuf;

use tools::{assert_failure, assert_success, load_yaml, read_repo_file, run_in_repo};
use yaml_rust2::Yaml;

const RULES: &str = "deploy/prometheus/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/alerts.test.yml";
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const RUNBOOK: &str = "docs/runbook.md";

/// The alerts the stack must ship: the four rules of the seed document
/// (5xx ratio, traffic surge, failed authentications, uploads near the
/// limit) and the operational ones (scrape down, connections abandoned
/// over their request head, answers abandoned over stalled clients,
/// upstream down, part of the worker pool down, rejected reload, audit
/// lines that could not be written, certificate about to expire, a failing
/// shared rate-limit store).
const EXPECTED_ALERTS: &[&str] = &[
    "TradeHabitGatewayDown",
    "TradeHabitGatewayHighErrorRate",
    "TradeHabitGatewayTrafficSurge",
    "TradeHabitGatewayAuthFailures",
    "TradeHabitGatewayUploadNearLimit",
    "TradeHabitGatewayRequestHeadFailures",
    "TradeHabitGatewayClientStalls",
    "TradeHabitUpstreamDown",
    "TradeHabitUpstreamPoolDegraded",
    "TradeHabitGatewayConfigReloadFailed",
    "TradeHabitGatewayAuditWriteFailures",
    "TradeHabitGatewayCertificateExpiresSoon",
    "TradeHabitGatewayRateLimitStoreFailing",
];

/// Every series name the gateway's admin listener exposes, as Prometheus
/// sees it (prometheus-client adds `_total` to counters; histograms appear
/// as `_bucket`, `_sum` and `_count`). A rule and its unit test that agree
/// on a misspelt name would both pass promtool and never fire in
/// production; this list is the check against that.
const EXPOSED_SERIES: &[&str] = &[
    "tradehabit_gateway_requests_total",
    "tradehabit_gateway_request_duration_seconds",
    "tradehabit_gateway_upstream_duration_seconds",
    "tradehabit_gateway_auth_failures_total",
    "tradehabit_gateway_rate_limited_total",
    "tradehabit_gateway_rejections_total",
    "tradehabit_gateway_upload_bytes",
    "tradehabit_gateway_upload_limit_bytes",
    "tradehabit_gateway_active_connections",
    "tradehabit_gateway_tls_handshake_failures_total",
    "tradehabit_gateway_connection_errors_total",
    "tradehabit_gateway_client_stalls_total",
    "tradehabit_gateway_config_reloads_total",
    "tradehabit_gateway_worker_restarts_total",
    "tradehabit_gateway_upstream_up",
    "tradehabit_gateway_upstream_workers_ready",
    "tradehabit_gateway_upstream_workers_configured",
    "tradehabit_gateway_worker_scrape_up",
    "tradehabit_gateway_audit_write_failures_total",
    "tradehabit_gateway_config_info",
    "tradehabit_gateway_config_last_reload_success_timestamp_seconds",
    "tradehabit_gateway_certificate_not_after_timestamp_seconds",
    "tradehabit_gateway_rate_limit_store_duration_seconds",
    "tradehabit_gateway_rate_limit_store_errors_total",
    "tradehabit_worker_sessions_active",
    "tradehabit_worker_session_bytes",
    "tradehabit_worker_analyses_total",
    "tradehabit_worker_analysis_duration_seconds",
    "tradehabit_worker_rows_parsed_total",
];

const HISTOGRAMS: &[&str] = &[
    "tradehabit_gateway_request_duration_seconds",
    "tradehabit_gateway_upstream_duration_seconds",
    "tradehabit_gateway_upload_bytes",
    "tradehabit_gateway_rate_limit_store_duration_seconds",
    "tradehabit_worker_analysis_duration_seconds",
];

fn promtool() -> PathBuf {
    tools::require_tool(
        "promtool",
        "apt-get update && apt-get install -y prometheus",
    )
}

/// The alerting rules of the rules file (recording rules have no `alert`).
fn alert_rules() -> Vec<Yaml> {
    let rules = load_yaml(RULES);
    let groups = rules["groups"]
        .as_vec()
        .unwrap_or_else(|| panic!("{RULES}: `groups` should be a list"));
    groups
        .iter()
        .flat_map(|group| {
            group["rules"]
                .as_vec()
                .unwrap_or_else(|| panic!("{RULES}: every group needs a `rules` list"))
                .iter()
                .filter(|rule| rule["alert"].as_str().is_some())
                .cloned()
        })
        .collect()
}

fn alert_name(rule: &Yaml) -> &str {
    rule["alert"].as_str().expect("filtered on `alert` above")
}

/// Every `tradehabit_*` name in a PromQL expression or series selector.
fn tradehabit_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("tradehabit_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn is_exposed(series: &str) -> bool {
    if EXPOSED_SERIES.contains(&series) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        series
            .strip_suffix(suffix)
            .is_some_and(|base| HISTOGRAMS.contains(&base))
    })
}

#[test]
fn promtool_check_rules_accepts_the_alert_rules() {
    let output = run_in_repo(&promtool(), ["check", "rules", RULES]);
    assert_success(&format!("promtool check rules {RULES}"), &output);
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let output = run_in_repo(&promtool(), ["test", "rules", RULE_TESTS]);
    assert_success(&format!("promtool test rules {RULE_TESTS}"), &output);
}

#[test]
fn promtool_check_config_accepts_the_compose_prometheus_config() {
    // Also re-checks the rule files the config loads, by their relative path.
    let output = run_in_repo(&promtool(), ["check", "config", PROMETHEUS_CONFIG]);
    assert_success(
        &format!("promtool check config {PROMETHEUS_CONFIG}"),
        &output,
    );
}

/// The control for the two tests above: a unit test that expects an alert
/// the input cannot raise must make promtool fail, or "passed" means nothing.
#[test]
fn promtool_fails_a_unit_test_whose_expectation_is_wrong() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let rules = tools::repo_root().join(RULES);
    let wrong = format!(
        r#"rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'tradehabit_gateway_upstream_up{{job="tradehabit-gateway", instance="a:9901"}}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: TradeHabitUpstreamDown
        exp_alerts:
          - exp_labels:
              severity: critical
              job: tradehabit-gateway
              instance: a:9901
"#,
        rules = rules.display()
    );
    let test_file = dir.path().join("wrong.test.yml");
    std::fs::write(&test_file, wrong).expect("write the wrong unit test");
    let output = run_in_repo(
        &promtool(),
        ["test".as_ref(), "rules".as_ref(), test_file.as_os_str()],
    );
    assert_failure("promtool test rules on a wrong expectation", &output);
}

#[test]
fn the_rules_file_holds_the_seed_rules_and_the_operational_ones() {
    let rules = alert_rules();
    let found: BTreeSet<&str> = rules.iter().map(alert_name).collect();
    let expected: BTreeSet<&str> = EXPECTED_ALERTS.iter().copied().collect();
    assert_eq!(found, expected, "alerts in {RULES}");
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let runbook = read_repo_file(RUNBOOK);
    let headings: BTreeSet<&str> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(str::trim)
        .collect();
    for rule in alert_rules() {
        let name = alert_name(&rule);
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: labels.severity should be critical or warning, got {severity:?}"
        );
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or("");
            assert!(
                !text.trim().is_empty(),
                "{name}: annotations.{annotation} is missing"
            );
        }
        let expected_url = format!("{RUNBOOK}#{}", name.to_lowercase());
        assert_eq!(
            rule["annotations"]["runbook_url"].as_str(),
            Some(expected_url.as_str()),
            "{name}: runbook_url"
        );
        assert!(
            headings.contains(name),
            "{RUNBOOK} has no section `## {name}` for the anchor of {name}"
        );
    }
}

#[test]
fn every_alert_is_unit_tested_both_firing_and_quiet() {
    let tests = load_yaml(RULE_TESTS);
    let groups = tests["tests"]
        .as_vec()
        .unwrap_or_else(|| panic!("{RULE_TESTS}: `tests` should be a list"));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in groups.iter().flat_map(|group| {
        group["alert_rule_test"]
            .as_vec()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }) {
        let name = case["alertname"]
            .as_str()
            .unwrap_or_else(|| panic!("{RULE_TESTS}: an alert_rule_test has no alertname"))
            .to_string();
        let expected = case["exp_alerts"]
            .as_vec()
            .unwrap_or_else(|| panic!("{RULE_TESTS}: {name}: exp_alerts should be a list"));
        if expected.is_empty() {
            quiet.insert(name);
        } else {
            firing.insert(name);
        }
    }
    for rule in alert_rules() {
        let name = alert_name(&rule);
        assert!(firing.contains(name), "{name} is never tested firing");
        assert!(quiet.contains(name), "{name} is never tested quiet");
    }
}

#[test]
fn rules_and_their_tests_use_only_series_the_gateway_exposes() {
    let mut used = BTreeSet::new();
    for rule in alert_rules() {
        let expr = rule["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: expr should be a string", alert_name(&rule)));
        used.extend(tradehabit_names(expr));
    }
    let tests = load_yaml(RULE_TESTS);
    for group in tests["tests"].as_vec().expect("checked above") {
        for series in group["input_series"]
            .as_vec()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            used.extend(tradehabit_names(series["series"].as_str().unwrap_or("")));
        }
    }
    assert!(
        !used.is_empty(),
        "no tradehabit_* series found: the parser is broken"
    );
    let unknown: Vec<&String> = used.iter().filter(|name| !is_exposed(name)).collect();
    assert!(
        unknown.is_empty(),
        "series not exposed by the gateway (misspelt?): {unknown:?}"
    );
}

#[test]
fn the_series_check_catches_a_misspelt_name() {
    assert_eq!(
        tradehabit_names("rate(tradehabit_gateway_request_total[5m]) > 0"),
        ["tradehabit_gateway_request_total"]
    );
    assert!(!is_exposed("tradehabit_gateway_request_total"));
    assert!(is_exposed("tradehabit_gateway_upload_bytes_bucket"));
    assert!(!is_exposed("tradehabit_gateway_upload_limit_bytes_bucket"));
}
