//! TLS: the rustls server configuration, the certificate it serves, and the
//! handshake with its own deadline.
//!
//! Protocols: TLS 1.3 and TLS 1.2 only (ASVS 12.1.1), with rustls' ring
//! provider and its default cipher suites — AEAD only, forward secret only,
//! the Mozilla "intermediate" set. The server follows the client's suite
//! order, as Mozilla recommends. ALPN offers `h2` then `http/1.1`.
//!
//! The certificate lives in a [`CertStore`] that rustls asks on every
//! handshake; a reload swaps the `Arc<CertifiedKey>` inside it, so new
//! handshakes use the new certificate while open connections keep going. A
//! reload that fails leaves the old certificate in place.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Tls};

/// ALPN protocol ids, in server preference order.
pub(crate) const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A PEM file could not be read (shown with its full path, the I/O
    /// error once).
    #[error(
        "cannot read {}: {}",
        crate::checks::problems::shown_path(path),
        crate::checks::problems::io_text(error)
    )]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0}: no PEM private key found")]
    NoKey(PathBuf),
    /// A self-signed development certificate could not be made or written.
    #[error("cannot create a self-signed certificate at {path}: {reason}")]
    SelfSigned { path: PathBuf, reason: String },
    /// Only one of the two files exists, so nothing is generated.
    #[error("{present} exists but {missing} does not; refusing to generate a certificate over half a pair")]
    HalfPair { present: PathBuf, missing: PathBuf },
    /// rustls refused the key, or it does not match the certificate.
    #[error(
        "{}: {}",
        crate::checks::problems::shown_path(path),
        unusable_text(error)
    )]
    Unusable { path: PathBuf, error: rustls::Error },
    /// The certificate does not cover a name the policy says is served.
    #[error("{path}: {}", .problems.join("; "))]
    NamesNotCovered {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Why rustls refused a certificate/key pair, in operator terms.
fn unusable_text(error: &rustls::Error) -> String {
    use rustls::InconsistentKeys;
    match error {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "this private key (tls.key) does not belong to the certificate (tls.cert)".to_owned()
        }
        rustls::Error::InconsistentKeys(InconsistentKeys::Unknown) => {
            "cannot tell whether the private key (tls.key) belongs to the certificate (tls.cert)"
                .to_owned()
        }
        other => format!("the private key (tls.key) is not usable: {other}"),
    }
}

/// The provider every TLS object of the gateway uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the chain and key named in `[tls]` and checks they belong together.
/// With `self_signed_if_missing`, a missing pair is first generated.
pub(crate) fn load(tls: &Tls) -> Result<CertifiedKey, CertError> {
    if tls.self_signed_if_missing {
        generate_if_missing(&tls.cert, &tls.key)?;
    }
    load_pair(&tls.cert, &tls.key)
}

/// Loads an existing chain and key and checks they belong together
/// (`check-config` asks this without generating anything).
pub(crate) fn load_pair(cert: &Path, key_path: &Path) -> Result<CertifiedKey, CertError> {
    let chain = read_chain(cert)?;
    let key_pem = std::fs::read(key_path).map_err(|error| CertError::Read {
        path: key_path.to_path_buf(),
        error,
    })?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
        .map_err(|error| CertError::Read {
            path: key_path.to_path_buf(),
            error,
        })?
        .ok_or_else(|| CertError::NoKey(key_path.to_path_buf()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|error| CertError::Unusable {
        path: key_path.to_path_buf(),
        error,
    })
}

/// Gives `config` the certificate it will be served with: the host names
/// it serves by default, and the check that the certificate covers the
/// names the policy lists (`host.rs`).
pub(crate) fn adopt(config: &mut Config, certified: &CertifiedKey) -> Result<(), CertError> {
    let leaf = certified
        .end_entity_cert()
        .map_err(|_| CertError::NoCertificate(config.tls.cert.clone()))?;
    adopt_leaf(config, leaf)
}

fn adopt_leaf(config: &mut Config, leaf: &CertificateDer<'_>) -> Result<(), CertError> {
    let path = config.tls.cert.clone();
    config
        .adopt_certificate(leaf)
        .map_err(|problems| CertError::NamesNotCovered { path, problems })
}

/// What `check-config` asks of the certificate without serving it: that it
/// parses and covers the policy's names. With `tls.self_signed_if_missing`
/// and neither file present, the names are checked against the certificate
/// that would be generated (nothing is written). `Ok(false)`: the
/// certificate file does not exist here, so nothing was checked.
pub fn check_certificate(config: &Config) -> Result<bool, CertError> {
    let tls = &config.tls;
    let mut config = config.clone();
    if tls.self_signed_if_missing && !tls.cert.exists() && !tls.key.exists() {
        let names = SELF_SIGNED_NAMES.map(str::to_owned).to_vec();
        let generated =
            rcgen::generate_simple_self_signed(names).map_err(|e| CertError::SelfSigned {
                path: tls.cert.clone(),
                reason: e.to_string(),
            })?;
        adopt_leaf(&mut config, generated.cert.der())?;
        return Ok(true);
    }
    if !tls.cert.exists() {
        return Ok(false);
    }
    let chain = read_chain(&tls.cert)?;
    adopt_leaf(&mut config, &chain[0])?;
    Ok(true)
}

/// The PEM certificates in `path`, at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = std::fs::read(path).map_err(|error| CertError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let chain = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CertError::Read {
            path: path.to_path_buf(),
            error,
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

/// The names of every self-signed certificate the gateway makes.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes a fresh self-signed certificate for `localhost`, `127.0.0.1` and
/// `::1` when neither file exists (a container's first start); the key file
/// is created with mode 0600. Does nothing when both exist.
fn generate_if_missing(cert: &Path, key: &Path) -> Result<(), CertError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(()),
        (false, false) => {
            tracing::warn!(
                tls.cert = %cert.display(),
                "no certificate found: generating a SELF-SIGNED development certificate \
                 (tls.self_signed_if_missing); clients will not trust it"
            );
            write_self_signed(cert, key)
        }
        (true, false) => Err(CertError::HalfPair {
            present: cert.to_path_buf(),
            missing: key.to_path_buf(),
        }),
        (false, true) => Err(CertError::HalfPair {
            present: key.to_path_buf(),
            missing: cert.to_path_buf(),
        }),
    }
}

/// Writes a new self-signed certificate (an end-entity certificate for
/// `localhost`, `127.0.0.1` and `::1`) and its key, the key readable by its
/// owner only. Used by the development stack and `self_signed_if_missing`.
pub(crate) fn write_self_signed(cert: &Path, key: &Path) -> Result<(), CertError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let failed = |path: &Path, reason: String| CertError::SelfSigned {
        path: path.to_path_buf(),
        reason,
    };
    let generated =
        rcgen::generate_simple_self_signed(SELF_SIGNED_NAMES.map(str::to_owned).to_vec())
            .map_err(|error| failed(cert, error.to_string()))?;
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key)
        .map_err(|error| failed(key, error.to_string()))?;
    key_file
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| key_file.write_all(generated.key_pair.serialize_pem().as_bytes()))
        .map_err(|error| failed(key, error.to_string()))?;
    std::fs::write(cert, generated.cert.pem()).map_err(|error| failed(cert, error.to_string()))
}

/// The certificate currently served; swapped atomically on reload.
pub(crate) struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub(crate) fn new(initial: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(initial)),
        }
    }

    /// Serves `next` on every handshake from now on.
    pub(crate) fn replace(&self, next: CertifiedKey) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertStore")
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        ))
    }
}

/// The acceptor for the HTTPS listener.
pub(crate) fn acceptor(certs: Arc<CertStore>) -> TlsAcceptor {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("TLS handshake not finished within {0:?}")]
    TimedOut(Duration),
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

/// Runs the server handshake, giving up after `timeout`.
///
/// A failure is handed to `record` while the client's connection is still
/// open, and the connection is closed only after it returns: whoever sees
/// the connection close (the client, a test, a monitoring probe) finds the
/// failure already counted and audited.
pub(crate) async fn handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
    record: impl FnOnce(HandshakeError),
) -> Option<TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Kept here, not inside the timeout, so that a timed-out handshake's
    // socket outlives `record` too.
    let mut accept = std::pin::pin!(by_turns(acceptor.accept(stream).into_fallible()));
    match tokio::time::timeout(timeout, accept.as_mut()).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err((error, still_open))) => {
            record(HandshakeError::Failed(error));
            drop(still_open);
            None
        }
        Err(_) => {
            record(HandshakeError::TimedOut(timeout));
            None
        }
    }
}

thread_local! {
    /// The calling thread's one handshake turn (see [`by_turns`]).
    static HANDSHAKE_TURN: Arc<tokio::sync::Semaphore> = Arc::new(tokio::sync::Semaphore::new(1));
}

/// Runs `handshake` taking turns with the other handshakes of this thread.
///
/// A serving thread runs the tasks that are ready in the order they woke.
/// When many clients send their `ClientHello` at once (clients that
/// reconnect together), every one of those handshakes would do its key
/// exchange and signature before a request of an established connection
/// that woke just after them. Here a handshake is polled only with the
/// thread's turn, and after a poll that leaves it unfinished it keeps the
/// turn until the tasks that woke meanwhile have run, then gives it back
/// (to the next handshake waiting, which queues behind them). So an
/// established connection waits for at most one handshake, and the
/// handshakes waiting for the turn wait outside the run queue. No turn is
/// held while a handshake waits for its client: a client that stalls
/// mid-handshake holds up no one.
async fn by_turns<F: std::future::Future>(handshake: F) -> F::Output {
    use std::future::Future as _;
    use std::task::Poll;
    let turns = HANDSHAKE_TURN.with(Arc::clone);
    let mut handshake = std::pin::pin!(handshake);
    let mut acquiring = None;
    let mut held = None;
    std::future::poll_fn(move |cx| {
        if let Some(turn) = held.take() {
            // Back after the others: the turn goes to the next handshake,
            // and this one is looked at once more without it, so that a
            // wake-up from its socket meanwhile is not lost.
            drop(turn);
            return handshake.as_mut().poll(cx);
        }
        let waiting = acquiring.get_or_insert_with(|| Box::pin(Arc::clone(&turns).acquire_owned()));
        let Poll::Ready(turn) = waiting.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        acquiring = None;
        let polled = handshake.as_mut().poll(cx);
        if polled.is_pending() {
            // The semaphore is never closed, so the turn is always `Ok`.
            held = turn.ok();
            cx.waker().wake_by_ref();
        }
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake whose first poll does its work and is not finished yet
    /// (it asks to be polled again), and whose second poll finishes.
    fn two_polls(
        name: &'static str,
        log: &Arc<std::sync::Mutex<Vec<String>>>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let log = Arc::clone(log);
        let mut polls = 0;
        std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 1 {
                log.lock().unwrap().push(format!("{name} works"));
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            } else {
                log.lock().unwrap().push(format!("{name} done"));
                std::task::Poll::Ready(())
            }
        })
    }

    #[tokio::test]
    async fn a_request_that_woke_after_a_burst_of_handshakes_waits_for_one_only() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["h1", "h2", "h3"] {
            tasks.push(tokio::spawn(by_turns(two_polls(name, &log))));
        }
        let request_log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            request_log.lock().unwrap().push("request".into());
        }));
        for task in tasks {
            task.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        let at = |entry: &str| log.iter().position(|e| e == entry).unwrap();
        assert!(at("request") < at("h2 works"), "{log:?}");
        assert_eq!(log.len(), 7, "{log:?}");
    }

    #[tokio::test]
    async fn a_handshake_waiting_for_its_client_holds_no_turn() {
        let stalled = tokio::spawn(by_turns(std::future::pending::<()>()));
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::time::timeout(Duration::from_secs(5), by_turns(two_polls("next", &log)))
            .await
            .expect("another handshake goes ahead");
        stalled.abort();
    }

    fn tls_in(dir: &Path, self_signed_if_missing: bool) -> Tls {
        Tls {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            self_signed_if_missing,
        }
    }

    #[test]
    fn a_missing_pair_is_generated_once_when_allowed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_in(dir.path(), true);
        load(&tls).expect("generated and loaded");
        let mode = std::fs::metadata(&tls.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = std::fs::read(&tls.cert).unwrap();
        load(&tls).expect("loaded again");
        assert_eq!(
            std::fs::read(&tls.cert).unwrap(),
            first,
            "an existing pair is kept"
        );
    }

    #[test]
    fn a_missing_pair_is_an_error_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(&tls_in(dir.path(), false)),
            Err(CertError::Read { .. })
        ));
        assert!(!dir.path().join("key.pem").exists());
    }

    #[test]
    fn half_a_pair_is_never_completed() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_in(dir.path(), true);
        std::fs::write(&tls.cert, "not a certificate").unwrap();
        assert!(matches!(load(&tls), Err(CertError::HalfPair { .. })));
        assert!(!tls.key.exists());
    }

    #[test]
    fn only_tls12_and_tls13_suites_are_offered() {
        let store = Arc::new(CertStore::new(self_signed()));
        let acceptor = acceptor(store);
        let config = acceptor.config();
        let versions: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|suite| suite.version().version)
            .collect();
        assert!(versions.iter().all(|v| matches!(
            v,
            rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
        )));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_2));
        assert!(versions.contains(&rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let tls = tls_in(dir.path(), false);
        std::fs::write(&tls.cert, a.cert.pem()).unwrap();
        std::fs::write(&tls.key, b.key_pair.serialize_pem()).unwrap();
        assert!(matches!(load(&tls), Err(CertError::Unusable { .. })));
        std::fs::write(&tls.key, a.key_pair.serialize_pem()).unwrap();
        assert!(load(&tls).is_ok());
        std::fs::write(&tls.key, "not a key").unwrap();
        assert!(matches!(load(&tls), Err(CertError::NoKey(_))));
    }

    fn self_signed() -> CertifiedKey {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into());
        CertifiedKey::from_der(vec![generated.cert.der().clone()], key, &provider()).unwrap()
    }
}
