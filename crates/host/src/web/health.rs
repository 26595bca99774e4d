//! What `/v1/health` reports: the enclave's state, and whether the host has
//! recently refused or failed work, so that it never says "ok" while mail
//! is being turned away.
//!
//! ```text
//!  ok           200  the enclave runs and nothing was refused or failed within the window
//!  degraded     200  it runs, but: deliveries_refused_busy, commits_failing,
//!                    connections_at_cap, reply_store_full (one or more)
//!  unavailable  503  enclave_stopped
//! ```

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// When something last happened, readable from any thread without a lock.
#[derive(Debug)]
pub(crate) struct Recent {
    /// Milliseconds after `Signals::epoch`, plus one; 0 means never.
    last: AtomicU64,
}

/// Events that make the host degraded for a while, and connection counts.
#[derive(Debug)]
pub(crate) struct Signals {
    epoch: Instant,
    /// A delivery refused because the worker's queue was full.
    pub(crate) busy: Recent,
    /// A delivery failed because the store did not commit.
    pub(crate) store_failed: Recent,
    /// A delivery failed because the store's disk was full.
    pub(crate) store_full: Recent,
    /// A connection closed at once because the cap was reached.
    pub(crate) connection_cap: Recent,
    /// Connections open now.
    pub(crate) connections_open: AtomicUsize,
}

impl Signals {
    pub(crate) fn new() -> Self {
        let never = || Recent { last: AtomicU64::new(0) };
        Self {
            epoch: Instant::now(),
            busy: never(),
            store_failed: never(),
            store_full: never(),
            connection_cap: never(),
            connections_open: AtomicUsize::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Records that `event` happened at `now`.
    pub(crate) fn note(&self, event: &Recent, now: Instant) {
        event.last.fetch_max(self.millis(now), Ordering::Relaxed);
    }

    /// Whether `event` happened within `window` before `now`.
    pub(crate) fn within(&self, event: &Recent, window: Duration, now: Instant) -> bool {
        match event.last.load(Ordering::Relaxed) {
            0 => false,
            last => self.millis(now).saturating_sub(last) <= u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The inputs of one health answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs {
    pub(crate) enclave_running: bool,
    pub(crate) busy_recently: bool,
    pub(crate) store_failed_recently: bool,
    pub(crate) store_full_recently: bool,
    pub(crate) connections_at_cap: bool,
    pub(crate) reply_store_full: bool,
}

/// The status word and its reasons, most serious first.
pub(crate) fn assess(inputs: Inputs) -> (&'static str, Vec<&'static str>) {
    let mut reasons = Vec::new();
    if !inputs.enclave_running {
        reasons.push("enclave_stopped");
    }
    if inputs.store_full_recently {
        reasons.push("store_full");
    }
    if inputs.store_failed_recently {
        reasons.push("commits_failing");
    }
    if inputs.reply_store_full {
        reasons.push("reply_store_full");
    }
    if inputs.busy_recently {
        reasons.push("deliveries_refused_busy");
    }
    if inputs.connections_at_cap {
        reasons.push("connections_at_cap");
    }
    let status = match (inputs.enclave_running, reasons.is_empty()) {
        (false, _) => "unavailable",
        (true, true) => "ok",
        (true, false) => "degraded",
    };
    (status, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAR: Inputs = Inputs {
        enclave_running: true,
        busy_recently: false,
        store_failed_recently: false,
        store_full_recently: false,
        connections_at_cap: false,
        reply_store_full: false,
    };

    #[test]
    fn each_signal_degrades_and_a_stopped_enclave_is_unavailable() {
        assert_eq!(assess(CLEAR), ("ok", vec![]));
        assert_eq!(assess(Inputs { busy_recently: true, ..CLEAR }), ("degraded", vec!["deliveries_refused_busy"]));
        assert_eq!(assess(Inputs { store_failed_recently: true, ..CLEAR }), ("degraded", vec!["commits_failing"]));
        assert_eq!(assess(Inputs { store_full_recently: true, ..CLEAR }), ("degraded", vec!["store_full"]));
        assert_eq!(assess(Inputs { connections_at_cap: true, ..CLEAR }), ("degraded", vec!["connections_at_cap"]));
        assert_eq!(assess(Inputs { reply_store_full: true, ..CLEAR }), ("degraded", vec!["reply_store_full"]));
        let stopped = assess(Inputs { enclave_running: false, busy_recently: true, ..CLEAR });
        assert_eq!(stopped, ("unavailable", vec!["enclave_stopped", "deliveries_refused_busy"]));
    }

    #[test]
    fn events_count_within_their_window_only() {
        let signals = Signals::new();
        let start = signals.epoch;
        let window = Duration::from_secs(30);
        assert!(!signals.within(&signals.busy, window, start));
        signals.note(&signals.busy, start + Duration::from_secs(5));
        assert!(signals.within(&signals.busy, window, start + Duration::from_secs(35)));
        assert!(!signals.within(&signals.busy, window, start + Duration::from_secs(36)));
        // An older event never hides a newer one.
        signals.note(&signals.busy, start + Duration::from_secs(1));
        assert!(signals.within(&signals.busy, window, start + Duration::from_secs(35)));
    }
}
