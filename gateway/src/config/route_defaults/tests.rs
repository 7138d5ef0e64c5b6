use crate::checks::auth::AuthMode;
use crate::config::tests::MINIMAL;
use crate::config::Config;

const DEFAULTS: &str = r#"
[route_defaults]
methods = ["GET"]
body_limit = 1024
scopes = ["read"]
rate_limit = { per_ip = ["120/minute"], per_principal = ["60/minute"] }
content_types = []
"#;

fn policy(routes: &str) -> String {
    format!("{MINIMAL}\n{DEFAULTS}\n{routes}").replace(
        "[[routes]]\nname = \"health\"\npath = \"/api/health\"\nmethods = [\"GET\"]\n",
        "[[routes]]\nname = \"health\"\npath = \"/api/health\"\nauth = \"none\"\n",
    )
}

fn problems(text: &str) -> Vec<String> {
    Config::from_toml(text).unwrap_err().problems()
}

#[test]
fn routes_inherit_every_key_they_do_not_set() {
    let text = policy(
        "[[routes]]\nname = \"summary\"\npath = \"/api/summary\"\n\n\
         [[routes]]\nname = \"big\"\npath = \"/api/big\"\nbody_limit = 4096\nmethods = [\"POST\"]\n",
    );
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    let summary = &config.routes[1];
    assert_eq!(summary.name, "summary");
    assert_eq!(summary.methods, [http::Method::GET]);
    assert_eq!(summary.body_limit, 1024);
    assert_eq!(summary.checks.scopes, ["read"]);
    assert_eq!(summary.checks.content_types, Some(Vec::new()));
    assert_eq!(summary.checks.quotas.per_ip.len(), 1);
    assert_eq!(summary.checks.quotas.per_principal.len(), 1);
    let big = &config.routes[2];
    assert_eq!(big.body_limit, 4096);
    assert_eq!(big.methods, [http::Method::POST]);
    assert_eq!(big.checks.scopes, ["read"]);
    // The open route keeps no inherited scopes (that would be a mistake).
    let health = &config.routes[0];
    assert_eq!(health.checks.auth, AuthMode::None);
    assert!(health.checks.scopes.is_empty());
}

#[test]
fn json_and_upload_routes_keep_their_own_body_type() {
    let text = policy(
        "[[routes]]\nname = \"goals\"\npath = \"/api/goals/calculate\"\nmethods = [\"POST\"]\n\
         json = { max_depth = 8 }\n",
    );
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.routes[1].checks.content_types,
        Some(vec!["application/json".to_owned()])
    );
}

#[test]
fn paths_give_several_paths_one_policy() {
    let text = policy(
        "[[routes]]\nname = \"reads\"\npaths = [\"/api/trades\", \"/api/losses\"]\n\
         query = { sigma = { type = \"float\", min = 0.1, max = 5.0 } }\n",
    );
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    let reads: Vec<_> = config.routes.iter().filter(|r| r.name == "reads").collect();
    let paths: Vec<_> = reads.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/api/trades", "/api/losses"]);
    assert_eq!(reads[0].checks, reads[1].checks);
    // Each path counts on its own, as separate routes would: the
    // rate-limit buckets are keyed by route name and path
    // (`state/rate_limits.rs`).
    assert_ne!(reads[0].path, reads[1].path);
}

#[test]
fn a_bad_shared_policy_is_reported_once_under_the_route_name() {
    let text =
        policy("[[routes]]\nname = \"reads\"\npaths = [\"/api/a\", \"/api/b\"]\nbody_limit = 0\n");
    let found = problems(&text);
    let body: Vec<_> = found
        .iter()
        .filter(|p| p.starts_with("routes[\"reads\"].body_limit"))
        .collect();
    assert_eq!(body.len(), 1, "{found:#?}");
}

#[test]
fn misplaced_paths_and_defaults_are_refused() {
    let text = policy(
        "[[routes]]\nname = \"both\"\npath = \"/a\"\npaths = [\"/b\"]\n\n\
         [[routes]]\nname = \"none\"\npaths = []\n",
    )
    .replace("[route_defaults]\n", "[route_defaults]\npath = \"/x\"\n");
    let found = problems(&text);
    for expected in [
        "route_defaults.path: is set per route",
        "routes[\"both\"].paths: set either `path` or `paths`",
        "routes[\"none\"].paths: must list at least one path",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected:?} missing from {found:#?}"
        );
    }
}

#[test]
fn a_name_is_shared_only_by_the_paths_of_one_entry() {
    let text = policy(
        "[[routes]]\nname = \"x\"\npath = \"/a\"\n\n[[routes]]\nname = \"x\"\npath = \"/b\"\n",
    );
    assert!(problems(&text)
        .iter()
        .any(|p| p.starts_with("routes[\"x\"].name: `x` is used by an earlier route")));
}
