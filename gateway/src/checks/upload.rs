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
}

/// Validated upload rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRules {
    field: String,
    extensions: Vec<String>,
    max_file_bytes: u64,
}

impl Default for UploadRules {
    fn default() -> Self {
        Self {
            field: DEFAULT_FIELD.to_owned(),
            extensions: DEFAULT_EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
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
    (problems.len() == before).then_some(UploadRules {
        field,
        extensions,
        max_file_bytes,
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
    /// The file is not text.
    #[error("the file is not a text CSV file")]
    NotText,
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
            Self::NotText => "upload.not_text",
            Self::ExtraPart(_) => "upload.extra_part",
            Self::Malformed => "upload.malformed",
        }
    }
}

impl From<UploadError> for Rejection {
    fn from(err: UploadError) -> Self {
        let reason = err.reason();
        Rejection::new(StatusCode::BAD_REQUEST, err.to_string(), reason)
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
        if !is_text(&content) {
            return Err(UploadError::NotText);
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

/// Valid UTF-8 (after an optional byte-order mark) without NUL bytes.
fn is_text(content: &[u8]) -> bool {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    !content.contains(&0) && std::str::from_utf8(content).is_ok()
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
mod tests {
    use super::*;
    use http::HeaderValue;

    const BOUNDARY: &str = "XyZ-boundary";

    struct Part<'a> {
        name: &'a str,
        filename: Option<&'a str>,
        content: &'a [u8],
    }

    fn file(filename: &str, content: &[u8]) -> Vec<u8> {
        form(&[Part {
            name: "file",
            filename: Some(filename),
            content,
        }])
    }

    fn form(parts: &[Part<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for part in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let disposition = match part.filename {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\n",
                    part.name
                ),
                None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", part.name),
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"Content-Type: text/csv\r\n\r\n");
            body.extend_from_slice(part.content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    fn multipart_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}")).unwrap(),
        );
        headers
    }

    async fn check(body: Vec<u8>) -> Result<(), UploadError> {
        UploadRules::default()
            .check(&multipart_headers(), Bytes::from(body))
            .await
    }

    const CSV: &[u8] = b"Status,B/S,Timestamp\nFilled,Buy,2024-01-02 07:11:00\n";

    #[tokio::test]
    async fn a_csv_file_passes() {
        assert_eq!(check(file("orders.csv", CSV)).await, Ok(()));
        assert_eq!(check(file("ORDERS.CSV", CSV)).await, Ok(()));
        assert_eq!(check(file("a.Csv", CSV)).await, Ok(()));
        assert_eq!(
            check(file("bom.csv", b"\xEF\xBB\xBFStatus\n")).await,
            Ok(())
        );
        assert_eq!(check(file("empty.csv", b"")).await, Ok(()));
    }

    #[tokio::test]
    async fn the_seed_documents_executable_upload_is_refused() {
        let err = check(file("test.exe", b"malicious")).await.unwrap_err();
        assert_eq!(err, UploadError::NotCsv);
        let rejection = Rejection::from(err);
        assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
        assert_eq!(rejection.message, "only CSV files are supported");
        for name in ["test.csv.exe", "csv", "test.csvx", ""] {
            assert_eq!(
                check(file(name, CSV)).await,
                Err(UploadError::NotCsv),
                "{name:?}"
            );
        }
    }

    #[tokio::test]
    async fn size_limit_is_exact() {
        let limit = DEFAULT_MAX_FILE_BYTES as usize;
        assert_eq!(check(file("big.csv", &vec![b'a'; limit])).await, Ok(()));
        let err = check(file("big.csv", &vec![b'a'; limit + 1]))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "the file exceeds the 2 MB limit");
        assert_eq!(err.reason(), "upload.too_large");
    }

    #[tokio::test]
    async fn the_seed_documents_3_mb_upload_is_refused() {
        // Larger than the route's body limit: the pipeline answers with
        // `too_large` before reading it; within a buffered body multer does.
        let rules = UploadRules::default();
        assert!(3 * 1024 * 1024 > rules.body_limit());
        let err = check(file("test.csv", &vec![b'a'; 3 * 1024 * 1024]))
            .await
            .unwrap_err();
        assert_eq!(err, rules.too_large());
        assert_eq!(Rejection::from(err).status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn binary_content_is_refused() {
        assert_eq!(
            check(file("x.csv", b"a,b\n\x00\x01\x02")).await,
            Err(UploadError::NotText)
        );
        assert_eq!(
            check(file("x.csv", b"a,b\n\xFF\xFE")).await,
            Err(UploadError::NotText)
        );
        let mut tail = vec![b'a'; 100_000];
        tail.push(0);
        assert_eq!(check(file("x.csv", &tail)).await, Err(UploadError::NotText));
    }

    #[tokio::test]
    async fn missing_or_misnamed_file_parts_are_refused() {
        let no_filename = form(&[Part {
            name: "file",
            filename: None,
            content: CSV,
        }]);
        assert_eq!(check(no_filename).await, Err(UploadError::NoFilePart));
        let wrong_name = form(&[Part {
            name: "upload",
            filename: Some("a.csv"),
            content: CSV,
        }]);
        assert_eq!(check(wrong_name).await, Err(UploadError::NoFilePart));
        let empty_form = format!("--{BOUNDARY}--\r\n").into_bytes();
        assert_eq!(check(empty_form).await, Err(UploadError::NoFilePart));

        // Not multipart at all.
        let mut json = HeaderMap::new();
        json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let result = UploadRules::default()
            .check(&json, Bytes::from_static(b"{}"))
            .await;
        assert_eq!(result, Err(UploadError::NoFilePart));
    }

    #[tokio::test]
    async fn exactly_one_part() {
        let two = form(&[
            Part {
                name: "file",
                filename: Some("a.csv"),
                content: CSV,
            },
            Part {
                name: "file",
                filename: Some("b.csv"),
                content: CSV,
            },
        ]);
        assert_eq!(check(two).await, Err(UploadError::ExtraPart("file".into())));
        let extra = form(&[
            Part {
                name: "file",
                filename: Some("a.csv"),
                content: CSV,
            },
            Part {
                name: "comment",
                filename: None,
                content: b"hi",
            },
        ]);
        assert_eq!(
            check(extra).await,
            Err(UploadError::ExtraPart("file".into()))
        );
    }

    #[tokio::test]
    async fn many_small_parts_stop_at_the_second() {
        let parts: Vec<Part<'_>> = (0..10_000)
            .map(|_| Part {
                name: "file",
                filename: Some("a.csv"),
                content: b"x",
            })
            .collect();
        assert_eq!(
            check(form(&parts)).await,
            Err(UploadError::ExtraPart("file".into()))
        );
    }

    #[tokio::test]
    async fn part_header_bombs_and_broken_framing_are_malformed() {
        let mut bomb = format!("--{BOUNDARY}\r\n").into_bytes();
        for i in 0..100 {
            bomb.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        bomb.extend_from_slice(
            b"Content-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nx\r\n",
        );
        bomb.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        assert_eq!(check(bomb).await, Err(UploadError::Malformed));

        let truncated = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nabc");
        assert_eq!(
            check(truncated.into_bytes()).await,
            Err(UploadError::Malformed)
        );
    }

    #[test]
    fn content_type_allowlist() {
        let allowed = vec!["multipart/form-data".to_owned()];
        let mut headers = HeaderMap::new();
        // No body: nothing to check.
        assert!(check_content_type(&allowed, &headers, false).is_ok());
        assert!(
            check_content_type(&allowed, &headers, true).is_err(),
            "body without a type"
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Multipart/Form-Data; boundary=x"),
        );
        assert!(check_content_type(&allowed, &headers, true).is_ok());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let rejection = Rejection::from(check_content_type(&allowed, &headers, true).unwrap_err());
        assert_eq!(rejection.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(rejection.details, vec!["accepted: multipart/form-data"]);

        let mut json = HeaderMap::new();
        json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let rejection = Rejection::from(check_content_type(&[], &json, true).unwrap_err());
        assert_eq!(
            rejection.details,
            vec!["this endpoint takes no request body"]
        );
        assert!(check_content_type(&["application/json".into()], &json, true).is_ok());
    }

    #[test]
    fn configuration_is_validated() {
        let mut problems = Problems::new();
        assert!(validate_content_types(
            &["application/json".into(), "json".into(), "a/b c".into()],
            "ct",
            &mut problems
        )
        .is_none());
        assert!(problems.has("ct[1]") && problems.has("ct[2]"));

        let raw = UploadRaw {
            field: Some("".into()),
            extensions: Some(vec!["csv".into(), ".c s v".into()]),
            max_file_bytes: Some(0),
        };
        let mut problems = Problems::new();
        assert!(validate_upload(&raw, "routes[0].upload", &mut problems).is_none());
        for path in [
            "routes[0].upload.field",
            "routes[0].upload.extensions[0]",
            "routes[0].upload.extensions[1]",
            "routes[0].upload.max_file_bytes",
        ] {
            assert!(problems.has(path), "{path}: {problems}");
        }
        let rules = validate_upload(&UploadRaw::default(), "u", &mut Problems::new()).unwrap();
        assert_eq!(rules, UploadRules::default());
        assert_eq!(rules.body_limit(), 2 * 1024 * 1024 + 16 * 1024);
    }
}
