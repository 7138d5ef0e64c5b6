//! The human form of a [`Report`].

use std::fmt::Write as _;

use super::Report;

/// The width of the check column.
const CHECK_WIDTH: usize = 26;

/// Renders `report` for a terminal.
pub(super) fn human(report: &Report) -> String {
    let mut out = String::new();
    let request = &report.request;
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "{} {} from {}",
        request.method, request.url, request.client_ip
    );
    for (name, value) in &request.headers {
        let _ = writeln!(out, "  {name}: {value}");
    }
    for assumption in &report.assumptions {
        let _ = writeln!(out, "assumed: {assumption}");
    }
    let _ = writeln!(out, "\nChecks, in order:");
    for step in &report.steps {
        let _ = writeln!(
            out,
            "  {:<width$} {:<7} {}",
            step.check,
            step.outcome.as_str(),
            step.detail,
            width = CHECK_WIDTH
        );
    }
    let answer = &report.answer;
    let route = report.route.as_deref().unwrap_or("(none)");
    if answer.forwarded {
        let _ = writeln!(
            out,
            "\nAnswer: forwarded to the upstream (route {route}), which answers; the \
             gateway adds to its answer:"
        );
    } else {
        let status = answer.status.unwrap_or_default();
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let _ = write!(out, "\nAnswer: {status} {reason}");
        match (answer.check, answer.reason) {
            (Some(check), Some(why)) => {
                let _ = writeln!(out, " by the gateway (check {check}, reason {why})");
            }
            _ => {
                let _ = writeln!(out, " by the gateway");
            }
        }
    }
    for (name, value) in &answer.headers {
        let _ = writeln!(out, "  {name}: {value}");
    }
    if let Some(envelope) = &answer.envelope {
        let _ = writeln!(out, "\n  {envelope}");
    }
    if let Some(upstream) = &report.upstream {
        let _ = writeln!(out, "\nForwarded to the upstream:");
        let _ = writeln!(out, "  {} {} HTTP/1.1", upstream.method, upstream.target);
        for (name, value) in &upstream.headers {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    out
}
