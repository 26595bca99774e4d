//! Sequence checking: per (authenticated sender, topic), mail must arrive
//! numbered 0, 1, 2, … with nothing replayed, reordered or skipped.

use std::collections::HashMap;

use conclave_core::PublicKey;

/// Why a mail's sequence number was refused. Each cause is distinct so that a
/// client (or an operator reading the log) can tell a replaying host from a
/// reordering one from one that dropped mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    /// The number was already used: this mail, or one claiming its number,
    /// was delivered before.
    #[error(
        "replayed mail on topic {topic:?}: sequence number {received} was already used (next expected is {expected})"
    )]
    Replayed {
        /// The mail's topic.
        topic: String,
        /// The next number the enclave expects.
        expected: u64,
        /// The number the mail carries.
        received: u64,
    },
    /// The mail arrived after a mail with a higher number from the same
    /// sender and topic had already been presented: the host reordered them.
    #[error(
        "reordered mail on topic {topic:?}: sequence number {received} arrived after {later_seen} (next expected is {expected})"
    )]
    Reordered {
        /// The mail's topic.
        topic: String,
        /// The next number the enclave expects.
        expected: u64,
        /// The number the mail carries.
        received: u64,
        /// The higher number presented earlier.
        later_seen: u64,
    },
    /// Numbers were skipped: mail before this one is missing.
    #[error("gap in mail on topic {topic:?}: expected sequence number {expected} but received {received}")]
    Gap {
        /// The mail's topic.
        topic: String,
        /// The next number the enclave expects.
        expected: u64,
        /// The number the mail carries.
        received: u64,
    },
}

#[derive(Debug, Default, Clone)]
struct Stream {
    expected: u64,
    /// The highest number ever presented on this stream, accepted or not.
    highest_presented: Option<u64>,
    /// Whether this run of the enclave has accepted mail on this stream.
    active: bool,
}

/// Tracks the next expected sequence number of every (sender, topic).
///
/// Within one run of the enclave the rule is strict: exactly one more each
/// time. Across runs, a client keeps numbering where it left off, and the
/// enclave only knows the numbers it sealed in its last state (the
/// *floors*): a restarted enclave accepts a stream's first mail if its number
/// is at least the floor, so a mail whose processing was sealed can never be
/// processed again, while mail an earlier run handled without sealing
/// anything does not block the client.
#[derive(Debug, Default, Clone)]
pub struct SequenceTracker {
    streams: HashMap<(PublicKey, String), Stream>,
    /// Whether streams this run has never heard of may start above 0: true
    /// when the run restored sealed state (their mail may predate it).
    resumed: bool,
}

impl SequenceTracker {
    /// A tracker for a run that restored sealed state with these floors.
    pub fn resumed(floors: impl IntoIterator<Item = (PublicKey, String, u64)>) -> Self {
        let streams = floors
            .into_iter()
            .map(|(key, topic, expected)| ((key, topic), Stream { expected, highest_presented: None, active: false }))
            .collect();
        Self { streams, resumed: true }
    }

    /// The next expected number of every stream, to seal with the state.
    pub fn floors(&self) -> Vec<(PublicKey, String, u64)> {
        let mut floors: Vec<_> = self.streams.iter().map(|((k, t), s)| (*k, t.clone(), s.expected)).collect();
        floors.sort();
        floors
    }

    /// Checks `received` and, if it is the expected number, records it.
    pub fn check_and_advance(&mut self, sender: &PublicKey, topic: &str, received: u64) -> Result<(), SequenceError> {
        let resumed = self.resumed;
        let stream = self.streams.entry((*sender, topic.to_owned())).or_default();
        // The first mail of a stream in a resumed run may continue above the floor.
        if resumed && !stream.active && received >= stream.expected {
            stream.expected = received + 1;
            stream.active = true;
            stream.highest_presented = Some(received);
            return Ok(());
        }
        let expected = stream.expected;
        let highest = stream.highest_presented;
        stream.highest_presented = Some(highest.map_or(received, |h| h.max(received)));
        let topic = topic.to_owned();
        if received < expected {
            return Err(SequenceError::Replayed { topic, expected, received });
        }
        if received > expected {
            return Err(match highest {
                Some(later_seen) if later_seen > received => {
                    SequenceError::Reordered { topic, expected, received, later_seen }
                }
                _ => SequenceError::Gap { topic, expected, received },
            });
        }
        stream.expected += 1;
        stream.active = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        PublicKey::from_bytes([1; 32])
    }

    #[test]
    fn in_order_is_accepted_per_topic_and_sender() {
        let mut t = SequenceTracker::default();
        for n in 0..3 {
            t.check_and_advance(&key(), "a", n).unwrap();
        }
        t.check_and_advance(&key(), "b", 0).unwrap();
        t.check_and_advance(&PublicKey::from_bytes([2; 32]), "a", 0).unwrap();
    }

    #[test]
    fn a_resumed_run_accepts_continuation_but_never_below_the_floor() {
        let mut t = SequenceTracker::resumed([(key(), "a".to_owned(), 5)]);
        assert!(matches!(t.check_and_advance(&key(), "a", 4), Err(SequenceError::Replayed { .. })));
        t.check_and_advance(&key(), "a", 7).unwrap();
        assert!(matches!(t.check_and_advance(&key(), "a", 9), Err(SequenceError::Gap { .. })));
        t.check_and_advance(&key(), "a", 8).unwrap();
        // A stream the sealed state did not know may continue too.
        t.check_and_advance(&key(), "b", 3).unwrap();
        assert_eq!(t.floors().iter().map(|f| f.2).collect::<Vec<_>>(), vec![9, 4]);
    }

    #[test]
    fn a_fresh_run_insists_on_zero() {
        let mut t = SequenceTracker::default();
        assert!(matches!(t.check_and_advance(&key(), "a", 1), Err(SequenceError::Gap { expected: 0, .. })));
    }

    #[test]
    fn causes_are_distinct() {
        let mut t = SequenceTracker::default();
        t.check_and_advance(&key(), "a", 0).unwrap();
        assert!(matches!(t.check_and_advance(&key(), "a", 0), Err(SequenceError::Replayed { .. })));
        assert!(matches!(
            t.check_and_advance(&key(), "a", 3),
            Err(SequenceError::Gap { expected: 1, received: 3, .. })
        ));
        assert!(matches!(
            t.check_and_advance(&key(), "a", 2),
            Err(SequenceError::Reordered { expected: 1, received: 2, later_seen: 3, .. })
        ));
        // The expected mail is still welcome after the host misbehaved.
        t.check_and_advance(&key(), "a", 1).unwrap();
    }
}
