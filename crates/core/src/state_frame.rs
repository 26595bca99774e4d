//! The state frame: what leads every reply body an enclave sends, inside
//! the encryption, so that a client can see which sealed state produced it
//! and notice when the host rolls the enclave back to an older one.

/// Which state produced a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFrame {
    /// The id of the enclave's current sealed state (zero before any state was sealed).
    pub state_id: [u8; 16],
    /// The state counter: grows by one with each sealed state.
    pub counter: u64,
    /// The highest counter this enclave had shown the recipient before this reply.
    pub last_shown: u64,
    /// The counter of the state this run of the enclave started from. An
    /// honest host starts every run from the latest committed state, so a
    /// client that has seen a higher counter from another run knows it was
    /// rolled back.
    pub instance_start: u64,
}

/// Length of the state frame.
pub const STATE_FRAME_LEN: usize = 1 + 16 + 8 + 8 + 8;
const STATE_FRAME_VERSION: u8 = 1;

impl StateFrame {
    /// Prepends the frame to `body`.
    pub fn wrap(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATE_FRAME_LEN + body.len());
        out.push(STATE_FRAME_VERSION);
        out.extend_from_slice(&self.state_id);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.last_shown.to_be_bytes());
        out.extend_from_slice(&self.instance_start.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Splits a decrypted reply into its frame and the application body.
    pub fn unwrap(bytes: &[u8]) -> Option<(Self, &[u8])> {
        if bytes.len() < STATE_FRAME_LEN || bytes[0] != STATE_FRAME_VERSION {
            return None;
        }
        let frame = Self {
            state_id: bytes[1..17].try_into().ok()?,
            counter: u64::from_be_bytes(bytes[17..25].try_into().ok()?),
            last_shown: u64::from_be_bytes(bytes[25..33].try_into().ok()?),
            instance_start: u64::from_be_bytes(bytes[33..41].try_into().ok()?),
        };
        Some((frame, &bytes[STATE_FRAME_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let frame = StateFrame { state_id: [3; 16], counter: 7, last_shown: 6, instance_start: 5 };
        let wrapped = frame.wrap(b"body");
        assert_eq!(wrapped.len(), STATE_FRAME_LEN + 4);
        assert_eq!(StateFrame::unwrap(&wrapped), Some((frame, &b"body"[..])));
        assert_eq!(StateFrame::unwrap(b"short"), None);
    }
}
