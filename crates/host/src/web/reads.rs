//! Polls and acknowledgements beside the enclave worker, on their own
//! database connections.
//!
//! ```text
//!  GET /v1/mail/{id}, POST /v1/mail/{id}/ack ─► permit (≤ reader_connections) ─► blocking thread ─► StoreReads
//! ```
//!
//! An SQLite store runs in WAL mode, so these connections read every
//! committed batch without blocking the worker's commits, and an
//! acknowledgement is a short write serialised with them by SQLite. On
//! PostgreSQL they are ordinary connections that never take the call lock.
//! A store in memory has no second connection; its polls go through the
//! worker as before.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use conclave_core::QueuedMail;
use tokio::sync::Semaphore;

use super::WebError;
use crate::{
    HostError,
    store::{Store, StoreError, StoreReads},
};

/// How long a poll may wait for a free connection before it is refused as BUSY.
const WAIT_FOR_A_CONNECTION: Duration = Duration::from_secs(5);

/// A small pool of reader connections.
#[derive(Debug)]
pub(crate) struct Readers {
    idle: Mutex<Vec<Box<dyn StoreReads>>>,
    permits: Semaphore,
}

impl Readers {
    /// Opens `count` readers on `store`'s file, or `None` for a store in memory.
    pub(crate) fn open(store: &dyn Store, count: usize) -> Result<Option<Arc<Self>>, HostError> {
        let mut readers = Vec::with_capacity(count);
        for _ in 0..count {
            match store.open_reader()? {
                Some(reader) => readers.push(reader),
                None => return Ok(None),
            }
        }
        Ok(Some(Arc::new(Self { permits: Semaphore::new(readers.len()), idle: Mutex::new(readers) })))
    }

    /// Runs `job` on a free reader in a blocking thread.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&mut dyn StoreReads) -> Result<T, HostError> + Send + 'static,
    ) -> Result<T, HostError> {
        let permit = tokio::time::timeout(WAIT_FOR_A_CONNECTION, self.permits.acquire())
            .await
            .map_err(|_| WebError::Busy)?
            .map_err(|_| WebError::WorkerStopped)?;
        let taken = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let Some(mut reader) = taken else {
            // A permit without a reader: a job panicked and took its reader along.
            permit.forget();
            return Err(WebError::WorkerStopped.into());
        };
        let pool = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = job(reader.as_mut());
            pool.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(reader);
            result
        })
        .await;
        match joined {
            Ok(result) => Ok(result?),
            Err(_) => {
                permit.forget();
                Err(WebError::WorkerStopped.into())
            }
        }
    }

    /// Replies queued for `correlation_id`, at most `limit` and about
    /// `max_bytes` (404 for an id never seen).
    pub(crate) async fn poll(
        self: &Arc<Self>,
        correlation_id: String,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, HostError> {
        self.with(move |reader| {
            if !reader.has_correlation_id(&correlation_id)? {
                return Err(HostError::UnknownCorrelationId(correlation_id));
            }
            Ok(reader.replies_within(&correlation_id, limit, max_bytes)?)
        })
        .await
    }

    /// Deletes acknowledged replies; returns how many, and the replies left over all ids.
    pub(crate) async fn acknowledge(
        self: &Arc<Self>,
        correlation_id: String,
        ids: Vec<u64>,
    ) -> Result<(usize, Option<u64>), HostError> {
        self.with(move |reader| {
            if !reader.has_correlation_id(&correlation_id)? {
                return Err(HostError::UnknownCorrelationId(correlation_id));
            }
            let deleted = reader.acknowledge(&correlation_id, &ids)?;
            let depth = reader.queue_depth().map_err(|e: StoreError| tracing::warn!("{e}")).ok();
            Ok((deleted, depth))
        })
        .await
    }
}
