//! The accept loop and the life of one connection.
//!
//! ```text
//!  accept ──► cap reached? ── yes ─► close at once (counted, logged, health: connections_at_cap)
//!    │ no: one permit per open connection
//!    ▼
//!  TLS handshake (within header_timeout) ──► hyper HTTP/1.1 ──► axum router
//!                      watchdog: head within header_timeout of its first byte,
//!                                 idle within idle_timeout of the last response
//! ```
//!
//! hyper's own header timeout starts whenever it waits for a request head,
//! so it cannot tell a slow head from an idle kept-alive connection; a small
//! watchdog per connection does both, from what the socket reads and when
//! each request starts and ends. Bodies have their own deadline, enforced
//! where they are read (`body.rs`).

use std::{
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{Notify, Semaphore, watch},
    time::Instant,
};
use tower::ServiceExt;

use super::{
    WebError,
    api::AppState,
    memory::{Churn, trim_periodically},
};

/// Where a connection is in its life, for the watchdog.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head that began at `since`.
    Head { since: Instant },
    /// Kept alive with nothing to do since `since`.
    Idle { since: Instant },
    /// A request is being served: its body and handler have their own limits.
    Busy,
}

/// What the socket and the service tell the watchdog.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        // A fresh connection owes its first head at once.
        Self { phase: Mutex::new(Phase::Head { since: Instant::now() }), changed: Notify::new() }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, update: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *phase = update(*phase);
        drop(phase);
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection they start a request head.
    fn bytes_read(&self) {
        if matches!(self.phase(), Phase::Idle { .. }) {
            self.set(|phase| match phase {
                Phase::Idle { .. } => Phase::Head { since: Instant::now() },
                other => other,
            });
        }
    }

    fn request_started(&self) {
        self.set(|_| Phase::Busy);
    }

    fn request_finished(&self) {
        self.set(|_| Phase::Idle { since: Instant::now() });
    }
}

/// Marks the request finished however its future ends (answered or dropped).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Why the watchdog closed a connection (the `cause` label of `conclave_timeouts_total`).
const HEADER: &str = "header";
const IDLE: &str = "idle";
const TLS_HANDSHAKE: &str = "tls_handshake";

/// Resolves when the connection has overstayed: a head that takes longer
/// than `header`, or an idle spell longer than `idle`.
async fn watchdog(activity: &Activity, header: Duration, idle: Duration) -> &'static str {
    loop {
        let notified = activity.changed.notified();
        let mut notified = pin!(notified);
        notified.as_mut().enable();
        let (deadline, cause) = match activity.phase() {
            Phase::Busy => {
                notified.await;
                continue;
            }
            Phase::Head { since } => (since + header, HEADER),
            Phase::Idle { since } => (since + idle, IDLE),
        };
        if Instant::now() >= deadline {
            return cause;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = notified => {}
        }
    }
}

/// A socket that tells its [`Activity`] when bytes arrive.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Logs a repeated event at most once a second, with how often it happened.
#[derive(Debug, Default)]
struct Throttle {
    last_logged_ms: AtomicU64,
    since_last: AtomicU64,
}

impl Throttle {
    /// Counts one event; returns how many to report if it is time to log.
    fn tick(&self, now_ms: u64) -> Option<u64> {
        let count = self.since_last.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= 1000)
            && self.last_logged_ms.compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.since_last.store(0, Ordering::Relaxed);
            return Some(count);
        }
        None
    }
}

/// Accepts connections until `shutdown`, then lets open connections finish
/// their requests and returns when the last one is closed.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let config = state.config.clone();
    let cap = u32::try_from(config.max_connections).unwrap_or(u32::MAX >> 3);
    let connections = Arc::new(Semaphore::new(cap as usize));
    let tls = config.tls.as_ref().map(|tls| tokio_rustls::TlsAcceptor::from(tls.server.clone()));
    let (stop, stopped) = watch::channel(false);
    let churn = Arc::new(Churn::default());
    tokio::spawn(trim_periodically(churn.clone(), config.memory_trim_interval, stopped.clone()));
    let started = std::time::Instant::now();
    let refused_log = Throttle::default();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, or a connection reset before it was
                // accepted. Back off a little so a descriptor shortage does
                // not spin the loop.
                state.metrics.accept_errors.inc();
                tracing::warn!(%error, open = connections_open(&state), "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Closing at once costs nothing; answering would need a task,
            // and TLS a handshake, for a connection that cannot be served.
            drop(stream);
            state.metrics.refuse("connection_cap");
            state.signals.note(&state.signals.connection_cap, std::time::Instant::now());
            let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Some(count) = refused_log.tick(now_ms) {
                tracing::warn!(
                    cap = config.max_connections,
                    refused = count,
                    "connection cap reached: closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        churn.note();
        state.metrics.connections_accepted.inc();
        let open = state.signals.connections_open.fetch_add(1, Ordering::Relaxed) + 1;
        state.metrics.connections_open.set(i64::try_from(open).unwrap_or(i64::MAX));
        tracing::debug!(%peer, open, "connection accepted");
        let (app, state, tls, stopped, churn) =
            (app.clone(), state.clone(), tls.clone(), stopped.clone(), churn.clone());
        tokio::spawn(async move {
            connection(stream, tls, app, &state, stopped).await;
            churn.note();
            let open = state.signals.connections_open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            state.metrics.connections_open.set(i64::try_from(open).unwrap_or(i64::MAX));
            tracing::debug!(%peer, open, "connection closed");
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(open = connections_open(&state), "shutting down: finishing open requests");
    let _ = stop.send(true);
    // Every connection holds a permit until it is closed.
    let _all_closed = connections.acquire_many(cap).await;
    Ok(())
}

fn connections_open(state: &AppState) -> usize {
    state.signals.connections_open.load(Ordering::Relaxed)
}

/// Serves one connection to its end: closed by the client, by a timeout, or
/// by shutdown once its request in flight is answered.
async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    state: &AppState,
    stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let watched = Watched { inner: stream, activity: activity.clone() };
    match tls {
        None => http(TokioIo::new(watched), activity, app, state, stopped).await,
        Some(acceptor) => match tokio::time::timeout(state.config.header_timeout, acceptor.accept(watched)).await {
            Ok(Ok(stream)) => http(TokioIo::new(stream), activity, app, state, stopped).await,
            Ok(Err(error)) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!(%error, "TLS handshake failed");
            }
            Err(_) => state.metrics.timeout(TLS_HANDSHAKE),
        },
    }
}

async fn http<I>(io: I, activity: Arc<Activity>, app: Router, state: &AppState, mut stopped: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        service_activity.request_started();
        let guard = RequestGuard(service_activity.clone());
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await;
            drop(guard);
            response
        }
    });
    let mut builder = http1::Builder::new();
    // The watchdog times heads and idle spells; hyper's own timer would
    // close idle kept-alive connections after the head timeout.
    builder.header_read_timeout(None).keep_alive(true).half_close(false);
    let connection = builder.serve_connection(io, service);
    let mut connection = pin!(connection);
    let config = &state.config;
    let mut watchdog = pin!(watchdog(&activity, config.header_timeout, config.idle_timeout));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            cause = &mut watchdog => {
                state.metrics.timeout(cause);
                tracing::debug!(cause, "closing a connection that overstayed its timeout");
                // Dropping the connection closes the socket at once.
                return;
            }
            changed = stopped.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_logging_reports_the_count_once_a_second() {
        let throttle = Throttle::default();
        assert_eq!(throttle.tick(10), Some(1));
        assert_eq!(throttle.tick(500), None);
        assert_eq!(throttle.tick(900), None);
        assert_eq!(throttle.tick(1010), Some(3));
        assert_eq!(throttle.tick(1500), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_times_heads_and_idle_spells_separately() {
        let header = Duration::from_secs(2);
        let idle = Duration::from_secs(10);
        let activity = Activity::new();
        let start = Instant::now();
        assert_eq!(watchdog(&activity, header, idle).await, HEADER);
        assert_eq!(Instant::now() - start, header);

        activity.request_started();
        activity.request_finished();
        let idle_start = Instant::now();
        assert_eq!(watchdog(&activity, header, idle).await, IDLE);
        assert_eq!(Instant::now() - idle_start, idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_has_no_connection_deadline() {
        let activity = Arc::new(Activity::new());
        activity.request_started();
        let header = Duration::from_secs(1);
        let busy = tokio::time::timeout(Duration::from_secs(3600), watchdog(&activity, header, header)).await;
        assert!(busy.is_err(), "the watchdog fired during a request");
        // A first byte after an idle spell starts the head clock.
        activity.request_finished();
        tokio::time::advance(Duration::from_millis(500)).await;
        activity.bytes_read();
        let head_start = Instant::now();
        assert_eq!(watchdog(&activity, header, Duration::from_secs(60)).await, HEADER);
        assert_eq!(Instant::now() - head_start, header);
    }
}
