//! The static-files route kind: a directory of files (a web app's built
//! output) served by the gateway itself, so that page and API share one
//! origin (`docs/configuration.md`, "Serving the web app").
//!
//! A route with a `static_files` table answers `GET` and `HEAD` from its
//! `root` directory instead of forwarding:
//!
//! * the request path below the route's own path names a file under
//!   `root`; a directory serves its `index` file, never a listing;
//! * a path whose last segment has no extension and names no file (a
//!   client-side route such as `/dashboard`) serves the root's `index`
//!   (`fallback`); a missing file with an extension is a 404; paths under
//!   `exclude_prefixes` (default `/api/`, `/auth/`) are not this route's
//!   at all, so an unknown API path stays a 404 envelope;
//! * nothing outside `root` is reachable: the gateway's path check
//!   (`path.rs`) already refused dot segments and encoded dots, hidden
//!   files (a segment starting with `.`) are not served, and no symlink is
//!   followed, at any depth (`static_files/open.rs`);
//! * a sibling `.br` or `.gz` file is served instead when the client
//!   accepts that encoding (`Vary: Accept-Encoding`);
//! * strong `ETag`s answer `If-None-Match` with 304; hashed asset names
//!   (`index-3f9a1c2b.js`) are cached for a year as `immutable`, everything
//!   else (the index above all) is `no-cache`, revalidated every time;
//! * HTML gets its own, configurable `Content-Security-Policy` (default
//!   [`DEFAULT_STATIC_CSP`]); other files keep the gateway's;
//! * files are streamed in chunks of [`CHUNK_BYTES`], never read whole.
//!
//! A file that cannot be served is a [`Refused`]; the policy's forward
//! stage turns it into a `Rejection` answered by `reject.rs`, and marks
//! the answers it serves as keeping their own caching (`respond.rs`).

mod headers;
mod open;

use std::path::{Path, PathBuf};

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, VARY};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde::Deserialize;

use crate::body::{self, Body};
use crate::checks::problems::join;
use crate::checks::Problems;
use open::{Opened, Resolved};

/// The file a directory (and the fallback) serves.
pub const DEFAULT_STATIC_INDEX: &str = "index.html";

/// Client-side routes (no extension, no such file) serve the root index.
pub const DEFAULT_STATIC_FALLBACK: bool = true;

/// Path prefixes a static route never answers, even when its own path
/// covers them: the API's and the gateway endpoints'.
pub const DEFAULT_STATIC_EXCLUDE_PREFIXES: &[&str] = &["/api/", "/auth/"];

/// The `Content-Security-Policy` of HTML served from a static route: the
/// app's own scripts, styles, images, fonts and API only; no inline
/// script, no plugins, no framing, no `<base>` rewriting.
pub const DEFAULT_STATIC_CSP: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Bytes read from a file per body chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// `static_files = { … }` of a route, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticFilesRaw {
    /// The directory served; relative to the policy file's directory.
    pub root: Option<String>,
    /// Default [`DEFAULT_STATIC_INDEX`].
    pub index: Option<String>,
    /// Default [`DEFAULT_STATIC_FALLBACK`].
    pub fallback: Option<bool>,
    /// Default [`DEFAULT_STATIC_CSP`].
    pub content_security_policy: Option<String>,
    /// Default [`DEFAULT_STATIC_EXCLUDE_PREFIXES`].
    pub exclude_prefixes: Option<Vec<String>>,
}

/// A validated `static_files` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaticFiles {
    /// The served directory, canonical (its own symlinks resolved once).
    root: PathBuf,
    index: String,
    fallback: bool,
    csp: HeaderValue,
    exclude_prefixes: Vec<String>,
}

/// Validates a route's `static_files` at key path `path`; relative roots
/// are resolved against `base_dir`.
pub(crate) fn validate(
    raw: &StaticFilesRaw,
    path: &str,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<StaticFiles> {
    let before = problems.len();
    let root = match &raw.root {
        None => {
            problems.push(join(path, "root"), "is required");
            None
        }
        Some(text) => match base_dir.join(text).canonicalize() {
            Ok(root) if root.is_dir() => Some(root),
            _ => {
                problems.push(join(path, "root"), format!("`{text}` is not a directory"));
                None
            }
        },
    };
    let index = raw
        .index
        .clone()
        .unwrap_or_else(|| DEFAULT_STATIC_INDEX.to_owned());
    if index.is_empty() || index.contains('/') || index.starts_with('.') {
        problems.push(join(path, "index"), "must be a plain file name");
    }
    let csp_text = raw
        .content_security_policy
        .as_deref()
        .unwrap_or(DEFAULT_STATIC_CSP);
    let csp = HeaderValue::from_str(csp_text)
        .ok()
        .filter(|_| !csp_text.is_empty());
    if csp.is_none() {
        problems.push(
            join(path, "content_security_policy"),
            "must be a non-empty header value",
        );
    }
    let exclude_prefixes = raw.exclude_prefixes.clone().unwrap_or_else(|| {
        DEFAULT_STATIC_EXCLUDE_PREFIXES
            .iter()
            .map(|p| (*p).to_owned())
            .collect()
    });
    for (i, prefix) in exclude_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            problems.push(
                format!("{}[{i}]", join(path, "exclude_prefixes")),
                "must start with `/`",
            );
        }
    }
    (problems.len() == before).then(|| StaticFiles {
        root: root.expect("no problem means a root"),
        index,
        fallback: raw.fallback.unwrap_or(DEFAULT_STATIC_FALLBACK),
        csp: csp.expect("no problem means a policy"),
        exclude_prefixes,
    })
}

impl StaticFiles {
    /// Whether a request path is kept out of this route (`exclude_prefixes`).
    pub(crate) fn excludes(&self, path: &str) -> bool {
        self.exclude_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }

    /// Whether a request for `path` (below the route's path) is for a page
    /// rather than an asset: a directory, an `.html` file, or (with
    /// `fallback`) a client-side route. Browser sessions start on pages.
    pub(crate) fn serves_document(&self, path: &str) -> bool {
        let last = path.rsplit('/').next().unwrap_or_default();
        last.is_empty() || last.ends_with(".html") || (self.fallback && !last.contains('.'))
    }

    /// Answers `GET` or `HEAD` for `path`, the request path below the
    /// route's own path.
    pub(crate) async fn serve(
        &self,
        method: &Method,
        path: &str,
        request: &HeaderMap,
    ) -> Result<Response<Body>, Refused> {
        let relative = decode(path.trim_start_matches('/')).ok_or(Refused::NotFound)?;
        let accepted = headers::accepted_encodings(request);
        let (root, index, fallback) = (self.root.clone(), self.index.clone(), self.fallback);
        let opened = tokio::task::spawn_blocking(move || {
            open::resolve(&root, &relative, &index, fallback, accepted)
        })
        .await
        .map_err(|_| Refused::NotFound)?;
        let opened = match opened {
            Resolved::File(opened) => opened,
            Resolved::Missing => return Err(Refused::NotFound),
            Resolved::Symlink => {
                tracing::warn!("static file refused: a path component is a symlink");
                return Err(Refused::Symlink);
            }
        };
        Ok(self.respond(method, request, *opened))
    }

    fn respond(&self, method: &Method, request: &HeaderMap, opened: Opened) -> Response<Body> {
        let etag = headers::etag(&opened);
        let mut response = Response::new(body::empty());
        let out = response.headers_mut();
        out.insert(ETAG, etag.clone());
        out.insert(
            http::header::CACHE_CONTROL,
            headers::cache_control(&opened.name),
        );
        out.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        let content_type = headers::content_type(&opened.name);
        if content_type.starts_with("text/html") {
            out.insert(http::header::CONTENT_SECURITY_POLICY, self.csp.clone());
        }
        if headers::none_match(request, &etag) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        let out = response.headers_mut();
        out.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(encoding) = opened.encoding {
            out.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        out.insert(CONTENT_LENGTH, HeaderValue::from(opened.len));
        if *method != Method::HEAD {
            *response.body_mut() = open::stream(opened.file, opened.len);
        }
        response
    }
}

/// Percent-decodes a path that `path.rs` accepted: only escapes of bytes
/// that cannot change its meaning are left (`%20`, UTF-8), so decoding
/// cannot make a separator or a dot segment. Not UTF-8, or a NUL: `None`.
fn decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

/// Why a static route served nothing: both are answered 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such file, a directory without its index, a hidden file.
    NotFound,
    /// A symlink on the way (audit reason `static.symlink`).
    Symlink,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> StaticFiles {
        let raw = StaticFilesRaw {
            root: Some(dir.to_str().unwrap().to_owned()),
            ..StaticFilesRaw::default()
        };
        let mut problems = Problems::new();
        validate(
            &raw,
            "routes[0].static_files",
            Path::new("/"),
            &mut problems,
        )
        .unwrap()
    }

    #[test]
    fn documents_and_assets_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        for page in ["", "dashboard", "trades/12", "about.html", "dir/"] {
            assert!(files.serves_document(page), "{page}");
        }
        for asset in ["assets/index-3f9a1c2b.js", "favicon.ico", "demo.csv"] {
            assert!(!files.serves_document(asset), "{asset}");
        }
        assert!(files.excludes("/api/summary") && files.excludes("/auth/session"));
        assert!(!files.excludes("/apiary"));
    }

    #[test]
    fn every_problem_is_reported() {
        let raw = StaticFilesRaw {
            root: Some("/no/such/dir".into()),
            index: Some("../x".into()),
            content_security_policy: Some(String::new()),
            exclude_prefixes: Some(vec!["api".into()]),
            ..StaticFilesRaw::default()
        };
        let mut problems = Problems::new();
        assert!(validate(&raw, "s", Path::new("/"), &mut problems).is_none());
        for key in [
            "s.root",
            "s.index",
            "s.content_security_policy",
            "s.exclude_prefixes[0]",
        ] {
            assert!(problems.has(key), "{key}: {problems}");
        }
    }

    /// The example policy's commented web-app block (its last lines),
    /// uncommented after the strict policy, is valid and serves the app last, with cookie sessions.
    #[test]
    fn the_example_web_app_block_is_valid() {
        let text = include_str!("../../config/gateway.example.toml");
        let start = text
            .find("# ---------------------------------------- the web app")
            .unwrap();
        let end = text.len();
        let dir = tempfile::tempdir().unwrap();
        let tables = start + text[start..].find("# [tokens]").unwrap();
        let block: String = text[tables..end]
            .lines()
            .map(|line| {
                line.strip_prefix("# ")
                    .or(line.strip_prefix('#'))
                    .unwrap_or(line)
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("/srv/tradehabit/app", dir.path().to_str().unwrap());
        let env = crate::checks::secret::tests::env_of(&[(
            "TRADEHABIT_TOKEN_SECRET",
            "example-secret-example-secret-0123456789",
        )]);
        let policy = format!("{}\n{block}\n", &text[..start]);
        let config = crate::config::Config::from_toml_with(&policy, Path::new("/"), &env)
            .unwrap_or_else(|e| panic!("the web-app block is invalid: {e}"));
        let app = config.routes.last().unwrap();
        assert_eq!(app.name, "app");
        assert!(app.static_files.is_some());
        assert!(config.checks.auth.tokens().cookie().is_some());
    }

    #[test]
    fn a_static_route_only_reads_and_takes_no_body() {
        let dir = tempfile::tempdir().unwrap();
        let route = |extra: &str| {
            format!(
                "{}\n[[routes]]\nname = \"app\"\npath = \"/\"\nmatch = \"prefix\"\n{extra}\n\
                 static_files = {{ root = {:?} }}\n",
                crate::config::tests::MINIMAL,
                dir.path().to_str().unwrap()
            )
        };
        let problems = crate::config::Config::from_toml(&route(
            "methods = [\"GET\", \"POST\"]\njson = { max_depth = 2 }",
        ))
        .unwrap_err()
        .problems();
        for key in [r#"routes["app"].methods"#, r#"routes["app"].static_files"#] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key}: {problems:?}"
            );
        }
        let config = crate::config::Config::from_toml(&route("methods = [\"GET\"]")).unwrap();
        let app = &config.routes[1];
        assert_eq!(app.checks.content_types, Some(Vec::new()), "no body");
        assert!(app.static_files.is_some());
    }

    #[test]
    fn decoding_keeps_names_and_refuses_nul() {
        assert_eq!(decode("a%20b/caf%C3%A9.txt").unwrap(), "a b/café.txt");
        assert!(decode("a%00").is_none());
        assert!(decode("%FF").is_none());
    }
}
