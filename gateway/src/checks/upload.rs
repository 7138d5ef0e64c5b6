//! Body stage: content type, and on the upload route the multipart form.
//!
//! In: the request headers and, for the upload route, the buffered body
//! (already capped by the route's body limit, see [`UploadRules::body_limit`]).
//! Out: allow, 415 for a content type the route does not take, or 400 with
//! the same meaning as the legacy backend's messages for a bad upload.
//!
//! The upload must be exactly one part, named `file`, with a filename ending
//! in `.csv` (any case), at most 2 MiB (2,097,152 bytes pass), and text:
//! the whole file must be valid UTF-8 (an optional byte-order mark allowed)
//! without NUL bytes. Checking all of it, not a prefix, costs one linear
//! scan of at most 2 MiB and means a binary tail cannot slip through; the
//! worker still parses the CSV itself. Checks run in the legacy order: no
//! file part, then not CSV, then too large, then not text, then extra parts.
//!
//! multer parses the form with a per-field size limit; it caps headers per
//! part at 32, and the whole body is already bounded, so many small parts
//! or a part-header bomb cost at most one body limit of work: the check
//! stops at the second part.

use bytes::Bytes;
use futures_util::stream;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::problems::{index, join, Problems};
use super::Rejection;

/// Default largest uploaded file: 2 MiB, the API's upload limit.
pub const DEFAULT_MAX_FILE_BYTES: u64 = tradehabit_shared::routes::MAX_UPLOAD_BYTES as u64;

/// Default form field of the file.
pub const DEFAULT_FIELD: &str = "file";

/// Default accepted filename extension.
pub const DEFAULT_EXTENSIONS: &[&str] = &[".csv"];

/// Room for multipart framing (boundaries, part headers) on top of the file.
pub const MULTIPART_OVERHEAD_BYTES: u64 = 16 * 1024;

/// A route's `content_types` list entry is a media type (`type/subtype`).
pub fn validate_content_types(
    list: &[String],
    path: &str,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let before = problems.len();
    let mut types = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let lower = text.trim().to_ascii_lowercase();
        let valid = lower
            .split_once('/')
            .is_some_and(|(t, s)| is_token(t) && is_token(s));
        if valid {
            types.push(lower);
        } else {
            problems.push(
                index(path, i),
                format!("{text:?} is not a media type such as application/json"),
            );
        }
    }
    (problems.len() == before).then_some(types)
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// Why the body's content type was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported content type")]
pub struct UnsupportedContentType {
    /// The types the route accepts, for the client.
    pub allowed: Vec<String>,
}

impl From<UnsupportedContentType> for Rejection {
    fn from(err: UnsupportedContentType) -> Self {
        let allowed = if err.allowed.is_empty() {
            "this endpoint takes no request body".to_owned()
        } else {
            format!("accepted: {}", err.allowed.join(", "))
        };
        Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type",
            "content_type.unsupported",
        )
        .with_detail(allowed)
    }
}

/// The media type of a `Content-Type` value: lower-cased, parameters
/// dropped.
fn essence(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// Checks the content type of a request against `allowed` (validated,
/// lower-case media types) when it has a body (`has_body`: the body is not
/// known to be empty, whatever the framing). Requests without a body pass.
pub fn check_content_type(
    allowed: &[String],
    headers: &HeaderMap,
    has_body: bool,
) -> Result<(), UnsupportedContentType> {
    if !has_body {
        return Ok(());
    }
    match essence(headers) {
        Some(essence) if allowed.contains(&essence) => Ok(()),
        _ => Err(UnsupportedContentType {
            allowed: allowed.to_vec(),
        }),
    }
}

/// A route's `upload` table as written in the policy file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UploadRaw {
    /// Form field of the file. Default `file`.
    pub field: Option<String>,
    /// Accepted filename endings, compared case-insensitively. Default
    /// `[".csv"]`.
    pub extensions: Option<Vec<String>>,
    /// Largest accepted file in bytes. Default 2 MiB.
    pub max_file_bytes: Option<u64>,
    /// `"gateway"` (default) or `"legacy"`: the refusal messages word for
    /// word as the legacy backend writes them.
    pub messages: Option<String>,
}

/// How upload refusals are worded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UploadMessages {
    /// The gateway's own wording (the legacy meanings, not its words).
    #[default]
    Gateway,
    /// The legacy backend's exact texts, which its web app shows users
    /// verbatim: a drop-in front of that backend changes nothing they see.
    Legacy,
}

/// How refusals are worded when the route's `upload` sets no `messages`.
pub const DEFAULT_MESSAGES: UploadMessages = UploadMessages::Gateway;

/// The `messages` values, as written in the policy.
pub const UPLOAD_MESSAGES: &[&str] = &["gateway", "legacy"];

/// Validated upload rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRules {
    field: String,
    extensions: Vec<String>,
    max_file_bytes: u64,
    messages: UploadMessages,
}

impl Default for UploadRules {
    fn default() -> Self {
        Self {
            field: DEFAULT_FIELD.to_owned(),
            extensions: DEFAULT_EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            messages: DEFAULT_MESSAGES,
        }
    }
}

/// Validates a route's `upload` table at key path `path`.
pub fn validate_upload(
    raw: &UploadRaw,
    path: &str,
    problems: &mut Problems,
) -> Option<UploadRules> {
    let before = problems.len();
    let defaults = UploadRules::default();
    let field = raw.field.clone().unwrap_or(defaults.field);
    if field.is_empty()
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        problems.push(join(path, "field"), "must be letters, digits, `_` or `-`");
    }
    let mut extensions = Vec::new();
    for (i, ext) in raw
        .extensions
        .clone()
        .unwrap_or(defaults.extensions)
        .iter()
        .enumerate()
    {
        if ext.len() < 2
            || !ext.starts_with('.')
            || !ext[1..].bytes().all(|b| b.is_ascii_alphanumeric())
        {
            problems.push(
                index(&join(path, "extensions"), i),
                format!("{ext:?} must look like \".csv\""),
            );
        } else {
            extensions.push(ext.to_ascii_lowercase());
        }
    }
    if extensions.is_empty() && problems.len() == before {
        problems.push(
            join(path, "extensions"),
            "at least one extension is required",
        );
    }
    let max_file_bytes = raw.max_file_bytes.unwrap_or(defaults.max_file_bytes);
    if !(1..=64 * 1024 * 1024).contains(&max_file_bytes) {
        problems.push(
            join(path, "max_file_bytes"),
            "must be between 1 and 67108864 (64 MiB)",
        );
    }
    let messages = match raw.messages.as_deref() {
        None => DEFAULT_MESSAGES,
        Some("gateway") => UploadMessages::Gateway,
        Some("legacy") => UploadMessages::Legacy,
        Some(other) => {
            problems.push(
                join(path, "messages"),
                format!("{other:?} is not one of {}", UPLOAD_MESSAGES.join(", ")),
            );
            UploadMessages::Gateway
        }
    };
    (problems.len() == before).then_some(UploadRules {
        field,
        extensions,
        max_file_bytes,
        messages,
    })
}

/// Why an upload was refused. The messages match the legacy backend's
/// meanings; the client learns no more than that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// No part named `file` with a filename (including non-multipart bodies).
    #[error("no file part in the request")]
    NoFilePart,
    /// The filename does not end in an accepted extension.
    #[error("only CSV files are supported")]
    NotCsv,
    /// The file is larger than the limit.
    #[error("the file exceeds the {limit_text} limit")]
    TooLarge {
        /// The limit, for the message (`2 MB`).
        limit_text: String,
    },
    /// The file is not UTF-8 text (or holds a NUL byte), first at this
    /// spreadsheet row (the header is row 1).
    #[error("the file is not UTF-8 text")]
    NotText {
        /// 1-based line of the first byte that is not text.
        row: usize,
    },
    /// Parts other than the file.
    #[error("the upload must contain exactly one part, named {0:?}")]
    ExtraPart(String),
    /// The multipart framing is broken.
    #[error("malformed multipart body")]
    Malformed,
}

impl UploadError {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoFilePart => "upload.no_file_part",
            Self::NotCsv => "upload.not_csv",
            Self::TooLarge { .. } => "upload.too_large",
            Self::NotText { .. } => "upload.not_text",
            Self::ExtraPart(_) => "upload.extra_part",
            Self::Malformed => "upload.malformed",
        }
    }
}

impl From<UploadError> for Rejection {
    fn from(err: UploadError) -> Self {
        let reason = err.reason();
        let rejection = Rejection::new(StatusCode::BAD_REQUEST, err.to_string(), reason);
        match err {
            UploadError::NotText { row } => rejection.with_detail(format!("row {row}")),
            _ => rejection,
        }
    }
}

impl UploadRules {
    /// The largest accepted file in bytes (`max_file_bytes`).
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// The body limit the upload route should use: the file limit plus
    /// framing. A larger body is answered with [`UploadRules::too_large`]
    /// before it is read, so an oversize upload is a 400 as in the legacy
    /// backend, not a 413.
    pub fn body_limit(&self) -> u64 {
        self.max_file_bytes + MULTIPART_OVERHEAD_BYTES
    }

    /// The form field of the file.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The accepted filename endings.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// How this route words its refusals.
    pub fn messages(&self) -> UploadMessages {
        self.messages
    }

    /// The answer to a refused upload, worded as `messages` says. With the
    /// legacy wording, the three refusals the legacy backend has (no file
    /// part, not CSV, too large) read exactly as its own, and a broken
    /// multipart body is "no file part" as it is there; the refusals it
    /// does not make keep the gateway's words.
    pub fn refusal(&self, err: UploadError) -> Rejection {
        if self.messages == UploadMessages::Gateway {
            return err.into();
        }
        let reason = err.reason();
        let legacy = |message: String, detail: String| {
            Rejection::new(StatusCode::BAD_REQUEST, message, reason).with_detail(detail)
        };
        match err {
            UploadError::NoFilePart | UploadError::Malformed => legacy(
                "No file part".to_owned(),
                format!("form field {}", self.field),
            ),
            UploadError::NotCsv => legacy(
                "TradeHabit only works with the CSV file format.".to_owned(),
                format!("extension: {} required", self.extensions.join(" or ")),
            ),
            UploadError::TooLarge { limit_text } => legacy(
                format!("This file exceeds the {limit_text} size limit."),
                format!("limit {} bytes", self.max_file_bytes),
            ),
            other => other.into(),
        }
    }

    /// The refusal for a file over the limit.
    pub fn too_large(&self) -> UploadError {
        UploadError::TooLarge {
            limit_text: limit_text(self.max_file_bytes),
        }
    }

    /// Checks a buffered multipart body with this `Content-Type`.
    pub async fn check(&self, headers: &HeaderMap, body: Bytes) -> Result<(), UploadError> {
        let boundary = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
            .ok_or(UploadError::NoFilePart)?;
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .whole_stream(self.body_limit())
                .per_field(self.max_file_bytes),
        );
        let body_stream = stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
        let mut form = multer::Multipart::with_constraints(body_stream, boundary, constraints);

        let mut field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Err(UploadError::NoFilePart),
            Err(err) => return Err(map_multer(err, self)),
        };
        if field.name() != Some(self.field.as_str()) {
            return Err(UploadError::NoFilePart);
        }
        let Some(filename) = field.file_name() else {
            // A `file` field without a filename is a plain form field (legacy).
            return Err(UploadError::NoFilePart);
        };
        let lower = filename.to_ascii_lowercase();
        if !self
            .extensions
            .iter()
            .any(|ext| lower.ends_with(ext.as_str()))
        {
            return Err(UploadError::NotCsv);
        }
        let mut size = 0u64;
        let mut content = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|err| map_multer(err, self))? {
            size += chunk.len() as u64;
            if size > self.max_file_bytes {
                return Err(self.too_large());
            }
            content.extend_from_slice(&chunk);
        }
        if let Some(row) = first_non_text_row(&content) {
            return Err(UploadError::NotText { row });
        }
        drop(field);
        match form.next_field().await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(UploadError::ExtraPart(self.field.clone())),
            Err(err) => Err(map_multer(err, self)),
        }
    }
}

fn map_multer(err: multer::Error, rules: &UploadRules) -> UploadError {
    match err {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            rules.too_large()
        }
        _ => UploadError::Malformed,
    }
}

/// `None` for valid UTF-8 (after an optional byte-order mark) without NUL
/// bytes; else the 1-based line of the first offending byte.
fn first_non_text_row(content: &[u8]) -> Option<usize> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let invalid = std::str::from_utf8(content).err().map(|e| e.valid_up_to());
    let nul = content.iter().position(|&b| b == 0);
    let first = match (invalid, nul) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return None,
    };
    Some(1 + content[..first].iter().filter(|&&b| b == b'\n').count())
}

/// `2097152` → `2 MB` (the legacy wording counts binary megabytes).
fn limit_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes % MIB == 0 {
        format!("{} MB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
