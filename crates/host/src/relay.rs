//! An in-process relay: a host plus reply queues, shared by several clients.
//!
//! It does in memory what the web host does over HTTP: deliver a client's
//! mail with its correlation id as the routing hint, return the first reply
//! for that id directly, and queue every other reply by its routing hint
//! until the client acknowledges it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use conclave_core::{HostCommand, MailRelay, QueuedMail, RelayError};

use crate::{EnclaveHost, HostError};

/// The host side of in-process mail: an [`EnclaveHost`] and its reply queues.
#[derive(Debug)]
pub struct LocalRelay {
    host: EnclaveHost,
    queues: HashMap<String, VecDeque<QueuedMail>>,
    next_id: u64,
    sealed_state: Option<Vec<u8>>,
    /// Every mail the host carried, as the host saw it: only sizes.
    traffic: Vec<Traffic>,
}

/// One mail as the host saw it pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// `true` for client → enclave.
    pub inbound: bool,
    /// The correlation id or routing hint.
    pub correlation_id: String,
    /// The mail's size in bytes: all the host learns of the content.
    pub size: usize,
}

impl LocalRelay {
    /// Wraps a started host.
    pub fn new(host: EnclaveHost) -> Self {
        Self { host, queues: HashMap::new(), next_id: 1, sealed_state: None, traffic: Vec::new() }
    }

    /// The host, for calls the relay does not cover.
    pub fn host_mut(&mut self) -> &mut EnclaveHost {
        &mut self.host
    }

    /// What the host saw of the traffic so far.
    pub fn traffic(&self) -> &[Traffic] {
        &self.traffic
    }

    /// The last sealed state the enclave asked the host to keep.
    pub fn sealed_state(&self) -> Option<&[u8]> {
        self.sealed_state.as_deref()
    }

    /// Delivers a mail and routes the enclave's commands. Returns the first
    /// reply addressed to `correlation_id`.
    pub fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        self.traffic.push(Traffic { inbound: true, correlation_id: correlation_id.to_owned(), size: mail.len() });
        let commands = self.host.deliver_mail(mail, Some(correlation_id))?;
        Ok(self.route(commands, Some(correlation_id)))
    }

    /// Carries out commands in order; returns the first reply for `direct`.
    pub fn route(&mut self, commands: Vec<HostCommand>, direct: Option<&str>) -> Option<Vec<u8>> {
        let mut first = None;
        for command in commands {
            match command {
                HostCommand::PostMail { bytes, routing_hint } => {
                    let hint = routing_hint.unwrap_or_default();
                    self.traffic.push(Traffic { inbound: false, correlation_id: hint.clone(), size: bytes.len() });
                    if first.is_none() && direct == Some(hint.as_str()) {
                        first = Some(bytes);
                    } else {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.queues.entry(hint).or_default().push_back(QueuedMail { id, bytes });
                    }
                }
                HostCommand::StoreSealedState { blob } => self.sealed_state = Some(blob),
                _ => {}
            }
        }
        first
    }

    /// Replies queued for `correlation_id`, oldest first.
    pub fn poll(&self, correlation_id: &str) -> Vec<QueuedMail> {
        self.queues.get(correlation_id).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }

    /// Deletes acknowledged replies.
    pub fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) {
        if let Some(queue) = self.queues.get_mut(correlation_id) {
            queue.retain(|m| !ids.contains(&m.id));
        }
    }
}

/// A cloneable handle to a [`LocalRelay`], one per client; implements [`MailRelay`].
#[derive(Debug, Clone)]
pub struct LocalRelayHandle(Arc<Mutex<LocalRelay>>);

impl LocalRelayHandle {
    /// Shares a relay.
    pub fn new(relay: LocalRelay) -> Self {
        Self(Arc::new(Mutex::new(relay)))
    }

    /// Locks the relay (for tests and the demo to look inside).
    pub fn lock(&self) -> MutexGuard<'_, LocalRelay> {
        // A panic while holding the lock cannot leave the queues half-updated
        // in a way that matters to a test; keep going.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MailRelay for LocalRelayHandle {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        let relay = self.lock();
        relay.host.enclave_instance_info().map(|info| info.encode()).map_err(|e| e.to_relay_error())
    }

    fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<Vec<u8>>, RelayError> {
        self.lock().deliver(correlation_id, mail).map_err(|e| e.to_relay_error())
    }

    fn poll(&mut self, correlation_id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        Ok(self.lock().poll(correlation_id))
    }

    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.lock().acknowledge(correlation_id, ids);
        Ok(())
    }
}
