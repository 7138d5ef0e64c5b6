//! Route: which entry of the operator's ordered `[[routes]]` list applies.
//!
//! The first route whose path *and* method match wins. When some routes
//! match the path but none allows the method, the answer is 405 with the
//! union of their methods in `Allow`; when no route matches the path, 404.
//! Either way nothing is forwarded. `GET` implies `HEAD`. A static-files
//! route never matches a path under its `exclude_prefixes`.

use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::config::{PathMatch, Route};
use crate::reject::Rejection;

/// Finds the route for `path` and `method`.
pub(crate) fn find(
    routes: &[Arc<Route>],
    path: &str,
    method: &Method,
) -> Result<Arc<Route>, Rejection> {
    let mut allowed: Vec<Method> = Vec::new();
    for route in routes.iter().filter(|route| matches_path(route, path)) {
        if allows(route, method) {
            return Ok(Arc::clone(route));
        }
        for listed in &route.methods {
            if !allowed.contains(listed) {
                allowed.push(listed.clone());
            }
            if *listed == Method::GET && !allowed.contains(&Method::HEAD) {
                allowed.push(Method::HEAD);
            }
        }
    }
    if allowed.is_empty() {
        return Err(Rejection::NoRoute);
    }
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    Err(Rejection::MethodNotAllowed {
        allow: HeaderValue::from_str(&allow).expect("method names are valid header text"),
    })
}

fn matches_path(route: &Route, path: &str) -> bool {
    // A static route leaves the API's paths alone (`exclude_prefixes`).
    if route
        .static_files
        .as_ref()
        .is_some_and(|f| f.excludes(path))
    {
        return false;
    }
    match route.path_match {
        PathMatch::Exact => path == route.path,
        // Segment-aware: `/api` covers `/api` and `/api/x`, never `/apix`.
        PathMatch::Prefix => match path.strip_prefix(route.path.as_str()) {
            Some(rest) => rest.is_empty() || route.path.ends_with('/') || rest.starts_with('/'),
            None => false,
        },
    }
}

fn allows(route: &Route, method: &Method) -> bool {
    route.methods.contains(method)
        || (*method == Method::HEAD && route.methods.contains(&Method::GET))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, path: &str, path_match: PathMatch, methods: &[Method]) -> Arc<Route> {
        Arc::new(Route {
            name: name.into(),
            path: path.into(),
            path_match,
            methods: methods.to_vec(),
            body_limit: 1,
            checks: crate::config::tests::minimal().routes[0].checks.clone(),
            compressed_body: None,
            static_files: None,
            serve: crate::config::Serve::Upstream,
        })
    }

    fn table() -> Vec<Arc<Route>> {
        vec![
            route(
                "settings-read",
                "/api/settings",
                PathMatch::Exact,
                &[Method::GET],
            ),
            route(
                "settings-write",
                "/api/settings",
                PathMatch::Exact,
                &[Method::POST],
            ),
            route("static", "/static", PathMatch::Prefix, &[Method::GET]),
            route("files", "/files/", PathMatch::Prefix, &[Method::PUT]),
        ]
    }

    #[test]
    fn first_route_matching_path_and_method_wins() {
        let routes = table();
        assert_eq!(
            find(&routes, "/api/settings", &Method::POST).unwrap().name,
            "settings-write"
        );
        assert_eq!(
            find(&routes, "/api/settings", &Method::HEAD).unwrap().name,
            "settings-read"
        );
        assert_eq!(
            find(&routes, "/static/a.css", &Method::GET).unwrap().name,
            "static"
        );
        assert_eq!(
            find(&routes, "/static", &Method::GET).unwrap().name,
            "static"
        );
        assert_eq!(
            find(&routes, "/files/x", &Method::PUT).unwrap().name,
            "files"
        );
    }

    #[test]
    fn unmatched_paths_are_404_and_wrong_methods_405() {
        let routes = table();
        assert!(matches!(
            find(&routes, "/api/settings/", &Method::GET),
            Err(Rejection::NoRoute)
        ));
        assert!(matches!(
            find(&routes, "/staticx", &Method::GET),
            Err(Rejection::NoRoute)
        ));
        assert!(matches!(
            find(&routes, "/files", &Method::PUT),
            Err(Rejection::NoRoute)
        ));
        match find(&routes, "/api/settings", &Method::DELETE) {
            Err(Rejection::MethodNotAllowed { allow }) => assert_eq!(allow, "GET, HEAD, POST"),
            other => panic!("expected 405, got {other:?}"),
        }
        assert!(matches!(
            find(&routes, "/api/settings", &Method::TRACE),
            Err(Rejection::MethodNotAllowed { .. })
        ));
    }
}
