//! The HTTP checks: HSTS on a success and on an error answer, the security
//! headers, CORS (an allowed origin, `null`, lookalikes, an unlisted one),
//! no credential → 401 envelope, an oversized body refused before it is
//! sent, rate-limit headers, an unlisted `Host` refused, and plain HTTP.
//! Every request is a read or is refused before it reaches the upstream:
//! nothing here changes the deployment's data.

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::client::{bounded, host_port, Answer, Target};
use super::{Check, Options, Outcome};

/// The shortest HSTS `max-age` accepted: one year (ASVS 5.0 3.4.1,
/// hstspreload.org).
pub const MIN_HSTS_MAX_AGE: u64 = 31_536_000;
/// The size the oversized-body probe declares, far above any route limit.
const OVERSIZED_DECLARED: u64 = 1 << 30;
/// How much of it the probe sends before waiting for the refusal.
const OVERSIZED_SENT: usize = 16 * 1024;
/// An origin no deployment lists.
const UNLISTED_ORIGIN: &str = "https://selftest.invalid";
/// A host name no deployment serves.
const UNLISTED_HOST: &str = "selftest.invalid";

fn get(target: &Target, path: &str, credential: bool) -> http::Request<Full<Bytes>> {
    target
        .request(Method::GET, path, credential)
        .body(Full::default())
        .expect("a path and known headers form a request")
}

fn outcome(ok: bool) -> Outcome {
    if ok {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

/// Exactly one HSTS header with `max-age` of at least a year.
fn hsts(name: &'static str, answer: &Result<Answer, String>) -> Check {
    const REFERENCE: &str = "ASVS 5.0 3.4.1; RFC 6797 §6.1, §7.1";
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return Check::new(name, REFERENCE, Outcome::Fail, error.clone()),
    };
    let values = answer.all("strict-transport-security");
    let max_age = values.first().and_then(|v| {
        v.split(';').find_map(|part| {
            part.trim()
                .strip_prefix("max-age=")?
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
    });
    let ok = values.len() == 1 && max_age.is_some_and(|age| age >= MIN_HSTS_MAX_AGE);
    Check::new(
        name,
        REFERENCE,
        outcome(ok),
        format!(
            "status {}: {values:?} (max-age at least {MIN_HSTS_MAX_AGE}, exactly one header)",
            answer.status
        ),
    )
}

/// HSTS on the success of `options.health_path` and on a 404, and the
/// other security headers on both.
pub(super) async fn headers(target: &Target, options: &Options) -> Vec<Check> {
    let success = target.send(get(target, &options.health_path, false)).await;
    let success_ok = success.as_ref().is_ok_and(|a| a.status.is_success());
    let mut first = hsts("HSTS on a success answer", &success);
    if !success_ok && first.result == Outcome::Pass {
        first.result = Outcome::Fail;
        first.detail = format!("{} is not a success: {}", options.health_path, first.detail);
    }
    let error = target
        .send(get(target, "/selftest-no-such-route", false))
        .await;
    let second = hsts("HSTS on an error answer", &error);
    let mut missing = Vec::new();
    for answer in [&success, &error].into_iter().flatten() {
        let expect = [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ];
        for (name, value) in expect {
            if !answer
                .header(name)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
            {
                missing.push(format!("{} without {name}: {value}", answer.status));
            }
        }
        if !answer
            .header("content-security-policy")
            .is_some_and(|v| v.contains("frame-ancestors"))
        {
            missing.push(format!(
                "{} without a CSP with frame-ancestors",
                answer.status
            ));
        }
        for leak in ["server", "x-powered-by"] {
            if answer.headers.contains_key(leak) {
                missing.push(format!("{} discloses {leak}", answer.status));
            }
        }
    }
    let third = Check::new(
        "security headers",
        "ASVS 5.0 3.4.3, 3.4.4, 3.4.5, 13.4.6",
        outcome(missing.is_empty() && success.is_ok() && error.is_ok()),
        if missing.is_empty() {
            "nosniff, DENY, no-referrer, no-store, CSP; no Server".into()
        } else {
            missing.join("; ")
        },
    );
    vec![first, second, third]
}

/// A CORS preflight of the protected path from `origin`: the
/// `Access-Control-Allow-Origin` it got, if any.
async fn preflight(target: &Target, path: &str, origin: &str) -> Result<Option<String>, String> {
    let request = target
        .request(Method::OPTIONS, path, false)
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    let answer = target.send(request).await?;
    Ok(answer.header("access-control-allow-origin"))
}

/// Origins that look like `origin` but are not it.
fn lookalikes(origin: &str) -> Vec<String> {
    let Some((scheme, host)) = origin.split_once("://") else {
        return Vec::new();
    };
    let other_scheme = if scheme == "https" { "http" } else { "https" };
    vec![
        format!("{scheme}://{host}.selftest.invalid"),
        format!("{scheme}://selftest{host}"),
        format!("{other_scheme}://{host}"),
        format!("{scheme}://{host}:1"),
    ]
}

pub(super) async fn cors(target: &Target, options: &Options) -> Vec<Check> {
    const REFERENCE: &str = "ASVS 5.0 3.4.2; Fetch CORS protocol";
    let path = &options.protected_path;
    let mut checks = Vec::new();
    match options.origins.first() {
        None => checks.push(Check::new(
            "CORS allowed origin",
            REFERENCE,
            Outcome::Skip,
            "no --origin given".into(),
        )),
        Some(_) => {
            let mut bad = Vec::new();
            for origin in &options.origins {
                match preflight(target, path, origin).await {
                    Ok(Some(allowed)) if &allowed == origin => {}
                    other => bad.push(format!("{origin}: {other:?}")),
                }
            }
            checks.push(Check::new(
                "CORS allowed origin",
                REFERENCE,
                outcome(bad.is_empty()),
                if bad.is_empty() {
                    format!("{:?} echoed exactly", options.origins)
                } else {
                    bad.join("; ")
                },
            ));
        }
    }
    let refused = |name: &'static str, origins: Vec<String>| async move {
        let mut allowed = Vec::new();
        for origin in &origins {
            match preflight(target, path, origin).await {
                Ok(None) => {}
                other => allowed.push(format!("{origin}: {other:?}")),
            }
        }
        Check::new(
            name,
            REFERENCE,
            outcome(allowed.is_empty()),
            if allowed.is_empty() {
                format!("no Access-Control-Allow-Origin for {origins:?}")
            } else {
                allowed.join("; ")
            },
        )
    };
    checks.push(refused("CORS `null` origin refused", vec!["null".into()]).await);
    let similar: Vec<String> = options.origins.iter().flat_map(|o| lookalikes(o)).collect();
    if similar.is_empty() {
        checks.push(Check::new(
            "CORS lookalike origins refused",
            REFERENCE,
            Outcome::Skip,
            "no --origin given".into(),
        ));
    } else {
        checks.push(refused("CORS lookalike origins refused", similar).await);
    }
    checks.push(refused("CORS unlisted origin refused", vec![UNLISTED_ORIGIN.into()]).await);
    checks
}

/// No credential → 401 in the envelope; with the credential, rate-limit
/// headers on the protected path (or the health path).
pub(super) async fn credentials(target: &Target, options: &Options) -> Vec<Check> {
    let path = &options.protected_path;
    let anonymous = target.send(get(target, path, false)).await;
    let first = match &anonymous {
        Ok(a) => Check::new(
            "no credential → 401 envelope",
            "ASVS 5.0 8.2.1, 16.5.1",
            outcome(a.status == 401 && a.is_envelope()),
            format!("GET {path}: {}", a.status),
        ),
        Err(e) => Check::new(
            "no credential → 401 envelope",
            "ASVS 5.0 8.2.1, 16.5.1",
            Outcome::Fail,
            e.clone(),
        ),
    };
    let credentialed = if target.credential.is_some() {
        Some(target.send(get(target, path, true)).await)
    } else {
        None
    };
    let health = target.send(get(target, &options.health_path, false)).await;
    let mut seen = Vec::new();
    for answer in [credentialed.as_ref(), Some(&health), Some(&anonymous)]
        .into_iter()
        .flatten()
        .flatten()
    {
        if answer.headers.contains_key("ratelimit")
            && answer.headers.contains_key("ratelimit-policy")
        {
            seen.push(answer.status.as_u16());
        }
    }
    let second = Check::new(
        "rate-limit headers",
        "ASVS 5.0 2.4.1; draft-ietf-httpapi-ratelimit-headers",
        outcome(!seen.is_empty()),
        if seen.is_empty() {
            "no RateLimit and RateLimit-Policy on any answer".into()
        } else {
            format!("on answers {seen:?}")
        },
    );
    let mut checks = vec![first, second];
    if let Some(answer) = credentialed {
        checks.push(match answer {
            Ok(a) => Check::new(
                "the credential is accepted",
                "ASVS 5.0 8.2.1",
                outcome(a.status != 401 && a.status != 403),
                format!("GET {path}: {}", a.status),
            ),
            Err(e) => Check::new(
                "the credential is accepted",
                "ASVS 5.0 8.2.1",
                Outcome::Fail,
                e,
            ),
        });
    }
    checks
}

/// A body declared far over any limit, of which only the start is sent,
/// must be refused with 413 while the rest is still unsent.
pub(super) async fn oversized_body(target: &Target, options: &Options) -> Check {
    const NAME: &str = "oversized body → 413 before the upload completes";
    const REFERENCE: &str = "ASVS 5.0 5.2.1";
    let status = match oversized_status(target, &options.post_path).await {
        Ok(status) => status,
        Err(error) => return Check::new(NAME, REFERENCE, Outcome::Fail, error),
    };
    let detail = format!(
        "POST {} declaring {OVERSIZED_DECLARED} bytes, {OVERSIZED_SENT} sent: {status}",
        options.post_path
    );
    match status {
        413 => Check::new(NAME, REFERENCE, Outcome::Pass, detail),
        401 if target.credential.is_none() => Check::new(NAME, REFERENCE, Outcome::Skip,
            format!("{detail}; refused for want of a credential first: pass --api-key-file or --token-file")),
        _ => Check::new(NAME, REFERENCE, Outcome::Fail, detail),
    }
}

async fn oversized_status(target: &Target, path: &str) -> Result<u16, String> {
    let mut tls = target.tls(rustls::DEFAULT_VERSIONS, &[b"http/1.1"]).await?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {OVERSIZED_DECLARED}\r\n",
        target.authority()
    );
    if let Some((name, value)) = &target.credential {
        head.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_default()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend(std::iter::repeat_n(b' ', OVERSIZED_SENT));
    // The gateway may answer and close before taking all of it.
    let _ = bounded(tls.write_all(&bytes)).await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match bounded(tls.read(&mut buffer)).await? {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3)?.parse().ok())
        .ok_or_else(|| "no answer before the upload completed".to_string())
}

/// A request naming a host the deployment does not serve is refused.
pub(super) async fn unlisted_host(target: &Target, options: &Options) -> Check {
    const NAME: &str = "unlisted Host refused";
    const REFERENCE: &str = "ASVS 5.0 4.1.1; RFC 9110 §15.5.20 (421)";
    let mut request = get(target, &options.health_path, false);
    request.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static(UNLISTED_HOST),
    );
    match target.send(request).await {
        Ok(a) => Check::new(
            NAME,
            REFERENCE,
            outcome(a.status.is_client_error() && a.is_envelope()),
            format!("Host: {UNLISTED_HOST}: {}", a.status),
        ),
        Err(e) => Check::new(NAME, REFERENCE, Outcome::Fail, e),
    }
}

/// The plain-HTTP listener, when given: an API call refused, a page
/// navigation redirected to HTTPS, neither with HSTS.
pub(super) async fn plain_http(options: &Options) -> Check {
    const NAME: &str = "plain HTTP: API refused, navigation redirected, no HSTS";
    const REFERENCE: &str = "ASVS 5.0 12.2.1, 4.1.2; RFC 6797 §7.2";
    let Some(url) = &options.plain_http else {
        return Check::new(
            NAME,
            REFERENCE,
            Outcome::Skip,
            "no --plain-http URL given".into(),
        );
    };
    let (host, port) = match host_port(url, "http://", 80) {
        Ok(found) => found,
        Err(e) => return Check::new(NAME, REFERENCE, Outcome::Fail, e.to_string()),
    };
    let api = plain_get(&host, port, &options.protected_path, false).await;
    let page = plain_get(&host, port, "/", true).await;
    let (api, page) = match (api, page) {
        (Ok(api), Ok(page)) => (api, page),
        (Err(e), _) | (_, Err(e)) => return Check::new(NAME, REFERENCE, Outcome::Fail, e),
    };
    let no_hsts = |head: &str| {
        !head
            .to_ascii_lowercase()
            .contains("\r\nstrict-transport-security:")
    };
    let redirected = page.starts_with("HTTP/1.1 301") || page.starts_with("HTTP/1.1 308");
    let to_https = page.to_ascii_lowercase().contains("\r\nlocation: https://");
    let api_refused = api.get(9..10).is_some_and(|c| c == "4");
    let ok = redirected && to_https && api_refused && no_hsts(&api) && no_hsts(&page);
    let status = |head: &str| head.lines().next().unwrap_or_default().to_string();
    Check::new(
        NAME,
        REFERENCE,
        outcome(ok),
        format!("API: {}; navigation: {}", status(&api), status(&page)),
    )
}

/// A plain-HTTP GET; the answer's head.
async fn plain_get(host: &str, port: u16, path: &str, navigation: bool) -> Result<String, String> {
    let mut tcp = bounded(tokio::net::TcpStream::connect((host, port)))
        .await?
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let accept = if navigation {
        "Accept: text/html\r\nSec-Fetch-Mode: navigate\r\n"
    } else {
        "Accept: application/json\r\n"
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}Connection: close\r\n\r\n");
    bounded(tcp.write_all(request.as_bytes()))
        .await?
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = bounded(tcp.read_to_end(&mut answer)).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    Ok(text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string())
}
