//! A route's query table (which parameters, of which type) and the check
//! of a query string against it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{RuleError, CREDENTIAL_PARAMS, DEFAULT_STRING_CHARS};
use crate::checks::problems::{join, Problems};

/// Longest configurable string parameter.
const MAX_STRING_LENGTH: usize = 1024;

/// One parameter as written in the policy file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamRaw {
    /// `float` or `string`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Smallest accepted float.
    pub min: Option<f64>,
    /// Largest accepted float.
    pub max: Option<f64>,
    /// Longest accepted string, in characters.
    pub max_length: Option<usize>,
    /// Accepted characters, as ranges and single characters
    /// (`"A-Za-z0-9 ._-"`; a `-` first or last is literal). Default
    /// [`DEFAULT_STRING_CHARS`].
    pub chars: Option<String>,
}

/// A validated parameter rule.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamRule {
    /// A finite number in `min..=max`.
    Float {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// Text of at most `max_length` characters from `chars`.
    Text {
        /// Longest accepted length in characters.
        max_length: usize,
        /// Accepted characters.
        chars: CharClass,
        /// The class as written, for messages.
        chars_text: String,
    },
}

/// A set of characters given as ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharClass(Vec<(char, char)>);

impl CharClass {
    /// Parses `"A-Za-z0-9 ._-"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            return Err("the character class is empty".into());
        }
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let start = chars[i];
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                let end = chars[i + 2];
                if end < start {
                    return Err(format!("range {start}-{end} is reversed"));
                }
                ranges.push((start, end));
                i += 3;
            } else {
                ranges.push((start, start));
                i += 1;
            }
        }
        Ok(Self(ranges))
    }

    /// Whether `c` is in the class.
    pub fn contains(&self, c: char) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
    }
}

/// A route's query rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryRules {
    params: BTreeMap<String, ParamRule>,
}

/// Validates a route's `query` table at key path `path`.
pub fn validate_query(
    raw: &BTreeMap<String, ParamRaw>,
    path: &str,
    problems: &mut Problems,
) -> Option<QueryRules> {
    let before = problems.len();
    let mut params = BTreeMap::new();
    for (name, param) in raw {
        let param_path = join(path, name);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problems.push(
                &param_path,
                "parameter names are letters, digits, `_` and `-`",
            );
            continue;
        }
        if CREDENTIAL_PARAMS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
        {
            problems.push(
                &param_path,
                "credentials must never be accepted in the query string",
            );
            continue;
        }
        if let Some(rule) = validate_param(param, &param_path, problems) {
            params.insert(name.clone(), rule);
        }
    }
    (problems.len() == before).then_some(QueryRules { params })
}

fn validate_param(raw: &ParamRaw, path: &str, problems: &mut Problems) -> Option<ParamRule> {
    let before = problems.len();
    let misplaced = |problems: &mut Problems, key: &str, kind: &str| {
        problems.push(join(path, key), format!("not used by type {kind:?}"));
    };
    let rule = match raw.kind.as_str() {
        "float" => {
            if raw.max_length.is_some() {
                misplaced(problems, "max_length", "float");
            }
            if raw.chars.is_some() {
                misplaced(problems, "chars", "float");
            }
            let (Some(min), Some(max)) = (raw.min, raw.max) else {
                problems.push(path, "a float parameter needs `min` and `max`");
                return None;
            };
            if !min.is_finite() || !max.is_finite() || min > max {
                problems.push(path, "`min` and `max` must be finite with min <= max");
            }
            ParamRule::Float { min, max }
        }
        "string" => {
            if raw.min.is_some() {
                misplaced(problems, "min", "string");
            }
            if raw.max.is_some() {
                misplaced(problems, "max", "string");
            }
            let Some(max_length) = raw.max_length else {
                problems.push(path, "a string parameter needs `max_length`");
                return None;
            };
            if !(1..=MAX_STRING_LENGTH).contains(&max_length) {
                problems.push(
                    join(path, "max_length"),
                    format!("must be between 1 and {MAX_STRING_LENGTH}"),
                );
            }
            let chars_text = raw
                .chars
                .clone()
                .unwrap_or_else(|| DEFAULT_STRING_CHARS.to_owned());
            match CharClass::parse(&chars_text) {
                Ok(chars) => ParamRule::Text {
                    max_length,
                    chars,
                    chars_text,
                },
                Err(why) => {
                    problems.push(join(path, "chars"), why);
                    return None;
                }
            }
        }
        other => {
            problems.push(
                join(path, "type"),
                format!("{other:?}: expected \"float\" or \"string\""),
            );
            return None;
        }
    };
    (problems.len() == before).then_some(rule)
}

impl QueryRules {
    /// The accepted parameters and their rules, by name.
    pub fn params(&self) -> &BTreeMap<String, ParamRule> {
        &self.params
    }

    /// Checks a raw query string (without the `?`).
    pub fn check(&self, query: Option<&str>) -> Result<(), RuleError> {
        let Some(query) = query else {
            return Ok(());
        };
        let pairs = parse_query(query)?;
        // Credentials first, so their refusal says why whatever else is wrong.
        if let Some((name, _)) = pairs.iter().find(|(name, _)| {
            CREDENTIAL_PARAMS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
        }) {
            return Err(RuleError::CredentialsInUrl(name.clone()));
        }
        let mut seen = BTreeSet::new();
        for (name, value) in &pairs {
            let rule = self
                .params
                .get(name)
                .ok_or_else(|| RuleError::UnknownParameter(name.clone()))?;
            if !seen.insert(name.as_str()) {
                return Err(RuleError::RepeatedParameter(name.clone()));
            }
            check_value(name, value, rule)?;
        }
        Ok(())
    }
}

fn check_value(name: &str, value: &str, rule: &ParamRule) -> Result<(), RuleError> {
    match rule {
        ParamRule::Float { min, max } => {
            let valid = is_plain_number(value)
                && value
                    .parse::<f64>()
                    .is_ok_and(|v| v.is_finite() && (*min..=*max).contains(&v));
            if valid {
                Ok(())
            } else {
                Err(RuleError::InvalidValue {
                    name: name.to_owned(),
                    expected: format!("must be a number from {min} to {max}"),
                })
            }
        }
        ParamRule::Text {
            max_length,
            chars,
            chars_text,
        } => {
            if value.chars().count() <= *max_length && value.chars().all(|c| chars.contains(c)) {
                Ok(())
            } else {
                Err(RuleError::InvalidValue {
                    name: name.to_owned(),
                    expected: format!("must be at most {max_length} characters of [{chars_text}]"),
                })
            }
        }
    }
}

/// Digits, sign, point and exponent only: Rust's `f64` parser also accepts
/// `inf`, `nan` and `infinity`, which are never valid here.
fn is_plain_number(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
}

/// Splits and decodes `a=1&b=%32` (form encoding: `+` is a space). Empty
/// segments (`a=1&&b=2`) are skipped; a name without `=` has an empty value.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, RuleError> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

pub(super) fn decode(text: &str) -> Result<String, RuleError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(RuleError::MalformedQuery)?;
                let hex = std::str::from_utf8(hex).map_err(|_| RuleError::MalformedQuery)?;
                let byte = u8::from_str_radix(hex, 16).map_err(|_| RuleError::MalformedQuery)?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| RuleError::MalformedQuery)
}
