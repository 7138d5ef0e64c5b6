//! Shared by the ops tests (`ops_*.rs`): where the repository is, reading its
//! YAML files, and running the external checkers they drive (promtool,
//! docker-compose, cargo-deny).
//!
//! A checker that is not installed is a test failure that says how to
//! install it, never a silent pass: CI installs them (see
//! `docs/containers.md`, "What CI verifies").

// Each test crate includes this file and uses a different subset of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use yaml_rust2::{Yaml, YamlLoader};

/// The repository root (the workspace folder above `tests/`).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one folder below the workspace root")
        .to_path_buf()
}

/// The text of a file in the repository, with its path in the panic message.
pub(crate) fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The single YAML document in a repository file.
pub(crate) fn load_yaml(relative: &str) -> Yaml {
    let text = read_repo_file(relative);
    let mut documents = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("{relative} is not valid YAML: {error}"));
    assert_eq!(
        documents.len(),
        1,
        "{relative} should hold one YAML document"
    );
    documents.remove(0)
}

/// The full path of `program` on `PATH`. Panics with `install` (the command
/// that installs it) when it is missing.
pub(crate) fn require_tool(program: &str, install: &str) -> PathBuf {
    find_on_path(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed (not found on PATH), so this check cannot run. \
             Install it with: {install}"
        )
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `program` with `args` in the repository root and returns what it did.
pub(crate) fn run_in_repo<I, S>(program: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(program, args, &repo_root())
}

/// Runs `program` with `args` in `dir` and returns what it did.
pub(crate) fn run_in<I, S>(program: &Path, args: I, dir: &Path) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()))
}

/// Panics with the command's output unless it exited with status 0.
pub(crate) fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Panics unless the command failed (exit status other than 0).
pub(crate) fn assert_failure(what: &str, output: &Output) {
    assert!(
        !output.status.success(),
        "{what} should have failed but succeeded.\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// `node[key]` as a string; panics naming `context` when it is not one.
pub(crate) fn str_at<'a>(node: &'a Yaml, key: &str, context: &str) -> &'a str {
    node[key]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: `{key}` should be a string, got {:?}", node[key]))
}

/// The strings of a YAML list (empty when the key is absent); panics on
/// anything else.
pub(crate) fn strings_at(node: &Yaml, key: &str, context: &str) -> Vec<String> {
    match &node[key] {
        Yaml::BadValue | Yaml::Null => Vec::new(),
        Yaml::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .unwrap_or_else(|| panic!("{context}: `{key}` holds a non-string {item:?}"))
                    .to_string()
            })
            .collect(),
        other => panic!("{context}: `{key}` should be a list, got {other:?}"),
    }
}

/// The keys of a YAML mapping, in file order.
pub(crate) fn keys_of(node: &Yaml, context: &str) -> Vec<String> {
    node.as_hash()
        .unwrap_or_else(|| panic!("{context} should be a mapping, got {node:?}"))
        .keys()
        .map(|key| {
            key.as_str()
                .unwrap_or_else(|| panic!("{context} has a non-string key {key:?}"))
                .to_string()
        })
        .collect()
}
