//! The JSON error envelope:
//! `{"code":"…","details":[…],"message":"…","request_id":"…","status":"ERROR"}`.
//!
//! This is the existing backend's error shape (keys sorted, compact, one
//! trailing newline), kept so that clients written against it keep working,
//! plus two keys for scripts (`docs/errors.md`): `code`, the stable
//! `<check>.<why>` name of the cause (one of [`crate::codes::CODES`]), and
//! `request_id`, the request's `X-Request-Id`. Both the gateway's own
//! refusals and the worker's errors use it.

use serde::Serialize;

/// `Content-Type` of every envelope body.
pub const CONTENT_TYPE: &str = "application/json";

/// One entry of `details`: a short readable fact, or (after the readable
/// ones) where in the uploaded file the problem is, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// `"row 2"`, `"column Contract"`, `"parameter sigma"`.
    Text(String),
    /// `{"row": 2, "column": "Contract"}`: a spreadsheet row (the header is
    /// row 1) and, where one is known, the column's header name.
    Location {
        /// 1-based row.
        row: usize,
        /// The CSV header name, if the problem is in one cell.
        #[serde(skip_serializing_if = "Option::is_none")]
        column: Option<String>,
    },
}

/// An error body. `details` holds short, specific, client-safe facts (a
/// parameter name, a row and column); never secrets or uploaded content.
/// File locations are also given as data (`docs/errors.md`, "Locations").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEnvelope {
    code: &'static str,
    details: Vec<Detail>,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    status: &'static str,
}

impl ErrorEnvelope {
    /// An envelope with its code, a message and no details.
    ///
    /// `code` must be listed in [`crate::codes::CODES`] (and so in
    /// `docs/errors.md`); debug builds, and so every test, panic on a code
    /// the table does not list.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            crate::codes::is_listed(code),
            "error code {code:?} is not listed in shared::codes::CODES and docs/errors.md"
        );
        Self {
            code,
            details: Vec::new(),
            message: message.into(),
            request_id: None,
            status: "ERROR",
        }
    }

    /// Sets the request id (the `X-Request-Id` of the answer).
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The stable, machine-readable cause.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Adds one detail line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(Detail::Text(detail.into()));
        self
    }

    /// Replaces the details with these lines.
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details.into_iter().map(Detail::Text).collect();
        self
    }

    /// Adds a location in the uploaded file, after the readable details.
    pub fn with_location(mut self, row: usize, column: Option<&str>) -> Self {
        self.details.push(Detail::Location {
            row,
            column: column.map(str::to_owned),
        });
        self
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details.
    pub fn details(&self) -> &[Detail] {
        &self.details
    }

    /// The body bytes: compact JSON with sorted keys and a trailing newline,
    /// as the existing backend writes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec(self).expect("an envelope of strings always serialises");
        body.push(b'\n');
        body
    }
}

/// `body` with `request_id` set, if `body` is an error envelope that has
/// none yet; `None` for any other body. For a process that builds its
/// envelopes before it knows the request (the worker's API layer): the keys
/// stay sorted and the body compact.
pub fn add_request_id(body: &[u8], request_id: &str) -> Option<Vec<u8>> {
    let serde_json::Value::Object(mut map) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let is_envelope = map.get("status").and_then(|s| s.as_str()) == Some("ERROR")
        && map.get("code").is_some_and(serde_json::Value::is_string);
    if !is_envelope || map.contains_key("request_id") {
        return None;
    }
    map.insert("request_id".to_owned(), request_id.into());
    let mut bytes = serde_json::to_vec(&map).ok()?;
    bytes.push(b'\n');
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_legacy_shape() {
        let body = ErrorEnvelope::new("upload.not_csv", "Only CSV files are supported")
            .with_detail("file: report.exe")
            .to_bytes();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"code\":\"upload.not_csv\",\"details\":[\"file: report.exe\"],\"message\":\"Only CSV files are supported\",\"status\":\"ERROR\"}\n"
        );
        let body = ErrorEnvelope::new("route.not_found", "x")
            .with_request_id("req-1")
            .to_bytes();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"code\":\"route.not_found\",\"details\":[],\"message\":\"x\",\"request_id\":\"req-1\",\"status\":\"ERROR\"}\n"
        );
    }

    #[test]
    fn a_request_id_is_added_to_envelopes_only() {
        let body = ErrorEnvelope::new("data.not_uploaded", "none").to_bytes();
        let stamped = add_request_id(&body, "req-9").unwrap();
        assert_eq!(
            stamped,
            ErrorEnvelope::new("data.not_uploaded", "none")
                .with_request_id("req-9")
                .to_bytes()
        );
        assert_eq!(add_request_id(&stamped, "other"), None);
        assert_eq!(add_request_id(b"{\"status\":\"OK\"}", "x"), None);
        assert_eq!(add_request_id(b"not json", "x"), None);
    }

    #[test]
    fn quotes_and_control_characters_are_escaped() {
        let body = ErrorEnvelope::new("route.not_found", "bad \"x\"\r\ninjected").to_bytes();
        let text = String::from_utf8(body).unwrap();
        assert!(!text.trim_end().contains('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["message"], "bad \"x\"\r\ninjected");
    }
}
