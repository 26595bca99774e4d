//! Sequence checking: per (authenticated sender, topic), mail must arrive
//! numbered 0, 1, 2, … with nothing replayed, reordered or skipped, within a
//! run and across restarts alike.
//!
//! The next expected number of every stream is sealed with every state the
//! enclave leaves behind (each accepted mail makes a new state), so a
//! restarted enclave expects exactly what the last committed state expected:
//! a mail the host swallowed before a restart is still a gap after it.

use conclave_core::Rejection;

/// The verdict on a mail numbered `received` on a stream that expects
/// `expected` next, where `highest` is the highest number this run has seen
/// presented on the stream (accepted or not; kept in memory only, to tell a
/// reorder from a gap). `None` means accept.
pub fn verdict(expected: u64, received: u64, highest: Option<u64>) -> Option<Rejection> {
    if received < expected {
        return Some(Rejection::Replayed);
    }
    if received > expected {
        return Some(match highest {
            Some(later) if later > received => Rejection::Reordered,
            _ => Rejection::Gap,
        });
    }
    // The stream could never move past it: refuse rather than overflow.
    if received == u64::MAX {
        return Some(Rejection::BadRequest);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_distinct() {
        assert_eq!(verdict(0, 0, None), None);
        assert_eq!(verdict(1, 0, Some(0)), Some(Rejection::Replayed));
        assert_eq!(verdict(1, 3, Some(0)), Some(Rejection::Gap));
        assert_eq!(verdict(1, 2, Some(3)), Some(Rejection::Reordered));
        assert_eq!(verdict(1, 1, Some(3)), None);
    }

    #[test]
    fn the_last_number_is_refused_not_overflowed() {
        assert_eq!(verdict(u64::MAX, u64::MAX, None), Some(Rejection::BadRequest));
        assert_eq!(verdict(0, u64::MAX, None), Some(Rejection::Gap));
    }
}
