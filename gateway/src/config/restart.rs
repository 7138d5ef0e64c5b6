//! The settings that only take effect at start-up, as a digest per key:
//! the admin listener serves the running policy's (`GET
//! /policy/restart-only`), and `check-config --admin URL` compares a file's
//! with it, so a change that a reload would refuse is known before the
//! reload. Only SHA-256 digests leave the process, never values; the audit
//! pseudonym key counts only as set or not.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::Config;

/// The admin endpoint that serves the running policy's digests.
pub const RESTART_ONLY_PATH: &str = "/policy/restart-only";

impl Config {
    /// One `key digest` line per restart-only setting (the keys of
    /// [`Config::restart_only_changes`]).
    pub fn restart_only_digest(&self) -> String {
        let (up, audit) = (&self.upstream, &self.audit);
        let entries: [(&str, String); 9] = [
            ("server.listen", format!("{:?}", self.server.listen)),
            (
                "plain_http.listen",
                format!("{:?}", self.plain_http.as_ref().map(|p| p.listen)),
            ),
            ("upstream.address", format!("{:?}", up.address)),
            ("upstream.spawn", format!("{:?}", up.spawn)),
            ("upstream.max_in_flight", format!("{:?}", up.max_in_flight)),
            (
                "upstream.pool_idle_timeout/pool_max_idle/connect_timeout",
                format!(
                    "{:?}",
                    (up.pool_idle_timeout, up.pool_max_idle, up.connect_timeout)
                ),
            ),
            ("admin.listen", format!("{:?}", self.admin.listen)),
            (
                "audit (all but on_failure)",
                format!(
                    "{:?}",
                    (
                        &audit.output,
                        audit.hash_chain,
                        audit.pseudonym_key.is_some(),
                        audit.failure_log_interval,
                        audit.flush_interval
                    )
                ),
            ),
            (
                "limits.h2_max_concurrent_streams",
                format!("{:?}", self.limits.h2_max_concurrent_streams),
            ),
        ];
        let mut out = String::new();
        for (key, value) in entries {
            let digest = hex::encode(Sha256::digest(value.as_bytes()));
            let _ = writeln!(out, "{key} {digest}");
        }
        out
    }
}

/// The keys whose digests differ between two [`Config::restart_only_digest`]
/// texts (a key missing on either side counts as changed).
pub fn differing(running: &str, file: &str) -> Vec<String> {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|line| line.rsplit_once(' '))
            .map(|(k, d)| (k.to_owned(), d.to_owned()))
            .collect()
    };
    let (running, file) = (parse(running), parse(file));
    file.iter()
        .filter(|(key, digest)| !running.iter().any(|(k, d)| k == key && d == digest))
        .map(|(key, _)| key.clone())
        .collect()
}
