//! What a dry run needs besides the policy: the request head built from
//! the command line's words, the certificate's names, and stand-in callers.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::{bail, Context as _};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Uri, Version};

use super::ExplainRequest;
use crate::checks::auth::X_API_KEY;
use crate::checks::rate_limit::{RateLimitSettings, StoreSettings};
use crate::config::Config;
use crate::host;
use crate::metrics::Metrics;
use crate::state::RateLimits;

/// The client address of a request that names none (TEST-NET-3, RFC 5737).
pub const DEFAULT_CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// The id of the API key standing in for `explain --caller-scopes`.
pub const EXPLAIN_CALLER_ID: &str = "explain";

/// A request head as an HTTP/1.1 client would send it: origin-form target,
/// `Host` from the URL (unless a `Host` header is given), `Content-Length`
/// from `body_size` (unless given). Returns it with whether a body follows.
pub(super) fn request_head(request: &ExplainRequest) -> anyhow::Result<(Parts, bool)> {
    let method = Method::from_bytes(request.method.as_bytes())
        .with_context(|| format!("{:?} is not an HTTP method", request.method))?;
    let url: Uri = request
        .url
        .parse()
        .with_context(|| format!("{:?} is not a URL", request.url))?;
    match url.scheme_str() {
        Some("https") | None => {}
        Some(other) => bail!("{other}: explain covers the HTTPS listener; give https://HOST/PATH"),
    }
    let target = url
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(target.as_str())
        .version(Version::HTTP_11);
    let headers = builder.headers_mut().expect("a fresh builder");
    for line in &request.headers {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("{line:?}: a header is 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("the value of {name} is not header text"))?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        let Some(authority) = url.authority() else {
            bail!("give an absolute URL (https://HOST/PATH) or a Host header");
        };
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
    }
    if let Some(size) = request.body_size {
        if !headers.contains_key(CONTENT_LENGTH) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let has_body = declared.is_some_and(|n| n > 0) || headers.contains_key(TRANSFER_ENCODING);
    let (parts, ()) = builder.body(())?.into_parts();
    Ok((parts, has_body))
}

/// Gives the policy its certificate's names, as `run` does: from
/// `tls.cert` when it can be read here; otherwise a stand-in certificate
/// for the request's host and `server.names` is assumed, and said so.
pub(super) fn adopt_certificate(config: &mut Config, parts: &Parts) -> anyhow::Result<Vec<String>> {
    if let Some(leaf) = read_leaf(config.tls_cert()) {
        config
            .adopt_certificate(&leaf)
            .map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = config
        .server
        .names
        .listed()
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    let authority = parts.headers.get(HOST).and_then(|v| v.to_str().ok());
    let requested = authority.and_then(host::Name::of_authority);
    if let Some(name) = &requested {
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let generated = rcgen::generate_simple_self_signed(names.clone())
        .context("making a stand-in certificate")?;
    config
        .adopt_certificate(generated.cert.der())
        .map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
    Ok(vec![format!(
        "tls.cert ({}) is not readable here: assumed to be valid for {}",
        config.tls_cert().display(),
        names.join(", ")
    )])
}

/// The first certificate of a PEM file, if it can be read.
fn read_leaf(path: &Path) -> Option<rustls::pki_types::CertificateDer<'static>> {
    let pem = std::fs::read(path).ok()?;
    let mut reader = pem.as_slice();
    let leaf = rustls_pemfile::certs(&mut reader).next()?.ok();
    leaf
}

/// Adds an API key with `scopes` under `id` to the policy, and its header
/// to the request: the real authentication then finds the caller.
pub(super) fn add_caller(
    config: &mut Config,
    parts: &mut Parts,
    id: &str,
    scopes: &[String],
) -> anyhow::Result<()> {
    let (keys, key) = config
        .checks
        .auth
        .api_keys()
        .with_probe_key(id, scopes)
        .with_context(|| format!("the caller {id:?}"))?;
    config.checks.auth = config.checks.auth.with_api_keys(keys);
    parts.headers.insert(
        X_API_KEY,
        HeaderValue::from_str(&key).expect("keys are ASCII"),
    );
    Ok(())
}

/// Whether a header's value is a credential, never shown.
pub(super) fn is_secret(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "x-api-key" | "cookie" | "set-cookie"
    )
}

/// Fresh rate-limit state for `config`, built as `State` builds it but
/// always in memory: a dry run charges nothing that outlives it. With
/// `store = "redis"`, also what that means for the output.
pub(super) fn fresh_rate_limits(config: &Config) -> anyhow::Result<(RateLimits, Option<String>)> {
    let configured = &config.checks.rate_limit;
    let note = match configured.store {
        StoreSettings::Memory => None,
        StoreSettings::Redis(_) => Some(
            "rate_limit.store = \"redis\": quotas are charged to fresh in-memory buckets \
             instead (the shared store is neither read nor written)"
                .to_owned(),
        ),
    };
    let settings = RateLimitSettings {
        store: StoreSettings::Memory,
        ..configured.clone()
    };
    let limits = RateLimits::new(&settings, Metrics::new().rate_limit_store(), 1)?;
    Ok((limits, note))
}
