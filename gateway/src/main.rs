//! `tradehabit-gateway`: start-up only. Parse the command line, set up
//! logging, load the policy, run until SIGTERM or Ctrl-C.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tradehabit_gateway::{config::Config, dev};

/// mimalloc rather than the C library's allocator: the request path makes
/// many small short-lived allocations (headers, buffers, futures), and
/// glibc's malloc/free were 7 % of the gateway's CPU under load
/// (`docs/benchmarks.md`). Its 2.x line (the `v2` feature in the workspace's
/// `Cargo.toml`) costs less per request than 3.x.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "TradeHabit gateway: the TLS front door")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Diagnostic log lines on stderr: text, or one JSON object per line.
    #[arg(long, global = true, env = "TRADEHABIT_GATEWAY_LOG_FORMAT", value_enum,
          default_value_t = tradehabit_gateway::logging::DEFAULT_LOG_FORMAT)]
    log_format: tradehabit_gateway::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the given policy file (SIGHUP reloads it).
    Run {
        /// The policy file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a policy file without starting: everything `run` would
    /// refuse (every key and value, secrets, key files, the certificate and
    /// key), every problem at once.
    CheckConfig {
        /// The policy file (TOML).
        file: PathBuf,
        /// Also print every route's resolved policy.
        #[arg(long)]
        effective: bool,
        /// The admin listener of the running gateway (e.g.
        /// http://127.0.0.1:9901): report changes that need a restart.
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// Also run this policy tests file against it (expected decisions;
        /// exit 1 on any difference).
        #[arg(long)]
        tests: Option<PathBuf>,
    },
    /// Show what the gateway would decide for one request, check by check,
    /// without starting anything.
    Explain(ExplainArgs),
    /// Probe the admin listener (exit 0 on 200, else 1): the container
    /// health check for images with no shell or curl.
    Healthcheck {
        /// What to GET.
        #[arg(long, default_value = tradehabit_gateway::healthcheck::DEFAULT_URL)]
        url: String,
    },
    /// Check a hash-chained audit log; reports the first broken line (exit
    /// status 1) or, with the chain intact, the gaps of lines the gateway
    /// could not write (exit status 2); an empty file has nothing to verify
    /// (exit status 3).
    VerifyAudit {
        /// The audit log file.
        file: PathBuf,
    },
    /// Make a new API key: prints the key once and the entry to paste into
    /// `[api_keys] keys` (hashed with the pepper the policy file names).
    Keygen {
        /// The policy file whose `[api_keys] pepper` hashes the key.
        #[arg(long, short)]
        config: PathBuf,
        /// The key's id (A-Z a-z 0-9 . _ -); the principal is `key:<id>`.
        #[arg(long)]
        id: String,
        /// Scopes, separated by commas or spaces; each must be one some
        /// route requires.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Append the entry to the policy's `[api_keys] keys_file` (then
        /// reload) instead of printing it for pasting.
        #[arg(long)]
        append: bool,
    },
    /// Print the audit-log pseudonym of a principal (`key:<id>` or
    /// `jwt:<iss>|<sub>`; a bare id means `key:<id>`), computed with the
    /// policy's `[audit] pseudonym_key` as the audit log does.
    Pseudonym {
        /// The policy file whose `[audit] pseudonym_key` is used.
        #[arg(long, short)]
        config: PathBuf,
        /// The principal.
        principal: String,
    },
    /// Probe a running deployment from outside: TLS versions, ALPN, the
    /// certificate, HSTS, security headers, CORS, credentials, body limits,
    /// rate-limit headers, Host and plain HTTP; pass/fail per check with
    /// its ASVS / Mozilla TLS / RFC 6797 reference. Exit 1 on any failure.
    Selftest(SelftestArgs),
    /// The local development stack: self-signed certificate, worker as a
    /// supervised child, gateway on https://127.0.0.1:8443.
    Dev {
        /// The worker binary [default: tradehabit-worker next to this one].
        #[arg(long)]
        worker_bin: Option<PathBuf>,
        /// Directory for the certificate, key, policy and socket.
        #[arg(long, default_value = ".dev")]
        dir: PathBuf,
        /// The HTTPS address.
        #[arg(long, default_value = dev::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The admin listener (metrics, health).
        #[arg(long, default_value = tradehabit_gateway::config::DEFAULT_ADMIN_LISTEN)]
        admin_listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct SelftestArgs {
    /// The deployment, https://HOST[:PORT].
    url: String,
    /// A file holding an API key (sent as X-API-Key).
    #[arg(long, conflicts_with = "token_file")]
    api_key_file: Option<PathBuf>,
    /// A file holding a bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// An origin the deployment allows (repeat for several).
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// Trusted certificates (PEM) [default: the system bundle].
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The plain-HTTP listener, http://HOST[:PORT], if it has one.
    #[arg(long)]
    plain_http: Option<String>,
    /// An open path answering 200.
    #[arg(long, default_value = tradehabit_gateway::selftest::DEFAULT_HEALTH_PATH)]
    health_path: String,
    /// A GET path that needs a credential.
    #[arg(long, default_value = tradehabit_gateway::selftest::DEFAULT_PROTECTED_PATH)]
    protected_path: String,
    /// A POST path (not the upload route) for the oversized body.
    #[arg(long, default_value = tradehabit_gateway::selftest::DEFAULT_POST_PATH)]
    post_path: String,
    /// Fail when the certificate expires within this many days.
    #[arg(long, default_value_t = tradehabit_gateway::selftest::DEFAULT_MIN_CERT_DAYS)]
    min_cert_days: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `selftest`: at least one check failed (the report says which).
#[derive(Debug, thiserror::Error)]
#[error("{0} selftest check(s) failed")]
struct ChecksFailed(usize);

fn selftest(args: SelftestArgs) -> anyhow::Result<()> {
    use tradehabit_gateway::selftest::{self, Credential, Options, Outcome};
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let credential = match (&args.api_key_file, &args.token_file) {
        (Some(file), _) => Some(Credential::ApiKey(read(file)?)),
        (None, Some(file)) => Some(Credential::Token(read(file)?)),
        (None, None) => None,
    };
    let options = Options {
        ca: args.ca,
        credential,
        origins: args.origins,
        plain_http: args.plain_http,
        health_path: args.health_path,
        protected_path: args.protected_path,
        post_path: args.post_path,
        min_cert_days: args.min_cert_days,
        ..Options::new(args.url)
    };
    let report = runtime()?.block_on(selftest::run(&options))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.render());
    }
    match report.count(Outcome::Fail) {
        0 => Ok(()),
        failed => Err(ChecksFailed(failed).into()),
    }
}

/// `explain`'s arguments.
#[derive(clap::Args)]
struct ExplainArgs {
    /// The policy file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// The request method.
    method: String,
    /// `https://HOST[:PORT]/PATH[?QUERY]`.
    url: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The body's length in bytes (sent as `Content-Length`).
    #[arg(long)]
    body_size: Option<u64>,
    /// The client's address.
    #[arg(long, default_value_t = tradehabit_gateway::explain::DEFAULT_CLIENT_IP)]
    client_ip: std::net::IpAddr,
    /// Call as an API key holding these scopes (commas or spaces), made for
    /// this run only.
    #[arg(long)]
    caller_scopes: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tradehabit_gateway::logging::filter_from_env())
        .with_writer(std::io::stderr)
        // Colours only for a terminal, never into a log file or journald.
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        tradehabit_gateway::logging::LogFormat::Json => builder.json().flatten_event(true).init(),
        tradehabit_gateway::logging::LogFormat::Text => builder.init(),
    }
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<LinesLost>() => {
            eprintln!("error: {error}");
            ExitCode::from(LinesLost::EXIT_CODE)
        }
        Err(error) if error.is::<EmptyLog>() => {
            eprintln!("error: {error}");
            ExitCode::from(EmptyLog::EXIT_CODE)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `verify-audit`: the chain is intact, but it records lines the gateway
/// could not write (gap records). Exit status 2, apart from a broken chain (1).
#[derive(Debug, thiserror::Error)]
#[error("the chain is intact, but audit lines were lost (see the gaps above)")]
struct LinesLost;

impl LinesLost {
    const EXIT_CODE: u8 = 2;
}

/// `verify-audit`: the file has no line, so there is nothing to vouch for
/// (a wrong path, or a log that was never written). Exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is empty: no line to verify (wrong file, or nothing was logged yet?)")]
struct EmptyLog;

impl EmptyLog {
    const EXIT_CODE: u8 = 3;
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Explain(args) => explain(args),
        Command::CheckConfig {
            file,
            effective,
            admin,
            tests,
        } => check_config(&file, effective, admin, tests),
        Command::Healthcheck { url } => {
            let check = tradehabit_gateway::healthcheck::check(&url);
            runtime()?.block_on(check)?;
            println!("{url}: OK");
            Ok(())
        }
        Command::VerifyAudit { file } => {
            let opened = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let verified = tradehabit_gateway::audit::verify(std::io::BufReader::new(opened))
                .with_context(|| format!("{}: the hash chain is broken", file.display()))?;
            if verified.lines == 0 {
                return Err(EmptyLog.into());
            }
            println!(
                "{}: {} line(s), chain intact",
                file.display(),
                verified.lines
            );
            if verified.gaps.is_empty() {
                return Ok(());
            }
            for gap in &verified.gaps {
                println!(
                    "line {}: gap: {} line(s) could not be written between {} and {}",
                    gap.line, gap.lost_lines, gap.lost_since, gap.lost_until
                );
            }
            Err(LinesLost.into())
        }
        Command::Keygen {
            config,
            id,
            scopes,
            append,
        } => keygen(&config, &id, &scopes, append),
        Command::Pseudonym { config, principal } => {
            let config = Config::from_file(&config)?;
            let principal = if principal.contains(':') {
                principal
            } else {
                format!("key:{principal}")
            };
            let pseudonym = tradehabit_gateway::audit::pseudonym_for(&config, &principal).context(
                "the policy sets no [audit] pseudonym_key: the audit log has no pseudonyms",
            )?;
            println!("{pseudonym}");
            Ok(())
        }
        Command::Selftest(args) => selftest(args),
        Command::Run { config } => {
            let config = Config::from_file(&config)?;
            runtime()?.block_on(tradehabit_gateway::run(
                config,
                tradehabit_gateway::shutdown_signal(),
            ))
        }
        Command::Dev {
            worker_bin,
            dir,
            listen,
            admin_listen,
        } => {
            let worker = match worker_bin {
                Some(path) => path,
                None => default_worker()?,
            };
            let options = dev::DevOptions {
                dir,
                worker_command: vec![OsString::from(worker)],
                listen,
                admin_listen,
            };
            runtime()?.block_on(dev::run(options, tradehabit_gateway::shutdown_signal()))
        }
    }
}

/// `keygen`: a key checked against the policy's routes and keys, printed
/// once, its entry printed or appended to the policy's keys file.
fn keygen(policy: &std::path::Path, id: &str, scopes: &str, append: bool) -> anyhow::Result<()> {
    let pepper = Config::api_key_pepper(policy)?;
    let config = Config::from_file(policy)
        .context("keygen checks the scopes and id against the policy; fix it first")?;
    let scopes: Vec<String> = scopes
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let (key, appended) = tradehabit_gateway::keys::keygen(
        &config,
        &pepper,
        id,
        &scopes,
        append,
        &mut rand::rngs::OsRng,
    )?;
    eprintln!("New API key {id:?}: give it to its holder now, it is not stored anywhere.");
    println!("{}", key.key);
    match appended {
        Some(path) => eprintln!(
            "Appended to {}; reload (SIGHUP) to put it in force.",
            path.display()
        ),
        None => {
            eprintln!("Add this entry to [api_keys] keys in the policy, then reload (SIGHUP):");
            println!("{},", key.policy_entry);
        }
    }
    Ok(())
}

/// `check-config`: every problem at once; with `--tests`, the policy tests.
fn check_config(
    file: &std::path::Path,
    effective: bool,
    admin: Option<String>,
    tests: Option<PathBuf>,
) -> anyhow::Result<()> {
    use tradehabit_gateway::check_config::{check, Options};
    let report = check(file, &Options { effective, admin });
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    anyhow::ensure!(
        report.is_ok(),
        "{} problem(s) in {}:\n  {}",
        report.problems.len(),
        file.display(),
        report.problems.join("\n  ")
    );
    if let Some(routes) = &report.effective {
        println!("{routes}");
    }
    println!("{}: OK", file.display());
    match tests {
        Some(tests) => policy_tests(file, &tests),
        None => Ok(()),
    }
}

/// `explain`: the report on stdout.
fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let config = Config::from_file(&args.config)?;
    let request = tradehabit_gateway::explain::ExplainRequest {
        method: args.method,
        url: args.url,
        headers: args.headers,
        body_size: args.body_size,
        client_ip: Some(args.client_ip),
        caller_scopes: args.caller_scopes.map(|scopes| {
            scopes
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        caller_id: None,
    };
    let report = runtime()?.block_on(tradehabit_gateway::explain::explain(config, &request))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

/// `check-config --tests`: each test's outcome, exit 1 on any failure.
fn policy_tests(policy: &std::path::Path, tests: &std::path::Path) -> anyhow::Result<()> {
    let run = runtime()?.block_on(tradehabit_gateway::explain::run_policy_tests(policy, tests))?;
    println!("{run}");
    anyhow::ensure!(
        run.failed == 0,
        "{}: {} policy test(s) failed",
        tests.display(),
        run.failed
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `tradehabit-worker` in the directory of this executable.
fn default_worker() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let worker = exe.with_file_name("tradehabit-worker");
    anyhow::ensure!(
        worker.exists(),
        "{} not found; build it (cargo build -p tradehabit-worker) or pass --worker-bin",
        worker.display()
    );
    Ok(worker)
}
