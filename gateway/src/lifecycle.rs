//! Lifecycle: start, reload, stop.
//!
//! [`Gateway::start`] loads the certificate (and with it the host names
//! served, `host.rs`), binds the listeners (failing
//! before anything else runs if a port is taken), starts and waits for the
//! supervised upstream if there is one, then accepts. The [`Handle`] it
//! returns reloads (certificate and policy together, all or nothing) and
//! shuts down gracefully. [`run`] is what the binary does: start, reload on
//! `SIGHUP`, stop when the given shutdown future resolves. One housekeeping
//! task purges idle rate-limit keys every `rate_limit.purge_interval_seconds`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

mod threads;

use crate::accept::{self, Listener};
use crate::admin::{self, Probe};
use crate::audit;
use crate::config::{Config, ConfigError, UpstreamAddress};
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::state::{Connections, InForce, RateLimits, State};
use crate::supervise::{self, Supervisor};
use crate::tls::{self, CertError, CertStore};

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// A serving thread (`server.threads`) could not be started.
    #[error("cannot start a serving thread: {source}")]
    Serving { source: std::io::Error },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The audit log file could not be opened.
    #[error(transparent)]
    Audit(#[from] audit::OpenError),
    /// The rate-limit store could not be set up.
    #[error("the rate-limit store: {0}")]
    RateLimitStore(String),
    /// The supervised upstream did not accept connections in time.
    #[error("the upstream did not accept connections on {socket} within {timeout:?}")]
    UpstreamNotReady {
        socket: std::path::PathBuf,
        timeout: Duration,
    },
}

/// Why a reload was refused; the running policy and certificate stay.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was started from a configuration with no file behind it.
    #[error("the configuration was not read from a file")]
    NoSource,
    /// The new file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new file changes settings that need a restart.
    #[error("these settings only change on restart: {}", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    /// The certificate or key named by the file could not be loaded.
    #[error(transparent)]
    Certificate(#[from] CertError),
}

impl ReloadError {
    /// The error on one line (every problem, `; `-separated), for the
    /// diagnostic log: a refused reload is one log line.
    pub fn one_line(&self) -> String {
        self.to_string()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The settings whose change needs a restart, when that is why.
    pub fn restart_only(&self) -> &[&'static str] {
        match self {
            ReloadError::NeedsRestart(fields) => fields,
            _ => &[],
        }
    }
}

/// The gateway's entry point for the binary, tests and the dev stack.
pub struct Gateway;

impl Gateway {
    /// Starts serving `config`; see the module doc for the order of steps.
    pub async fn start(mut config: Config) -> Result<Handle, StartError> {
        let certificate = tls::load(&config.tls)?;
        tls::adopt(&mut config, &certificate)?;
        let expires = not_after(&certificate);
        let certs = Arc::new(CertStore::new(certificate));
        let config_listen = config.server.listen;
        let https = threads::bind(config.server.listen, config.server.threads)?;
        let plain = match &config.plain_http {
            Some(plain) => Some(bind(plain.listen).await?),
            None => None,
        };
        let admin_listener = bind(config.admin.listen).await?;
        let audit = Arc::new(audit::Log::open(&config.audit)?);
        let supervisor = start_upstream(&config).await?;
        let metrics = Metrics::new();
        metrics.follow_upload_routes(&config);
        metrics.upstream_workers_configured(config.upstream.addresses.len());
        metrics.policy_in_force(&config, expires);
        if let Some(supervisor) = &supervisor {
            metrics.watch_restarts(supervisor.restart_counter());
        }
        metrics.watch_audit_failures(audit.lost_lines());
        let probe = Arc::new(Probe::new(&config.upstream));
        let rate_limits = RateLimits::new(
            &config.checks.rate_limit,
            metrics.rate_limit_store(),
            https.len(),
        )
        .map_err(|error| StartError::RateLimitStore(error.to_string()))?;

        let state = Arc::new(State {
            rate_limits,
            upstream: Upstream::new(&config.upstream, https.len()),
            config: InForce::new(config),
            certs: Arc::clone(&certs),
            connections: Arc::new(Connections::default()),
            requests_per_ip: Arc::default(),
            refusals: Default::default(),
            audit,
            metrics,
        });
        let (stop, stopping) = watch::channel(false);
        let housekeeping = tokio::spawn(
            purge_rate_limits(Arc::clone(&state), stopping.clone())
                .instrument(tracing::info_span!("rate_limit_purge")),
        );
        let https_addr = https[0].local_addr().map_err(|source| StartError::Bind {
            addr: config_listen,
            source,
        })?;
        let acceptor = tls::acceptor(certs);
        let mut listeners = Vec::new();
        for (index, listener) in https.into_iter().enumerate() {
            listeners.push(threads::spawn(
                index,
                listener,
                Listener::Https(acceptor.clone()),
                Arc::clone(&state),
                stopping.clone(),
            )?);
        }
        let admin_addr = local_addr(&admin_listener);
        listeners.push(tokio::spawn(admin::serve(
            admin_listener,
            Arc::clone(&state),
            Arc::clone(&probe),
            stopping.clone(),
        )));
        listeners.push(tokio::spawn(admin::probe_periodically(
            Arc::clone(&state),
            probe,
            stopping.clone(),
        )));
        let plain_http_addr = plain.as_ref().map(local_addr);
        if let Some(plain) = plain {
            listeners.push(tokio::spawn(accept::serve(
                plain,
                Listener::PlainHttp,
                Arc::clone(&state),
                stopping,
            )));
        }
        let sha256 = state.config().sha256().to_string();
        tracing::info!(https = %https_addr, plain_http = ?plain_http_addr, admin = %admin_addr, %sha256, "gateway listening");
        Ok(Handle {
            state,
            https_addr,
            admin_addr,
            plain_http_addr,
            stop,
            listeners,
            housekeeping,
            supervisor,
        })
    }
}

/// Drops idle rate-limit keys at the interval of the policy in force, until
/// shutdown.
async fn purge_rate_limits(state: Arc<State>, mut stopping: watch::Receiver<bool>) {
    loop {
        let interval = state.config().purge_interval();
        tokio::select! {
            () = tokio::time::sleep(interval) => state.rate_limits.purge(&state.config()),
            _ = stopping.changed() => return,
        }
    }
}

/// The served certificate's `notAfter`, if it can be read.
fn not_after(certified: &rustls::sign::CertifiedKey) -> Option<time::OffsetDateTime> {
    crate::cert_dates::not_after(certified.end_entity_cert().ok()?)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

async fn start_upstream(config: &Config) -> Result<Option<Supervisor>, StartError> {
    let (Some(spawn), UpstreamAddress::Unix(socket)) =
        (&config.upstream.spawn, &config.upstream.address)
    else {
        return Ok(None);
    };
    let supervisor = Supervisor::start(spawn, socket);
    if !supervise::wait_ready(socket, spawn.ready_timeout).await {
        supervisor.stop().await;
        return Err(StartError::UpstreamNotReady {
            socket: socket.clone(),
            timeout: spawn.ready_timeout,
        });
    }
    Ok(Some(supervisor))
}

/// A running gateway.
pub struct Handle {
    state: Arc<State>,
    https_addr: SocketAddr,
    admin_addr: SocketAddr,
    plain_http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    housekeeping: JoinHandle<()>,
    supervisor: Option<Supervisor>,
}

impl Handle {
    /// The bound HTTPS address (the real port when 0 was configured).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The bound plain-HTTP address, if that listener is configured.
    pub fn plain_http_addr(&self) -> Option<SocketAddr> {
        self.plain_http_addr
    }

    /// The bound admin address (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Reopens the audit log file (logrotate moved it); a failure is
    /// logged and the old file stays in use.
    pub fn reopen_audit_log(&self) {
        if let Err(error) = self.state.audit.reopen() {
            tracing::error!(%error, "reopening the audit log failed; still writing the old file");
        }
    }

    /// Keys tracked by all rate limiters of the policy in force (bounded by
    /// `rate_limit.max_tracked_keys` per route and quota).
    pub fn rate_limit_tracked_keys(&self) -> usize {
        self.state.rate_limits.tracked_keys()
    }

    /// How often the supervised upstream has been restarted.
    pub fn upstream_restarts(&self) -> u64 {
        self.supervisor.as_ref().map_or(0, Supervisor::restarts)
    }

    /// Re-reads the policy file and the certificate it names. All or
    /// nothing: on any error the running policy and certificate stay, and
    /// the error says why.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let result = self.try_reload();
        self.state.metrics.config_reload(result.is_ok());
        result
    }

    /// The reload rules, all in this one function:
    ///
    /// | what | on `SIGHUP` |
    /// |---|---|
    /// | routes, checks, limits, headers, CORS, keys, `audit.on_failure` (the validated `Config`) | rebuilt from the file |
    /// | the certificate and the host names it covers (`CertStore`, `server.names`) | rebuilt from the files the policy names |
    /// | the rate-limit buckets of each route, and of each token endpoint, whose quotas did not change (the memory store) | kept; the others dropped (`RateLimits::follow`) |
    /// | the shared rate-limit store's keys (`rate_limit.store = "redis"`) | untouched: they expire with their window |
    /// | the upload-route metric series | follow the new routes |
    /// | `upstream.ready_path`, `admin.ready_probe_interval` and `ready_probe_timeout` | read at each probe |
    /// | the policy hash, reload time and certificate expiry metrics | follow the new policy and certificate |
    /// | listen addresses, `server.threads`, `[upstream]` address, spawn, pool and slot settings, `[audit]` but `on_failure`, `limits.h2_max_concurrent_streams`, `rate_limit.store` and `[rate_limit.redis]` but `on_store_error` | kept: a change refuses the whole reload (`Config::restart_only_changes`) |
    /// | open connections, per-IP counters, the upstream pool and supervised child, the metrics registry | kept (`State`) |
    /// | the audit log file | reopened (`serve_until`, before the reload), chain and sink kept |
    ///
    /// All or nothing: the new policy and certificate replace the old only
    /// once both are valid.
    fn try_reload(&self) -> Result<(), ReloadError> {
        let current = self.state.config();
        let source = current.source().ok_or(ReloadError::NoSource)?;
        let mut next = Config::from_file(source)?;
        let needs_restart = current.restart_only_changes(&next);
        if !needs_restart.is_empty() {
            return Err(ReloadError::NeedsRestart(needs_restart));
        }
        let certificate = tls::load(&next.tls)?;
        tls::adopt(&mut next, &certificate)?;
        let expires = not_after(&certificate);
        self.state.certs.replace(certificate);
        self.state.metrics.follow_upload_routes(&next);
        self.state.metrics.policy_in_force(&next, expires);
        self.state.rate_limits.follow(&next);
        self.state.config.replace(next);
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// `server.shutdown_timeout`), then stops the supervised upstream.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for listener in self.listeners {
            let _ = listener.await;
        }
        let _ = self.housekeeping.await;
        // Each serving thread wrote its buffered audit lines as it stopped;
        // this catches a thread that ended without doing so.
        self.state.audit.flush_all();
        if let Some(supervisor) = self.supervisor {
            supervisor.stop().await;
        }
        tracing::info!("gateway stopped");
    }
}

/// Runs the gateway until `shutdown` resolves, reloading on `SIGHUP`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let handle = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    serve_until(handle, shutdown).await
}

/// Reloads on `SIGHUP` until `shutdown` resolves, then shuts down.
pub(crate) async fn serve_until(
    handle: Handle,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};

    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // From here a SIGHUP reloads (before, it would end the process).
    tracing::info!("SIGHUP reloads the policy and certificate");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = hangups.recv() => {
                handle.reopen_audit_log();
                match handle.reload() {
                    Ok(()) => tracing::info!(
                        sha256 = handle.state.config().sha256(),
                        "reloaded the policy and certificate"
                    ),
                    Err(error) => tracing::error!(
                        error = error.one_line(),
                        restart_only = ?error.restart_only(),
                        "reload refused; the running policy stays"
                    ),
                }
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    handle.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C: the shutdown trigger of the gateway
/// binary and of the local-stack launcher.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
