//! `tradehabit-gateway selftest https://HOST[:PORT]`: proves a running
//! deployment's controls from outside, as a client sees them, and prints
//! one pass/fail line per check with the requirement it verifies (OWASP
//! ASVS 5.0, Mozilla's TLS guidelines, RFC 6797). Any failure makes the
//! command exit non-zero (`docs/runbook.md`, "Proving a deployment").
//!
//! Nothing it sends changes data: reads, preflights, and requests the
//! gateway refuses before the upstream sees them. The transport checks are
//! in `selftest/tls_probes.rs`, the HTTP ones in `selftest/http_probes.rs`,
//! the client in `selftest/client.rs`.

mod client;
mod http_probes;
mod tls_probes;

use std::fmt::Write as _;
use std::path::PathBuf;

use http::{HeaderName, HeaderValue};
use serde::Serialize;

pub use http_probes::MIN_HSTS_MAX_AGE;

/// The path probed for a success answer (open, rate-limited in both
/// shipped policies).
pub const DEFAULT_HEALTH_PATH: &str = "/api/health";
/// The path probed for the credential, CORS and rate-limit checks.
pub const DEFAULT_PROTECTED_PATH: &str = "/api/summary";
/// The path the oversized body is posted to (a non-upload route).
pub const DEFAULT_POST_PATH: &str = "/api/settings";
/// A certificate expiring sooner than this fails the expiry check.
pub const DEFAULT_MIN_CERT_DAYS: u32 = 14;

/// What to probe and with what.
#[derive(Debug, Clone)]
pub struct Options {
    /// `https://HOST[:PORT]`.
    pub target: String,
    /// A PEM file of trusted certificates; default: the system bundle.
    pub ca: Option<PathBuf>,
    /// An API key (sent as `X-API-Key`) or a bearer token; never printed.
    pub credential: Option<Credential>,
    /// Origins the deployment allows (`[cors] allowed_origins`).
    pub origins: Vec<String>,
    /// The plain-HTTP listener, `http://HOST[:PORT]`, if there is one.
    pub plain_http: Option<String>,
    /// See [`DEFAULT_HEALTH_PATH`].
    pub health_path: String,
    /// See [`DEFAULT_PROTECTED_PATH`].
    pub protected_path: String,
    /// See [`DEFAULT_POST_PATH`].
    pub post_path: String,
    /// See [`DEFAULT_MIN_CERT_DAYS`].
    pub min_cert_days: u32,
}

impl Options {
    /// The defaults for `target`.
    pub fn new(target: impl Into<String>) -> Options {
        Options {
            target: target.into(),
            ca: None,
            credential: None,
            origins: Vec::new(),
            plain_http: None,
            health_path: DEFAULT_HEALTH_PATH.to_string(),
            protected_path: DEFAULT_PROTECTED_PATH.to_string(),
            post_path: DEFAULT_POST_PATH.to_string(),
            min_cert_days: DEFAULT_MIN_CERT_DAYS,
        }
    }
}

/// A credential for the probes that need one. Its `Debug` hides it.
#[derive(Clone)]
pub enum Credential {
    /// `X-API-Key: …`
    ApiKey(String),
    /// `Authorization: Bearer …`
    Token(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::ApiKey(_) => "ApiKey(<redacted>)",
            Credential::Token(_) => "Token(<redacted>)",
        })
    }
}

impl Credential {
    fn header(&self) -> anyhow::Result<(HeaderName, HeaderValue)> {
        let (name, value) = match self {
            Credential::ApiKey(key) => ("x-api-key", key.trim().to_string()),
            Credential::Token(token) => ("authorization", format!("Bearer {}", token.trim())),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| anyhow::anyhow!("the credential is not a valid header value"))?;
        value.set_sensitive(true);
        Ok((HeaderName::from_static(name), value))
    }
}

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The control holds.
    Pass,
    /// The control does not hold (or could not be shown to).
    Fail,
    /// Not probed: the input it needs was not given (the detail says which).
    Skip,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The requirement it verifies.
    pub reference: &'static str,
    /// Pass, fail or skip.
    pub result: Outcome,
    /// What was seen.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, reference: &'static str, result: Outcome, detail: String) -> Check {
        Check {
            name,
            reference,
            result,
            detail,
        }
    }
}

/// Every check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The URL probed.
    pub target: String,
    /// In the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// How many checks have `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.result == outcome).count()
    }

    /// One line per check and a summary.
    pub fn render(&self) -> String {
        let mut out = format!("selftest {}\n", self.target);
        for check in &self.checks {
            let result = match check.result {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            let _ = writeln!(
                out,
                "{result}  {:<52} [{}] {}",
                check.name, check.reference, check.detail
            );
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} skipped",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip)
        );
        out
    }

    /// The report as one JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Report always serialises")
    }
}

/// Runs every check against `options.target`. Fails only when the target
/// or the trust roots are unusable; a control that does not hold is a
/// failed check in the report.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let credential = options
        .credential
        .as_ref()
        .map(Credential::header)
        .transpose()?;
    let target = client::Target::new(&options.target, options.ca.as_deref(), credential)?;
    let mut checks = tls_probes::legacy_versions_refused(&target).await;
    checks.extend(tls_probes::modern_handshakes(&target, options.min_cert_days).await);
    checks.extend(http_probes::headers(&target, options).await);
    checks.extend(http_probes::cors(&target, options).await);
    checks.extend(http_probes::credentials(&target, options).await);
    checks.push(http_probes::oversized_body(&target, options).await);
    checks.push(http_probes::unlisted_host(&target, options).await);
    checks.push(http_probes::plain_http(options).await);
    Ok(Report {
        target: options.target.clone(),
        checks,
    })
}
