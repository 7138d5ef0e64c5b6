//! `check-config --admin URL`: which of the file's changes need a restart,
//! asked of the running gateway's admin listener (`GET
//! /policy/restart-only`, digests only).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{restart_only_differences, Config, RESTART_ONLY_PATH};

/// How long the running gateway has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The restart-only settings in which `config` differs from the gateway
/// whose admin listener is `admin` (`http://host:port`).
pub fn changes(config: &Config, admin: &str) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let running = runtime.block_on(fetch(admin))?;
    Ok(restart_only_differences(
        &running,
        &config.restart_only_digest(),
    ))
}

async fn fetch(admin: &str) -> Result<String, String> {
    let uri: Uri = admin
        .parse()
        .map_err(|_| format!("`{admin}` is not an http://host:port URL"))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => authority.clone(),
        _ => return Err(format!("`{admin}` is not an http://host:port URL")),
    };
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let exchange = async {
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = Request::get(RESTART_ONLY_PATH)
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "{RESTART_ONLY_PATH} answered {}",
                response.status()
            ));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())?
}
