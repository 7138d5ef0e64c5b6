//! The scripting examples of `docs/scripting.md` run as written: each
//! `examples/python/*.py` is executed with Python's `requests` against the
//! real stack (gateway over TLS with a test certificate, worker on its
//! socket), configured only through the environment variables the page
//! documents. `REQUESTS_CA_BUNDLE` is set to a path that does not exist, so
//! an example that relied on `Session.verify` instead of passing `verify=`
//! on each request would fail here.
//!
//! Python 3 with `requests` is installed by `scripts/test.sh`; a missing one
//! is a failure that says how to install it.

use std::process::Command;

use tradehabit_e2e::attack::Stack;
use tradehabit_e2e::policy::{api_key, api_keys_table, tokens_table};
use tradehabit_e2e::workspace_root;

const PEPPER: &str = "scripting-tests-pepper-0123456789abcdef";

const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
scopes = ["analyze"]
upload = {}
query = { sigma = { type = "float", min = 0.1, max = 5.0 } }

[[routes]]
name = "summary"
path = "/api/summary"
methods = ["GET"]
scopes = ["read"]

[[routes]]
name = "trades"
path = "/api/trades"
methods = ["GET"]
scopes = ["read"]

[[routes]]
name = "losses"
path = "/api/losses"
methods = ["GET"]
scopes = ["read"]
query = { sigma = { type = "float", min = 0.1, max = 5.0 }, symbol = { type = "string", max_length = 32 } }

[[routes]]
name = "settings"
path = "/api/settings"
methods = ["GET", "POST"]
scopes = ["settings"]
body_limit = 65536
content_types = ["application/json"]

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
rate_limit = { per_ip = ["5/second"] }
"#;

/// Runs one example; returns its output, panicking with it on failure.
fn run_example(name: &str, stack: &Stack, api_key: &str) -> String {
    let script = workspace_root().join("examples/python").join(name);
    let output = Command::new("python3")
        .arg(&script)
        // Anywhere but the repository root: paths must not be relative.
        .current_dir(stack.dir())
        .env(
            "TRADEHABIT_URL",
            format!("https://127.0.0.1:{}", stack.addr().port()),
        )
        .env("TRADEHABIT_CA_CERT", stack.dir().join("cert.pem"))
        .env("TRADEHABIT_API_KEY", api_key)
        .env("REQUESTS_CA_BUNDLE", "/nonexistent/ca-bundle.pem")
        .output()
        .expect("python3 is installed (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "a Python module is missing: pip install requests\n{text}"
    );
    assert!(output.status.success(), "{name} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_python_example_runs_against_the_real_stack() {
    let key = api_key(PEPPER, "script", &["read", "analyze", "settings"]);
    let entry = key.policy_entry.clone();
    let stack = Stack::start_with(
        move |dir| {
            let session = r#"{ enabled = true, scopes = ["read", "analyze", "settings"] }"#;
            format!(
                "{}\n{}",
                api_keys_table(dir, PEPPER, &[&entry]),
                tokens_table(dir, &"s".repeat(40), session, None)
            )
        },
        ROUTES,
    )
    .await;
    let examples = [
        ("upload_and_read.py", "uploaded:"),
        (
            "handle_errors.py",
            "every error had its code and request id",
        ),
        ("session.py", "another session: data.not_uploaded"),
        ("rate_limits.py", "RateLimit-Policy:"),
    ];
    let dir = workspace_root().join("examples/python");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".py") && name != "tradehabit.py")
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = examples
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    tested.sort();
    assert_eq!(on_disk, tested, "every example is run here");
    let key = key.key.clone();
    for (name, expected) in examples {
        let stack = &stack;
        let key = key.clone();
        let output = tokio::task::block_in_place(|| run_example(name, stack, &key));
        assert!(output.contains(expected), "{name}:\n{output}");
    }
    stack.stop().await;
}
