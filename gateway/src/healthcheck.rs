//! `tradehabit-gateway healthcheck`: a tiny HTTP/1.1 client for container
//! health checks in images with no shell or curl. It GETs one URL on the
//! admin listener and reports whether the answer was 200.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What `healthcheck` probes unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9901/readyz";
/// The whole check (connect, request, response head) must finish in this.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a health check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// The URL is not `http://host:port/path`.
    #[error("`{0}` is not an http://host:port/path URL")]
    BadUrl(String),
    /// Nothing answered (refused, timed out, broken exchange).
    #[error("no answer from {0}: {1}")]
    NoAnswer(String, String),
    /// An answer other than 200.
    #[error("answered {0}")]
    Status(StatusCode),
}

/// GETs `url` over plain HTTP/1.1; `Ok` only for a 200.
pub async fn check(url: &str) -> Result<(), Unhealthy> {
    let uri: Uri = url
        .parse()
        .map_err(|_| Unhealthy::BadUrl(url.to_string()))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => authority.clone(),
        _ => return Err(Unhealthy::BadUrl(url.to_string())),
    };
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let no_answer = |error: String| Unhealthy::NoAnswer(address.clone(), error);
    let exchange = async {
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| no_answer(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| no_answer(e.to_string()))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|_| Unhealthy::BadUrl(url.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| no_answer(e.to_string()))?;
        Ok(response.status())
    };
    let status = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| no_answer("timed out".to_string()))??;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(Unhealthy::Status(status))
    }
}
