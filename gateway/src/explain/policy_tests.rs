//! Policy tests: a TOML file of requests and the decisions expected for
//! them, each run through `explain` on a freshly loaded policy (fresh
//! rate-limit buckets per test), every difference listed
//! (`docs/configuration.md`, "Policy tests").

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

use super::{explain, ExplainRequest, Report};
use crate::config::{Config, ConfigError};

/// A policy tests file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestsFile {
    /// Stand-in callers: API keys added to the policy for the tests only.
    #[serde(default)]
    callers: BTreeMap<String, CallerDef>,
    #[serde(default)]
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerDef {
    scopes: Vec<String>,
}

/// One request and what is expected of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<String>,
    /// One of `[callers]`: its API key is sent.
    caller: Option<String>,
    body_size: Option<u64>,
    client_ip: Option<IpAddr>,
    expect: Expect,
}

/// The expected decision; only what is given is compared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// A status the gateway answers with, or `"forwarded"`.
    status: ExpectedStatus,
    route: Option<String>,
    /// The refusing check (`auth`, `scopes`, `route`, …).
    check: Option<String>,
    /// The refusal's audit reason (`auth.missing`).
    reason: Option<String>,
    /// The envelope's `code` (`docs/errors.md`).
    code: Option<String>,
    /// The envelope's `message`.
    message: Option<String>,
    principal: Option<String>,
    /// Headers the upstream gets, with their values.
    #[serde(default)]
    forwarded_headers: BTreeMap<String, String>,
    /// Headers the upstream must not get.
    #[serde(default)]
    not_forwarded_headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpectedStatus {
    Code(u16),
    Word(String),
}

/// The outcome of a tests file.
#[derive(Debug, Default)]
pub struct TestRun {
    /// One line per passing test, a block per failing one.
    lines: Vec<String>,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
    /// The policy's routes no test reached.
    pub uncovered: Vec<String>,
}

impl fmt::Display for TestRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        if !self.uncovered.is_empty() {
            writeln!(f, "routes no test reaches: {}", self.uncovered.join(", "))?;
        }
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs the tests in `tests` against the policy file `policy`.
pub async fn run_file(policy: &Path, tests: &Path) -> anyhow::Result<TestRun> {
    let text = std::fs::read_to_string(tests)
        .with_context(|| format!("cannot read {}", tests.display()))?;
    run(&|| Config::from_file(policy), &text)
        .await
        .with_context(|| format!("policy tests {}", tests.display()))
}

/// Runs the tests of `text`, each on a policy freshly made by `load`.
pub(super) async fn run(
    load: &dyn Fn() -> Result<Config, ConfigError>,
    text: &str,
) -> anyhow::Result<TestRun> {
    let file: TestsFile = toml::from_str(text).context("not a policy tests file")?;
    anyhow::ensure!(!file.tests.is_empty(), "no [[tests]] in the file");
    let mut run = TestRun::default();
    for route in &load()?.routes {
        // Several paths given one policy share the route's name.
        if !run.uncovered.contains(&route.name) {
            run.uncovered.push(route.name.clone());
        }
    }
    for case in &file.tests {
        if let ExpectedStatus::Word(word) = &case.expect.status {
            anyhow::ensure!(
                word == "forwarded",
                "{}: expect.status is a status code or \"forwarded\", not {word:?}",
                case.name
            );
        }
        let caller_scopes = match &case.caller {
            Some(name) => Some(
                file.callers
                    .get(name)
                    .map(|c| c.scopes.clone())
                    .with_context(|| format!("{}: no caller {name:?} in [callers]", case.name))?,
            ),
            None => None,
        };
        let request = ExplainRequest {
            method: case.method.clone(),
            url: case.url.clone(),
            headers: case.headers.clone(),
            body_size: case.body_size,
            client_ip: case.client_ip,
            caller_scopes,
            caller_id: case.caller.clone(),
        };
        let report = explain(load()?, &request)
            .await
            .with_context(|| case.name.clone())?;
        run.uncovered
            .retain(|name| report.route.as_ref() != Some(name));
        let differences = compare(&case.expect, &report);
        if differences.is_empty() {
            run.passed += 1;
            run.lines.push(format!("ok   {}", case.name));
        } else {
            run.failed += 1;
            run.lines.push(format!("FAIL {}", case.name));
            run.lines
                .extend(differences.iter().map(|d| format!("       {d}")));
            run.lines
                .push(format!("       checks: {}", checks_line(&report)));
        }
    }
    Ok(run)
}

/// Every expectation `report` does not meet, as `what: expected …, got …`.
fn compare(expect: &Expect, report: &Report) -> Vec<String> {
    let answer = &report.answer;
    let got_status = match answer.status {
        Some(code) => code.to_string(),
        None => "forwarded".to_owned(),
    };
    let want_status = match &expect.status {
        ExpectedStatus::Code(code) => code.to_string(),
        ExpectedStatus::Word(word) => word.clone(),
    };
    let mut differences = Vec::new();
    let mut differ = |what: &str, want: &str, got: Option<&str>| {
        if Some(want) != got {
            differences.push(format!(
                "{what}: expected {want:?}, got {}",
                got.map_or("none".to_owned(), |g| format!("{g:?}"))
            ));
        }
    };
    differ("status", &want_status, Some(&got_status));
    if let Some(route) = &expect.route {
        differ("route", route, report.route.as_deref());
    }
    if let Some(check) = &expect.check {
        differ("check", check, answer.check);
    }
    if let Some(reason) = &expect.reason {
        differ("reason", reason, answer.reason);
    }
    if let Some(code) = &expect.code {
        let got = answer.envelope.as_ref().and_then(|e| e["code"].as_str());
        differ("code", code, got);
    }
    if let Some(message) = &expect.message {
        let got = answer.envelope.as_ref().and_then(|e| e["message"].as_str());
        differ("message", message, got);
    }
    if let Some(principal) = &expect.principal {
        differ("principal", principal, report.principal.as_deref());
    }
    let forwarded = report.upstream.as_ref().map(|u| &u.headers);
    let header = |name: &str| {
        forwarded.and_then(|headers| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    };
    for (name, value) in &expect.forwarded_headers {
        differ(&format!("forwarded {name}"), value, header(name));
    }
    for name in &expect.not_forwarded_headers {
        if let Some(value) = header(name) {
            differences.push(format!("forwarded {name}: expected none, got {value:?}"));
        }
    }
    differences
}

/// The checks' outcomes on one line: `shape pass, …, scopes REFUSE (…)`.
fn checks_line(report: &Report) -> String {
    report
        .steps
        .iter()
        .map(|step| match step.outcome {
            crate::policy::Outcome::Refuse => {
                format!("{} REFUSE ({})", step.check, step.detail)
            }
            outcome => format!("{} {}", step.check, outcome.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
