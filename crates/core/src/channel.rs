//! The host↔enclave channel of simulation mode: one framed, versioned
//! stream each way, the equivalent of SGX's enclave calls.
//!
//! ```text
//!  host                                         enclave process (sandboxed)
//!  Hello{version} ─────────────────────────────► check version
//!                 ◄───────────────────────────── Hello{version, sandbox}
//!  Start{identity, secret, state, self mail} ──► EnclaveRuntime::start
//!      EvidenceRequest{report} ◄──────────────── (ocall)
//!      EvidenceResult{evidence} ───────────────►
//!                 ◄───────────────────────────── Done{info, commands}
//!  DeliverMail / CallEnclave / Stop ───────────► …
//!      CallUntrustedHost ◄──── HostCallResult ─► (ocalls, any number)
//!                 ◄───────────────────────────── Done{response, commands} | Failed{code, message}
//! ```
//!
//! A frame is a `u32` big-endian length followed by that many bytes of a
//! postcard-encoded message. Both sides open with `Hello`; a version mismatch
//! is an error that names both versions. This module only encodes and
//! decodes buffers; the processes and pipes live in the host and enclave crates.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;

use crate::HostCommand;

/// The channel version this code speaks.
pub const CHANNEL_VERSION: u16 = 2;

/// The largest frame either side accepts: a mail of the web host's largest
/// size plus room for its commands. Anything longer is a protocol error.
pub const MAX_FRAME_LEN: usize = 256 * 1024 * 1024;

/// Who the host measured the enclave to be (code hash of the binary, and the
/// signer, product id and revocation level from its signature file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredIdentity {
    /// SHA-256 of the enclave binary.
    pub code_hash: [u8; 32],
    /// SHA-256 of the signer's public key.
    pub code_signing_key_hash: [u8; 32],
    /// Product id from the signature.
    pub product_id: u16,
    /// Revocation level from the signature.
    pub revocation_level: u16,
}

/// Messages from the host to the enclave.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HostToEnclave {
    /// The opening message.
    Hello {
        /// The host's channel version.
        version: u16,
    },
    /// Start the enclave.
    Start {
        /// What the host measured.
        identity: MeasuredIdentity,
        /// The root of the sealing keys.
        platform_secret: [u8; 32],
        /// The last committed sealed state.
        sealed_state: Option<ByteBuf>,
        /// Stored mail-to-self: (host id, sealed blob), in order.
        self_mail: Vec<(u64, ByteBuf)>,
        /// Size limit of the persistent map.
        persistent_map_limit: u64,
    },
    /// Deliver a mail.
    DeliverMail {
        /// The encrypted mail.
        mail: ByteBuf,
        /// The host's label for replies.
        routing_hint: Option<String>,
    },
    /// Pass bytes to `receive_from_untrusted_host`.
    CallEnclave {
        /// The bytes.
        bytes: ByteBuf,
    },
    /// Rebuild the application from this committed state, keeping the keys
    /// and the run: after a failed store commit or a panic in enclave code.
    Reset {
        /// The last committed sealed state.
        sealed_state: Option<ByteBuf>,
        /// Stored mail-to-self: (host id, sealed blob), in order.
        self_mail: Vec<(u64, ByteBuf)>,
    },
    /// Stop: run `on_shutdown` and exit.
    Stop,
    /// The answer to `CallUntrustedHost`.
    HostCallResult {
        /// The callback's answer, or why there is none.
        result: Result<Option<ByteBuf>, String>,
    },
    /// The answer to `EvidenceRequest`: encoded evidence, or why not.
    EvidenceResult {
        /// `Evidence::to_bytes` output.
        result: Result<ByteBuf, String>,
    },
    /// The answer to `Kds`: the KDS's attestation or direct answer, or why not.
    KdsResult {
        /// The bytes, or the host's reason.
        result: Result<ByteBuf, String>,
    },
}

/// An exchange with the key derivation service, carried by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KdsMessage {
    /// Fetch the KDS's encoded `EnclaveInstanceInfo`.
    Attestation,
    /// Deliver this mail to the KDS; answer with its direct reply.
    Deliver(ByteBuf),
}

/// Messages from the enclave to the host.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EnclaveToHost {
    /// The answer to `Hello`.
    Hello {
        /// The enclave's channel version.
        version: u16,
        /// Which protections the enclave process has, for the host's log.
        sandbox: String,
    },
    /// An ocall: the enclave calls the host's callback.
    CallUntrustedHost {
        /// The bytes (the host sees them in clear).
        bytes: ByteBuf,
    },
    /// An ocall: sign this report as evidence.
    EvidenceRequest {
        /// `EnclaveReport::to_bytes` output.
        report: ByteBuf,
    },
    /// An ocall: carry this exchange to the key derivation service.
    Kds {
        /// What to do.
        call: KdsMessage,
    },
    /// A call succeeded.
    Done {
        /// `Start`: the encoded EnclaveInstanceInfo; `CallEnclave`: the response.
        response: Option<ByteBuf>,
        /// The commands the call emitted, in order.
        commands: Vec<HostCommand>,
        /// `DeliverMail`: what became of the mail, as a stable code
        /// (`ACCEPTED`, or the rejection's code), for the host's metrics.
        /// The client learns it from the encrypted answer, not from this.
        outcome: Option<String>,
    },
    /// A call failed; nothing of it is to be committed. Only a stable code
    /// crosses: error text could carry enclave data.
    Failed {
        /// Stable error code (the same as the enclave's error would map to in process).
        code: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    #[error("channel frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    FrameTooLong {
        /// The announced length.
        len: usize,
    },
    /// The frame is not a valid message.
    #[error("channel message is malformed: {0}")]
    Malformed(String),
    /// The peer speaks another channel version.
    #[error("channel version mismatch: host speaks version {host}, enclave speaks version {enclave}")]
    VersionMismatch {
        /// The host's version.
        host: u16,
        /// The enclave's version.
        enclave: u16,
    },
}

/// Encodes a message as one frame.
pub fn encode_frame<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising plain data to a Vec cannot fail.
    let body = postcard::to_stdvec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads the length prefix of a frame.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, ChannelError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(ChannelError::FrameTooLong { len });
    }
    Ok(len)
}

/// Decodes a frame's body (without its length prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ChannelError> {
    postcard::from_bytes(body).map_err(|e| ChannelError::Malformed(e.to_string()))
}

impl core::fmt::Debug for HostToEnclave {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the platform secret or payloads.
        let name = match self {
            Self::Hello { .. } => "Hello",
            Self::Start { .. } => "Start",
            Self::DeliverMail { .. } => "DeliverMail",
            Self::CallEnclave { .. } => "CallEnclave",
            Self::Reset { .. } => "Reset",
            Self::Stop => "Stop",
            Self::HostCallResult { .. } => "HostCallResult",
            Self::EvidenceResult { .. } => "EvidenceResult",
            Self::KdsResult { .. } => "KdsResult",
        };
        f.write_str(name)
    }
}

impl core::fmt::Debug for EnclaveToHost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Hello { version, sandbox } => write!(f, "Hello {{ version: {version}, sandbox: {sandbox:?} }}"),
            Self::CallUntrustedHost { bytes } => write!(f, "CallUntrustedHost({} bytes)", bytes.len()),
            Self::EvidenceRequest { .. } => f.write_str("EvidenceRequest"),
            Self::Kds { .. } => f.write_str("Kds"),
            Self::Done { commands, .. } => write!(f, "Done({} commands)", commands.len()),
            Self::Failed { code } => write!(f, "Failed({code})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let message = EnclaveToHost::Done {
            response: Some(ByteBuf::from(vec![1, 2, 3])),
            commands: vec![HostCommand::PostMail { bytes: vec![9; 100], routing_hint: Some("c".into()) }],
            outcome: Some("ACCEPTED".into()),
        };
        let frame = encode_frame(&message);
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode_body::<EnclaveToHost>(&frame[4..]).unwrap(), message);
    }

    #[test]
    fn oversized_and_garbage_frames_are_refused() {
        assert!(matches!(frame_len(u32::MAX.to_be_bytes()), Err(ChannelError::FrameTooLong { .. })));
        assert!(matches!(decode_body::<HostToEnclave>(&[0xff, 0xff]), Err(ChannelError::Malformed(_))));
    }
}
