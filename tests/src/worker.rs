//! The real worker served in-process on its own Unix socket, until it is
//! stopped (drained) or killed (sessions and requests in flight with it).

use std::path::PathBuf;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tradehabit_worker::config::Config as WorkerConfig;
use tradehabit_worker::serve::Worker;

use crate::PATIENCE;

/// A worker served in-process until stopped or killed.
pub struct RunningWorker {
    /// The socket it listens on.
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningWorker {
    /// Binds the socket of `config` and serves it on a task.
    pub fn start(config: WorkerConfig) -> RunningWorker {
        let socket = config.socket.clone();
        let listening = Worker::new(config)
            .bind()
            .expect("the worker binds its socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            listening
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        RunningWorker {
            socket,
            stop: Some(stop),
            task,
        }
    }

    /// A worker with the default configuration on `socket`.
    pub fn on(socket: &std::path::Path) -> RunningWorker {
        RunningWorker::start(WorkerConfig::new(socket))
    }

    /// Ends the worker at once, requests in flight and sessions with it.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops the worker gracefully and waits for it to drain (within the
    /// safety net).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(PATIENCE, &mut self.task).await;
    }
}
