//! A route's JSON table and the nesting-depth scan of a JSON body.

use serde::Deserialize;

use super::{RuleError, DEFAULT_JSON_MAX_DEPTH, MAX_JSON_MAX_DEPTH};
use crate::checks::problems::{join, Problems};

/// A route's `json` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonRaw {
    /// Deepest nesting of arrays and objects. Default
    /// [`DEFAULT_JSON_MAX_DEPTH`].
    pub max_depth: Option<usize>,
}

/// Validates a route's `json` table at key path `path`.
pub fn validate_json(raw: &JsonRaw, path: &str, problems: &mut Problems) -> Option<JsonRules> {
    let max_depth = raw.max_depth.unwrap_or(DEFAULT_JSON_MAX_DEPTH);
    if !(1..=MAX_JSON_MAX_DEPTH).contains(&max_depth) {
        problems.push(
            join(path, "max_depth"),
            format!("must be between 1 and {MAX_JSON_MAX_DEPTH}"),
        );
        return None;
    }
    Some(JsonRules { max_depth })
}

/// A route's JSON body rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonRules {
    /// Deepest accepted nesting.
    pub max_depth: usize,
}

impl JsonRules {
    /// Checks the nesting depth of a JSON body without parsing it. Syntax
    /// errors are left to the upstream, which parses the body anyway.
    pub fn check(&self, body: &[u8]) -> Result<(), RuleError> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        for &b in body {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > self.max_depth {
                        return Err(RuleError::JsonTooDeep {
                            max_depth: self.max_depth,
                        });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}
