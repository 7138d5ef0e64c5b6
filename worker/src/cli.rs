//! The `tradehabit-worker` command line: parse flags, set up logging, serve
//! on the Unix socket until SIGTERM or Ctrl-C.
//!
//! It lives in the library so that the local-stack launcher at the
//! workspace root can run the very same worker as a child process of its
//! own executable.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Args, LogFormat};
use crate::serve::{self, Stopped, Worker};

/// Runs the worker with `args` (the first item is the program name) and
/// returns the process exit code.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::parse_from(args);
    init_logging(args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tradehabit-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let listening = Worker::new(config)
        .bind()
        .context("cannot create the worker's socket")?;
    match listening.run(serve::shutdown_signal()).await {
        Stopped::Drained => tracing::info!("stopped"),
        Stopped::DeadlineReached { abandoned } => {
            tracing::warn!(abandoned, "stopped with requests still in flight");
        }
    }
    Ok(())
}

/// Log lines go to stderr, level from `RUST_LOG` (default `info`). A panic
/// is logged with its location only: its message could quote uploaded data.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()));
        tracing::error!(panic.location = location, "panic");
    }));
}
