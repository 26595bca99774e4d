//! A relay over several hosts of one enclave cluster: it talks to one, and
//! moves to the next when that one cannot be reached.
//!
//! ```text
//!  EnclaveClient ──► FailoverRelay ──► host A   (UNREACHABLE: try B)
//!                                  ──► host B   (answers: B is current from now on)
//!                                  ──► host C
//! ```
//!
//! Moving is safe for every operation: the hosts share one store, so a poll
//! or acknowledgement means the same on each, and a mail delivered twice
//! (once to a host that died after its enclave took it) is answered by the
//! enclave itself as a replay, which the client settles from the queue.

use conclave_core::{MailRelay, QueuedMail, RelayError};

use crate::HttpRelay;

/// The codes after which the next host is tried: the host cannot be reached,
/// or it runs no enclave. Any other answer (an enclave's reply, a refusal, a
/// busy host) is the cluster's answer and is returned as it is.
const MOVE_ON: [&str; 2] = [HttpRelay::UNREACHABLE, "ENCLAVE_UNAVAILABLE"];

/// A [`MailRelay`] over several hosts, used in turn from the current one.
#[derive(Debug, Clone)]
pub struct FailoverRelay<R> {
    relays: Vec<R>,
    current: usize,
}

impl<R: MailRelay> FailoverRelay<R> {
    /// A relay over `relays`, starting with the first; `None` if there are none.
    pub fn new(relays: Vec<R>) -> Option<Self> {
        if relays.is_empty() { None } else { Some(Self { relays, current: 0 }) }
    }

    /// The index of the host in use now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Makes host `index` (modulo the number of hosts) the one tried first,
    /// to spread clients over the hosts.
    pub fn prefer(&mut self, index: usize) {
        self.current = index % self.relays.len();
    }

    /// The relays, in the order given.
    pub fn relays(&self) -> &[R] {
        &self.relays
    }

    /// Runs `op` on the current host, then on each other host in turn while
    /// the answer says the host is gone. The host that answered becomes the
    /// current one; if none did, the error names how many were tried.
    fn each<T>(&mut self, mut op: impl FnMut(&mut R) -> Result<T, RelayError>) -> Result<T, RelayError> {
        let count = self.relays.len();
        let mut errors = Vec::new();
        for step in 0..count {
            let index = (self.current + step) % count;
            match op(&mut self.relays[index]) {
                Err(error) if MOVE_ON.contains(&error.code.as_str()) => {
                    tracing::warn!(host = index, code = %error.code, "host unavailable, trying the next: {}", error.message);
                    errors.push(error);
                }
                answer => {
                    self.current = index;
                    return answer;
                }
            }
        }
        let last = errors.pop().unwrap_or_else(|| RelayError::new(HttpRelay::UNREACHABLE, "no host to try"));
        if count == 1 {
            return Err(last);
        }
        Err(RelayError::new(last.code, format!("none of the {count} hosts answered; the last: {}", last.message)))
    }
}

impl<R: MailRelay> MailRelay for FailoverRelay<R> {
    fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
        self.each(|relay| relay.attestation())
    }

    fn deliver(&mut self, correlation_id: &str, mail: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
        self.each(|relay| relay.deliver(correlation_id, mail))
    }

    fn poll(&mut self, correlation_id: &str) -> Result<Vec<QueuedMail>, RelayError> {
        self.each(|relay| relay.poll(correlation_id))
    }

    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<(), RelayError> {
        self.each(|relay| relay.acknowledge(correlation_id, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that answers with its name, or is down.
    #[derive(Debug)]
    struct Fake {
        name: u8,
        down: bool,
        calls: usize,
    }

    impl MailRelay for Fake {
        fn attestation(&mut self) -> Result<Vec<u8>, RelayError> {
            self.calls += 1;
            if self.down { Err(RelayError::new("UNREACHABLE", "connection refused")) } else { Ok(vec![self.name]) }
        }
        fn deliver(&mut self, _: &str, _: &[u8]) -> Result<Option<QueuedMail>, RelayError> {
            self.calls += 1;
            Err(RelayError::new("BUSY", "busy"))
        }
        fn poll(&mut self, _: &str) -> Result<Vec<QueuedMail>, RelayError> {
            self.calls += 1;
            Err(RelayError::new("ENCLAVE_UNAVAILABLE", "not running"))
        }
        fn acknowledge(&mut self, _: &str, _: &[u64]) -> Result<(), RelayError> {
            Ok(())
        }
    }

    fn hosts(down: [bool; 3]) -> FailoverRelay<Fake> {
        FailoverRelay::new(down.iter().enumerate().map(|(i, &down)| Fake { name: i as u8, down, calls: 0 }).collect())
            .unwrap()
    }

    #[test]
    fn moves_past_hosts_that_are_gone_and_stays_on_the_one_that_answered() {
        let mut relay = hosts([true, false, false]);
        assert_eq!(relay.attestation().unwrap(), [1]);
        assert_eq!(relay.current(), 1);
        assert_eq!(relay.attestation().unwrap(), [1]);
        assert_eq!(relay.relays()[0].calls, 1, "the dead host was tried again");
        // When the current one dies, the next in turn takes over, wrapping around.
        relay.relays[1].down = true;
        relay.relays[2].down = true;
        relay.relays[0].down = false;
        assert_eq!(relay.attestation().unwrap(), [0]);
    }

    #[test]
    fn other_answers_are_the_clusters_and_are_not_retried_elsewhere() {
        let mut relay = hosts([false, false, false]);
        assert_eq!(relay.deliver("c", b"m").unwrap_err().code, "BUSY");
        assert_eq!(relay.relays().iter().map(|r| r.calls).collect::<Vec<_>>(), [1, 0, 0]);
    }

    #[test]
    fn when_every_host_is_gone_the_error_says_how_many_were_tried() {
        let mut relay = hosts([true, true, true]);
        let error = relay.attestation().unwrap_err();
        assert_eq!(error.code, "UNREACHABLE");
        assert!(error.message.contains("none of the 3 hosts"), "{}", error.message);
        let error = relay.poll("c").unwrap_err();
        assert_eq!(error.code, "ENCLAVE_UNAVAILABLE");
        assert!(FailoverRelay::<Fake>::new(Vec::new()).is_none());
    }
}
