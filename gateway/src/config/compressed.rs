//! A route's allowance for compressed request bodies: the
//! `compressed_body = { encodings = ["gzip"], max_decoded_bytes = … }` key.
//!
//! Absent, the route refuses every `Content-Encoding` other than `identity`
//! (415). Present, the listed encodings are decoded while the body streams
//! (`request_body::decode`), and the decoded size is capped at
//! `max_decoded_bytes` (413), so a decompression bomb never grows past the
//! cap in memory (ASVS 5.0 5.2.3).

use serde::Deserialize;

use super::MAX_ROUTE_BODY_LIMIT;
use crate::checks::Problems;

/// `routes[i].compressed_body`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompressedBody {
    pub(crate) encodings: Option<Vec<String>>,
    pub(crate) max_decoded_bytes: Option<i64>,
}

/// A content coding the gateway can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `gzip` (RFC 1952), one member.
    Gzip,
}

impl Encoding {
    /// The coding named by a `Content-Encoding` token (case-insensitive).
    pub(crate) fn from_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("gzip") {
            Some(Encoding::Gzip)
        } else {
            None
        }
    }
}

/// A route's validated allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompressedBody {
    /// The codings accepted; one layer only.
    pub(crate) encodings: Vec<Encoding>,
    /// The largest decoded body in bytes.
    pub(crate) max_decoded_bytes: u64,
}

/// Validates `routes[i].compressed_body`; every problem is pushed under
/// `key` (`routes[2].compressed_body.encodings[0]`).
pub(crate) fn validate(
    raw: RawCompressedBody,
    key: &str,
    problems: &mut Problems,
) -> Option<CompressedBody> {
    let encodings = match raw.encodings {
        None => {
            problems.push(format_args!("{key}.encodings"), "is required");
            None
        }
        Some(list) if list.is_empty() => {
            problems.push(
                format_args!("{key}.encodings"),
                "must list at least one encoding (remove the key to refuse compressed bodies)",
            );
            None
        }
        Some(list) => {
            let mut encodings = Vec::new();
            let mut ok = true;
            for (j, name) in list.iter().enumerate() {
                match Encoding::from_token(name) {
                    Some(encoding) if name == &name.to_ascii_lowercase() => {
                        if !encodings.contains(&encoding) {
                            encodings.push(encoding);
                        }
                    }
                    _ => {
                        ok = false;
                        problems.push(
                            format_args!("{key}.encodings[{j}]"),
                            format_args!(
                                "`{name}` is not a supported encoding (supported: `gzip`)"
                            ),
                        );
                    }
                }
            }
            ok.then_some(encodings)
        }
    };
    let max_decoded_bytes = match raw.max_decoded_bytes {
        None => {
            problems.push(format_args!("{key}.max_decoded_bytes"), "is required");
            None
        }
        Some(bytes) if bytes <= 0 => {
            problems.push(format_args!("{key}.max_decoded_bytes"), "must be > 0");
            None
        }
        Some(bytes) if bytes as u64 > MAX_ROUTE_BODY_LIMIT => {
            problems.push(
                format_args!("{key}.max_decoded_bytes"),
                format_args!("must be at most {MAX_ROUTE_BODY_LIMIT} bytes"),
            );
            None
        }
        Some(bytes) => Some(bytes as u64),
    };
    Some(CompressedBody {
        encodings: encodings?,
        max_decoded_bytes: max_decoded_bytes?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(encodings: Option<&[&str]>, max: Option<i64>) -> (Option<CompressedBody>, Problems) {
        let mut problems = Problems::new();
        let raw = RawCompressedBody {
            encodings: encodings.map(|l| l.iter().map(|s| s.to_string()).collect()),
            max_decoded_bytes: max,
        };
        let result = validate(raw, "routes[0].compressed_body", &mut problems);
        (result, problems)
    }

    #[test]
    fn gzip_with_a_cap_is_accepted() {
        let (allowed, problems) = run(Some(&["gzip", "gzip"]), Some(2048));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            allowed,
            Some(CompressedBody {
                encodings: vec![Encoding::Gzip],
                max_decoded_bytes: 2048,
            })
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (allowed, problems) = run(Some(&["gzip", "br", "GZIP", "deflate"]), Some(0));
        assert!(allowed.is_none());
        assert!(problems.has("routes[0].compressed_body.encodings[1]"));
        assert!(problems.has("routes[0].compressed_body.encodings[2]"));
        assert!(problems.has("routes[0].compressed_body.encodings[3]"));
        assert!(problems.has("routes[0].compressed_body.max_decoded_bytes"));
        assert_eq!(problems.len(), 4);

        let (_, problems) = run(None, None);
        assert!(problems.has("routes[0].compressed_body.encodings"));
        assert!(problems.has("routes[0].compressed_body.max_decoded_bytes"));

        let (_, problems) = run(Some(&[]), Some((MAX_ROUTE_BODY_LIMIT + 1) as i64));
        assert!(problems.has("routes[0].compressed_body.encodings"));
        assert!(problems.has("routes[0].compressed_body.max_decoded_bytes"));
    }
}
