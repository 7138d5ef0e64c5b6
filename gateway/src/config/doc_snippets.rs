//! Every ```` ```toml ```` snippet in `README.md` and `docs/*.md` is a valid
//! policy, checked by the same validation as `check-config`.
//!
//! A snippet is either a whole policy (checked as it is) or, when its fence
//! reads ```` ```toml fragment ````, a piece of one: it is then laid over
//! a minimal valid policy (its tables' keys replace the policy's, its
//! `[[routes]]` replace the policy's routes) and the result checked.
//! Secrets named with `{ env = "…" }` are given 48 random-looking bytes;
//! files a snippet names must exist relative to the repository, except a
//! `static_files` root, which names a deployment's directory.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::tests::MINIMAL;
use super::Config;
use crate::checks::secret::Environment;

/// Every environment variable holds a long enough secret.
struct AnySecret;

impl Environment for AnySecret {
    fn var(&self, _name: &str) -> Option<String> {
        Some("documented-secret-of-forty-eight-bytes-0123456789".to_owned())
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(file:line, is_fragment, text)` of every TOML snippet.
fn snippets() -> Vec<(String, bool, String)> {
    let mut files = vec![repository().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repository().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut open: Option<(usize, bool, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let fence = line.trim_start();
            match &mut open {
                None => {
                    // A policy tests file (`check-config --tests`) is no
                    // policy: the explain CLI tests run it.
                    let info = fence.strip_prefix("```toml");
                    if let Some(info) = info.filter(|i| i.trim() != "policy-tests") {
                        open = Some((i + 1, info.trim() == "fragment", String::new()));
                    }
                }
                Some(_) if fence.starts_with("```") => {
                    let (at, fragment, body) = open.take().unwrap();
                    let name = file.file_name().unwrap().to_string_lossy();
                    found.push((format!("{name}:{at}"), fragment, body));
                }
                Some((_, _, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    found
}

/// A fragment laid over [`MINIMAL`].
fn over_minimal(fragment: &str) -> Result<String, String> {
    let mut policy: Table = MINIMAL.parse().unwrap();
    let piece: Table = fragment.parse().map_err(|e| format!("not TOML: {e}"))?;
    for (key, value) in piece {
        match (policy.get_mut(&key), value) {
            (Some(Value::Table(base)), Value::Table(table)) => base.extend(table),
            (_, value) => {
                policy.insert(key, value);
            }
        }
    }
    Ok(toml::to_string(&policy).unwrap())
}

fn check(fragment: bool, text: &str) -> Result<(), String> {
    let policy = if fragment {
        over_minimal(text)?
    } else {
        text.to_owned()
    };
    match Config::from_toml_with(&policy, &repository(), &AnySecret) {
        Ok(_) => Ok(()),
        Err(e) => {
            let problems: Vec<String> = e
                .problems()
                .into_iter()
                .filter(|p| {
                    !(p.contains(".static_files.root: ") && p.ends_with("is not a directory"))
                })
                .collect();
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("\n"))
            }
        }
    }
}

#[test]
fn every_toml_snippet_in_the_docs_is_a_valid_policy() {
    let snippets = snippets();
    assert!(snippets.len() >= 3, "{snippets:?}");
    let failures: Vec<String> = snippets
        .iter()
        .filter_map(|(at, fragment, text)| {
            check(*fragment, text)
                .err()
                .map(|e| format!("{at}: {e}\n{text}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_snippet_check_catches_a_wrong_key() {
    assert!(check(true, "[upstream]\nready_path = \"/api/health\"\n").is_ok());
    let wrong = check(true, "[upstream]\nready_pth = \"/api/health\"\n").unwrap_err();
    assert!(wrong.contains("did you mean `ready_path`"), "{wrong}");
    assert!(check(false, "[upstream]\nready_path = \"/api/health\"\n").is_err());
}
