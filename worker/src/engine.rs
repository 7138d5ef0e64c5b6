//! Engine stage: one call of the legacy API ([`api::handle`]) on a blocking
//! thread, holding the principal's session and an engine slot.
//!
//! The CPU work never runs on the async threads. Everything the call needs
//! — the owned request, the session guard, the slot — moves into the
//! blocking task, and the session's new size is recorded there too, so the
//! books stay right even when the client hangs up mid-analysis.
//!
//! A panic in the engine is contained: the caller gets a 500 envelope and,
//! for requests that may change data (anything but `GET`/`HEAD`), the
//! session is put back exactly as it was before the call (a snapshot is
//! taken first). Reads cannot change the session, so they skip the copy.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::OwnedMutexGuard;
use tradehabit_shared::routes;

use crate::admission::EngineSlot;
use crate::api::{self, Reply, Session};
use crate::identity::Principal;
use crate::refusal::Refusal;
use crate::session::{Slot, Store};
use crate::upload::FilePart;

/// The engine entry point: [`api::handle`] in production ([`legacy_api`]).
/// Tests swap in a wrapper to hold a call open or to see what the HTTP layer
/// hands over.
pub type Handler = Arc<dyn Fn(&mut Session, api::Request<'_>) -> Reply + Send + Sync>;

/// The production handler.
pub fn legacy_api() -> Handler {
    Arc::new(api::handle)
}

/// A request as the HTTP layer read it, owned so that it can move into the
/// blocking task; [`Job::request`] lends it to the engine as the one
/// request type, [`api::Request`].
#[derive(Debug)]
pub(crate) struct Job {
    /// Method, URI and headers, as hyper parsed them.
    pub(crate) head: http::request::Parts,
    /// The body (empty for uploads).
    pub(crate) body: Bytes,
    /// For an upload: the `file` part, if the form had one.
    pub(crate) file: Option<FilePart>,
}

impl Job {
    fn request(&self) -> api::Request<'_> {
        let upload = self.is_analysis().then(|| match &self.file {
            Some(file) => api::Upload::File {
                filename: &file.filename,
                content: &file.content,
            },
            None => api::Upload::Missing,
        });
        api::Request {
            method: self.head.method.as_str(),
            path: self.head.uri.path(),
            query: self.head.uri.query().unwrap_or_default(),
            content_type: self
                .head
                .headers
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok()),
            body: &self.body,
            upload,
        }
    }

    /// Whether this is an upload (`POST /api/analyze`), the call counted as
    /// an analysis in the metrics.
    fn is_analysis(&self) -> bool {
        routes::is_upload(self.head.method.as_str(), self.head.uri.path())
    }

    /// Whether the call may change the session (and so needs a snapshot).
    fn may_change_session(&self) -> bool {
        !matches!(self.head.method, Method::GET | Method::HEAD)
    }
}

/// The outcome label of `tradehabit_worker_analyses_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as exposed
enum Outcome {
    ok,
    client_error,
    server_error,
}

impl Outcome {
    fn of(status: u16) -> Self {
        match status {
            400..=499 => Self::client_error,
            500.. => Self::server_error,
            _ => Self::ok,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    result: Outcome,
}

/// The engine's metrics.
#[derive(Debug, Clone)]
pub(crate) struct EngineMetrics {
    analyses: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    rows: Counter,
    panics: Counter,
}

impl EngineMetrics {
    /// Registers `analyses_total{result}`, `analysis_duration_seconds`,
    /// `rows_parsed_total` and `engine_panics_total` under the registry's
    /// prefix.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            analyses: Family::default(),
            // 0.25 ms … about 4 s.
            duration: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
            rows: Counter::default(),
            panics: Counter::default(),
        };
        registry.register(
            "analyses",
            "Uploads (POST /api/analyze) run through the engine, by result",
            metrics.analyses.clone(),
        );
        registry.register(
            "analysis_duration_seconds",
            "Engine time per upload (POST /api/analyze), seconds",
            metrics.duration.clone(),
        );
        registry.register(
            "rows_parsed",
            "CSV data rows parsed from uploads",
            metrics.rows.clone(),
        );
        registry.register(
            "engine_panics",
            "Engine calls that panicked (answered 500, session restored)",
            metrics.panics.clone(),
        );
        for result in [Outcome::ok, Outcome::client_error, Outcome::server_error] {
            let _ = metrics.analyses.get_or_create(&OutcomeLabels { result });
        }
        metrics
    }
}

/// Runs engine calls.
#[derive(Debug)]
pub(crate) struct Engine {
    handler: HandlerBox,
    sessions: Arc<Store>,
    metrics: EngineMetrics,
}

/// [`Handler`] with a `Debug` impl, so that the types holding it can derive
/// `Debug`.
#[derive(Clone)]
pub(crate) struct HandlerBox(pub(crate) Handler);

impl std::fmt::Debug for HandlerBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// What the session lock and the engine slot guard, bundled for the move
/// into the blocking task.
#[derive(Debug)]
pub(crate) struct Turn {
    /// Whose session.
    pub(crate) principal: Principal,
    /// The session's slot in the store.
    pub(crate) slot: Arc<Slot>,
    /// The session, locked for this call.
    pub(crate) session: OwnedMutexGuard<Session>,
    /// The engine slot.
    pub(crate) engine_slot: EngineSlot,
}

impl Engine {
    /// An engine calling `handler` and recording sizes in `sessions`.
    pub(crate) fn new(handler: HandlerBox, sessions: Arc<Store>, metrics: EngineMetrics) -> Self {
        Self {
            handler,
            sessions,
            metrics,
        }
    }

    /// Runs one call on a blocking thread.
    pub(crate) async fn run(&self, job: Job, turn: Turn) -> Result<Reply, Refusal> {
        let handler = self.handler.clone();
        let sessions = Arc::clone(&self.sessions);
        let metrics = self.metrics.clone();
        let span = tracing::info_span!("analysis");
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            call(&handler.0, &sessions, &metrics, &job, turn)
        });
        match task.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => Err(Refusal::EnginePanicked),
            Err(_) => Err(Refusal::EngineLost),
        }
    }
}

/// The blocking part: snapshot if needed, call, contain a panic, record.
fn call(
    handler: &Handler,
    sessions: &Store,
    metrics: &EngineMetrics,
    job: &Job,
    turn: Turn,
) -> Result<Reply, Refusal> {
    let Turn {
        principal,
        slot,
        mut session,
        engine_slot,
    } = turn;
    let snapshot = job.may_change_session().then(|| session.clone());
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler(&mut session, job.request())));
    let elapsed = started.elapsed();
    let result = match outcome {
        Ok(reply) => {
            sessions.record(&principal, &slot, session.held_bytes() as u64);
            if job.is_analysis() {
                metrics
                    .analyses
                    .get_or_create(&OutcomeLabels {
                        result: Outcome::of(reply.status),
                    })
                    .inc();
                metrics.duration.observe(elapsed.as_secs_f64());
            }
            if let Some(rows) = reply.facts.rows {
                metrics.rows.inc_by(rows as u64);
            }
            Ok(reply)
        }
        Err(_) => {
            if let Some(snapshot) = snapshot {
                *session = snapshot;
            }
            metrics.panics.inc();
            if job.is_analysis() {
                metrics
                    .analyses
                    .get_or_create(&OutcomeLabels {
                        result: Outcome::server_error,
                    })
                    .inc();
            }
            tracing::error!("engine panicked; session restored");
            Err(Refusal::EnginePanicked)
        }
    };
    // Release the session before the slot, so a request of the same
    // principal waiting for the session finds a free slot.
    drop(session);
    drop(engine_slot);
    result
}
