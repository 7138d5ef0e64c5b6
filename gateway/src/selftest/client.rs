//! The self-test's client side: the target parsed from its URL, the trust
//! roots (`--ca` or the system bundle), TLS connections with chosen
//! versions and ALPN, and HTTP/1.1 exchanges with every operation bounded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Every network step gives up after this long (a safety net: a probe that
/// hangs fails, it never blocks the run).
pub(super) const PATIENCE: Duration = Duration::from_secs(20);

/// Where the system's trusted certificates usually are.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The deployment under test.
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    server_name: ServerName<'static>,
    roots: Arc<RootCertStore>,
    /// The credential header sent on probes that need one.
    pub(super) credential: Option<(HeaderName, HeaderValue)>,
}

/// An answer read to its end.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Answer {
    /// One header's values, in order.
    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The first value of a header.
    pub(super) fn header(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    /// Whether the body is the gateway's error envelope.
    pub(super) fn is_envelope(&self) -> bool {
        serde_json::from_slice::<serde_json::Value>(&self.body).is_ok_and(|v| {
            v["status"] == "ERROR" && v["message"].is_string() && v["details"].is_array()
        })
    }
}

impl Target {
    /// `https://HOST[:PORT]` (port 443 by default), trusting `ca` or the
    /// system's bundle.
    pub(super) fn new(
        url: &str,
        ca: Option<&std::path::Path>,
        credential: Option<(HeaderName, HeaderValue)>,
    ) -> anyhow::Result<Target> {
        let (host, port) = host_port(url, "https://", 443)?;
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| anyhow::anyhow!("{host:?} is not a host name or IP address"))?;
        Ok(Target {
            host,
            port,
            server_name,
            roots: Arc::new(roots(ca)?),
            credential,
        })
    }

    /// `host:port` as a `Host` header value.
    pub(super) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A TCP connection to the target.
    pub(super) async fn tcp(&self) -> Result<TcpStream, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        bounded(TcpStream::connect((host, self.port)))
            .await?
            .map_err(|e| format!("cannot connect to {}: {e}", self.authority()))
    }

    /// A verified TLS connection offering `versions` and `alpn`.
    pub(super) async fn tls(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Result<TlsStream<TcpStream>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = self.tcp().await?;
        let connector = TlsConnector::from(Arc::new(config));
        bounded(connector.connect(self.server_name.clone(), tcp))
            .await?
            .map_err(|e| format!("TLS handshake failed: {e}"))
    }

    /// Sends `request` (a path; `Host` added unless it has one) over a new
    /// HTTP/1.1 connection and reads the whole answer.
    pub(super) async fn send(&self, mut request: Request<Full<Bytes>>) -> Result<Answer, String> {
        if !request.headers().contains_key(http::header::HOST) {
            let host = HeaderValue::from_str(&self.authority()).map_err(|e| e.to_string())?;
            request.headers_mut().insert(http::header::HOST, host);
        }
        let versions = rustls::DEFAULT_VERSIONS;
        let tls = self.tls(versions, &[b"http/1.1"]).await?;
        let (mut sender, connection) =
            bounded(hyper::client::conn::http1::handshake(TokioIo::new(tls)))
                .await?
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = bounded(sender.send_request(request))
            .await?
            .map_err(|e| format!("no answer: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = bounded(body.collect())
            .await?
            .map_err(|e| format!("the answer's body broke off: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A request for `path` with `method`, the credential when `with_credential`.
    pub(super) fn request(
        &self,
        method: http::Method,
        path: &str,
        with_credential: bool,
    ) -> http::request::Builder {
        let mut builder = Request::builder().method(method).uri(path);
        if let (true, Some((name, value))) = (with_credential, &self.credential) {
            builder = builder.header(name, value);
        }
        builder
    }
}

/// `future`, or an error after [`PATIENCE`].
pub(super) async fn bounded<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(PATIENCE, future)
        .await
        .map_err(|_| format!("no progress within {}s", PATIENCE.as_secs()))
}

/// The host and port of `url`, which must start with `scheme`.
pub(super) fn host_port(
    url: &str,
    scheme: &str,
    default_port: u16,
) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix(scheme)
        .ok_or_else(|| anyhow::anyhow!("{url:?} does not start with {scheme}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| anyhow::anyhow!("{url:?}: no host[:port] after {scheme}"))?;
    let host = uri.host().trim_start_matches('[').trim_end_matches(']');
    anyhow::ensure!(!host.is_empty(), "{url:?}: no host");
    Ok((host.to_string(), uri.port_u16().unwrap_or(default_port)))
}

fn roots(ca: Option<&std::path::Path>) -> anyhow::Result<RootCertStore> {
    let path = match ca {
        Some(path) => path.to_path_buf(),
        None => SYSTEM_BUNDLES
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| anyhow::anyhow!("no system certificate bundle found; pass --ca FILE"))?,
    };
    let pem =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (added, _) = store.add_parsable_certificates(certificates);
    anyhow::ensure!(added > 0, "{}: no certificate in it", path.display());
    Ok(store)
}
