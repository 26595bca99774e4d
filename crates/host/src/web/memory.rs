//! Giving freed memory back to the system after a burst of connections.
//!
//! Each connection's buffers and task are freed when it closes, but glibc's
//! allocator keeps freed pages in its per-thread arenas and returns only the
//! top of each heap: after 1,000 connections the host stayed about 20 MB
//! above its baseline indefinitely (docs/reliability.md has the figures).
//! `malloc_trim(0)` hands those free pages back. It walks every arena under
//! its lock, so it runs on a blocking thread, at most once per interval, and
//! only when connections opened or closed since the last time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Counts connection churn, so an idle host is not trimmed again and again.
#[derive(Debug, Default)]
pub(crate) struct Churn(AtomicU64);

impl Churn {
    pub(crate) fn note(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Trims every `interval` while connections come and go, until `stopped`.
pub(crate) async fn trim_periodically(
    churn: Arc<Churn>,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    let mut seen = churn.0.load(Ordering::Relaxed);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let now = churn.0.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            let _ = tokio::task::spawn_blocking(release_freed_memory).await;
        }
    }
}

/// Asks the allocator to return the memory it holds free to the system.
/// Returns whether anything was returned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_freed_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches only glibc's own free
    // lists, under the same arena locks every malloc and free takes; it is
    // safe to call from any thread at any time.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "returned freed memory to the system");
    released
}

/// Other allocators (musl, macOS, Windows) return large free blocks themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_after_freeing_is_harmless() {
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 16 * 1024]).collect();
        drop(blocks);
        let _ = release_freed_memory();
    }
}
