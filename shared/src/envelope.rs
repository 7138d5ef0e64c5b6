//! The JSON error envelope: `{"details":[…],"message":"…","status":"ERROR"}`.
//!
//! This is the existing backend's error shape (keys sorted, compact, one
//! trailing newline), kept so that clients written against it keep working.
//! Both the gateway's own refusals and the worker's errors use it.

use serde::Serialize;

/// `Content-Type` of every envelope body.
pub const CONTENT_TYPE: &str = "application/json";

/// An error body. `details` holds short, specific, client-safe facts (a
/// parameter name, a row and column); never secrets or uploaded content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEnvelope {
    details: Vec<String>,
    message: String,
    status: &'static str,
}

impl ErrorEnvelope {
    /// An envelope with a message and no details.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            details: Vec::new(),
            message: message.into(),
            status: "ERROR",
        }
    }

    /// Adds one detail line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(detail.into());
        self
    }

    /// Replaces the details.
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The detail lines.
    pub fn details(&self) -> &[String] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_legacy_shape() {
        let body = ErrorEnvelope::new("Only CSV files are supported")
            .with_detail("file: report.exe")
            .to_bytes();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"details\":[\"file: report.exe\"],\"message\":\"Only CSV files are supported\",\"status\":\"ERROR\"}\n"
        );
    }

    #[test]
    fn quotes_and_control_characters_are_escaped() {
        let body = ErrorEnvelope::new("bad \"x\"\r\ninjected").to_bytes();
        let text = String::from_utf8(body).unwrap();
        assert!(!text.trim_end().contains('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["message"], "bad \"x\"\r\ninjected");
    }
}
