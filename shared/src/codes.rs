//! Every `code` an error envelope may carry, written once.
//!
//! A code is the stable `<check>.<why>` name of one distinct cause: the
//! gateway's codes are the `reason` its audit log writes for the refusal,
//! the worker's name its own refusals and the API's 400s. `docs/errors.md`
//! has one table of them with status and meaning; a test here fails when the
//! two lists differ, and [`crate::envelope::ErrorEnvelope::new`] panics in
//! debug builds (every test) on a code that is not listed.

/// Every code, grouped by the check that emits it.
#[rustfmt::skip]
pub const CODES: &[&str] = &[
    // The request's shape, before any route (gateway).
    "path.refused",
    "shape.request_line_too_long", "shape.headers_too_large", "shape.ambiguous_length",
    "shape.host_invalid", "shape.host_misdirected", "shape.upgrade_refused",
    "shape.underscore_header",
    "plain_http.https_required",
    // Routing (gateway and worker).
    "route.not_found", "route.method_not_allowed", "static.symlink",
    // Body size, encoding and timing (gateway and worker).
    "body.too_large", "body.compressed", "body.encoding_not_accepted", "body.decoded_too_large",
    "body.encoding_corrupt", "body.timeout", "body.incomplete", "body.chunked_framing",
    "body.json_too_deep", "body.invalid_json",
    // CORS (gateway).
    "cors.origin_not_allowed", "cors.method_not_allowed", "cors.header_not_allowed",
    "cors.cross_origin_write", "session_cookie.cross_origin",
    // Authentication (gateway): which credential, and what is wrong with it.
    "auth.missing", "auth.ambiguous", "auth.unsupported_scheme", "auth.principal_too_long",
    "api_key.malformed", "api_key.unknown", "api_key.revoked", "api_key.expired",
    "jwt.too_large", "jwt.malformed", "jwt.alg_none", "jwt.forbidden_header",
    "jwt.unknown_issuer", "jwt.algorithm_not_allowed", "jwt.algorithm_key_mismatch",
    "jwt.unknown_kid", "jwt.kid_required", "jwt.bad_signature", "jwt.expired",
    "jwt.not_yet_valid", "jwt.wrong_audience", "jwt.wrong_issuer", "jwt.missing_claim",
    "jwt.bad_subject", "jwt.wrong_typ",
    "token.disabled", "token.key_inactive", "token.unknown_kind",
    // Authorisation (gateway).
    "authz.unauthenticated", "authz.missing_scope",
    // Quotas and capacity (gateway and worker).
    "rate_limit.exceeded", "rate_limit.overflow", "rate_limit.store_unavailable",
    "limits.client_requests", "limits.client_upstream_slots", "accept.connection_cap",
    "admission.principal_busy", "admission.queue_full",
    // Query parameters (gateway and worker).
    "query.credentials_in_url", "query.unknown_parameter", "query.repeated_parameter",
    "query.malformed", "query.invalid_value", "query.not_a_number", "query.not_finite",
    "query.result_overflow",
    // Content type and the upload form (gateway and worker).
    "content_type.unsupported",
    "upload.no_file_part", "upload.not_csv", "upload.too_large", "upload.not_text",
    "upload.extra_part", "upload.malformed", "upload.not_multipart", "upload.no_boundary",
    // The CSV file's content (worker).
    "csv.empty", "csv.not_utf8", "csv.too_many_fields", "csv.unterminated_quote",
    "csv.missing_columns", "csv.missing_analysis_columns", "csv.cell_not_a_number",
    "csv.cell_missing", "csv.cell_out_of_range", "csv.cell_formula_like",
    "csv.stop_price_not_numeric", "csv.no_trades",
    // Reading before uploading, settings and goals (worker).
    "data.not_uploaded",
    "settings.not_an_object", "settings.invalid_value", "settings.unknown_key",
    "goals.wrong_shape", "goals.not_finite",
    // The gateway-to-worker hop (worker).
    "identity.repeated", "identity.empty", "identity.too_long", "identity.peer_not_allowed",
    "identity.not_signed",
    // The upstream and the service itself (gateway and worker).
    "upstream.unreachable", "upstream.broken", "upstream.worker_lost", "upstream.busy", "upstream.timeout",
    "upstream.failed",
    "audit.unavailable",
    "internal.engine_panicked", "internal.engine_lost", "internal.metrics_unavailable",
    "worker.draining",
];

/// Whether `code` is one of [`CODES`].
pub fn is_listed(code: &str) -> bool {
    CODES.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The codes of the table in `docs/errors.md`: the first cell of every
    /// row whose first cell is a back-quoted `<check>.<why>`.
    fn documented() -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md");
        let text = std::fs::read_to_string(path).expect("docs/errors.md is readable");
        text.lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once('`'))
            .map(|(code, _)| code.to_owned())
            .filter(|code| code.contains('.'))
            .collect()
    }

    #[test]
    fn codes_are_unique_and_dotted() {
        let set: BTreeSet<_> = CODES.iter().collect();
        assert_eq!(set.len(), CODES.len(), "a code is listed twice");
        for code in CODES {
            let (check, why) = code.split_once('.').expect("dotted");
            assert!(
                !check.is_empty() && !why.is_empty() && !why.contains('.'),
                "{code}"
            );
            assert!(code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'));
        }
    }

    #[test]
    fn the_docs_table_lists_exactly_these_codes() {
        let listed: BTreeSet<String> = CODES.iter().map(|c| (*c).to_owned()).collect();
        let documented = documented();
        let undocumented: Vec<_> = listed.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&listed).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "docs/errors.md is missing {undocumented:?} and lists unknown {unknown:?}"
        );
    }
}
