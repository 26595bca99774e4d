//! The in-process relay: a [`HostService`] shared by several clients in one
//! process (mock mode, tests, the demo). It implements [`MailRelay`], the
//! same trait the HTTP transport implements.

use std::sync::{Arc, Mutex, MutexGuard};

use conclave_core::{MailRelay, QueuedMail, RelayError};
use rand_core::{OsRng, RngCore};

use crate::{EnclaveHost, HostError, HostService, ServiceConfig, store::SqliteStore};

/// The most replies one poll returns.
const POLL_LIMIT: usize = 1000;

/// An in-process host: a [`HostService`] with an in-memory store.
pub type LocalRelay = HostService;

impl HostService {
    /// An in-process host around `host` with an in-memory store and a random
    /// platform secret. Starts the enclave if it is not started.
    pub fn in_memory(host: EnclaveHost) -> Result<Self, HostError> {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self::new(host, SqliteStore::open_in_memory()?, ServiceConfig::new(secret))
    }
}

/// A cloneable handle to a shared [`HostService`], one per client; implements [`MailRelay`].
#[derive(Debug, Clone)]
pub struct LocalRelayHandle(Arc<Mutex<HostService>>);

impl LocalRelayHandle {
    /// Shares a service.
    pub fn new(service: HostService) -> Self {
        Self(Arc::new(Mutex::new(service)))
    }

    /// An in-memory service around `host`, shared. Panics only if the store
    /// cannot be created in memory or the enclave fails to start.
    pub fn in_memory(host: EnclaveHost) -> Result<Self, HostError> {
        Ok(Self::new(HostService::in_memory(host)?))
    }

    /// Locks the service (for tests and the demo to look inside).
    pub fn lock(&self) -> MutexGuard<'_, HostService> {
        // A panic while holding the lock leaves the store consistent (it
        // commits whole transactions); keep going.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MailRelay for LocalRelayHandle {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        self.lock().attestation().map_err(|e| e.to_relay_error())
    }

    fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        self.lock().deliver(correlation_id, mail).map_err(|e| e.to_relay_error())
    }

    fn poll(&mut self, correlation_id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        self.lock().poll(correlation_id, POLL_LIMIT).map_err(|e| e.to_relay_error())
    }

    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.lock().acknowledge(correlation_id, ids).map(|_| ()).map_err(|e| e.to_relay_error())
    }
}
