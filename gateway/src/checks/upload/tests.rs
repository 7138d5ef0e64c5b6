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
        Err(UploadError::NotText { row: 2 })
    );
    assert_eq!(
        check(file("x.csv", b"a,b\n1,2\n\xFF\xFE")).await,
        Err(UploadError::NotText { row: 3 })
    );
    let mut tail = vec![b'a'; 100_000];
    tail.push(0);
    assert_eq!(
        check(file("x.csv", &tail)).await,
        Err(UploadError::NotText { row: 1 })
    );
    // Latin-1: named as not UTF-8, with the row (the header is row 1).
    let refused = Rejection::from(UploadError::NotText { row: 2 });
    assert_eq!(refused.message, "the file is not UTF-8 text");
    assert_eq!(refused.details, ["row 2"]);
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
        messages: Some("loud".into()),
    };
    let mut problems = Problems::new();
    assert!(validate_upload(&raw, "routes[0].upload", &mut problems).is_none());
    for path in [
        "routes[0].upload.messages",
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

/// `messages = "legacy"`: the three refusals the legacy backend makes read
/// exactly as its own (its web app shows them to users verbatim).
#[tokio::test]
async fn legacy_messages_are_the_legacy_backends_words() {
    let raw = UploadRaw {
        messages: Some("legacy".into()),
        ..UploadRaw::default()
    };
    let legacy = validate_upload(&raw, "u", &mut Problems::new()).unwrap();
    let gateway = UploadRules::default();
    let big = vec![b'a'; 2 * 1024 * 1024 + 1];
    let cases: [(Vec<u8>, &str); 4] = [
        (form(&[]), "No file part"),
        (b"--broken".to_vec(), "No file part"),
        (
            file("trades.xlsx", b"a,b\n"),
            "TradeHabit only works with the CSV file format.",
        ),
        (
            file("t.csv", &big),
            "This file exceeds the 2 MB size limit.",
        ),
    ];
    for (body, expected) in cases {
        let err = legacy
            .check(&multipart_headers(), Bytes::from(body.clone()))
            .await
            .unwrap_err();
        let answer = legacy.refusal(err.clone());
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.message, expected);
        assert_eq!(answer.reason, err.reason());
        // The gateway's own wording is unchanged by default.
        assert_ne!(gateway.refusal(err).message, expected);
    }
    assert_eq!(
        legacy.refusal(legacy.too_large()).message,
        "This file exceeds the 2 MB size limit."
    );
}
