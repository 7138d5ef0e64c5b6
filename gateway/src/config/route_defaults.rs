//! Short policies: `[route_defaults]` and `paths = [...]`.
//!
//! `[route_defaults]` takes every key a `[[routes]]` entry takes except
//! `name`, `path` and `paths`; each route inherits every key it does not set
//! itself (a table such as `rate_limit` or `query` is inherited or replaced
//! whole, never merged key by key). Two exceptions keep a default from
//! turning into a trap:
//!
//! * a route with `upload` or `json` does not inherit `content_types`: such
//!   a route takes its own body type unless it lists types itself;
//! * a route with `auth = "none"` does not inherit `scopes`.
//!
//! `paths = ["/a", "/b"]` instead of `path` gives several paths one policy:
//! the entry becomes one route per path, in the order listed, all with the
//! entry's name; each path keeps its own rate-limit counters, as separate
//! routes would (`docs/configuration.md`, "Short policies").
//!
//! Routes are named in problems by their name (`routes["analyze"].body_limit`),
//! or by their position when they have none (`routes[3].body_limit`).

use super::raw::RawRoute;
use crate::checks::auth::AuthMode;
use crate::checks::Problems;

/// A route as it will be validated, with the key under which its problems
/// are reported.
pub(super) struct Resolved {
    /// `routes["name"]` or `routes[i]`.
    pub(super) key: String,
    /// The position of the entry in the file (several routes share it when
    /// the entry lists `paths`).
    pub(super) entry: usize,
    pub(super) raw: RawRoute,
}

/// The key path of a route in problems.
pub(super) fn route_key(i: usize, name: Option<&str>) -> String {
    match name {
        Some(name) if !name.trim().is_empty() => format!("routes[{name:?}]"),
        _ => format!("routes[{i}]"),
    }
}

/// Applies `[route_defaults]` and expands `paths`.
pub(super) fn resolve(
    defaults: Option<RawRoute>,
    routes: Vec<RawRoute>,
    problems: &mut Problems,
) -> Vec<Resolved> {
    let defaults = defaults.unwrap_or_default();
    for (field, set) in [
        ("name", defaults.name.is_some()),
        ("path", defaults.path.is_some()),
        ("paths", defaults.paths.is_some()),
    ] {
        if set {
            problems.push(
                format_args!("route_defaults.{field}"),
                "is set per route, not in [route_defaults]",
            );
        }
    }
    let mut resolved = Vec::new();
    for (entry, route) in routes.into_iter().enumerate() {
        let key = route_key(entry, route.name.as_deref());
        let route = inherit(route, &defaults);
        match route.paths.clone() {
            None => resolved.push(Resolved {
                key,
                entry,
                raw: route,
            }),
            Some(_) if route.path.is_some() => {
                problems.push(
                    format_args!("{key}.paths"),
                    "set either `path` or `paths`, not both",
                );
            }
            Some(paths) if paths.is_empty() => {
                problems.push(format_args!("{key}.paths"), "must list at least one path");
            }
            Some(paths) => {
                for path in paths {
                    let mut one = route.clone();
                    one.paths = None;
                    one.path = Some(path);
                    resolved.push(Resolved {
                        key: key.clone(),
                        entry,
                        raw: one,
                    });
                }
            }
        }
    }
    resolved
}

/// Fills every key `route` leaves unset from `defaults`.
fn inherit(mut route: RawRoute, defaults: &RawRoute) -> RawRoute {
    fn fill<T: Clone>(value: &mut Option<T>, default: &Option<T>) {
        if value.is_none() {
            value.clone_from(default);
        }
    }
    fill(&mut route.match_, &defaults.match_);
    fill(&mut route.methods, &defaults.methods);
    fill(&mut route.body_limit, &defaults.body_limit);
    fill(&mut route.auth, &defaults.auth);
    if route.auth != Some(AuthMode::None) {
        fill(&mut route.scopes, &defaults.scopes);
    }
    fill(&mut route.rate_limit, &defaults.rate_limit);
    fill(&mut route.cors, &defaults.cors);
    fill(&mut route.query, &defaults.query);
    fill(&mut route.json, &defaults.json);
    fill(&mut route.upload, &defaults.upload);
    if route.upload.is_none() && route.json.is_none() {
        fill(&mut route.content_types, &defaults.content_types);
    }
    fill(&mut route.compressed_body, &defaults.compressed_body);
    route
}

#[cfg(test)]
mod tests;
