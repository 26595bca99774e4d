//! The enclave worker: the one thread that owns the [`HostService`].
//!
//! `HostService` holds a SQLite connection and the enclave; it is `Send` but
//! not `Sync`, and every call must see the previous call's committed state.
//! So one dedicated thread owns it and serves jobs in arrival order from a
//! bounded queue. A request that finds the queue full is refused at once
//! (`BUSY`, 503 + Retry-After) instead of waiting in unbounded memory.
//!
//! Only what needs the enclave waits here: the worker publishes the
//! attestation of each enclave run and the reply count for the handlers to
//! read without a job, and polls go to reader connections (`reads.rs`)
//! unless the store lives in memory. Between jobs, and at least every
//! `prune_interval`, it forgets idle correlation ids.
//!
//! ```text
//!  handler ──try_send(Job)──► [ bounded queue ] ──► worker thread ──► HostService
//!     ▲                                                  │
//!     └────────────── oneshot reply ◄────────────────────┘
//! ```

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::body::Bytes;
use conclave_core::{InfoError, QueuedMail};
use tokio::sync::{OnceCell, oneshot};

use super::{WebConfig, WebError, body::Held, metrics::Metrics};
use crate::{HostError, HostService};

/// The answer channel of one job.
type Reply<T> = oneshot::Sender<Result<T, HostError>>;

/// One request for the service, decoded and validated by the HTTP layer.
pub(crate) enum Job {
    /// Deliver one mail under a correlation id.
    Deliver { correlation_id: String, mail: Held, reply: Reply<Option<QueuedMail>> },
    /// Queued replies of a correlation id (stores in memory only).
    Poll { correlation_id: String, limit: usize, reply: Reply<Vec<QueuedMail>> },
    /// Delete acknowledged replies (stores in memory only).
    Acknowledge { correlation_id: String, ids: Vec<u64>, reply: Reply<usize> },
}

/// The attestation of one enclave run, with its JSON view once someone asks.
#[derive(Debug)]
pub(crate) struct Attestation {
    /// The encoded EnclaveInstanceInfo.
    pub(crate) encoded: Bytes,
    /// Its verified JSON view: verified once per run, on first request.
    pub(crate) json: OnceCell<Result<Arc<serde_json::Value>, InfoError>>,
}

/// What the worker publishes for health and metrics, read without a job so
/// both answer even while the worker is busy.
#[derive(Debug, Default)]
pub(crate) struct WorkerStatus {
    /// Jobs accepted but not yet picked up.
    pub(crate) queued: AtomicUsize,
    /// Whether the enclave is started and the worker alive.
    pub(crate) enclave_running: AtomicBool,
    /// Replies waiting in the store, over all correlation ids.
    pub(crate) stored_replies: AtomicU64,
    /// The running enclave's attestation; `None` while it is stopped.
    pub(crate) attestation: RwLock<Option<Arc<Attestation>>>,
}

impl WorkerStatus {
    /// The published attestation of the running enclave.
    pub(crate) fn attestation(&self) -> Option<Arc<Attestation>> {
        self.attestation.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The sending side: cheap to clone, shared by all handlers.
#[derive(Debug, Clone)]
pub(crate) struct WorkerHandle {
    sender: mpsc::SyncSender<Job>,
    status: Arc<WorkerStatus>,
    capacity: usize,
}

impl WorkerHandle {
    /// The worker's published status.
    pub(crate) fn status(&self) -> &WorkerStatus {
        &self.status
    }

    /// Whether the queue is full now (a new job would be refused).
    pub(crate) fn is_full(&self) -> bool {
        self.status.queued.load(Ordering::SeqCst) >= self.capacity
    }

    /// Queues a job built around a fresh reply channel and waits for its answer.
    pub(crate) async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, HostError> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending so the worker's decrement can never run first.
        self.status.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.sender.try_send(job(reply)) {
            self.status.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(match e {
                mpsc::TrySendError::Full(_) => WebError::Busy.into(),
                mpsc::TrySendError::Disconnected(_) => WebError::WorkerStopped.into(),
            });
        }
        // A dropped reply means the worker died during the job.
        answer.await.unwrap_or_else(|_| Err(WebError::WorkerStopped.into()))
    }
}

/// Marks the enclave unavailable when the worker ends, even by a panic.
struct RunningGuard(Arc<WorkerStatus>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.enclave_running.store(false, Ordering::SeqCst);
    }
}

/// What the worker needs from the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_stored_replies: u64,
    max_idle_secs: i64,
    prune_interval: Duration,
}

/// Starts the worker thread around `service` with room for
/// `config.queue_capacity` waiting jobs. The thread ends when every handle is dropped.
pub(crate) fn spawn(
    mut service: HostService,
    config: &WebConfig,
    metrics: Arc<Metrics>,
) -> Result<(WorkerHandle, std::thread::JoinHandle<()>), HostError> {
    let capacity = config.queue_capacity.max(1);
    let limits = Limits {
        max_stored_replies: config.max_stored_replies,
        max_idle_secs: i64::try_from(config.correlation_id_max_idle.as_secs()).unwrap_or(i64::MAX),
        prune_interval: config.prune_interval.max(Duration::from_millis(10)),
    };
    let (sender, receiver) = mpsc::sync_channel(capacity);
    let status = Arc::new(WorkerStatus::default());
    // Publish before serving, so the first request sees the real state.
    let mut restarts_seen = service.restarts();
    publish(&mut service, &status, &metrics, &mut restarts_seen);
    let worker_status = status.clone();
    let thread = std::thread::Builder::new()
        .name("conclave-enclave-worker".into())
        .spawn(move || serve(service, &receiver, worker_status, &metrics, limits))
        .map_err(|source| WebError::Io { action: "start the enclave worker thread", source })?;
    Ok((WorkerHandle { sender, status, capacity }, thread))
}

fn serve(
    mut service: HostService,
    jobs: &mpsc::Receiver<Job>,
    status: Arc<WorkerStatus>,
    metrics: &Metrics,
    limits: Limits,
) {
    let _guard = RunningGuard(status.clone());
    let mut restarts_seen = service.restarts();
    publish(&mut service, &status, metrics, &mut restarts_seen);
    let mut next_prune = Instant::now();
    loop {
        if Instant::now() >= next_prune {
            prune(&mut service, metrics, limits.max_idle_secs);
            next_prune = Instant::now() + limits.prune_interval;
        }
        let job = match jobs.recv_timeout(next_prune.saturating_duration_since(Instant::now())) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        status.queued.fetch_sub(1, Ordering::SeqCst);
        // Each job's answer is sent after the published status is refreshed,
        // so a client that got its answer sees its effects in health and metrics.
        // A send error means the requester went away (client disconnected);
        // the job's effects are committed all the same, as with a lost response.
        let answer: Box<dyn FnOnce()> = match job {
            Job::Deliver { correlation_id, mail, reply } => {
                // Acknowledgements only lower the count after it was read, so
                // this may refuse a little early, never late.
                let stored = status.stored_replies.load(Ordering::SeqCst);
                let result = if stored >= limits.max_stored_replies {
                    Err(WebError::ReplyStoreFull { stored }.into())
                } else {
                    service.deliver(&correlation_id, &mail.bytes)
                };
                drop(mail);
                if result.is_ok() {
                    metrics.mails_in.inc();
                    metrics.mails_out.inc_by(replies_posted_by_last_call(&service));
                }
                Box::new(move || drop(reply.send(result)))
            }
            Job::Poll { correlation_id, limit, reply } => {
                let result = service.poll(&correlation_id, limit);
                Box::new(move || drop(reply.send(result)))
            }
            Job::Acknowledge { correlation_id, ids, reply } => {
                let result = service.acknowledge(&correlation_id, &ids);
                Box::new(move || drop(reply.send(result)))
            }
        };
        publish(&mut service, &status, metrics, &mut restarts_seen);
        answer();
    }
}

/// Forgets correlation ids that have been empty and unused for too long.
fn prune(service: &mut HostService, metrics: &Metrics, max_idle_secs: i64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    match service.store_mut().prune_correlation_ids(now, max_idle_secs) {
        Ok(0) => {}
        Ok(pruned) => {
            metrics.correlation_ids_pruned.inc_by(pruned as u64);
            tracing::info!(pruned, "forgot idle correlation ids with no queued replies");
        }
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Counts the replies the enclave posted during the last delivery: the
/// outbound traffic records after the last inbound one. The worker is the
/// service's only user, so nothing else is interleaved.
fn replies_posted_by_last_call(service: &HostService) -> u64 {
    let posted = service.traffic().iter().rev().take_while(|t| !t.inbound).count();
    posted as u64
}

/// Refreshes what the handlers read without a job.
fn publish(service: &mut HostService, status: &WorkerStatus, metrics: &Metrics, restarts_seen: &mut u64) {
    let running = service.host_mut().is_started();
    status.enclave_running.store(running, Ordering::SeqCst);
    match service.store_mut().queue_depth() {
        Ok(depth) => {
            status.stored_replies.store(depth, Ordering::SeqCst);
            metrics.stored_replies.set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!("cannot count queued replies: {e}"),
    }
    let restarts = service.restarts();
    metrics.enclave_restarts.inc_by(restarts.saturating_sub(*restarts_seen));
    *restarts_seen = restarts;
    // The attestation is fixed for an enclave run; comparing the bytes also
    // catches any change within a run, so what is served is always current.
    let current = if running { service.attestation().ok() } else { None };
    let mut published = status.attestation.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let unchanged = match (&*published, &current) {
        (Some(old), Some(new)) => old.encoded[..] == new[..],
        (None, None) => true,
        _ => false,
    };
    if !unchanged {
        *published =
            current.map(|encoded| Arc::new(Attestation { encoded: Bytes::from(encoded), json: OnceCell::new() }));
    }
}
