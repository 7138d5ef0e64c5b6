//! `[api_keys] keys_file`: API key entries kept in a file of their own, so
//! `keygen --append` can add one without rewriting the policy. The file
//! holds `[[keys]]` tables with the same fields as the entries of
//! `[api_keys] keys`; both lists together are the key set, and a reload
//! (`SIGHUP`) reads the file again (`docs/configuration.md`, "API keys").

use std::io::Write as _;
use std::path::Path;

use serde::Deserialize;

use super::ApiKeyRaw;
use crate::checks::problems::{join, Problems};
use crate::checks::secret::LoadContext;

/// The keys file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<ApiKeyRaw>,
}

/// The entries of the keys file `file` (relative to the policy file),
/// reported at `path.keys_file` when it cannot be read or parsed.
pub(super) fn load(
    file: &str,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Vec<ApiKeyRaw> {
    let key = join(path, "keys_file");
    let resolved = ctx.resolve(Path::new(file));
    let text = match std::fs::read_to_string(&resolved) {
        Ok(text) => text,
        Err(error) => {
            problems.push(key, format!("cannot read {}: {error}", resolved.display()));
            return Vec::new();
        }
    };
    match toml::from_str::<KeysFile>(&text) {
        Ok(parsed) => parsed.keys,
        Err(error) => {
            let message = error.message().to_owned();
            problems.push(
                key,
                format!(
                    "{}: not a file of [[keys]] tables: {message}",
                    resolved.display()
                ),
            );
            Vec::new()
        }
    }
}

/// One `[[keys]]` table for the keys file.
pub(super) fn entry(id: &str, hash: &str, scopes: &[String]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[keys]]\nid = \"{id}\"\nhash = \"{hash}\"\nscopes = [{}]\n",
        scopes.join(", ")
    )
}

/// Appends `entry` to the keys file at `file`, after a blank line; the file
/// must exist (the policy names it, so a typo is not silently a new file).
pub fn append(file: &Path, entry: &str) -> std::io::Result<()> {
    let mut opened = std::fs::OpenOptions::new().append(true).open(file)?;
    let text = format!("\n{entry}");
    opened.write_all(text.as_bytes())?;
    opened.sync_all()
}
