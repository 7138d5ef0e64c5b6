//! The headers of a static answer: content type by extension, caching by
//! name (hashed assets immutable, the rest revalidated), strong `ETag`s
//! and `If-None-Match`, and which precompressed variant the client takes.

use std::os::unix::fs::MetadataExt as _;

use http::header::{ACCEPT_ENCODING, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::open::Opened;

/// `Cache-Control` of a hashed asset: its name changes with its content.
pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of everything else: stored, but revalidated each time.
pub(super) const REVALIDATE: &str = "no-cache";

/// Shortest hash part of a hashed asset name (`index-3f9a1c2b.js`).
const MIN_HASH_CHARS: usize = 8;

/// Longest hash part looked for.
const MAX_HASH_CHARS: usize = 64;

/// The precompressed encodings a client accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Accepted {
    pub(super) br: bool,
    pub(super) gzip: bool,
}

/// Reads `Accept-Encoding` (RFC 9110 §12.5.3): a coding counts when it is
/// listed, or covered by `*`, with a non-zero weight.
pub(super) fn accepted_encodings(headers: &HeaderMap) -> Accepted {
    let mut named: Vec<(String, bool)> = Vec::new();
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|param| {
                let param = param.trim();
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if !coding.is_empty() {
                named.push((coding, !refused));
            }
        }
    }
    let takes = |coding: &str| {
        let exact = named.iter().find(|(c, _)| c == coding);
        let star = named.iter().find(|(c, _)| c == "*");
        exact.or(star).is_some_and(|(_, ok)| *ok)
    };
    Accepted {
        br: takes("br"),
        gzip: takes("gzip") || takes("x-gzip"),
    }
}

/// A strong validator of the bytes served: the file's identity, size and
/// modification time, and the encoding (each variant has its own).
pub(super) fn etag(opened: &Opened) -> HeaderValue {
    let metadata = &opened.metadata;
    let mut hash = Sha256::new();
    for part in [metadata.dev(), metadata.ino(), metadata.len()] {
        hash.update(part.to_le_bytes());
    }
    hash.update(metadata.mtime().to_le_bytes());
    hash.update(metadata.mtime_nsec().to_le_bytes());
    hash.update(opened.encoding.unwrap_or("identity").as_bytes());
    let digest = hash.finalize();
    let tag = format!("\"{}\"", hex::encode(&digest[..12]));
    HeaderValue::from_str(&tag).expect("hex is header text")
}

/// Whether `If-None-Match` lists `etag` (or `*`): weak comparison, as
/// RFC 9110 §13.1.2 requires for this header.
pub(super) fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// The caching of a file, by its name.
pub(super) fn cache_control(name: &str) -> HeaderValue {
    HeaderValue::from_static(if is_hashed(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    })
}

/// Whether a file name carries a content hash, as bundlers write them:
/// `name-HASH.ext` or `name.HASH.ext`. The hash is at least
/// [`MIN_HASH_CHARS`] letters, digits, `_` or `-` (Vite's eight base64url
/// characters may contain `-` themselves: `index-Cgtn-PNc.css`) and looks
/// like one: a digit, or at least two capitals and a small letter, so plain
/// words (`icon-Settings.svg`) are not taken for hashes. HTML never is: it
/// must always be revalidated. A miss only costs a revalidation.
fn is_hashed(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if ext.eq_ignore_ascii_case("html") {
        return false;
    }
    let bytes = stem.as_bytes();
    (MIN_HASH_CHARS..bytes.len().saturating_sub(1).min(MAX_HASH_CHARS + 1)).any(|len| {
        let at = bytes.len() - len;
        matches!(bytes[at - 1], b'-' | b'.') && looks_like_hash(&bytes[at..])
    })
}

fn looks_like_hash(candidate: &[u8]) -> bool {
    let count = |f: fn(&u8) -> bool| candidate.iter().filter(|b| f(b)).count();
    candidate
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && (count(u8::is_ascii_digit) > 0
            || (count(u8::is_ascii_uppercase) >= 2 && count(u8::is_ascii_lowercase) >= 1))
}

/// The content type of a file, by its extension.
pub(super) fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        for hashed in [
            "index-3f9a1c2b.js",
            "index-BkD1x8Qz.css",
            "logo.5d41402a.svg",
            "chunk-a1b2c3d4e5f6.mjs",
            // A Vite build of the web app.
            "index-B5QVE5_u.js",
            "index-Cgtn-PNc.css",
            "favicon-th-DAFF56-DBRdABAP.svg",
            "icon-settings-BlpMRqKf.svg",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "app.js",
            "favicon.ico",
            "index-abcdefgh.js",
            "12345678.js",
            "page-12345678.html",
            "icon-Settings.svg",
            "314_synthetic_trades-FINAL.csv",
            "TradeHabit_Dashboard_Live.png",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn accept_encoding_weights_count() {
        let of = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            accepted_encodings(&h)
        };
        assert_eq!(
            of("gzip, deflate, br, zstd"),
            Accepted {
                br: true,
                gzip: true
            }
        );
        assert_eq!(
            of("gzip;q=0, br"),
            Accepted {
                br: true,
                gzip: false
            }
        );
        assert_eq!(
            of("*"),
            Accepted {
                br: true,
                gzip: true
            }
        );
        assert_eq!(
            of("*;q=0, gzip"),
            Accepted {
                br: false,
                gzip: true
            }
        );
        assert_eq!(of("identity"), Accepted::default());
        assert_eq!(accepted_encodings(&HeaderMap::new()), Accepted::default());
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = HeaderValue::from_static("\"abc\"");
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            none_match(&h, &tag)
        };
        assert!(with("\"abc\""));
        assert!(with("\"x\", W/\"abc\""));
        assert!(with("*"));
        assert!(!with("\"abd\""));
        assert!(!none_match(&HeaderMap::new(), &tag));
    }
}
