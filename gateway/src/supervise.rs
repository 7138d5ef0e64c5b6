//! The supervised upstream: with `[upstream.spawn]` the gateway starts the
//! upstream itself (`{socket}` in the command becomes the socket path),
//! restarts it with exponential backoff whenever it exits, counts the
//! restarts, and kills it on shutdown, after the connections have drained.
//!
//! The child gets `SIGKILL` on shutdown: by then no request is in flight,
//! and the worker keeps nothing that a clean exit would save.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::Spawn;
use crate::conn::stopped;
use crate::proxy;

/// The first pause before a restart; doubled on each quick failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// A child that ran this long before exiting was healthy: backoff resets.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How often readiness is probed while waiting for the socket.
const READY_POLL: Duration = Duration::from_millis(20);

/// The running supervisor of one child.
pub(crate) struct Supervisor {
    restarts: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts the child and keeps it running.
    pub(crate) fn start(spawn: &Spawn, socket: &Path) -> Supervisor {
        let restarts = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let command: Vec<String> = spawn
            .command
            .iter()
            .map(|part| part.replace("{socket}", &socket.to_string_lossy()))
            .collect();
        let task = tokio::spawn(
            supervise(
                command,
                spawn.restart_backoff_max,
                Arc::clone(&restarts),
                stopped,
            )
            .instrument(tracing::info_span!("upstream", upstream.socket = %socket.display())),
        );
        Supervisor {
            restarts,
            stop,
            task,
        }
    }

    /// How often the child has been restarted.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The live restart count, for the `worker_restarts_total` metric.
    pub(crate) fn restart_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.restarts)
    }

    /// Kills the child and waits for it to be gone.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Waits until `socket` accepts connections, up to `timeout`.
pub(crate) async fn wait_ready(socket: &PathBuf, timeout: Duration) -> bool {
    let probing = async {
        while !proxy::is_accepting(socket).await {
            tokio::time::sleep(READY_POLL).await;
        }
    };
    tokio::time::timeout(timeout, probing).await.is_ok()
}

async fn supervise(
    command: Vec<String>,
    backoff_max: Duration,
    restarts: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let started = Instant::now();
        match spawn_child(&command) {
            Ok(mut child) => {
                tracing::info!(pid = child.id(), "upstream started");
                tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(?status, "upstream exited; restarting");
                    }
                    () = stopped(&mut stop) => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        tracing::info!("upstream stopped");
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, program = %command[0], "cannot start the upstream")
            }
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = INITIAL_BACKOFF;
        }
        restarts.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(backoff_max);
    }
}

fn spawn_child(command: &[String]) -> std::io::Result<Child> {
    Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}
