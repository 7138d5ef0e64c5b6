//! `[[routes]]`: path, methods, body limit and checks of each route, and
//! their validation.

use super::route_defaults::{self, Resolved};
use super::*;
use crate::static_files::{self, StaticFiles};

/// How a route's `path` is compared with the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathMatch {
    /// The request path equals `path`.
    Exact,
    /// The request path is `path` or continues it after a `/`.
    Prefix,
}

/// Who answers a route's requests (`serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Serve {
    /// Forwarded to the upstream (`serve = "upstream"`, the default).
    #[default]
    Upstream,
    /// Answered by the gateway with the OpenAPI document of the API
    /// (`serve = "openapi"`; `GET` only), after the route's checks.
    OpenApi,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) path_match: PathMatch,
    /// Allowed methods; `GET` implies `HEAD`.
    pub(crate) methods: Vec<Method>,
    /// Largest request body in bytes, default [`DEFAULT_ROUTE_BODY_LIMIT`].
    pub(crate) body_limit: u64,
    /// Authentication, scopes, rate limits, CORS, query and body rules.
    pub(crate) checks: RouteChecks,
    /// Compressed bodies accepted and decoded (`compressed_body`); `None`
    /// refuses them (415).
    pub(crate) compressed_body: Option<CompressedBody>,
    /// Served from a directory by the gateway itself (`static_files`).
    pub(crate) static_files: Option<Arc<StaticFiles>>,
    /// Who answers.
    pub(crate) serve: Serve,
}

pub(super) fn validate_routes(
    defaults: Option<RawRoute>,
    raw: Vec<RawRoute>,
    checks: Option<&PolicyChecks>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Vec<Arc<Route>> {
    if raw.is_empty() {
        problems.push(
            "routes",
            "no [[routes]]: every request would be refused with 404",
        );
    }
    let mut routes = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for resolved in route_defaults::resolve(defaults, raw, problems) {
        let Resolved { key, entry, raw } = resolved;
        if let Some(name) = &raw.name {
            if names.iter().any(|(n, e)| n == name && *e != entry) {
                problems.push(
                    format_args!("{key}.name"),
                    format_args!("`{name}` is used by an earlier route"),
                );
            }
            names.push((name.clone(), entry));
        }
        if let Some(route) = validate_route(&key, raw, checks, base_dir, problems) {
            routes.push(Arc::new(route));
        }
    }
    routes
}

pub(super) fn validate_route(
    route_key: &str,
    raw: RawRoute,
    checks: Option<&PolicyChecks>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Route> {
    let key = |field: &str| format!("{route_key}.{field}");
    let limit_for_checks = raw
        .body_limit
        .map_or(Some(DEFAULT_ROUTE_BODY_LIMIT), |l| u64::try_from(l).ok());
    let route_checks = policy::validate_route(route_key, &raw, limit_for_checks, checks, problems);
    let static_files = validate_static(route_key, &raw, base_dir, problems);
    // A static route takes no body unless told otherwise.
    let route_checks = route_checks.map(|mut checks| {
        if matches!(static_files, Some(Some(_))) && raw.content_types.is_none() {
            checks.content_types = Some(Vec::new());
        }
        checks
    });
    let compressed_body = match raw.compressed_body {
        None => Some(None),
        Some(allowance) => {
            compressed::validate(allowance, &key("compressed_body"), problems).map(Some)
        }
    };
    let name = required(raw.name, &key("name"), problems);
    if name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        problems.push(key("name"), "must not be empty");
    }
    let route_path = required(raw.path, &key("path"), problems);
    if let Some(p) = &route_path {
        if let Err(reason) = path::check(p) {
            problems.push(key("path"), format_args!("`{p}` {reason}"));
        }
    }
    let path_match = match raw.match_.as_deref() {
        None | Some("exact") => Some(PathMatch::Exact),
        Some("prefix") => Some(PathMatch::Prefix),
        Some(other) => {
            problems.push(
                key("match"),
                format_args!("`{other}` is not `exact` or `prefix`"),
            );
            None
        }
    };
    let serve = validate_serve(
        raw.serve.as_deref(),
        raw.methods.as_deref(),
        &key("serve"),
        problems,
    );
    let methods = required(raw.methods, &key("methods"), problems).map(|list| {
        if list.is_empty() {
            problems.push(key("methods"), "must list at least one method");
        }
        list.iter()
            .enumerate()
            .filter_map(|(j, text)| {
                route_method(text, &format!("{}[{j}]", key("methods")), problems)
            })
            .collect::<Vec<_>>()
    });
    let body_limit = match raw.body_limit {
        None => Some(DEFAULT_ROUTE_BODY_LIMIT),
        Some(limit) if limit > 0 && limit as u64 <= MAX_ROUTE_BODY_LIMIT => Some(limit as u64),
        Some(limit) if limit <= 0 => {
            problems.push(key("body_limit"), "must be > 0");
            None
        }
        Some(_) => {
            problems.push(
                key("body_limit"),
                format_args!("must be at most {MAX_ROUTE_BODY_LIMIT} bytes"),
            );
            None
        }
    };
    Some(Route {
        name: name?,
        path: route_path?,
        path_match: path_match?,
        methods: methods?,
        body_limit: body_limit?,
        checks: route_checks?,
        compressed_body: compressed_body?,
        static_files: static_files?,
        serve: serve?,
    })
}

/// A route's `static_files`: valid, on a route that only reads (`GET`,
/// `HEAD`) and has no body rules. `Some(None)`: not a static route.
fn validate_static(
    route_key: &str,
    raw: &RawRoute,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Option<Arc<StaticFiles>>> {
    let Some(section) = &raw.static_files else {
        return Some(None);
    };
    let key = |field: &str| format!("{route_key}.{field}");
    let reads_only = raw
        .methods
        .iter()
        .flatten()
        .all(|m| m == "GET" || m == "HEAD");
    if !reads_only {
        problems.push(
            key("methods"),
            "a static_files route serves only GET and HEAD",
        );
    }
    if raw.upload.is_some() || raw.json.is_some() || raw.compressed_body.is_some() {
        problems.push(
            key("static_files"),
            "a static_files route takes no upload, json or compressed_body rules",
        );
    }
    static_files::validate(section, &key("static_files"), base_dir, problems)
        .map(|files| Some(Arc::new(files)))
}

/// `serve`: `upstream` or `openapi`; the document is only read (`GET`).
fn validate_serve(
    serve: Option<&str>,
    methods: Option<&[String]>,
    key: &str,
    problems: &mut Problems,
) -> Option<Serve> {
    match serve {
        None | Some("upstream") => Some(Serve::Upstream),
        Some("openapi") => {
            if methods.is_some_and(|list| list.iter().any(|m| m != "GET")) {
                problems.push(key, "`openapi` routes take `methods = [\"GET\"]` only");
                return None;
            }
            Some(Serve::OpenApi)
        }
        Some(other) => {
            problems.push(
                key,
                format_args!("`{other}` is not `upstream` or `openapi`"),
            );
            None
        }
    }
}

pub(super) fn route_method(text: &str, key: &str, problems: &mut Problems) -> Option<Method> {
    if text != text.to_ascii_uppercase() {
        problems.push(key, format_args!("`{text}` must be upper case"));
        return None;
    }
    // TRACE reflects requests (credentials included) and CONNECT opens
    // tunnels: a gateway never forwards either (ASVS 13.4.4).
    if text == "TRACE" || text == "CONNECT" {
        problems.push(key, format_args!("`{text}` is never forwarded"));
        return None;
    }
    match Method::from_bytes(text.as_bytes()) {
        Ok(method) => Some(method),
        Err(_) => {
            problems.push(key, format_args!("`{text}` is not an HTTP method"));
            None
        }
    }
}
