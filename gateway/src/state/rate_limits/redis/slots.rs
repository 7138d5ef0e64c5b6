//! The store's connections, one group per serving thread (`server.threads`,
//! `shard.rs`): a multiplexed connection's driver task runs on the runtime
//! that opened it, so each group is opened lazily by its own thread and a
//! decision never wakes another thread. `rate_limit.redis.pool_size` is
//! shared among the groups, at least one connection each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use super::refused::Refused;
use super::StoreError;

/// After a failed connection attempt, calls fail at once for this long
/// instead of each trying to connect again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// One pooled connection, opened on first use and again after a failure.
#[derive(Default)]
pub(super) struct Slot {
    connection: RwLock<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    backoff_until: Mutex<Option<Instant>>,
}

/// What one serving thread keeps for itself: its connections and its
/// "refused until" answers.
pub(super) struct Shard {
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// Keys Redis refused, until when (`refused.rs`).
    pub(super) refused: Mutex<Refused>,
}

impl Shard {
    /// The groups for `shards` serving threads sharing `pool_size`
    /// connections (each at least one).
    pub(super) fn for_threads(shards: usize, pool_size: usize) -> Box<[Shard]> {
        let shards = shards.max(1);
        let per_shard = pool_size.div_ceil(shards).max(1);
        (0..shards)
            .map(|_| Shard {
                slots: (0..per_shard).map(|_| Slot::default()).collect(),
                next: AtomicUsize::new(0),
                refused: Mutex::new(Refused::default()),
            })
            .collect()
    }

    /// The next slot of this group, round robin.
    pub(super) fn slot(&self) -> &Slot {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        &self.slots[index]
    }

    /// Connections open in this group.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| read(slot).is_some())
            .count()
    }
}

impl Slot {
    /// The slot's connection, opened if needed (one attempt at a time per
    /// slot, none while backing off). `timeout` bounds the attempt.
    pub(super) async fn connection(
        &self,
        client: &Client,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, StoreError> {
        if let Some(open) = read(self) {
            return Ok(open);
        }
        let _one_attempt = self.connecting.lock().await;
        if let Some(open) = read(self) {
            return Ok(open);
        }
        let backoff = *self
            .backoff_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if backoff.is_some_and(|until| Instant::now() < until) {
            return Err(StoreError::Connection);
        }
        // Each call is bounded by the store's own `timeout` around it, so
        // the connection keeps no response timer of its own per call.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(open) => {
                *self
                    .connection
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(open.clone());
                Ok(open)
            }
            Err(_) => {
                *self
                    .backoff_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now() + RECONNECT_BACKOFF);
                Err(StoreError::Connection)
            }
        }
    }

    /// Drops the connection: the next call on this slot connects again.
    pub(super) fn drop_connection(&self) {
        *self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

fn read(slot: &Slot) -> Option<MultiplexedConnection> {
    slot.connection
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}
