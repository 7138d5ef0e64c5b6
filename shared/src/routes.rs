//! The legacy API's routes, written once: method, path, the body each takes
//! and the size limits that go with it.
//!
//! The worker routes and labels requests from [`ROUTES`], the gateway's
//! development policy (`gateway/src/dev.rs`) is generated from it, and the
//! shipped example policy is tested against it. The behaviour of each
//! endpoint is described in `docs/worker.md` and `docs/quirks.md`.

/// Largest CSV file an upload may carry: 2 MiB. Exactly this many bytes
/// pass; one more is refused (`docs/quirks.md`, H-10).
pub const MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024;

/// Largest JSON request body (settings, goals): 64 KiB. The worker's default
/// for `--max-body-bytes`, and the development policy's body limit for the
/// JSON routes.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// Room the development policy leaves around the file for the multipart
/// framing (boundary lines, part headers): 64 KiB.
pub const UPLOAD_FRAMING_BYTES: usize = 64 * 1024;

/// The development policy's body limit for routes that take no body: 1 KiB.
pub const MAX_EMPTY_BODY_BYTES: usize = 1024;

/// The multipart form field that carries the CSV file.
pub const UPLOAD_FIELD: &str = "file";

/// The upload route.
pub const ANALYZE_PATH: &str = "/api/analyze";

/// `DELETE` erases the caller's session (the worker's own route).
pub const SESSION_PATH: &str = "/api/session";

/// What a route does, independent of its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Upload and analyse a CSV export.
    Analyze,
    /// The summary block.
    Summary,
    /// Every trade.
    Trades,
    /// Losing trades and outsized losses.
    Losses,
    /// Revenge trading.
    Revenge,
    /// Risk-sizing consistency.
    RiskSizing,
    /// Excessive risk.
    ExcessiveRisk,
    /// Stop-loss discipline.
    StopLoss,
    /// Win rate and payoff ratio.
    WinratePayoff,
    /// All diagnostics, ordered.
    Insights,
    /// The built-in goals.
    Goals,
    /// User-defined goals.
    GoalsCalculate,
    /// Read (`GET`) or change (`POST`) the thresholds.
    Settings,
    /// The liveness sentence.
    Health,
    /// Erase the caller's session.
    Session,
}

/// The body a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// None.
    Empty,
    /// A JSON document.
    Json,
    /// A multipart form whose [`UPLOAD_FIELD`] part is the CSV file.
    Upload,
}

impl BodyKind {
    /// The whole-body limit the development policy sets for this kind, in
    /// bytes.
    pub const fn policy_limit_bytes(self) -> u64 {
        (match self {
            Self::Empty => MAX_EMPTY_BODY_BYTES,
            Self::Json => MAX_JSON_BODY_BYTES,
            Self::Upload => MAX_UPLOAD_BYTES + UPLOAD_FRAMING_BYTES,
        }) as u64
    }
}

/// One method on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The policy's name for the route (unique).
    pub name: &'static str,
    /// The method, upper case.
    pub method: &'static str,
    /// The exact path.
    pub path: &'static str,
    /// What the route does.
    pub endpoint: Endpoint,
    /// The body it takes.
    pub body: BodyKind,
}

const fn route(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    endpoint: Endpoint,
    body: BodyKind,
) -> Route {
    Route {
        name,
        method,
        path,
        endpoint,
        body,
    }
}

/// Every route of the legacy API (its mentor routes are not served) plus
/// the worker's `DELETE /api/session`, in the policy's order. A path with
/// two methods has two entries.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    route("analyze", "POST", ANALYZE_PATH, Endpoint::Analyze, BodyKind::Upload),
    route("summary", "GET", "/api/summary", Endpoint::Summary, BodyKind::Empty),
    route("trades", "GET", "/api/trades", Endpoint::Trades, BodyKind::Empty),
    route("losses", "GET", "/api/losses", Endpoint::Losses, BodyKind::Empty),
    route("revenge", "GET", "/api/revenge", Endpoint::Revenge, BodyKind::Empty),
    route("risk-sizing", "GET", "/api/risk-sizing", Endpoint::RiskSizing, BodyKind::Empty),
    route("excessive-risk", "GET", "/api/excessive-risk", Endpoint::ExcessiveRisk, BodyKind::Empty),
    route("stop-loss", "GET", "/api/stop-loss", Endpoint::StopLoss, BodyKind::Empty),
    route("winrate-payoff", "GET", "/api/winrate-payoff", Endpoint::WinratePayoff, BodyKind::Empty),
    route("insights", "GET", "/api/insights", Endpoint::Insights, BodyKind::Empty),
    route("goals", "GET", "/api/goals", Endpoint::Goals, BodyKind::Empty),
    route("goals-calculate", "POST", "/api/goals/calculate", Endpoint::GoalsCalculate, BodyKind::Json),
    route("settings-read", "GET", "/api/settings", Endpoint::Settings, BodyKind::Empty),
    route("settings-write", "POST", "/api/settings", Endpoint::Settings, BodyKind::Json),
    route("health", "GET", "/api/health", Endpoint::Health, BodyKind::Empty),
    route("session-delete", "DELETE", SESSION_PATH, Endpoint::Session, BodyKind::Empty),
];

/// The routes on `path` (exact match), one per method.
pub fn on_path(path: &str) -> impl Iterator<Item = &'static Route> + '_ {
    ROUTES.iter().filter(move |route| route.path == path)
}

/// The route for `method` (upper case) on `path`, if there is one.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    on_path(path).find(|route| route.method == method)
}

/// Whether `method` on `path` is the upload route.
pub fn is_upload(method: &str, path: &str) -> bool {
    find(method, path).is_some_and(|route| route.body == BodyKind::Upload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_each_method_appears_once_per_path() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(a.path != b.path || a.method != b.method, "{a:?}");
            }
        }
    }

    #[test]
    fn lookups() {
        assert!(is_upload("POST", "/api/analyze"));
        assert!(!is_upload("GET", "/api/analyze"));
        assert_eq!(on_path("/api/settings").count(), 2);
        assert_eq!(
            find("POST", "/api/settings").map(|r| r.name),
            Some("settings-write")
        );
        assert_eq!(find("GET", "/api/settings/"), None);
        assert_eq!(BodyKind::Upload.policy_limit_bytes(), 2_162_688);
        assert_eq!(BodyKind::Json.policy_limit_bytes(), 65_536);
        assert_eq!(BodyKind::Empty.policy_limit_bytes(), 1024);
    }
}
