//! Reading request bodies under a deadline and a shared byte budget, and
//! refusing them early without breaking the client's upload.
//!
//! ```text
//!  head read ─► Content-Length over the limit? ─► 413 before any byte is read
//!      │
//!      ▼ each frame as it arrives: take its size from the budget (wait for it) ─► keep
//!      │ until the end of the body, or the deadline ─► 408 BODY_TIMEOUT, budget given back
//!      ▼
//!  Held { bytes, budget } ─► worker; the budget returns when the job is answered
//! ```
//!
//! A body takes budget only for bytes that have arrived, so a stalled or
//! trickling upload holds next to nothing, and nothing past its deadline;
//! the budget bounds the memory held by bodies however many clients connect.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, header},
};
use http_body_util::BodyExt;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::{WebError, metrics::Metrics};

/// The budget of bytes held by request bodies, with its gauge.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    metrics: Arc<Metrics>,
}

/// A body read whole, holding its share of the budget until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) bytes: Bytes,
    budget: Option<OwnedSemaphorePermit>,
    /// Bytes counted in the gauge (and taken from the budget).
    counted: usize,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.body_bytes_held.dec_by(i64::try_from(self.counted).unwrap_or(i64::MAX));
    }
}

impl Budget {
    pub(crate) fn new(bytes: usize, metrics: Arc<Metrics>) -> Self {
        let total = bytes.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        Self { permits: Arc::new(Semaphore::new(total)), total, metrics }
    }

    /// Reads `body` whole: at most `limit` bytes, all of it before `deadline`.
    ///
    /// The bytes are copied into one buffer as they arrive, and the budget
    /// is taken for that buffer's capacity: keeping hyper's frames instead
    /// would let a body sent one byte at a time pin a whole read buffer per
    /// byte, far more memory than the budget counts. The buffer grows by
    /// doubling, never past the declared length.
    pub(crate) async fn read(
        &self,
        mut body: Body,
        declared: Option<u64>,
        limit: usize,
        deadline: Instant,
        timeout_seconds: f64,
    ) -> Result<Held, WebError> {
        let timed_out = || {
            self.metrics.timeout("body");
            WebError::BodyTimeout { seconds: timeout_seconds }
        };
        let ceiling = declared.and_then(|d| usize::try_from(d).ok()).unwrap_or(limit).min(limit);
        let mut buffer: Vec<u8> = Vec::new();
        // Gives back its budget and gauge however the read ends.
        let mut held = Held { bytes: Bytes::new(), budget: None, counted: 0, metrics: self.metrics.clone() };
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(timed_out()),
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    return Err(WebError::BadRequest(format!("cannot read the body: {error}")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            let needed = buffer.len().saturating_add(data.len());
            if needed > limit {
                return Err(WebError::PayloadTooLarge { limit });
            }
            if needed > held.counted {
                // Grow to the next capacity, paid for from the budget first.
                let capacity = needed.max(held.counted.saturating_mul(2)).max(1024).min(ceiling.max(needed));
                let more = capacity - held.counted;
                let want = u32::try_from(more).unwrap_or(u32::MAX);
                let permit =
                    match tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(want)).await {
                        Err(_) => return Err(timed_out()),
                        Ok(Err(_closed)) => return Err(WebError::WorkerStopped),
                        Ok(Ok(permit)) => permit,
                    };
                match &mut held.budget {
                    Some(all) => all.merge(permit),
                    None => held.budget = Some(permit),
                }
                held.counted = capacity;
                self.metrics.body_bytes_held.inc_by(i64::try_from(more).unwrap_or(i64::MAX));
                buffer.reserve_exact(capacity - buffer.len());
            }
            buffer.extend_from_slice(&data);
        }
        held.bytes = Bytes::from(buffer);
        Ok(held)
    }
}

impl Budget {
    /// A response body that holds its size in budget until it is sent (or
    /// the connection drops it), so large poll answers count against the
    /// same bound as request bodies. Waits for budget until `deadline`.
    pub(crate) async fn hold_response(&self, bytes: Bytes, deadline: Instant) -> Result<Body, WebError> {
        let want = bytes.len().min(self.total).max(1);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(want))
            .await
            .map_err(|_| WebError::Busy)?
            .map_err(|_| WebError::WorkerStopped)?;
        let len = bytes.len();
        self.metrics.body_bytes_held.inc_by(i64::try_from(len).unwrap_or(i64::MAX));
        let release = Held { bytes: Bytes::new(), budget: Some(permit), counted: len, metrics: self.metrics.clone() };
        // The closure owns the budget: it is given back when the body is dropped.
        Ok(Body::new(http_body_util::Full::new(bytes).map_frame(move |frame| {
            let _held = &release;
            frame
        })))
    }
}

/// The declared length of a request body, if any.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Whether the client waits for `100 Continue` before sending its body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Disposes of the body of a request refused before its body was read, so
/// that the client can read the refusal.
///
/// A client that asked for `100 Continue` has not sent its body: dropping it
/// tells hyper not to invite it. Any other client is sending right now; if
/// the server closed the socket with its bytes unread, the kernel would
/// answer with a reset that can destroy the refusal before the client reads
/// it (a "broken pipe" instead of a 503). So a body of up to `drain_limit`
/// declared bytes is read and thrown away in the background, within the body
/// deadline; anything larger or undeclared is dropped (the connection closes).
pub(crate) fn discard(body: Body, headers: &HeaderMap, drain_limit: usize, deadline: Instant) {
    if expects_continue(headers) {
        return;
    }
    let Some(declared) = content_length(headers) else { return };
    if declared == 0 || declared > drain_limit as u64 {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let _ = tokio::time::timeout_at(deadline, async { while let Some(Ok(_frame)) = body.frame().await {} }).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: usize) -> Budget {
        Budget::new(bytes, Arc::new(Metrics::new()))
    }

    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_body_takes_budget_for_its_bytes_and_gives_it_back() {
        let budget = budget(100);
        let held = budget.read(Body::from(vec![1u8; 60]), Some(60), 80, far(), 1.0).await.unwrap();
        assert_eq!(held.bytes.len(), 60);
        assert_eq!(budget.permits.available_permits(), 40);
        drop(held);
        assert_eq!(budget.permits.available_permits(), 100);
    }

    #[tokio::test]
    async fn over_the_limit_is_refused() {
        let error = budget(1000).read(Body::from(vec![1u8; 81]), None, 80, far(), 1.0).await.unwrap_err();
        assert!(matches!(error, WebError::PayloadTooLarge { limit: 80 }), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_for_budget_times_out_and_holds_nothing() {
        let budget = budget(100);
        let first = budget.read(Body::from(vec![1u8; 80]), Some(80), 100, far(), 1.0).await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        let error = budget.read(Body::from(vec![1u8; 50]), Some(50), 100, deadline, 2.0).await.unwrap_err();
        assert!(matches!(error, WebError::BodyTimeout { .. }), "{error}");
        assert_eq!(budget.permits.available_permits(), 20);
        drop(first);
        assert_eq!(budget.permits.available_permits(), 100);
    }
}
