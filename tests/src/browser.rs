//! Headless Chromium for the real-browser tests: a page server on a
//! loopback listener, and one page load whose DOM is dumped once its
//! script has run.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::attack::SAFETY;

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Serves `html` to every request on `listener` until the task is aborted.
pub fn serve_page(listener: TcpListener, html: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    })
}

/// Loads `url` in headless Chromium with the browser profile `profile`
/// (self-signed certificates accepted) and returns the DOM after the
/// page's script has run.
pub async fn dump_dom(url: &str, profile: &Path) -> String {
    let output = tokio::time::timeout(
        SAFETY * 3,
        tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // The gateway's certificate is a fresh self-signed one.
                "--ignore-certificate-errors",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within the safety net")
    .expect("chromium runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
