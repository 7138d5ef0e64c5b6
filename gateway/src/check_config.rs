//! `tradehabit-gateway check-config`: everything `run` would refuse, found
//! without starting anything, every problem at once.
//!
//! The policy file is validated as `run` validates it (every value, every
//! unknown key with a suggestion, secrets and key files read); the
//! certificate and key are loaded as `run` loads them (`certificate`);
//! with `--effective` every route's resolved policy is printed; with
//! `--admin URL` the running gateway's restart-only settings are compared
//! with the file's, naming each change a reload would refuse
//! (`restart`). See `docs/configuration.md`, "Checking a policy".

pub mod certificate;
pub mod restart;

use std::path::Path;

use crate::config::{Config, ConfigError};

/// What to check besides the file itself.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Print every route's resolved policy.
    pub effective: bool,
    /// The admin listener of a running gateway (`http://127.0.0.1:9901`).
    pub admin: Option<String>,
}

/// What one `check-config` run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each a reason `run` (or a reload) would refuse the file.
    pub problems: Vec<String>,
    /// Worth knowing, not refused.
    pub warnings: Vec<String>,
    /// The resolved routes, when asked for and the file is valid.
    pub effective: Option<String>,
}

impl Report {
    /// Whether the file would be accepted.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the policy file at `path`.
pub fn check(path: &Path, options: &Options) -> Report {
    let mut report = Report::default();
    let config = match Config::from_file(path) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            report.problems = problems;
            return report;
        }
        Err(other) => {
            report.problems.push(other.to_string());
            return report;
        }
    };
    let found = certificate::check(&config, time::OffsetDateTime::now_utc());
    report.problems.extend(found.problems);
    report.warnings.extend(found.warnings);
    if let Some(admin) = &options.admin {
        match restart::changes(&config, admin) {
            Ok(changed) => report.problems.extend(changed.into_iter().map(|key| {
                format!("{key}: differs from the running gateway's and needs a restart (a reload would be refused)")
            })),
            Err(error) => report
                .problems
                .push(format!("--admin {admin}: cannot ask the running gateway: {error}")),
        }
    }
    if options.effective {
        report.effective = Some(config.effective_routes());
    }
    report
}
