use super::*;
use crate::host::{Name, ServerNames};

/// The smallest valid policy.
pub(crate) const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8443"

[tls]
cert = "cert.pem"
key = "key.pem"

[upstream]
address = "unix:/run/tradehabit/worker.sock"

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
"#;

/// [`MINIMAL`], validated: every unset value at its default.
pub(crate) fn minimal() -> Config {
    Config::from_toml(MINIMAL).unwrap()
}

#[test]
fn defaults_are_the_documented_constants() {
    let config = minimal();
    assert_eq!(config.server.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert!(config.server.trusted_proxies.is_empty());
    assert!(config.plain_http.is_none());
    assert_eq!(
        config.limits.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT
    );
    assert_eq!(config.limits.max_header_count, 100);
    assert_eq!(config.limits.max_header_field_bytes, 8190);
    assert_eq!(config.limits.max_request_line_bytes, 4094);
    assert_eq!(config.headers.hsts, "max-age=63072000; includeSubDomains");
    assert_eq!(
        config.upstream.address,
        UpstreamAddress::Unix("/run/tradehabit/worker.sock".into())
    );
    assert!(config.upstream.replace_error_bodies);
    let route = &config.routes[0];
    assert_eq!(route.path_match, PathMatch::Exact);
    assert_eq!(route.body_limit, DEFAULT_ROUTE_BODY_LIMIT);
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let text = r#"
[server]
listen = "localhost"
shutdown_timeout = "soon"
trusted_proxies = ["10.0.0.0/99"]

[limits]
max_header_count = 0
idle_timeout = "0s"

[headers]
hsts_max_age = 600
hsts_preload = true

[upstream]
address = "ftp://x"

[[routes]]
name = "a"
path = "/api/../x"
match = "glob"
methods = ["get", "TRACE"]
body_limit = 0

[[routes]]
name = "a"
path = "/b"
methods = []
"#;
    let problems = Config::from_toml(text).unwrap_err().problems();
    let expected = [
        "server.listen:",
        "server.shutdown_timeout:",
        "server.trusted_proxies[0]:",
        "tls: missing table",
        "limits.max_header_count:",
        "limits.idle_timeout: must be longer than 0",
        "headers.hsts_preload:",
        "upstream.address:",
        "routes[\"a\"].path:",
        "routes[\"a\"].match:",
        "routes[\"a\"].methods[0]:",
        "routes[\"a\"].methods[1]: `TRACE` is never forwarded",
        "routes[\"a\"].body_limit: must be > 0",
        "routes[\"a\"].methods: must list at least one method",
        "routes[\"a\"].name: `a` is used by an earlier route",
    ];
    for prefix in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let text = format!("{MINIMAL}\n[limits]\nheader_timeout = \"5s\"\n");
    let error = Config::from_toml(&text).unwrap_err().to_string();
    assert!(error.contains("header_timeout"), "{error}");
    let text = MINIMAL.replace(
        "methods = [\"GET\"]",
        "methods = [\"GET\"]\nauthentication = \"none\"",
    );
    let error = Config::from_toml(&text).unwrap_err().to_string();
    assert!(error.contains("authentication"), "{error}");
}

#[test]
fn upstream_addresses() {
    let parse = |address: &str| {
        let text = MINIMAL.replace("unix:/run/tradehabit/worker.sock", address);
        Config::from_toml(&text).map(|c| c.upstream.address)
    };
    assert_eq!(
        parse("http://127.0.0.1:8000").unwrap(),
        UpstreamAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 8000
        }
    );
    assert_eq!(
        parse("http://[::1]:8000/").unwrap(),
        UpstreamAddress::Tcp {
            host: "::1".into(),
            port: 8000
        }
    );
    assert_eq!(
        parse("http://backend").unwrap(),
        UpstreamAddress::Tcp {
            host: "backend".into(),
            port: 80
        }
    );
    for bad in [
        "unix:relative.sock",
        "http://user@host:1",
        "http://host:1/path",
        "https://host:1",
        "host:1",
    ] {
        assert!(parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn spawn_needs_a_unix_upstream_and_a_command() {
    let text = format!("{MINIMAL}\n[upstream.spawn]\ncommand = []\n")
        .replace("unix:/run/tradehabit/worker.sock", "http://127.0.0.1:1");
    let problems = Config::from_toml(&text).unwrap_err().problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("upstream.spawn: needs a `unix:`")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("upstream.spawn.command")),
        "{problems:?}"
    );
}

#[test]
fn restart_only_settings_are_named() {
    let a = minimal();
    let b = Config::from_toml(&MINIMAL.replace("8443", "9443")).unwrap();
    assert_eq!(a.restart_only_changes(&b), ["server.listen"]);
    let c = Config::from_toml(&MINIMAL.replace("/api/health", "/api/other")).unwrap();
    assert!(a.restart_only_changes(&c).is_empty());
}

#[test]
fn admin_and_audit_default_to_loopback_stdout_and_no_key() {
    let config = minimal();
    assert_eq!(config.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert_eq!(
        config.admin.ready_probe_interval,
        DEFAULT_READY_PROBE_INTERVAL
    );
    assert_eq!(config.upstream.ready_path, DEFAULT_READY_PATH);
    assert_eq!(config.audit.output, AuditOutput::Stdout);
    assert!(!config.audit.hash_chain);
    assert!(config.audit.pseudonym_key.is_none());
    assert_eq!(config.audit.on_failure, DEFAULT_AUDIT_ON_FAILURE);
    assert_eq!(config.audit.on_failure, AuditOnFailure::Refuse);
    assert_eq!(
        config.audit.failure_log_interval,
        DEFAULT_AUDIT_FAILURE_LOG_INTERVAL
    );
}

#[test]
fn audit_on_failure_is_validated_and_reloads_without_a_restart() {
    let with = |table: &str| format!("{MINIMAL}\n[audit]\n{table}\n");
    let go_on = Config::from_toml(&with("on_failure = \"continue\"")).unwrap();
    assert_eq!(go_on.audit.on_failure, AuditOnFailure::Continue);
    assert!(minimal().restart_only_changes(&go_on).is_empty());
    let slower = Config::from_toml(&with("failure_log_interval = \"5m\"")).unwrap();
    assert_eq!(slower.audit.failure_log_interval.as_secs(), 300);
    assert_eq!(
        minimal().restart_only_changes(&slower),
        ["audit (all but on_failure)"]
    );
    let text = with("on_failure = \"ignore\"\nfailure_log_interval = \"0s\"");
    let problems = Config::from_toml(&text).unwrap_err().problems();
    for key in ["audit.on_failure:", "audit.failure_log_interval:"] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key}: {problems:?}"
        );
    }
}

#[test]
fn audit_flush_interval_defaults_to_1ms_allows_0s_and_at_most_1s() {
    let with = |table: &str| format!("{MINIMAL}\n[audit]\n{table}\n");
    assert_eq!(
        minimal().audit.flush_interval,
        crate::config::DEFAULT_AUDIT_FLUSH_INTERVAL
    );
    assert_eq!(minimal().audit.flush_interval.as_millis(), 1);
    let off = Config::from_toml(&with("flush_interval = \"0s\"")).unwrap();
    assert!(off.audit.flush_interval.is_zero());
    assert_eq!(
        minimal().restart_only_changes(&off),
        ["audit (all but on_failure)"]
    );
    for bad in ["\"2s\"", "\"soon\""] {
        let problems = Config::from_toml(&with(&format!("flush_interval = {bad}")))
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("audit.flush_interval:")),
            "{bad}: {problems:?}"
        );
    }
}

#[test]
fn audit_problems_are_reported_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, "tooshort").unwrap();
    let text = format!(
        "{MINIMAL}\n[admin]\nlisten = \"nowhere\"\n\n[audit]\noutput = \"relative.log\"\n\
         pseudonym_key = {{ file = \"{}\" }}\n",
        short.display()
    );
    let problems = Config::from_toml(&text).unwrap_err().problems();
    for key in ["admin.listen:", "audit.output:", "audit.pseudonym_key:"] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key}: {problems:?}"
        );
    }
    assert!(!problems.iter().any(|p| p.contains("tooshort")));
}

#[test]
fn a_pseudonym_key_file_is_read_and_never_debug_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.key");
    std::fs::write(&path, "0123456789abcdef-secret\n").unwrap();
    let text = format!(
        "{MINIMAL}\n[audit]\npseudonym_key = {{ file = \"{}\" }}\nhash_chain = true\n",
        path.display()
    );
    let config = Config::from_toml(&text).unwrap();
    let key = config.audit.pseudonym_key.as_ref().unwrap();
    assert_eq!(key.0, b"0123456789abcdef-secret");
    assert!(!format!("{config:?}").contains("secret"));
}

/// The two shipped policies: the strict example, and the legacy-compatible
/// one with the same endpoints, no credentials, the legacy backend's
/// readiness path, quotas its users never reach and its upload wording.
#[test]
fn the_strict_and_the_legacy_policies_are_valid() {
    use crate::checks::auth::AuthMode;
    use crate::checks::upload::UploadMessages;
    let strict = Config::from_toml(include_str!("../../../config/gateway.example.toml"))
        .expect("the strict example is valid");
    assert!(strict
        .routes
        .iter()
        .all(|r| r.name == "health" || r.checks.auth == AuthMode::Required));
    assert_eq!(strict.routes.len(), 16);
    assert_eq!(strict.upstream.ready_path, DEFAULT_READY_PATH);

    let legacy = Config::from_toml(include_str!("../../../config/gateway.legacy.toml"))
        .unwrap_or_else(|e| panic!("the legacy policy is invalid: {e}"));
    assert!(legacy
        .routes
        .iter()
        .all(|r| r.checks.auth == AuthMode::None));
    assert_eq!(legacy.upstream.ready_path, "/api/health");
    let analyze = legacy.routes.iter().find(|r| r.name == "analyze").unwrap();
    let upload = analyze.checks.upload.as_ref().unwrap();
    assert_eq!(upload.messages(), UploadMessages::Legacy);
    // 60 analyses a minute from one address: the legacy API suite passes.
    let per_minute = analyze.checks.quotas.per_ip[0].to_string();
    assert!(per_minute.starts_with("60/"), "{per_minute}");
    // The same endpoints, nothing more (the mentor routes stay unrouted).
    let endpoints = |config: &Config| {
        let mut list: Vec<_> = config
            .routes
            .iter()
            .map(|r| (r.path.clone(), r.methods.clone()))
            .collect();
        list.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        list
    };
    assert_eq!(endpoints(&legacy), endpoints(&strict));
}

#[test]
fn policy_check_problems_are_reported_with_their_key_paths() {
    let text = r#"
[server]
listen = "127.0.0.1:8443"
trusted_proxies = ["0.0.0.0/0"]

[tls]
cert = "cert.pem"
key = "key.pem"

[upstream]
address = "unix:/run/tradehabit/worker.sock"

[cors]
allowed_origins = ["null"]

[api_keys]
keys = [{ id = "a", hash = "zz" }]

[[jwt.issuers]]
issuer = "https://idp.example/"
algorithms = ["none"]

[tokens]
session = { enabled = true }

[rate_limit]
max_tracked_keys = 0

[[routes]]
name = "upload"
path = "/api/analyze"
methods = ["POST"]
body_limit = 1000
auth = "none"
scopes = ["analyze"]
upload = {}
content_types = ["application/json"]
rate_limit = { per_ip = ["5/minutes"] }
query = { a = { type = "int" } }

[[routes]]
name = "session"
path = "/auth/session"
methods = ["POST"]
"#;
    let problems = Config::from_toml(text).unwrap_err().problems();
    let expected = [
        "cors.allowed_origins[0]:",
        "api_keys.pepper:",
        "api_keys.keys[0].hash:",
        "jwt.issuers[\"https://idp.example/\"].audiences:",
        "jwt.issuers[\"https://idp.example/\"].algorithms[0]: \"none\" is not allowed",
        "tokens.secret:",
        "rate_limit.max_tracked_keys:",
        "server.trusted_proxies[0]:",
        "routes[\"upload\"].scopes: a route with auth = \"none\"",
        "routes[\"upload\"].content_types: an upload route must accept multipart/form-data",
        "routes[\"upload\"].body_limit: must be at least",
        "routes[\"upload\"].rate_limit.per_ip[0]:",
        "routes[\"upload\"].query.a.type:",
    ];
    for prefix in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in {problems:#?}"
        );
    }
    // Routes are still checked when a global section is broken.
    assert!(
        !problems
            .iter()
            .any(|p| p.starts_with("routes[\"session\"].path")),
        "sessions failed validation, so /auth/session is not reserved: {problems:#?}"
    );
}

#[test]
fn the_session_endpoint_path_is_reserved_while_enabled() {
    let env: std::collections::HashMap<String, String> =
        [("SECRET".to_owned(), "s".repeat(32))].into();
    let text = format!(
        "{MINIMAL}\n[[routes]]\nname = \"s\"\npath = \"/auth/session\"\nmethods = [\"POST\"]\n"
    )
    .replace(
        "[[routes]]\nname = \"health\"",
        "[tokens]\nsecret = { env = \"SECRET\" }\nsession = { enabled = true }\n\n[[routes]]\nname = \"health\"",
    );
    let problems = Config::from_toml_with(&text, Path::new("."), &env)
        .unwrap_err()
        .problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("routes[\"s\"].path: /auth/session is served by the gateway"));
}

#[test]
fn secrets_come_from_the_given_environment_and_files_next_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pepper"), format!("{}\n", "p".repeat(40))).unwrap();
    let pepper = crate::checks::secret::Secret::new("p".repeat(40).into_bytes());
    let key = crate::checks::api_key::keygen(&pepper, "ci", &[], &mut rand::rngs::OsRng).unwrap();
    let text = format!(
        "{MINIMAL}\n[api_keys]\npepper = {{ file = \"pepper\" }}\nkeys = [{}]\n",
        key.policy_entry
    )
    .replace("[[routes]]\nname = \"health\"", "")
    .replace("path = \"/api/health\"\nmethods = [\"GET\"]", "");
    let text = format!(
        "{text}\n[[routes]]\nname = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\n"
    );
    let env = std::collections::HashMap::new();
    let config = Config::from_toml_with(&text, dir.path(), &env).unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(config
        .checks
        .auth
        .api_keys()
        .check(key.key.as_bytes(), now)
        .is_ok());
    // The same text, read from another directory, finds no pepper.
    let elsewhere = tempfile::tempdir().unwrap();
    let problems = Config::from_toml_with(&text, elsewhere.path(), &env)
        .unwrap_err()
        .problems();
    assert!(
        problems[0].starts_with("api_keys.pepper.file: cannot read"),
        "{problems:?}"
    );
}

#[test]
fn compressed_body_is_off_by_default_and_validated_per_route() {
    assert_eq!(minimal().routes[0].compressed_body, None);
    let allowed = MINIMAL.replace(
        "methods = [\"GET\"]",
        "methods = [\"GET\"]\ncompressed_body = { encodings = [\"gzip\"], max_decoded_bytes = 4096 }",
    );
    let config = Config::from_toml(&allowed).unwrap();
    assert_eq!(
        config.routes[0].compressed_body,
        Some(CompressedBody {
            encodings: vec![Encoding::Gzip],
            max_decoded_bytes: 4096,
        })
    );

    let bad = MINIMAL.replace(
        "methods = [\"GET\"]",
        "methods = [\"GET\"]\ncompressed_body = { encodings = [\"br\"], max_decoded_bytes = -1 }",
    );
    let error = Config::from_toml(&bad).unwrap_err().to_string();
    assert!(
        error.contains(
            "routes[\"health\"].compressed_body.encodings[0]: `br` is not a supported encoding"
        ),
        "{error}"
    );
    assert!(
        error.contains("routes[\"health\"].compressed_body.max_decoded_bytes: must be > 0"),
        "{error}"
    );

    let unknown = MINIMAL.replace(
        "methods = [\"GET\"]",
        "methods = [\"GET\"]\ncompressed_body = { encodings = [\"gzip\"], max_decoded_bytes = 1, max_ratio = 10 }",
    );
    let error = Config::from_toml(&unknown).unwrap_err().to_string();
    assert!(error.contains("max_ratio"), "{error}");
}

#[test]
fn server_names_and_underscore_headers_are_validated() {
    let config = minimal();
    assert_eq!(config.limits.underscore_headers, DEFAULT_UNDERSCORE_HEADERS);
    assert_eq!(config.server.names, ServerNames::new(None));

    let listed = MINIMAL.replace(
        "[server]\n",
        "[server]\nnames = [\"App.Example.com.\", \"[::1]\", \"192.0.2.7\"]\n",
    );
    let config = Config::from_toml(&format!(
        "{listed}\n[limits]\nunderscore_headers = \"refuse\"\n"
    ))
    .unwrap();
    assert_eq!(config.limits.underscore_headers, UnderscoreHeaders::Refuse);
    let expected = ["app.example.com", "::1", "192.0.2.7"].map(|n| Name::parse(n).unwrap());
    assert_eq!(
        config.server.names,
        ServerNames::new(Some(expected.to_vec()))
    );

    let bad = MINIMAL.replace(
        "[server]\n",
        "[server]\nnames = [\"*.example.com\", \"a.example:443\", \"x.example\", \"X.example\"]\n",
    );
    let problems = Config::from_toml(&format!(
        "{bad}\n[limits]\nunderscore_headers = \"allow\"\n"
    ))
    .unwrap_err()
    .problems();
    for key in [
        "server.names[0]:",
        "server.names[1]:",
        "server.names[3]: `X.example` is listed twice",
        "limits.underscore_headers:",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{key}: {problems:?}"
        );
    }
    let empty = MINIMAL.replace("[server]\n", "[server]\nnames = []\n");
    assert!(Config::from_toml(&empty).is_err());
}

#[test]
fn the_certificate_must_cover_the_listed_names_and_the_redirect_host() {
    let certificate = rcgen::generate_simple_self_signed(vec!["*.example.com".to_owned()]).unwrap();
    let leaf = certificate.cert.der();
    let policy = |names: &str, redirect: &str| {
        let text = MINIMAL.replace("[server]\n", &format!("[server]\n{names}\n"));
        let text = format!("{text}\n[plain_http]\nlisten = \"127.0.0.1:8080\"\n{redirect}\n");
        Config::from_toml(&text).unwrap()
    };
    let mut covered = policy(
        "names = [\"app.example.com\"]",
        "redirect_host = \"app.example.com\"",
    );
    covered.adopt_certificate(leaf).unwrap();
    let served =
        |config: &Config, host: &str| config.server.names.serves(&Name::parse(host).unwrap());
    assert!(served(&covered, "app.example.com"));
    assert!(!served(&covered, "www.example.com"));

    let mut by_default = policy("", "");
    by_default.adopt_certificate(leaf).unwrap();
    assert!(served(&by_default, "www.example.com"));
    assert!(!served(&by_default, "example.com"));

    let mut uncovered = policy("names = [\"example.com\", \"app.example.com\"]", "");
    let problems = uncovered.adopt_certificate(leaf).unwrap_err();
    assert_eq!(
        problems,
        ["server.names: the certificate (tls.cert) is not valid for `example.com`"]
    );
    let mut redirect_elsewhere = policy(
        "names = [\"app.example.com\"]",
        "redirect_host = \"www.example.com\"",
    );
    let problems = redirect_elsewhere.adopt_certificate(leaf).unwrap_err();
    assert!(
        problems[0].starts_with("plain_http.redirect_host:"),
        "{problems:?}"
    );
}

#[test]
fn server_threads_default_to_one_per_core_are_bounded_and_need_a_restart() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(DEFAULT_SERVER_THREADS, 0);
    assert_eq!(minimal().server.threads, cores.min(MAX_SERVER_THREADS));
    let with = |threads: &str| {
        Config::from_toml(&MINIMAL.replace(
            "listen = \"127.0.0.1:8443\"",
            &format!("listen = \"127.0.0.1:8443\"\nthreads = {threads}"),
        ))
    };
    assert_eq!(with("3").unwrap().server.threads, 3);
    for bad in ["-1", "257"] {
        let error = with(bad).unwrap_err().to_string();
        assert!(error.contains("server.threads"), "{bad}: {error}");
    }
    let other = (cores.min(MAX_SERVER_THREADS - 1) + 1).to_string();
    assert_eq!(
        minimal().restart_only_changes(&with(&other).unwrap()),
        ["server.threads"]
    );
}

#[test]
fn serve_openapi_is_get_only_and_other_values_are_refused() {
    let route = |serve: &str, methods: &str| {
        format!(
            "{MINIMAL}\n[[routes]]\nname = \"doc\"\npath = \"/api/openapi.json\"\nmethods = {methods}\nauth = \"none\"\nserve = \"{serve}\"\n"
        )
    };
    let config = Config::from_toml(&route("openapi", "[\"GET\"]")).expect("valid");
    assert_eq!(config.routes[1].serve, super::Serve::OpenApi);
    let problems = Config::from_toml(&route("openapi", "[\"GET\", \"POST\"]"))
        .unwrap_err()
        .problems();
    assert!(
        problems[0].starts_with(r#"routes["doc"].serve: `openapi` routes take"#),
        "{problems:#?}"
    );
    let problems = Config::from_toml(&route("files", "[\"GET\"]"))
        .unwrap_err()
        .problems();
    assert!(
        problems[0].starts_with(r#"routes["doc"].serve: `files` is not"#),
        "{problems:#?}"
    );
}
