//! HostService: an enclave, its store, and the routing of its commands.
//!
//! This is the host's whole job short of a network: start the enclave from
//! what the store holds, deliver mail under a correlation id, commit each
//! call's ordered commands in one transaction, and keep replies until the
//! client acknowledges them. The in-process relay and the web host both
//! drive one of these.

use conclave_core::{HostCommand, QueuedMail};
use conclave_enclave::StartInput;

use crate::{
    EnclaveHost, HostError,
    store::{Batch, ChainEntry, Store},
};

/// Replies the enclave sent with no routing hint are queued under this id.
pub const UNROUTED: &str = "unrouted";

/// How many traffic records are kept for inspection.
const TRAFFIC_KEPT: usize = 10_000;

/// One mail as the host saw it pass: all it learns is who and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// `true` for client → enclave.
    pub inbound: bool,
    /// The correlation id or routing hint.
    pub correlation_id: String,
    /// The mail's size in bytes.
    pub size: usize,
}

/// Settings of the enclave's persistence.
#[derive(Clone)]
pub struct ServiceConfig {
    /// The root of the enclave's sealing keys (simulation: a file in the data directory).
    pub platform_secret: [u8; 32],
    /// Size limit of the enclave's persistent map.
    pub persistent_map_limit: usize,
    /// The most unacknowledged replies one correlation id may hold before
    /// its mail is refused (so a client that never acknowledges cannot fill
    /// the disk). Refused mail is not delivered; nothing is lost.
    pub max_queued_replies: u64,
}

impl core::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("platform_secret", &"<redacted>")
            .field("persistent_map_limit", &self.persistent_map_limit)
            .field("max_queued_replies", &self.max_queued_replies)
            .finish()
    }
}

impl ServiceConfig {
    /// Defaults (16 MiB map) around a platform secret.
    pub fn new(platform_secret: [u8; 32]) -> Self {
        let defaults = StartInput::fresh(platform_secret);
        Self { platform_secret, persistent_map_limit: defaults.persistent_map_limit, max_queued_replies: 10_000 }
    }
}

/// An enclave with its store: the host side of every client conversation.
#[derive(Debug)]
pub struct HostService {
    host: EnclaveHost,
    store: Box<dyn Store>,
    config: ServiceConfig,
    traffic: Vec<Traffic>,
    restarts: u64,
    resets: u64,
    failed_commits: u64,
    last_outcome: &'static str,
    /// The counter of the state the enclave holds in memory: what its last
    /// call left behind. When the store's committed state differs (a commit
    /// failed, a call panicked, or another host sharing the store moved the
    /// state on), the enclave is brought up to the store's state before its
    /// next call. `u64::MAX`: unknown, always bring it up.
    enclave_at: u64,
}

/// The counter of the last state among `commands`, if they seal any.
fn last_state(commands: &[HostCommand]) -> Option<u64> {
    commands.iter().rev().find_map(|c| match c {
        HostCommand::StoreSealedState { counter, .. } => Some(*counter),
        _ => None,
    })
}

impl HostService {
    /// Takes a loaded host and its store. An enclave not yet started is
    /// started from the store's sealed state and mail-to-self.
    pub fn new(host: EnclaveHost, store: impl Store + 'static, config: ServiceConfig) -> Result<Self, HostError> {
        Self::with_store(host, Box::new(store), config)
    }

    /// As [`new`](Self::new), with a store chosen at run time (see [`crate::store::open`]).
    pub fn with_store(host: EnclaveHost, store: Box<dyn Store>, config: ServiceConfig) -> Result<Self, HostError> {
        let mut service = Self {
            host,
            store,
            config,
            traffic: Vec::new(),
            restarts: 0,
            resets: 0,
            failed_commits: 0,
            last_outcome: "NONE",
            enclave_at: u64::MAX,
        };
        if !service.host.is_started() {
            service.start_enclave()?;
        }
        Ok(service)
    }

    /// Starts the enclave from what the store holds and commits its start-up
    /// commands (the run's own state first), before anything is served, all
    /// under the store's call lock.
    fn start_enclave(&mut self) -> Result<(), HostError> {
        let head = self.store.begin_call()?;
        let started = (|| {
            let input = StartInput {
                platform_secret: self.config.platform_secret,
                sealed_state: self.store.sealed_state()?,
                self_mail: self.store.self_mail()?,
                persistent_map_limit: self.config.persistent_map_limit,
            };
            self.host.start_with(None, input)
        })();
        let commands = match started {
            Ok(commands) => commands,
            Err(error) => {
                self.store.abort_call();
                return Err(error);
            }
        };
        let at = last_state(&commands).unwrap_or(head);
        if let Err(error) = self.commit_batch(commands, None) {
            // A run whose own state is not stored must not serve: every later
            // commit of it would be refused anyway. Try again at the next request.
            self.host.close();
            return Err(error);
        }
        self.enclave_at = at;
        Ok(())
    }

    /// Takes the store's call lock and brings the enclave up to the
    /// committed state if it is elsewhere (returns the commands that took,
    /// to commit with the call). With one host, the lock is free and the
    /// enclave is there already unless a commit failed or code panicked;
    /// with several hosts on one database, the lock orders every call
    /// against the shared state.
    fn begin(&mut self) -> Result<Vec<HostCommand>, HostError> {
        let head = self.store.begin_call()?;
        if head == self.enclave_at {
            return Ok(Vec::new());
        }
        let reset = (|| {
            let state = self.store.sealed_state()?;
            let self_mail = self.store.self_mail()?;
            self.host.reset(state, self_mail)
        })();
        match reset {
            Ok(commands) => {
                self.resets += 1;
                self.enclave_at = last_state(&commands).unwrap_or(head);
                Ok(commands)
            }
            Err(error) => {
                self.store.abort_call();
                tracing::error!("bringing the enclave up to the committed state failed: {error}; restarting it");
                self.restart_enclave()?;
                // The restarted enclave holds the committed state; take the lock again.
                let head = self.store.begin_call()?;
                if head != self.enclave_at {
                    self.store.abort_call();
                    return Err(error);
                }
                Ok(Vec::new())
            }
        }
    }

    /// Starts the enclave if it is not running (an earlier start could not
    /// commit, e.g. on a full disk).
    fn ensure_started(&mut self) -> Result<(), HostError> {
        if self.host.is_started() { Ok(()) } else { self.start_enclave() }
    }

    /// Stops the enclave and starts it again from the last committed state
    /// (after a crash, or to pick up a new state). It gets new keys.
    pub fn restart_enclave(&mut self) -> Result<(), HostError> {
        self.host.close();
        self.restarts += 1;
        self.start_enclave()
    }

    /// How many times the enclave was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// How many times the enclave was reset in place (same keys) to the
    /// last committed state, after a failed commit or a panic.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// How many store commits have failed.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits
    }

    /// What became of the last delivered mail: `ACCEPTED`, a rejection's
    /// code (`SEQUENCE_REPLAYED`, `STATE_ROLLBACK`, …), or `NONE`. The
    /// enclave reports it in clear for metrics; clients learn it from the
    /// encrypted answer.
    pub fn last_outcome(&self) -> &'static str {
        self.last_outcome
    }

    /// The encoded EnclaveInstanceInfo of the running enclave.
    pub fn attestation(&mut self) -> Result<Vec<u8>, HostError> {
        self.ensure_started()?;
        Ok(self.host.enclave_instance_info()?.encode())
    }

    /// The running enclave's host, for calls this service does not cover.
    pub fn host_mut(&mut self) -> &mut EnclaveHost {
        &mut self.host
    }

    /// The store (for tests and operators; it holds only sealed and encrypted bytes).
    pub fn store_mut(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// What the host saw of recent traffic.
    pub fn traffic(&self) -> &[Traffic] {
        &self.traffic
    }

    fn record(&mut self, inbound: bool, correlation_id: &str, size: usize) {
        if self.traffic.len() == TRAFFIC_KEPT {
            self.traffic.remove(0);
        }
        self.traffic.push(Traffic { inbound, correlation_id: correlation_id.to_owned(), size });
    }

    /// Delivers a mail under `correlation_id`, commits what the enclave did,
    /// and returns its first reply for that id (which also stays queued until acknowledged).
    pub fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, HostError> {
        let queued = self.store.queue_len(correlation_id)?;
        if queued >= self.config.max_queued_replies {
            return Err(HostError::ReplyQueueFull { correlation_id: correlation_id.to_owned(), queued });
        }
        self.ensure_started()?;
        self.record(true, correlation_id, mail.len());
        self.last_outcome = "NONE";
        let mut commands = self.begin()?;
        let delivered = match self.host.deliver_mail(mail, Some(correlation_id)) {
            Ok(delivered) => delivered,
            Err(error) => {
                self.store.abort_call();
                return Err(self.recover(error));
            }
        };
        commands.extend(delivered.commands);
        let first = self.commit(commands, Some(correlation_id))?;
        self.last_outcome = delivered.outcome;
        Ok(first)
    }

    /// Passes bytes to the enclave and commits what it did; returns its answer.
    pub fn call_enclave(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        self.ensure_started()?;
        let mut commands = self.begin()?;
        let outcome = match self.host.call_enclave(bytes) {
            Ok(outcome) => outcome,
            Err(error) => {
                self.store.abort_call();
                return Err(self.recover(error));
            }
        };
        commands.extend(outcome.commands);
        self.commit(commands, None)?;
        Ok(outcome.response)
    }

    /// After a failed call (nothing of it was committed): if the enclave
    /// process died, starts it again from the last committed state, with new
    /// keys; if enclave code panicked, resets it in place to that state,
    /// keeping its keys. Returns the original error.
    fn recover(&mut self, error: HostError) -> HostError {
        let crashed = matches!(&error, HostError::Simulation(e) if e.ended_the_process());
        let failed = error.code() == "ENCLAVE_FAILED" && !crashed;
        if crashed {
            tracing::warn!("{error}; restarting the enclave from the last committed state");
            if let Err(restart) = self.restart_enclave() {
                tracing::error!("restarting the enclave failed: {restart}");
            }
        } else if failed {
            // The call was undone in the enclave, but its application value
            // may be half-updated: rebuild it in place (same keys) from the
            // committed state before the next call.
            tracing::warn!("{error}; the enclave will be reset to the last committed state");
            self.enclave_at = u64::MAX;
        }
        error
    }

    /// Commits one call's commands as one transaction (ending the call
    /// lock); returns the first reply routed to `direct`. If the store
    /// refuses, the enclave (which moved on in memory) is brought back to
    /// the committed state in place, keeping its keys, before its next call:
    /// the two never drift apart, and clients need not attest again.
    fn commit(&mut self, commands: Vec<HostCommand>, direct: Option<&str>) -> Result<Option<QueuedMail>, HostError> {
        let at = last_state(&commands);
        match self.commit_batch(commands, direct) {
            Ok(first) => {
                if let Some(at) = at {
                    self.enclave_at = at;
                }
                Ok(first)
            }
            Err(error) => {
                tracing::error!("{error}; the enclave will be reset to the last committed state");
                self.enclave_at = u64::MAX;
                Err(error)
            }
        }
    }

    fn commit_batch(
        &mut self,
        commands: Vec<HostCommand>,
        direct: Option<&str>,
    ) -> Result<Option<QueuedMail>, HostError> {
        let mut batch = Batch::default();
        if let Some(id) = direct {
            batch.correlation_ids.push(id.to_owned());
        }
        for command in commands {
            match command {
                HostCommand::PostMail { bytes, routing_hint } => {
                    let hint = routing_hint.unwrap_or_else(|| UNROUTED.to_owned());
                    self.record(false, &hint, bytes.len());
                    batch.replies.push((hint, bytes));
                }
                HostCommand::StoreSealedState { blob, counter, state_id, nonce } => {
                    batch.states.push(ChainEntry { counter, state_id, nonce });
                    batch.sealed_state = Some(blob);
                }
                HostCommand::StoreMailToSelf { blob } => batch.self_mail.push(blob),
                HostCommand::DeleteMailToSelf { id } => batch.delete_self_mail.push(id),
                _ => {}
            }
        }
        let first = direct.and_then(|d| batch.replies.iter().position(|(hint, _)| hint == d));
        let ids = self.store.commit(&batch).inspect_err(|_| self.failed_commits += 1)?;
        Ok(first.map(|i| QueuedMail { id: ids[i], bytes: batch.replies.swap_remove(i).1 }))
    }

    /// Replies queued for `correlation_id`, oldest first (at most `limit`).
    pub fn poll(&mut self, correlation_id: &str, limit: usize) -> Result<Vec<QueuedMail>, HostError> {
        if !self.store.has_correlation_id(correlation_id)? {
            return Err(HostError::UnknownCorrelationId(correlation_id.to_owned()));
        }
        Ok(self.store.replies(correlation_id, limit)?)
    }

    /// Deletes acknowledged replies; returns how many were deleted.
    pub fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, HostError> {
        if !self.store.has_correlation_id(correlation_id)? {
            return Err(HostError::UnknownCorrelationId(correlation_id.to_owned()));
        }
        Ok(self.store.acknowledge(correlation_id, ids)?)
    }
}
