//! The optional plain-HTTP listener: it never forwards anything.
//!
//! A browser navigation (`GET`/`HEAD` to a path outside the API prefixes)
//! gets `301` to the same path on HTTPS, on `plain_http.redirect_host` or,
//! without it, on the request's own host — only when that is one of the
//! server's names (`host.rs`; otherwise 421): the `Location` never
//! names a host the client chose. Everything else — API paths under
//! `plain_http.api_prefixes`, and any other method — gets 403 in the error
//! envelope: silently redirecting an API call would hide that its
//! credentials just crossed the network in clear, and clients would keep
//! sending them that way (ASVS 5.0 4.1.2). No HSTS here (RFC 6797 §7.2).

use http::header::{HOST, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::{Config, PlainHttp};
use crate::host::{Name, ServerNames};
use crate::path;
use crate::reject::{self, Rejection};
use crate::respond;

/// The default HTTPS port, left out of redirect URLs.
const HTTPS_DEFAULT_PORT: u16 = 443;

/// Answers a plain-HTTP request.
pub(crate) fn answer<B>(request: &Request<B>, config: &Config) -> Response<Body> {
    let plain = config
        .plain_http
        .as_ref()
        .expect("the plain-HTTP listener runs only when configured");
    let mut response = match redirect_location(request, plain, &config.server.names) {
        Ok(location) => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            response.headers_mut().insert(LOCATION, location);
            response
        }
        Err(rejection) => reject::respond(&rejection, None),
    };
    respond::plain(response.headers_mut(), &config.headers);
    response
}

/// Where a browser navigation is sent, or why this request is refused.
fn redirect_location<B>(
    request: &Request<B>,
    plain: &PlainHttp,
    names: &ServerNames,
) -> Result<HeaderValue, Rejection> {
    let uri = request.uri();
    path::check(uri.path()).map_err(Rejection::PathRefused)?;
    let is_api = plain.api_prefixes.iter().any(|prefix| {
        uri.path().starts_with(prefix.as_str()) || uri.path() == prefix.trim_end_matches('/')
    });
    let is_navigation = request.method() == Method::GET || request.method() == Method::HEAD;
    if is_api || !is_navigation {
        return Err(Rejection::HttpsRequired);
    }
    let host = match &plain.redirect_host {
        Some(host) => host.clone(),
        None => request_host(request, names)?,
    };
    let port = match plain.https_port {
        HTTPS_DEFAULT_PORT => String::new(),
        port => format!(":{port}"),
    };
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    HeaderValue::from_str(&format!("https://{host}{port}{target}"))
        .map_err(|_| Rejection::HostInvalid)
}

/// The host part (no port) of the request's `Host`, when it is one of the
/// server's names.
fn request_host<B>(request: &Request<B>, names: &ServerNames) -> Result<Name, Rejection> {
    let value = request
        .headers()
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or(Rejection::HostInvalid)?;
    let authority: http::uri::Authority = value.parse().map_err(|_| Rejection::HostInvalid)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(Rejection::HostInvalid);
    }
    match Name::parse(authority.host()) {
        Some(name) if names.serves(&name) => Ok(name),
        _ => Err(Rejection::HostMisdirected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(https_port: u16, redirect_host: Option<&str>) -> PlainHttp {
        PlainHttp {
            listen: "127.0.0.1:0".parse().unwrap(),
            https_port,
            redirect_host: redirect_host.map(|h| Name::parse(h).unwrap()),
            api_prefixes: vec!["/api/".into(), "/auth/".into()],
        }
    }

    /// The names a certificate for `example.com` and `app.tradehab.it`
    /// serves.
    fn names() -> ServerNames {
        let generated = rcgen::generate_simple_self_signed(vec![
            "example.com".to_owned(),
            "app.tradehab.it".to_owned(),
        ])
        .unwrap();
        let mut names = ServerNames::new(None);
        names.adopt(generated.cert.der()).unwrap();
        names
    }

    fn request(method: &str, uri: &str, host: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, host)
            .body(())
            .unwrap()
    }

    fn location(request: &Request<()>, plain: &PlainHttp) -> Result<HeaderValue, Rejection> {
        redirect_location(request, plain, &names())
    }

    #[test]
    fn navigations_are_redirected_to_the_same_path() {
        let found = location(
            &request("GET", "/app?x=1", "Example.com.:8080"),
            &plain(8443, None),
        )
        .unwrap();
        assert_eq!(found, "https://example.com:8443/app?x=1");
        let found = location(&request("HEAD", "/", "example.com"), &plain(443, None)).unwrap();
        assert_eq!(found, "https://example.com/");
        let found = location(
            &request("GET", "/", "evil.example"),
            &plain(443, Some("app.tradehab.it")),
        )
        .unwrap();
        assert_eq!(found, "https://app.tradehab.it/");
    }

    #[test]
    fn a_host_the_server_does_not_serve_is_never_redirected_to() {
        for host in [
            "evil.example",
            "evil.example:8080",
            "example.com.evil.example",
            "127.0.0.1",
        ] {
            assert!(
                matches!(
                    location(&request("GET", "/", host), &plain(443, None)),
                    Err(Rejection::HostMisdirected)
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn api_calls_and_other_methods_are_refused() {
        for (method, uri) in [
            ("GET", "/api/summary"),
            ("GET", "/api"),
            ("POST", "/auth/token"),
            ("POST", "/app"),
            ("DELETE", "/"),
        ] {
            assert!(matches!(
                location(&request(method, uri, "example.com"), &plain(443, None)),
                Err(Rejection::HttpsRequired)
            ));
        }
    }

    #[test]
    fn bad_paths_and_hosts_are_refused() {
        assert!(matches!(
            location(&request("GET", "/a/../b", "example.com"), &plain(443, None)),
            Err(Rejection::PathRefused(_))
        ));
        assert!(matches!(
            location(&request("GET", "/", "user@evil"), &plain(443, None)),
            Err(Rejection::HostInvalid)
        ));
    }
}
