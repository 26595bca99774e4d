//! The enclave side of simulation mode: a separate, sandboxed OS process
//! that talks to its host only through framed messages on stdin and stdout.
//!
//! An enclave crate becomes such a process with one line:
//!
//! ```ignore
//! conclave_enclave::main!(MyEnclave);
//! ```
//!
//! The process enters the sandbox before it reads a single byte of input,
//! then answers the host's calls one at a time. Stdout carries the channel,
//! so enclave code must not print to it; stderr goes to the host's log.

use std::io::{Read, Write};

use conclave_core::{
    EnclaveReport, Evidence, HostCommand,
    channel::{
        CHANNEL_VERSION, ChannelError, EnclaveToHost, HostToEnclave, KdsMessage, decode_body, encode_frame, frame_len,
    },
};
use serde_bytes::ByteBuf;

use crate::{
    CallOutcome, Enclave, EnclaveError, EnclaveIdentity, EnclaveRuntime, HostInterface, StartInput,
    sandbox::{SandboxOptions, close_inherited_descriptors, enter_sandbox},
};

/// Turns an enclave type into the `main` of an enclave binary.
///
/// The type must implement [`Enclave`] and [`Default`].
#[macro_export]
macro_rules! main {
    ($enclave:ty) => {
        fn main() -> ::std::process::ExitCode {
            $crate::process::run_enclave_process(|| {
                ::std::boxed::Box::new(<$enclave as ::std::default::Default>::default())
            })
        }
    };
}

/// What crosses to the host when enclave code panics: no payload, no
/// location, since either could carry enclave data (stderr is the host's log).
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| eprintln!("conclave enclave: enclave code panicked (details withheld)")));
}

/// The framed channel over this process's stdin and stdout.
struct Channel {
    input: std::io::Stdin,
    output: std::io::Stdout,
}

#[derive(Debug)]
enum ProcessError {
    Io(std::io::Error),
    Channel(ChannelError),
    Protocol(String),
}

impl core::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "channel i/o failed: {e}"),
            Self::Channel(e) => write!(f, "{e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl Channel {
    fn send(&mut self, message: &EnclaveToHost) -> Result<(), ProcessError> {
        let frame = encode_frame(message);
        self.output.write_all(&frame).and_then(|()| self.output.flush()).map_err(ProcessError::Io)
    }

    /// The next message, or `None` when the host closed the channel.
    fn receive(&mut self) -> Result<Option<HostToEnclave>, ProcessError> {
        let mut prefix = [0u8; 4];
        match self.input.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(ProcessError::Io(e)),
        }
        let len = frame_len(prefix).map_err(ProcessError::Channel)?;
        let mut body = vec![0u8; len];
        self.input.read_exact(&mut body).map_err(ProcessError::Io)?;
        decode_body(&body).map(Some).map_err(ProcessError::Channel)
    }
}

type Shared = std::sync::Arc<std::sync::Mutex<Channel>>;

/// Locks the channel. The process is single-threaded, so the lock is never
/// contended; it only lets the runtime own a `Send` handle.
fn lock(channel: &Shared) -> std::sync::MutexGuard<'_, Channel> {
    channel.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The enclave's view of its host: ocalls over the channel.
struct ChannelHost {
    channel: Shared,
}

impl HostInterface for ChannelHost {
    fn call_untrusted_host(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, EnclaveError> {
        let mut channel = lock(&self.channel);
        channel
            .send(&EnclaveToHost::CallUntrustedHost { bytes: ByteBuf::from(bytes.to_vec()) })
            .map_err(|e| EnclaveError::Host(e.to_string()))?;
        match channel.receive().map_err(|e| EnclaveError::Host(e.to_string()))? {
            Some(HostToEnclave::HostCallResult { result }) => {
                result.map(|r| r.map(ByteBuf::into_vec)).map_err(EnclaveError::Host)
            }
            other => Err(EnclaveError::Host(format!("expected the answer to an ocall, got {other:?}"))),
        }
    }

    fn evidence(&mut self, report: EnclaveReport) -> Result<Evidence, EnclaveError> {
        let mut channel = lock(&self.channel);
        channel
            .send(&EnclaveToHost::EvidenceRequest { report: ByteBuf::from(report.to_bytes()) })
            .map_err(|e| EnclaveError::Host(e.to_string()))?;
        match channel.receive().map_err(|e| EnclaveError::Host(e.to_string()))? {
            Some(HostToEnclave::EvidenceResult { result }) => {
                let bytes = result.map_err(EnclaveError::Host)?;
                Evidence::from_bytes(&bytes).map_err(|e| EnclaveError::Host(format!("evidence from the host: {e}")))
            }
            other => Err(EnclaveError::Host(format!("expected evidence, got {other:?}"))),
        }
    }

    fn kds(&mut self, call: crate::KdsCall) -> Result<Vec<u8>, EnclaveError> {
        let call = match call {
            crate::KdsCall::Attestation => KdsMessage::Attestation,
            crate::KdsCall::Deliver(mail) => KdsMessage::Deliver(ByteBuf::from(mail)),
        };
        let mut channel = lock(&self.channel);
        channel.send(&EnclaveToHost::Kds { call }).map_err(|e| EnclaveError::Host(e.to_string()))?;
        match channel.receive().map_err(|e| EnclaveError::Host(e.to_string()))? {
            Some(HostToEnclave::KdsResult { result }) => {
                result.map(ByteBuf::into_vec).map_err(|e| EnclaveError::Kds(crate::KdsProblem::Unreachable(e)))
            }
            other => Err(EnclaveError::Host(format!("expected the KDS's answer, got {other:?}"))),
        }
    }
}

/// Only the stable code crosses: error text could carry enclave data.
fn failed(error: &EnclaveError) -> EnclaveToHost {
    EnclaveToHost::Failed { code: error.code().to_owned() }
}

fn done(response: Option<Vec<u8>>, commands: Vec<HostCommand>) -> EnclaveToHost {
    EnclaveToHost::Done { response: response.map(ByteBuf::from), commands, outcome: None }
}

fn blobs(list: Vec<(u64, ByteBuf)>) -> Vec<(u64, Vec<u8>)> {
    list.into_iter().map(|(id, blob)| (id, blob.into_vec())).collect()
}

/// Runs an enclave process: sandbox, handshake, then the call loop until the
/// host says stop or closes the channel. Returns the process exit code.
/// `factory` makes the application value, at start and whenever the host
/// resets the enclave in place.
pub fn run_enclave_process(factory: impl Fn() -> Box<dyn Enclave> + Send + 'static) -> std::process::ExitCode {
    match serve(factory) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave enclave: {e}");
            std::process::ExitCode::from(3)
        }
    }
}

fn serve(factory: impl Fn() -> Box<dyn Enclave> + Send + 'static) -> Result<(), ProcessError> {
    // First of all: only the standard streams stay open. Then nothing is
    // read before the sandbox is in place.
    let inherited = close_inherited_descriptors();
    quiet_panics();
    if inherited > 0 {
        eprintln!("conclave enclave: closed {inherited} descriptors inherited from the host");
    }
    let report = enter_sandbox(&SandboxOptions::new())
        .map_err(|e| ProcessError::Protocol(format!("cannot enter the sandbox: {e}")))?;
    eprintln!("conclave enclave: {report}");
    let channel: Shared =
        std::sync::Arc::new(std::sync::Mutex::new(Channel { input: std::io::stdin(), output: std::io::stdout() }));
    let receive = |c: &Shared| lock(c).receive();
    let send = |c: &Shared, m: &EnclaveToHost| lock(c).send(m);

    match receive(&channel)? {
        Some(HostToEnclave::Hello { version }) => {
            send(&channel, &EnclaveToHost::Hello { version: CHANNEL_VERSION, sandbox: report.to_string() })?;
            if version != CHANNEL_VERSION {
                return Err(ProcessError::Channel(ChannelError::VersionMismatch {
                    host: version,
                    enclave: CHANNEL_VERSION,
                }));
            }
        }
        None => return Ok(()),
        Some(other) => return Err(ProcessError::Protocol(format!("expected Hello, got {other:?}"))),
    }

    let (mut runtime, commands) = match receive(&channel)? {
        Some(HostToEnclave::Start { identity, platform_secret, sealed_state, self_mail, persistent_map_limit }) => {
            let identity = EnclaveIdentity {
                code_hash: identity.code_hash,
                code_signing_key_hash: identity.code_signing_key_hash,
                product_id: identity.product_id,
                revocation_level: identity.revocation_level,
            };
            let input = StartInput {
                platform_secret,
                sealed_state: sealed_state.map(ByteBuf::into_vec),
                self_mail: blobs(self_mail),
                persistent_map_limit: usize::try_from(persistent_map_limit).unwrap_or(usize::MAX),
            };
            let host = Box::new(ChannelHost { channel: channel.clone() });
            let first = factory();
            match EnclaveRuntime::start(first, Some(Box::new(factory)), &identity, host, input) {
                Ok(started) => started,
                Err(e) => {
                    send(&channel, &failed(&e))?;
                    return Ok(());
                }
            }
        }
        None => return Ok(()),
        Some(other) => return Err(ProcessError::Protocol(format!("expected Start, got {other:?}"))),
    };
    send(&channel, &done(Some(runtime.instance_info().encode()), commands))?;

    loop {
        let reply = match receive(&channel)? {
            None => return Ok(()),
            Some(HostToEnclave::DeliverMail { mail, routing_hint }) => {
                match runtime.deliver_mail(&mail, routing_hint.as_deref()) {
                    Ok(delivered) => EnclaveToHost::Done {
                        response: None,
                        commands: delivered.commands,
                        outcome: Some(delivered.outcome.to_owned()),
                    },
                    Err(e) => failed(&e),
                }
            }
            Some(HostToEnclave::Reset { sealed_state, self_mail }) => {
                let sealed_state = sealed_state.map(ByteBuf::into_vec);
                match runtime.reset(sealed_state.as_deref(), &blobs(self_mail)) {
                    Ok(commands) => done(None, commands),
                    Err(e) => failed(&e),
                }
            }
            Some(HostToEnclave::CallEnclave { bytes }) => match runtime.call_enclave(&bytes) {
                Ok(CallOutcome { response, commands }) => done(response, commands),
                Err(e) => failed(&e),
            },
            Some(HostToEnclave::Stop) => {
                let commands = runtime.stop();
                send(&channel, &done(None, commands))?;
                return Ok(());
            }
            Some(other) => return Err(ProcessError::Protocol(format!("unexpected message {other:?}"))),
        };
        send(&channel, &reply)?;
    }
}
