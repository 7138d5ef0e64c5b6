//! Trust stage: the worker answers the gateway only.
//!
//! The socket's mode (0660) is the first door. Two more checks stand behind
//! it when configured (docs/worker.md, docs/security-controls.md):
//!
//! * **peer credentials**: the kernel's `SO_PEERCRED` for each accepted
//!   connection (the uid and gid of the process that connected). With
//!   `--allowed-peer-uids` and/or `--allowed-peer-gids` set, a peer whose uid
//!   is not in the first list and whose gid is not in the second gets 403 on
//!   every request of its connection, which is then closed;
//! * **the gateway's signature**: with `--hmac-key-file`, every request must
//!   carry `x-tradehabit-signature`, an HMAC-SHA256 under the shared key over
//!   the identity headers and the request line
//!   ([`tradehabit_shared::signature`]), timestamped within
//!   `--hmac-max-skew-secs`; anything else gets 401.
//!
//! Both refusals are counted in `tradehabit_worker_untrusted_refused_total
//! {reason}` and logged with the request line (never the key, never the
//! header values). Neither configured: no check, as before.

use http::{HeaderMap, Request};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::unix::UCred;
use tradehabit_shared::signature::{self, Key, SignatureError, Signed, SIGNATURE, SIGNED_HEADERS};

use crate::refusal::Refusal;

/// Who may talk to the worker; empty lists and no key check nothing.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Peer uids accepted.
    pub allowed_uids: Vec<u32>,
    /// Peer gids accepted.
    pub allowed_gids: Vec<u32>,
    /// The key the gateway signs with.
    pub hmac_key: Option<Key>,
    /// Accepted distance between a signature's timestamp and the clock.
    pub max_skew_secs: u64,
}

/// What `SO_PEERCRED` said about a connection, attached to each of its
/// requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerVerdict {
    /// Whether the peer passed the uid/gid check.
    pub(crate) allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `untrusted_refused_total{reason}`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustMetrics {
    refused: Family<ReasonLabels, Counter>,
}

impl TrustMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "untrusted_refused",
            "Requests refused because the peer or the gateway signature was not trusted, by reason",
            metrics.refused.clone(),
        );
        metrics
    }

    fn count(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }
}

impl Trust {
    /// Whether any check is configured.
    pub fn is_configured(&self) -> bool {
        self.checks_peers() || self.hmac_key.is_some()
    }

    fn checks_peers(&self) -> bool {
        !self.allowed_uids.is_empty() || !self.allowed_gids.is_empty()
    }

    /// The verdict on a connection's peer (`None`: the kernel did not say,
    /// which fails the check when one is configured).
    pub(crate) fn judge_peer(&self, peer: Option<UCred>) -> PeerVerdict {
        if !self.checks_peers() {
            return PeerVerdict { allowed: true };
        }
        let allowed = peer.is_some_and(|cred| {
            self.allowed_uids.contains(&cred.uid()) || self.allowed_gids.contains(&cred.gid())
        });
        if !allowed {
            tracing::warn!(
                peer.uid = peer.map(|c| c.uid()),
                peer.gid = peer.map(|c| c.gid()),
                "connection from a process that is not allowed; its requests get 403"
            );
        }
        PeerVerdict { allowed }
    }

    /// Checks one request (its peer's verdict rides in its extensions);
    /// counts a refusal.
    pub(crate) fn check<B>(
        &self,
        request: &Request<B>,
        metrics: &TrustMetrics,
    ) -> Result<(), Refusal> {
        let peer_allowed = request
            .extensions()
            .get::<PeerVerdict>()
            .is_none_or(|verdict| verdict.allowed);
        if !peer_allowed {
            metrics.count("peer");
            return Err(Refusal::PeerNotAllowed);
        }
        let Some(key) = &self.hmac_key else {
            return Ok(());
        };
        verify(key, request, self.max_skew_secs).map_err(|error| {
            metrics.count(error.label());
            Refusal::NotSigned(error)
        })
    }
}

fn verify<B>(key: &Key, request: &Request<B>, max_skew: u64) -> Result<(), SignatureError> {
    let value = single(request.headers(), SIGNATURE)?.ok_or(SignatureError::Missing)?;
    let mut headers = [None; SIGNED_HEADERS.len()];
    for (slot, name) in headers.iter_mut().zip(SIGNED_HEADERS) {
        *slot = single(request.headers(), name)?;
    }
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let signed = Signed {
        method: request.method().as_str(),
        path_and_query,
        headers,
    };
    signature::verify(key, value, &signed, signature::now_unix(), max_skew)
}

/// A header's one value; a repeated signed header is malformed (the
/// gateway sets each once).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a [u8]>, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().map(|value| value.as_bytes());
    if values.next().is_some() {
        return Err(SignatureError::Malformed);
    }
    Ok(first)
}
