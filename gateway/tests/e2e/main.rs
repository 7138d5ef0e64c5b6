//! End-to-end scenarios: the gateway started in-process on port 0, real
//! TLS clients (rustls + hyper, HTTP/1.1 and HTTP/2), raw sockets for the
//! malformed cases, and a small recording upstream on a Unix socket.

mod support;

mod audit;
mod audit_batch;
mod check_config;
mod checks;
mod cli;
mod compressed;
mod explain;
mod explain_cli;
mod failures;
mod forward;
mod gunicorn;
mod keys;
mod lifecycle;
mod plain_http;
mod request_buffering;
mod timeouts;
mod tls;
mod upstream_framing;
mod visibility;
