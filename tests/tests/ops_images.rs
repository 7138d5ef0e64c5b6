//! The container images, checked by reading: no container engine runs here
//! or in CI, so the Dockerfiles cannot be built in the test suite
//! (docs/containers.md says so). What reading can pin, this pins: the build
//! runs `cargo build --release --locked` on the official Rust image; the
//! gateway and worker stages run on distroless as uid 65532 with only their
//! binary copied in; the gateway's health check is the exec-form
//! `healthcheck` subcommand; the stages compose builds exist; the legacy
//! image serves the socket the policy forwards to; secrets stay out of the
//! build context.

#[path = "ops_support/tools.rs"]
mod tools;

use std::collections::BTreeMap;

use tools::{load_yaml, read_repo_file, str_at};

/// One instruction of a Dockerfile, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    arguments: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comment and blank lines are dropped, also inside a continuation.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        pending.push_str(trimmed.trim_end_matches('\\').trim_end());
        pending.push(' ');
        if !trimmed.ends_with('\\') {
            let joined = std::mem::take(&mut pending);
            let joined = joined.trim();
            let (keyword, arguments) = joined.split_once(' ').unwrap_or((joined, ""));
            instructions.push(Instruction {
                keyword: keyword.to_ascii_uppercase(),
                arguments: arguments.trim().to_string(),
            });
        }
    }
    instructions
}

/// The `ARG name=default` values declared before the first `FROM`.
fn global_args(instructions: &[Instruction]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .take_while(|instruction| instruction.keyword != "FROM")
        .filter(|instruction| instruction.keyword == "ARG")
        .filter_map(|instruction| instruction.arguments.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The build stages: name → (base image with ARG defaults substituted,
/// instructions after its FROM).
fn stages(instructions: &[Instruction]) -> BTreeMap<String, (String, Vec<Instruction>)> {
    let args = global_args(instructions);
    let mut stages = BTreeMap::new();
    let mut current: Option<(String, String, Vec<Instruction>)> = None;
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            if let Some((name, base, body)) = current.take() {
                stages.insert(name, (base, body));
            }
            let words: Vec<&str> = instruction.arguments.split_whitespace().collect();
            let (base, name) = match words.as_slice() {
                [base, as_, name] if as_.eq_ignore_ascii_case("as") => (*base, *name),
                _ => panic!(
                    "every stage should be named: FROM {}",
                    instruction.arguments
                ),
            };
            let mut base = base.to_string();
            for (arg, value) in &args {
                base = base.replace(&format!("${{{arg}}}"), value);
            }
            current = Some((name.to_string(), base, Vec::new()));
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push(instruction.clone());
        }
    }
    if let Some((name, base, body)) = current {
        stages.insert(name, (base, body));
    }
    stages
}

fn only<'a>(body: &'a [Instruction], keyword: &str, stage: &str) -> &'a Instruction {
    let found: Vec<&Instruction> = body.iter().filter(|i| i.keyword == keyword).collect();
    assert_eq!(
        found.len(),
        1,
        "stage {stage}: exactly one {keyword}, got {found:?}"
    );
    found[0]
}

#[test]
fn the_build_stage_compiles_both_binaries_locked_on_the_official_rust_image() {
    let instructions = parse_dockerfile(&read_repo_file("Dockerfile"));
    let stages = stages(&instructions);
    let (base, body) = stages.get("build").expect("a `build` stage");
    assert!(
        base.starts_with("rust:"),
        "build stage base `{base}` is not the official Rust image"
    );
    assert!(
        base.ends_with("-bookworm"),
        "build on Debian 12 like distroless cc-debian12: `{base}`"
    );
    let run = body
        .iter()
        .filter(|instruction| instruction.keyword == "RUN")
        .map(|instruction| instruction.arguments.as_str())
        .find(|run| run.contains("cargo build"))
        .expect("a RUN with cargo build");
    for required in [
        "cargo build --release --locked",
        "-p tradehabit-gateway",
        "-p tradehabit-worker",
    ] {
        assert!(
            run.contains(required),
            "the build step lacks `{required}`: {run}"
        );
    }
}

#[test]
fn runtime_stages_are_distroless_non_root_and_hold_only_their_binary() {
    let instructions = parse_dockerfile(&read_repo_file("Dockerfile"));
    let stages = stages(&instructions);
    // Each runtime stage gets its binary and the empty folders it needs as
    // mount points (/run/tradehabit, /var/lib/tradehabit/tls, owned by
    // 65532), and nothing else.
    let expected_destinations: [(&str, &str, &[&str]); 2] = [
        (
            "gateway",
            "tradehabit-gateway",
            &["/run/", "/var/lib/", "/tradehabit-gateway"],
        ),
        (
            "worker",
            "tradehabit-worker",
            &["/run/", "/tradehabit-worker"],
        ),
    ];
    for (stage, binary, destinations) in expected_destinations {
        let (base, body) = stages
            .get(stage)
            .unwrap_or_else(|| panic!("a `{stage}` stage"));
        assert!(
            base.starts_with("gcr.io/distroless/") && base.ends_with(":nonroot"),
            "stage {stage}: base `{base}` should be a distroless :nonroot image"
        );
        assert_eq!(
            only(body, "USER", stage).arguments,
            "65532:65532",
            "stage {stage}: USER"
        );
        assert!(
            body.iter().all(|instruction| instruction.keyword != "RUN"),
            "stage {stage}: no RUN (distroless has no shell)"
        );
        let copies: Vec<&str> = body
            .iter()
            .filter(|instruction| instruction.keyword == "COPY" || instruction.keyword == "ADD")
            .map(|instruction| instruction.arguments.as_str())
            .collect();
        for copy in &copies {
            assert!(
                copy.starts_with("--from=build"),
                "stage {stage}: copies only from build: {copy}"
            );
        }
        let copied_to: Vec<&str> = copies
            .iter()
            .map(|copy| copy.split_whitespace().last().unwrap_or_default())
            .collect();
        assert_eq!(
            copied_to, destinations,
            "stage {stage}: what the image holds of ours"
        );
        assert!(
            copies
                .iter()
                .any(|copy| copy.ends_with(&format!("/out/{binary} /{binary}"))),
            "stage {stage}: copies the {binary} binary"
        );
        assert_eq!(
            only(body, "ENTRYPOINT", stage).arguments,
            format!("[\"/{binary}\"]"),
            "stage {stage}: exec-form ENTRYPOINT"
        );
        assert!(
            only(body, "CMD", stage).arguments.starts_with('['),
            "stage {stage}: exec-form CMD"
        );
    }
}

#[test]
fn the_gateway_health_check_is_the_exec_form_healthcheck_subcommand() {
    let instructions = parse_dockerfile(&read_repo_file("Dockerfile"));
    let stages = stages(&instructions);
    let (_, body) = stages.get("gateway").expect("a gateway stage");
    let check = &only(body, "HEALTHCHECK", "gateway").arguments;
    let command = check
        .split_once("CMD ")
        .map(|(_, command)| command.trim())
        .expect("HEALTHCHECK ... CMD ...");
    assert_eq!(command, r#"["/tradehabit-gateway", "healthcheck"]"#);
    let exposed = &only(body, "EXPOSE", "gateway").arguments;
    assert!(!exposed.contains("9901"), "the admin port is never exposed");
}

#[test]
fn compose_builds_stages_that_exist_with_matching_commands() {
    let instructions = parse_dockerfile(&read_repo_file("Dockerfile"));
    let stages = stages(&instructions);
    let compose = load_yaml("compose.yaml");
    for service in ["gateway", "worker", "legacy-gateway"] {
        let build = &compose["services"][service]["build"];
        assert_eq!(
            str_at(build, "dockerfile", service),
            "Dockerfile",
            "{service}"
        );
        let target = str_at(build, "target", service);
        assert!(
            stages.contains_key(target),
            "{service}: no stage `{target}`"
        );
    }
}

#[test]
fn the_legacy_image_serves_the_socket_the_policy_forwards_to() {
    let instructions = parse_dockerfile(&read_repo_file("deploy/legacy/Dockerfile"));
    let user = instructions
        .iter()
        .rfind(|instruction| instruction.keyword == "USER")
        .expect("a USER");
    assert_eq!(
        user.arguments, "65532:65532",
        "legacy runs as the gateway's uid"
    );
    let cmd = instructions
        .iter()
        .rfind(|instruction| instruction.keyword == "CMD")
        .expect("a CMD");
    // The policy the legacy profile's gateway runs (compose.yaml).
    let policy: toml::Table = read_repo_file("deploy/legacy-policy/gateway.toml")
        .parse()
        .expect("the policy parses");
    let upstream = policy["upstream"]["address"]
        .as_str()
        .expect("upstream.address");
    assert!(
        cmd.arguments
            .contains(&format!("\"--bind\", \"{upstream}\"")),
        "gunicorn should bind {upstream}: {}",
        cmd.arguments
    );
    assert!(
        cmd.arguments.contains("\"--workers\", \"1\""),
        "one gunicorn worker (H-2)"
    );
}

#[test]
fn secrets_and_build_output_stay_out_of_the_build_context() {
    let ignored: Vec<String> = read_repo_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect();
    for required in ["deploy/secrets/", "target/", ".git/"] {
        assert!(
            ignored.iter().any(|line| line == required),
            ".dockerignore lacks {required}"
        );
    }
}

#[test]
fn the_dockerfile_parser_joins_continuations_and_names_stages() {
    let parsed = parse_dockerfile(
        "# comment\nARG BASE=img:1\nFROM ${BASE} AS one\nRUN a \\\n  # inside\n  && b\nUSER 1:1\n",
    );
    let stages = stages(&parsed);
    let (base, body) = &stages["one"];
    assert_eq!(base, "img:1");
    assert_eq!(body[0].keyword, "RUN");
    assert_eq!(body[0].arguments, "a && b");
    assert_eq!(body[1].arguments, "1:1");
}
