//! The small contract the gateway and the worker agree on.
//!
//! * [`codes`]: every error `code` an envelope may carry (`docs/errors.md`).
//! * [`envelope`]: the JSON error body every error answer uses, on both sides.
//! * [`headers`]: the names of the headers the gateway sets for the worker
//!   (identity, scopes, request id). The worker trusts them only because the
//!   gateway is the only process that can reach its Unix socket; the gateway
//!   removes any client-sent copy before it forwards a request.
//! * [`linger`]: the lingering close both sides' HTTP/1.1 connections use
//!   after answering a request whose body they did not read.
//! * [`openapi`]: the OpenAPI 3.1 document of the public surface, generated
//!   from the route table (`docs/openapi.json`).
//! * [`routes`]: the legacy API's routes (method, path, body kind) and the
//!   size limits that go with them, written once for both sides.
//! * [`signature`]: the HMAC the gateway adds to each forwarded request
//!   when both sides share a key, and the one canonical string it covers.

pub mod codes;
pub mod envelope;
pub mod headers;
pub mod linger;
pub mod openapi;
pub mod routes;
pub mod signature;
