//! `check-config --effective`: every route as the gateway resolved it,
//! after `[route_defaults]`, `paths` and the checks' own defaults, one
//! block per route in matching order.

use std::fmt::Write as _;

use super::{Config, PathMatch, Route};
use crate::checks::auth::AuthMode;
use crate::checks::request_rules::ParamRule;
use crate::checks::upload::UploadMessages;

impl Config {
    /// Every route's resolved policy, as text for operators.
    pub fn effective_routes(&self) -> String {
        let mut out = String::new();
        for (i, route) in self.routes.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            describe(route, &mut out);
        }
        out
    }
}

fn describe(route: &Route, out: &mut String) {
    let checks = &route.checks;
    let methods: Vec<&str> = route.methods.iter().map(http::Method::as_str).collect();
    let matching = match route.path_match {
        PathMatch::Exact => "exact",
        PathMatch::Prefix => "prefix",
    };
    let _ = writeln!(
        out,
        "route {:?}: {} {} ({matching})",
        route.name,
        methods.join(", "),
        route.path
    );
    let auth = match checks.auth {
        AuthMode::Required => "required",
        AuthMode::Optional => "optional",
        AuthMode::None => "none",
    };
    let scopes = list(&checks.scopes, "none");
    let _ = writeln!(out, "  auth           {auth}; scopes: {scopes}");
    let quotas = |q: &[crate::checks::rate_limit::QuotaSpec]| {
        let texts: Vec<String> = q.iter().map(ToString::to_string).collect();
        list(&texts, "none")
    };
    let _ = writeln!(
        out,
        "  rate_limit     per IP: {}; per principal: {}",
        quotas(&checks.quotas.per_ip),
        quotas(&checks.quotas.per_principal)
    );
    let types = match &checks.content_types {
        None => "any".to_owned(),
        Some(types) if types.is_empty() => "none (no body)".to_owned(),
        Some(types) => types.join(", "),
    };
    let compressed = route.compressed_body.as_ref().map_or_else(
        || "refused".to_owned(),
        |c| {
            let encodings: Vec<String> = c.encodings.iter().map(|e| format!("{e:?}")).collect();
            format!(
                "{} up to {} decoded bytes",
                encodings.join(", ").to_ascii_lowercase(),
                c.max_decoded_bytes
            )
        },
    );
    let _ = writeln!(
        out,
        "  body           limit {} bytes; content types: {types}; compressed: {compressed}",
        route.body_limit
    );
    if let Some(upload) = &checks.upload {
        let messages = match upload.messages() {
            UploadMessages::Gateway => "gateway",
            UploadMessages::Legacy => "legacy",
        };
        let _ = writeln!(
            out,
            "  upload         field {:?}, extensions {}, at most {} bytes, messages {messages}",
            upload.field(),
            upload.extensions().join(" "),
            upload.max_file_bytes()
        );
    }
    if let Some(json) = &checks.json {
        let _ = writeln!(out, "  json           nesting at most {}", json.max_depth);
    }
    let params: Vec<String> = checks
        .query
        .params()
        .iter()
        .map(|(name, rule)| match rule {
            ParamRule::Float { min, max } => format!("{name} (float {min}..={max})"),
            ParamRule::Text {
                max_length,
                chars_text,
                ..
            } => format!("{name} (string, at most {max_length} of {chars_text:?})"),
        })
        .collect();
    let _ = writeln!(out, "  query          {}", list(&params, "none accepted"));
    let origins = list(checks.cors.allowed_origins(), "none");
    let _ = writeln!(out, "  cors origins   {origins}");
}

fn list(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}
