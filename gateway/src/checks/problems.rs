//! Configuration problems, collected so that one run reports them all.
//!
//! Validation never stops at the first mistake: each `validate` function
//! pushes every problem it finds with the key path where it sits
//! (`auth.jwt.issuers[0].algorithms`), and the caller refuses the file if
//! any were found.

use std::fmt;
use std::path::Path;

/// One problem: where in the file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, with `[i]` for array elements.
    pub path: String,
    /// What is wrong, in operator terms.
    pub message: String,
}

/// The problems found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.0.push(Problem {
            path: path.to_string(),
            message: message.to_string(),
        });
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    /// Whether some problem sits at exactly `path` (used by tests).
    pub fn has(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.path == path)
    }
}

/// A path as an operator should look for it: absolute (relative paths are
/// resolved against the working directory).
pub fn shown_path(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// An I/O error in plain words, without the `(os error N)` suffix.
pub fn io_text(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "no such file".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::IsADirectory => "it is a directory".to_owned(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_owned(),
                None => text,
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Joins a key path and a child key: `join("auth", "jwt")` → `auth.jwt`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Indexes a key path: `index("keys", 2)` → `keys[2]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_problem_with_its_path() {
        let mut problems = Problems::new();
        problems.push(index(&join("auth.jwt", "issuers"), 0), "first");
        problems.push("cors.max_age_seconds", "second");
        assert_eq!(problems.len(), 2);
        assert!(problems.has("auth.jwt.issuers[0]"));
        assert_eq!(
            problems.to_string(),
            "auth.jwt.issuers[0]: first\ncors.max_age_seconds: second"
        );
    }
}
