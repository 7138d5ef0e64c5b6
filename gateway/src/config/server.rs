//! `[server]`, `[tls]`, `[plain_http]` and `[headers]`: the listeners, the
//! certificate files, the redirect listener and the security headers, and
//! their validation.

use super::*;

/// `[server]`: the HTTPS listener and process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Server {
    /// `listen`, required: the HTTPS address.
    pub(crate) listen: SocketAddr,
    /// `shutdown_timeout`, default [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub(crate) shutdown_timeout: Duration,
    /// `trusted_proxies`, default none: peers whose `X-Forwarded-For` and
    /// `X-Request-Id` are believed.
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// `names`, default: every name the certificate covers. A request for
    /// another host gets 421 (`host.rs`). The certificate is given to
    /// it at start-up and on reload ([`Config::adopt_certificate`]).
    pub(crate) names: ServerNames,
    /// `threads`, default [`DEFAULT_SERVER_THREADS`] (one per core), here
    /// resolved to the number of threads serving the HTTPS listener.
    pub(crate) threads: usize,
}

/// `[tls]`: PEM files, re-read on every reload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Generate a self-signed development certificate at `cert`/`key` when
    /// neither file exists (default false; logged loudly when it happens).
    pub(crate) self_signed_if_missing: bool,
}

/// `[plain_http]`: the optional listener that only redirects or refuses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlainHttp {
    pub(crate) listen: SocketAddr,
    /// The port put in redirects; default: the HTTPS listener's port.
    pub(crate) https_port: u16,
    /// The host put in redirects; default: the request's own host when it
    /// is one of the server's names (else 421). Must itself be served.
    pub(crate) redirect_host: Option<Name>,
    /// Paths under these prefixes are API calls: refused with 403.
    pub(crate) api_prefixes: Vec<String>,
}

/// `[headers]`: the security headers added to every HTTPS response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SecurityHeaders {
    /// The complete `Strict-Transport-Security` value.
    pub(crate) hsts: HeaderValue,
    pub(crate) content_security_policy: HeaderValue,
}

pub(super) fn validate_server(raw: Option<RawServer>, problems: &mut Problems) -> Option<Server> {
    let Some(raw) = raw else {
        problems.push("server", "missing table (it needs at least `listen`)");
        return None;
    };
    let listen = required(raw.listen, "server.listen", problems)
        .and_then(|text| socket_addr(&text, "server.listen", problems));
    let shutdown_timeout = duration(
        raw.shutdown_timeout,
        "server.shutdown_timeout",
        DEFAULT_SHUTDOWN_TIMEOUT,
        problems,
    );
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match Cidr::parse(text) {
            Ok(cidr) if cidr.is_everything() => problems.push(
                format_args!("server.trusted_proxies[{i}]"),
                format_args!(
                    "`{text}` would trust every address, so any client could forge its own"
                ),
            ),
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(message) => problems.push(format_args!("server.trusted_proxies[{i}]"), message),
        }
    }
    let names = raw.names.map(|names| server_names(&names, problems));
    let threads = count(
        raw.threads,
        "server.threads",
        DEFAULT_SERVER_THREADS,
        0..=MAX_SERVER_THREADS,
        problems,
    );
    Some(Server {
        listen: listen?,
        shutdown_timeout,
        trusted_proxies,
        names: ServerNames::new(names),
        threads: serving_threads(threads),
    })
}

/// `server.threads`: `0` is one per CPU core.
fn serving_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SERVER_THREADS)),
        n => n,
    }
}

/// `server.names`: host names or IP addresses, no ports, no wildcards.
pub(super) fn server_names(texts: &[String], problems: &mut Problems) -> Vec<Name> {
    if texts.is_empty() {
        problems.push(
            "server.names",
            "must list at least one name (leave it out to serve the certificate's names)",
        );
    }
    let mut names = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match Name::parse(text) {
            Some(name) if !names.contains(&name) => names.push(name),
            Some(_) => problems.push(
                format_args!("server.names[{i}]"),
                format_args!("`{text}` is listed twice"),
            ),
            None => problems.push(
                format_args!("server.names[{i}]"),
                format_args!(
                    "`{text}` is not a host name or IP address (no port, no wildcard, IPv6 in brackets or bare)"
                ),
            ),
        }
    }
    names
}

pub(super) fn validate_tls(raw: Option<RawTls>, problems: &mut Problems) -> Option<Tls> {
    let Some(raw) = raw else {
        problems.push("tls", "missing table (it needs `cert` and `key`)");
        return None;
    };
    let cert = required(raw.cert, "tls.cert", problems).map(PathBuf::from);
    let key = required(raw.key, "tls.key", problems).map(PathBuf::from);
    Some(Tls {
        cert: cert?,
        key: key?,
        self_signed_if_missing: raw.self_signed_if_missing.unwrap_or(false),
    })
}

pub(super) fn validate_plain_http(
    raw: RawPlainHttp,
    https_port: Option<u16>,
    problems: &mut Problems,
) -> Option<PlainHttp> {
    let listen = required(raw.listen, "plain_http.listen", problems)
        .and_then(|text| socket_addr(&text, "plain_http.listen", problems));
    let https_port = match raw.https_port {
        None => https_port,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                problems.push("plain_http.https_port", "must be between 1 and 65535");
                None
            }
        },
    };
    let redirect_host = raw.redirect_host.as_deref().and_then(|host| {
        let name = Name::parse(host);
        if name.is_none() {
            problems.push(
                "plain_http.redirect_host",
                "must be a bare host name or IP address (no port, no scheme)",
            );
        }
        name
    });
    let api_prefixes = raw
        .api_prefixes
        .unwrap_or_else(|| DEFAULT_API_PREFIXES.iter().map(|p| p.to_string()).collect());
    for (i, prefix) in api_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            problems.push(
                format_args!("plain_http.api_prefixes[{i}]"),
                "must start with `/`",
            );
        }
    }
    Some(PlainHttp {
        listen: listen?,
        https_port: https_port?,
        redirect_host,
        api_prefixes,
    })
}

pub(super) fn validate_headers(
    raw: RawHeaders,
    problems: &mut Problems,
) -> Option<SecurityHeaders> {
    let max_age = match raw.hsts_max_age {
        None => Some(DEFAULT_HSTS_MAX_AGE_SECS),
        Some(age) if age >= 0 => Some(age as u64),
        Some(_) => {
            problems.push("headers.hsts_max_age", "must be >= 0 (seconds)");
            None
        }
    };
    let include_subdomains = raw.hsts_include_subdomains.unwrap_or(true);
    let preload = raw.hsts_preload.unwrap_or(false);
    if let (true, Some(age)) = (preload, max_age) {
        if age < HSTS_PRELOAD_MIN_AGE_SECS || !include_subdomains {
            problems.push(
                "headers.hsts_preload",
                "the preload list needs hsts_max_age >= 31536000 and hsts_include_subdomains = true",
            );
        }
    }
    let csp_text = raw
        .content_security_policy
        .unwrap_or_else(|| DEFAULT_CONTENT_SECURITY_POLICY.to_string());
    let csp = match HeaderValue::from_str(&csp_text) {
        Ok(value) if !csp_text.trim().is_empty() => Some(value),
        _ => {
            problems.push(
                "headers.content_security_policy",
                "must be a non-empty, printable header value",
            );
            None
        }
    };
    let mut hsts = format!("max-age={}", max_age?);
    if include_subdomains {
        hsts.push_str("; includeSubDomains");
    }
    if preload {
        hsts.push_str("; preload");
    }
    Some(SecurityHeaders {
        hsts: HeaderValue::from_str(&hsts).expect("digits and ASCII words form a header value"),
        content_security_policy: csp?,
    })
}
