//! The legacy JSON API (`spec/legacy-api.md`) as pure functions over one
//! principal's [`Session`].
//!
//! The HTTP layer (the worker's server) turns a request into a [`Request`]
//! — for `POST /api/analyze` it has already pulled the first `file` part out
//! of the multipart body into an [`Upload`] — and writes the [`Reply`] back.
//! Everything the legacy contract says about paths, methods, parameters,
//! bodies, status codes and JSON lives here.

/// The largest upload the legacy backend accepts: 2 × 1024 × 1024 bytes
/// (exactly this many pass).
pub const MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024;

/// The `file` part of an upload, as the HTTP layer found it.
#[derive(Debug, Clone, Copy)]
pub enum Upload<'a> {
    /// No part named `file` with a filename (includes non-multipart bodies
    /// and malformed multipart).
    Missing,
    /// The first `file` part. `content` may be cut short at
    /// `MAX_UPLOAD_BYTES + 1` bytes by the HTTP layer: anything longer than
    /// `MAX_UPLOAD_BYTES` is refused as too large either way.
    File {
        /// The part's filename as sent.
        filename: &'a str,
        /// The part's bytes.
        content: &'a [u8],
    },
}

/// One request, as the HTTP layer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path without query string, e.g. `/api/losses`.
    pub path: &'a str,
    /// The raw query string without `?` (percent-encoded), or `""`.
    pub query: &'a str,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The raw body (empty for an upload, whose content is in `upload`).
    pub body: &'a [u8],
    /// For `POST /api/analyze`: the file part. `None` on every other route.
    pub upload: Option<Upload<'a>>,
}

/// What to send back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// JSON body, compact, keys sorted, ending with `\n`.
    pub body: Vec<u8>,
    /// Extra headers (e.g. `Allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
    /// Counts for the request log line; never contents.
    pub facts: Facts,
}

/// Non-sensitive counts about a reply, for logging.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// CSV data rows parsed (uploads only).
    pub rows: Option<usize>,
    /// Trades reconstructed or served.
    pub trades: Option<usize>,
}

/// One principal's data: thresholds, the last good upload's orders and
/// trades with their tags.
#[derive(Debug, Clone, Default)]
pub struct Session {}

impl Session {
    /// A fresh session with the default thresholds and no trades.
    pub fn new() -> Self {
        Self::default()
    }

    /// An estimate of the heap bytes this session holds, for the worker's
    /// total-bytes cap.
    pub fn held_bytes(&self) -> usize {
        0
    }
}

/// Answers one request against one principal's session.
pub fn handle(_session: &mut Session, _request: Request<'_>) -> Reply {
    Reply {
        status: 501,
        body: tradehabit_shared::envelope::ErrorEnvelope::new("not implemented yet").to_bytes(),
        headers: Vec::new(),
        facts: Facts::default(),
    }
}
