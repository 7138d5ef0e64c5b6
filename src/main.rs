//! `cargo run --release`: the whole local stack in one command.
//!
//! Generates a self-signed development certificate and a development
//! policy under `.dev/`, starts the gateway on `https://127.0.0.1:8443`, and
//! runs the worker as the gateway's supervised child on a private Unix
//! socket. The child is this same executable started as
//! `tradehabit worker --socket …`, so one build gives both processes.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tradehabit_gateway::dev;

/// The argument that turns this executable into the worker.
const WORKER_MODE: &str = "worker";

#[derive(Parser)]
#[command(
    version,
    about = "TradeHabit local stack: gateway (TLS, development certificate) + worker"
)]
struct Cli {
    /// Directory for the certificate, key, policy and socket.
    #[arg(long, default_value = ".dev")]
    dir: PathBuf,
    /// The HTTPS address.
    #[arg(long, default_value = dev::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The admin listener (metrics, health).
    #[arg(long, default_value = tradehabit_gateway::config::DEFAULT_ADMIN_LISTEN)]
    admin_listen: SocketAddr,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| OsString::from("tradehabit"));
    let rest: Vec<OsString> = args.collect();
    if rest.first().is_some_and(|first| first == WORKER_MODE) {
        let worker_args =
            std::iter::once(OsString::from("tradehabit-worker")).chain(rest.into_iter().skip(1));
        return tradehabit_worker::cli::main_from(worker_args);
    }
    let cli = Cli::parse_from(std::iter::once(program).chain(rest));
    tracing_subscriber::fmt()
        .with_env_filter(tradehabit_gateway::logging::filter_from_env())
        .with_writer(std::io::stderr)
        // Colours only for a terminal, never into a log file or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run_stack(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_stack(cli: Cli) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating this executable")?;
    let options = dev::DevOptions {
        dir: cli.dir,
        worker_command: vec![me.into_os_string(), OsString::from(WORKER_MODE)],
        listen: cli.listen,
        admin_listen: cli.admin_listen,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(dev::run(options, tradehabit_gateway::shutdown_signal()))
}
