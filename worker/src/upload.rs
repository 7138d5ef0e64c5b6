//! Body stage: request body → what the engine gets, with size and shape
//! limits, read as a stream so that nothing over the limits is buffered.
//!
//! * The upload route (`POST /api/analyze`, see
//!   [`tradehabit_shared::routes`]): the first multipart part named `file`
//!   that has a filename becomes a [`FilePart`]. Its bytes are read up to
//!   [`MAX_UPLOAD_BYTES`] + 1 and no further — one byte over is enough for
//!   the engine to refuse the file as too large (`docs/quirks.md`, H-10),
//!   and reading stops there. Other parts are skipped; the whole multipart
//!   stream may be at most [`UPLOAD_STREAM_SLACK_BYTES`] longer than the
//!   file limit. No `Content-Type` at all means no file part (the legacy
//!   answer); another content type, a missing boundary or a malformed body
//!   each get their own 400, never a 500.
//! * Every other request: the body is read whole, up to a configured limit
//!   (413 beyond it, refused from `Content-Length` before reading when the
//!   length is declared).
//!
//! The caller puts a deadline on both.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::{BodyDataStream, BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
use tradehabit_shared::routes::{MAX_UPLOAD_BYTES, UPLOAD_FIELD};

use crate::refusal::Refusal;

/// How much longer than [`MAX_UPLOAD_BYTES`] a whole multipart body may be
/// (part headers, boundaries, other small fields): 1 MiB. Generous, so that
/// a file just over the limit is refused by the engine's clear "file too
/// large" rule rather than by this cap.
pub const UPLOAD_STREAM_SLACK_BYTES: u64 = 1024 * 1024;

/// The file part of an upload as received; the engine sees it as
/// [`crate::api::Upload::File`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePart {
    /// The filename as sent.
    pub(crate) filename: String,
    /// The bytes, cut at `MAX_UPLOAD_BYTES + 1`.
    pub(crate) content: Bytes,
}

/// Reads an upload request's body into its [`FilePart`] (`None`: there is
/// no `file` part with a filename).
pub(crate) async fn read_upload<B>(
    headers: &HeaderMap,
    body: B,
) -> Result<Option<FilePart>, Refusal>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return Ok(None);
    };
    let content_type = content_type.to_str().map_err(|_| Refusal::NotMultipart)?;
    if !is_form_data(content_type) {
        return Err(Refusal::NotMultipart);
    }
    let boundary = multer::parse_boundary(content_type).map_err(|_| Refusal::NoBoundary)?;
    let limit = MAX_UPLOAD_BYTES as u64 + UPLOAD_STREAM_SLACK_BYTES;
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart =
        multer::Multipart::with_constraints(BodyDataStream::new(body), boundary, constraints);
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_refusal)? {
        if field.name() != Some(UPLOAD_FIELD) {
            continue;
        }
        // A `file` part without a filename is a plain form field to the
        // legacy backend, so it does not count.
        let Some(filename) = field.file_name().map(str::to_owned) else {
            continue;
        };
        let mut content = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_refusal)? {
            let room = MAX_UPLOAD_BYTES + 1 - content.len();
            if chunk.len() >= room {
                content.extend_from_slice(&chunk[..room]);
                break;
            }
            content.extend_from_slice(&chunk);
        }
        return Ok(Some(FilePart {
            filename,
            content: content.freeze(),
        }));
    }
    Ok(None)
}

/// Entry point for the fuzz targets (`fuzz/`) and the in-suite fuzz smoke
/// test: [`read_upload`] over a whole in-memory body. `Ok` holds the file
/// part's filename and length (`None`: no file part), `Err` the refusal's
/// HTTP status. Not a stable API.
#[doc(hidden)]
pub async fn read_upload_bytes(
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Option<(String, usize)>, u16> {
    let mut headers = HeaderMap::new();
    if let Some(value) = content_type.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        headers.insert(CONTENT_TYPE, value);
    }
    match read_upload(&headers, http_body_util::Full::new(body)).await {
        Ok(file) => Ok(file.map(|file| (file.filename, file.content.len()))),
        Err(refusal) => Err(refusal.status().as_u16()),
    }
}

/// Reads a non-upload body whole, up to `limit` bytes.
pub(crate) async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = Refusal::BodyTooLarge {
        limit: limit as u64,
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large),
        Err(_) => Err(Refusal::BodyUnreadable),
    }
}

/// Whether a `Content-Type` value is `multipart/form-data` (any case, any
/// parameters).
fn is_form_data(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Maps a multer error to a refusal with fixed words: multer's own messages
/// can quote header bytes from the body, which we never echo.
fn multipart_refusal(error: multer::Error) -> Refusal {
    use multer::Error as E;
    let reason = match error {
        E::StreamSizeExceeded { limit } | E::FieldSizeExceeded { limit, .. } => {
            return Refusal::BodyTooLarge { limit };
        }
        E::StreamReadFailed(_) => return Refusal::BodyUnreadable,
        E::NoMultipart | E::DecodeContentType(_) => return Refusal::NotMultipart,
        E::NoBoundary => return Refusal::NoBoundary,
        E::IncompleteStream => "the body ended before the closing boundary",
        E::IncompleteFieldData { .. } => "the body ended inside a part",
        E::IncompleteHeaders => "the body ended inside a part's headers",
        E::ReadHeaderFailed(_) => "a part's headers could not be parsed",
        E::DecodeHeaderName { .. } | E::DecodeHeaderValue { .. } => {
            "a part header has an invalid name or value"
        }
        _ => "the multipart body could not be parsed",
    };
    Refusal::MalformedMultipart { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::Full;

    const BOUNDARY: &str = "XyZ";

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=XyZ"),
        );
        headers
    }

    fn part(name: &str, filename: Option<&str>, content: &[u8]) -> Vec<u8> {
        let mut out = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"");
        if let Some(filename) = filename {
            out.push_str(&format!("; filename=\"{filename}\""));
        }
        out.push_str("\r\n\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn form(parts: &[Vec<u8>]) -> Full<Bytes> {
        let mut body = parts.concat();
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        Full::new(Bytes::from(body))
    }

    async fn upload(parts: &[Vec<u8>]) -> Result<Option<FilePart>, Refusal> {
        read_upload(&form_headers(), form(parts)).await
    }

    #[tokio::test]
    async fn the_first_file_part_with_a_filename_is_the_upload() {
        let found = upload(&[
            part("comment", None, b"hello"),
            part("file", None, b"not a file"),
            part("file", Some("a.csv"), b"x,y\n1,2\n"),
            part("file", Some("b.csv"), b"second"),
        ])
        .await
        .unwrap();
        assert_eq!(
            found,
            Some(FilePart {
                filename: "a.csv".into(),
                content: Bytes::from_static(b"x,y\n1,2\n")
            })
        );
    }

    #[tokio::test]
    async fn no_file_part_and_no_content_type_both_mean_missing() {
        assert_eq!(
            upload(&[part("upload", Some("a.csv"), b"1")])
                .await
                .unwrap(),
            None
        );
        let no_type = read_upload(&HeaderMap::new(), Full::new(Bytes::from_static(b"x"))).await;
        assert_eq!(no_type.unwrap(), None);
    }

    #[tokio::test]
    async fn content_is_cut_one_byte_past_the_limit() {
        let exact = vec![b'a'; MAX_UPLOAD_BYTES];
        let Some(FilePart { content, .. }) = upload(&[part("file", Some("a.csv"), &exact)])
            .await
            .unwrap()
        else {
            panic!("expected a file");
        };
        assert_eq!(content.len(), MAX_UPLOAD_BYTES);
        let over = vec![b'a'; MAX_UPLOAD_BYTES + 5000];
        let Some(FilePart { content, .. }) =
            upload(&[part("file", Some("a.csv"), &over)]).await.unwrap()
        else {
            panic!("expected a file");
        };
        assert_eq!(content.len(), MAX_UPLOAD_BYTES + 1);
    }

    #[tokio::test]
    async fn shape_errors_are_specific_refusals() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = || Full::new(Bytes::from_static(b"{}"));
        assert!(matches!(
            read_upload(&headers, body()).await,
            Err(Refusal::NotMultipart)
        ));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data"),
        );
        assert!(matches!(
            read_upload(&headers, body()).await,
            Err(Refusal::NoBoundary)
        ));
        let truncated = Full::new(Bytes::from(
            part("file", Some("a.csv"), b"1,2")[..40].to_vec(),
        ));
        assert!(matches!(
            read_upload(&form_headers(), truncated).await,
            Err(Refusal::MalformedMultipart { .. })
        ));
    }

    #[tokio::test]
    async fn junk_before_the_file_part_is_capped() {
        let junk = vec![b'j'; MAX_UPLOAD_BYTES + UPLOAD_STREAM_SLACK_BYTES as usize];
        assert!(matches!(
            upload(&[
                part("comment", None, &junk),
                part("file", Some("a.csv"), b"1")
            ])
            .await,
            Err(Refusal::BodyTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn plain_bodies_are_capped_by_declared_and_by_actual_length() {
        let mut headers = HeaderMap::new();
        let small = Full::new(Bytes::from_static(b"{\"k\":1}"));
        assert_eq!(
            read_body(&headers, small, 16).await.unwrap(),
            Bytes::from_static(b"{\"k\":1}")
        );
        let big = || Full::new(Bytes::from(vec![b' '; 17]));
        assert!(matches!(
            read_body(&headers, big(), 16).await,
            Err(Refusal::BodyTooLarge { limit: 16 })
        ));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("1000000"));
        assert!(matches!(
            read_body(&headers, Full::new(Bytes::new()), 16).await,
            Err(Refusal::BodyTooLarge { limit: 16 })
        ));
    }

    #[test]
    fn form_data_is_recognised_in_any_case_with_parameters() {
        assert!(is_form_data("multipart/form-data; boundary=x"));
        assert!(is_form_data("Multipart/Form-Data"));
        assert!(!is_form_data("multipart/mixed; boundary=x"));
        assert!(!is_form_data("text/csv"));
    }
}
