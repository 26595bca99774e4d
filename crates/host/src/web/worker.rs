//! The enclave worker: the one thread that owns the [`HostService`].
//!
//! `HostService` holds a SQLite connection and the enclave; it is `Send` but
//! not `Sync`, and every call must see the previous call's committed state.
//! So one dedicated thread owns it and serves jobs in arrival order from a
//! bounded queue. A request that finds the queue full is refused at once
//! (`BUSY`, 503 + Retry-After) instead of waiting in unbounded memory.
//!
//! ```text
//!  handler ──try_send(Job)──► [ bounded queue ] ──► worker thread ──► HostService
//!     ▲                                                  │
//!     └────────────── oneshot reply ◄────────────────────┘
//! ```

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    mpsc,
};

use axum::body::Bytes;
use conclave_core::QueuedMail;
use tokio::sync::oneshot;

use super::{WebError, metrics::Metrics};
use crate::{HostError, HostService};

/// The answer channel of one job.
type Reply<T> = oneshot::Sender<Result<T, HostError>>;

/// One request for the service, decoded and validated by the HTTP layer.
pub(crate) enum Job {
    /// The encoded EnclaveInstanceInfo.
    Attestation(Reply<Vec<u8>>),
    /// Deliver one mail under a correlation id.
    Deliver { correlation_id: String, mail: Bytes, reply: Reply<Option<QueuedMail>> },
    /// Queued replies of a correlation id.
    Poll { correlation_id: String, limit: usize, reply: Reply<Vec<QueuedMail>> },
    /// Delete acknowledged replies.
    Acknowledge { correlation_id: String, ids: Vec<u64>, reply: Reply<usize> },
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
}

/// The sending side: cheap to clone, shared by all handlers.
#[derive(Debug, Clone)]
pub(crate) struct WorkerHandle {
    sender: mpsc::SyncSender<Job>,
    status: Arc<WorkerStatus>,
}

impl WorkerHandle {
    /// The worker's published status.
    pub(crate) fn status(&self) -> &WorkerStatus {
        &self.status
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

/// Starts the worker thread around `service` with room for `capacity`
/// waiting jobs. The thread ends when every handle is dropped.
pub(crate) fn spawn(
    mut service: HostService,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> Result<(WorkerHandle, std::thread::JoinHandle<()>), HostError> {
    let (sender, receiver) = mpsc::sync_channel(capacity);
    let status = Arc::new(WorkerStatus::default());
    // Publish before serving, so the first health check sees the real state.
    let mut restarts_seen = service.restarts();
    publish(&mut service, &status, &metrics, &mut restarts_seen);
    let worker_status = status.clone();
    let thread = std::thread::Builder::new()
        .name("conclave-enclave-worker".into())
        .spawn(move || serve(service, &receiver, worker_status, &metrics))
        .map_err(|source| WebError::Io { action: "start the enclave worker thread", source })?;
    Ok((WorkerHandle { sender, status }, thread))
}

fn serve(mut service: HostService, jobs: &mpsc::Receiver<Job>, status: Arc<WorkerStatus>, metrics: &Metrics) {
    let _guard = RunningGuard(status.clone());
    let mut restarts_seen = service.restarts();
    publish(&mut service, &status, metrics, &mut restarts_seen);
    while let Ok(job) = jobs.recv() {
        status.queued.fetch_sub(1, Ordering::SeqCst);
        // Each job's answer is sent after the published status is refreshed,
        // so a client that got its answer sees its effects in health and metrics.
        // A send error means the requester went away (client disconnected);
        // the job's effects are committed all the same, as with a lost response.
        let answer: Box<dyn FnOnce()> = match job {
            Job::Attestation(reply) => {
                let result = service.attestation();
                Box::new(move || drop(reply.send(result)))
            }
            Job::Deliver { correlation_id, mail, reply } => {
                let result = service.deliver(&correlation_id, &mail);
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

/// Counts the replies the enclave posted during the last delivery: the
/// outbound traffic records after the last inbound one. The worker is the
/// service's only user, so nothing else is interleaved.
fn replies_posted_by_last_call(service: &HostService) -> u64 {
    let posted = service.traffic().iter().rev().take_while(|t| !t.inbound).count();
    posted as u64
}

/// Refreshes what health and metrics read.
fn publish(service: &mut HostService, status: &WorkerStatus, metrics: &Metrics, restarts_seen: &mut u64) {
    status.enclave_running.store(service.host_mut().is_started(), Ordering::SeqCst);
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
}
