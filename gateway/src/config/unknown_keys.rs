//! Every unknown key at once, each with a "did you mean".
//!
//! The serde mirrors (`raw.rs`) refuse unknown keys, but serde stops at the
//! first. So the file is first read as a plain TOML tree; then, as long as
//! deserialising the tree meets an unknown key (or an unknown value of a
//! fixed set, such as `auth = "nonee"`), that key is found in the tree,
//! reported with its key path and the closest known name, removed, and the
//! tree deserialised again. A key reported here is remembered, so that the
//! checks that follow do not also call the key it was meant to be missing
//! (`routes["a"].methods: is required` after `methdos`).

use serde::Deserialize as _;
use toml::{Table, Value};

use super::raw::RawConfig;
use super::route_defaults::route_key;
use super::ConfigError;
use crate::checks::Problems;

/// At most this many unknown keys are collected (a file that is mostly
/// misspelt needs no more to be recognised as such).
const MAX_UNKNOWN: usize = 64;

/// One step into the tree.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The parsed file, with the paths of the keys reported unknown (their
/// intended names, when a close one exists).
pub(super) struct Parsed {
    pub(super) raw: RawConfig,
    /// Key paths that must not be reported again as missing.
    pub(super) reported: Vec<String>,
}

/// Parses `text`, collecting every unknown key into `problems`.
pub(super) fn parse(text: &str, problems: &mut Problems) -> Result<Parsed, ConfigError> {
    let mut tree: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    let mut reported = Vec::new();
    for _ in 0..=MAX_UNKNOWN {
        let error = match RawConfig::deserialize(Value::Table(tree.clone())) {
            Ok(raw) => return Ok(Parsed { raw, reported }),
            Err(error) => error,
        };
        let Some(found) = Unknown::parse(error.message()) else {
            break;
        };
        let Some(steps) = found.locate(&tree) else {
            break;
        };
        let path = display(&tree, &steps);
        let suggestion = closest(&found.name, &found.expected);
        let message = match (&found.kind, &suggestion) {
            (Kind::Key, Some(near)) => {
                format!("unknown key `{}`; did you mean `{near}`?", found.name)
            }
            (Kind::Key, None) => format!(
                "unknown key `{}` (known here: {})",
                found.name,
                found.expected.join(", ")
            ),
            (Kind::Value, _) => format!(
                "`{}` is not one of {}{}",
                found.name,
                found.expected.join(", "),
                suggestion
                    .as_ref()
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default()
            ),
        };
        problems.push(&path, message);
        match (&found.kind, suggestion) {
            (Kind::Key, Some(near)) => {
                let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
                reported.push(if parent.is_empty() {
                    near
                } else {
                    format!("{parent}.{near}")
                });
            }
            _ => reported.push(path),
        }
        remove(&mut tree, &steps);
    }
    // Not an unknown key, or it cannot be found: serde's own message, with
    // its line, from the text.
    let error = toml::from_str::<RawConfig>(text)
        .err()
        .map_or_else(|| "the file cannot be read".to_owned(), |e| e.to_string());
    Err(ConfigError::Syntax(error))
}

#[derive(Debug, PartialEq)]
enum Kind {
    /// `unknown field `x``: a key.
    Key,
    /// `unknown variant `x``: a value.
    Value,
}

/// What serde's message says is unknown, and what it expected instead.
#[derive(Debug)]
struct Unknown {
    kind: Kind,
    name: String,
    expected: Vec<String>,
}

impl Unknown {
    fn parse(message: &str) -> Option<Unknown> {
        let (kind, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
            (Kind::Key, rest)
        } else {
            (Kind::Value, message.strip_prefix("unknown variant `")?)
        };
        let (name, rest) = rest.split_once('`')?;
        let expected = rest
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        Some(Unknown {
            kind,
            name: name.to_owned(),
            expected,
        })
    }

    /// Where in the tree the unknown key (or the key holding the unknown
    /// value) is: of every place it occurs, the table whose other keys
    /// best fit the names serde expected there.
    fn locate(&self, tree: &Table) -> Option<Vec<Step>> {
        let mut best: Option<(usize, Vec<Step>)> = None;
        let mut visit = |table: &Table, at: &[Step]| {
            let key = match self.kind {
                Kind::Key => table.contains_key(&self.name).then(|| self.name.clone()),
                Kind::Value => table
                    .iter()
                    .find(|(_, v)| v.as_str() == Some(self.name.as_str()))
                    .map(|(k, _)| k.clone()),
            };
            let Some(key) = key else { return };
            let fit = table
                .keys()
                .filter(|k| self.expected.iter().any(|e| e == *k))
                .count()
                + 1;
            if best.as_ref().is_none_or(|(score, _)| fit > *score) {
                let mut steps = at.to_vec();
                steps.push(Step::Key(key));
                best = Some((fit, steps));
            }
        };
        walk(tree, &mut Vec::new(), &mut visit);
        best.map(|(_, steps)| steps)
    }
}

/// Calls `visit` on every table of the tree with its path.
fn walk(table: &Table, at: &mut Vec<Step>, visit: &mut dyn FnMut(&Table, &[Step])) {
    visit(table, at);
    for (key, value) in table {
        at.push(Step::Key(key.clone()));
        walk_value(value, at, visit);
        at.pop();
    }
}

fn walk_value(value: &Value, at: &mut Vec<Step>, visit: &mut dyn FnMut(&Table, &[Step])) {
    match value {
        Value::Table(table) => walk(table, at, visit),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                walk_value(item, at, visit);
                at.pop();
            }
        }
        _ => {}
    }
}

/// The key path as problems name it: routes by name, issuers by issuer.
fn display(tree: &Table, steps: &[Step]) -> String {
    let mut text = String::new();
    let mut here = Some(Value::Table(tree.clone()));
    let mut parent_key = String::new();
    for step in steps {
        let next = match (step, here.as_ref()) {
            (Step::Key(key), Some(Value::Table(t))) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
                parent_key.clone_from(key);
                t.get(key).cloned()
            }
            (Step::Index(i), Some(Value::Array(items))) => {
                let item = items.get(*i).cloned();
                let named = |field: &str| {
                    item.as_ref()
                        .and_then(|v| v.get(field))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                let label = match parent_key.as_str() {
                    "routes" => route_key(*i, named("name").as_deref())
                        .trim_start_matches("routes")
                        .to_owned(),
                    "issuers" => named("issuer")
                        .filter(|n| !n.trim().is_empty())
                        .map_or_else(|| format!("[{i}]"), |n| format!("[{n:?}]")),
                    _ => format!("[{i}]"),
                };
                text.push_str(&label);
                item
            }
            _ => None,
        };
        here = next;
    }
    text
}

/// Removes the key at `steps` (which ends in a key).
fn remove(tree: &mut Table, steps: &[Step]) {
    fn within(value: &mut Value, steps: &[Step]) {
        match (steps, value) {
            ([Step::Key(key)], Value::Table(table)) => {
                table.remove(key);
            }
            ([Step::Key(key), rest @ ..], Value::Table(table)) => {
                if let Some(value) = table.get_mut(key) {
                    within(value, rest);
                }
            }
            ([Step::Index(i), rest @ ..], Value::Array(items)) => {
                if let Some(value) = items.get_mut(*i) {
                    within(value, rest);
                }
            }
            _ => {}
        }
    }
    let mut root = Value::Table(std::mem::take(tree));
    within(&mut root, steps);
    if let Value::Table(table) = root {
        *tree = table;
    }
}

/// The expected name closest to `name`, if it is close enough to be a typo.
fn closest(name: &str, expected: &[String]) -> Option<String> {
    expected
        .iter()
        .map(|e| (distance(name, e), e))
        .filter(|(d, e)| *d <= (e.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e.clone())
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests;
