//! Policy tables the end-to-end tests share: API keys made with the
//! gateway's own keygen, the `[api_keys]` and `[tokens]` tables with their
//! secrets written as files next to the policy, the audit log in a file,
//! and a static app directory for the static-files route kind.

use std::path::Path;

use tradehabit_gateway::checks::api_key::{keygen, GeneratedKey};
use tradehabit_gateway::checks::secret::Secret;

/// A new API key for `principal` with `scopes`, under `pepper`: the key a
/// client sends and the entry the policy lists.
pub fn api_key(pepper: &str, principal: &str, scopes: &[&str]) -> GeneratedKey {
    let pepper = Secret::new(pepper.as_bytes().to_vec());
    let scopes: Vec<String> = scopes.iter().map(|scope| scope.to_string()).collect();
    keygen(&pepper, principal, &scopes, &mut rand::rngs::OsRng).expect("keygen")
}

/// The `[api_keys]` table listing `entries` (policy entries of
/// [`api_key`]), its pepper written to `dir/pepper`.
pub fn api_keys_table(dir: &Path, pepper: &str, entries: &[&str]) -> String {
    std::fs::write(dir.join("pepper"), pepper).expect("write the pepper");
    format!(
        "[api_keys]\npepper = {{ file = \"pepper\" }}\nkeys = [{}]\n",
        entries.join(", ")
    )
}

/// The `[tokens]` table: its signing secret written to `dir/token_secret`,
/// `session` and (when given) `cookie` as inline TOML tables.
pub fn tokens_table(dir: &Path, secret: &str, session: &str, cookie: Option<&str>) -> String {
    std::fs::write(dir.join("token_secret"), secret).expect("write the token secret");
    let cookie = cookie.map_or(String::new(), |cookie| format!("cookie = {cookie}\n"));
    format!("[tokens]\nsecret = {{ file = \"token_secret\" }}\nsession = {session}\n{cookie}")
}

/// The `[audit]` table writing to `dir/audit.log` (what
/// `attack::Stack::audit_lines` reads).
pub fn audit_to_file(dir: &Path) -> String {
    format!(
        "[audit]\noutput = \"{}\"\n",
        dir.join("audit.log").display()
    )
}

/// Writes `files` (paths relative to the app root) under `dir/app`, the
/// root of a `static_files = { root = "app" }` route.
pub fn write_app(dir: &Path, files: &[(&str, &[u8])]) {
    let app = dir.join("app");
    for (name, content) in files {
        let path = app.join(name);
        std::fs::create_dir_all(path.parent().expect("a file in the app"))
            .expect("create the app directory");
        std::fs::write(&path, content).expect("write an app file");
    }
}
