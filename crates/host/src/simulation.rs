//! Simulation mode, host side: measure and check a signed enclave binary,
//! run it as a separate sandboxed process, and talk to it over the framed
//! channel of `conclave_core::channel`.
//!
//! ```text
//!  EnclaveHost ──spawn──► enclave binary (sandboxed: no files, no network)
//!     │  stdin:  Hello, Start, DeliverMail, CallEnclave, Stop, ocall answers
//!     │  stdout: Hello, Done / Failed, ocalls (CallUntrustedHost, EvidenceRequest)
//!     └─ stderr: the enclave's log, forwarded and kept for crash reports
//! ```
//!
//! Evidence is signed by a *simulated attestation key* that the host keeps in
//! its data directory: honest about being INSECURE, since whoever holds that
//! key can vouch for any code.

use std::{
    collections::VecDeque,
    ffi::OsString,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
};

use conclave_core::{
    EnclaveInstanceInfo, EnclaveReport, EnclaveSignature, Evidence, HostCommand,
    channel::{
        CHANNEL_VERSION, ChannelError, EnclaveToHost, HostToEnclave, MeasuredIdentity, decode_body, encode_frame,
        frame_len,
    },
    signature::{code_hash, decode_signing_key, encode_signing_key},
};
use conclave_enclave::StartInput;
use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use serde_bytes::ByteBuf;

use crate::{HostCallback, HostError};

/// How many lines of the enclave's stderr are kept for crash reports.
const STDERR_KEPT: usize = 40;

/// Why a simulation enclave could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulationError {
    /// The binary could not be read.
    #[error("cannot read enclave binary {path}: {error}")]
    ReadBinary {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// There is no signature file next to the binary.
    #[error("enclave binary {binary} is not signed: {signature} is missing (sign it with `conclave sign`)")]
    SignatureMissing {
        /// The binary.
        binary: PathBuf,
        /// Where the signature was looked for.
        signature: PathBuf,
    },
    /// The signature file is unreadable, malformed, or does not verify.
    #[error("enclave signature {signature} is invalid: {cause}")]
    SignatureInvalid {
        /// The signature file.
        signature: PathBuf,
        /// What is wrong.
        cause: conclave_core::SignatureError,
    },
    /// The binary changed between measurement and start.
    #[error("enclave binary {path} changed since it was measured; reload it")]
    BinaryChanged {
        /// The binary.
        path: PathBuf,
    },
    /// A file in the data directory could not be read or written.
    #[error("cannot {action} {path}: {error}")]
    DataDir {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The enclave process could not be started.
    #[error("cannot start enclave process {path}: {error}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The enclave process died or closed its channel.
    #[error("enclave process died ({status}){}", tail_text(.stderr_tail))]
    Crashed {
        /// How it ended.
        status: String,
        /// The last lines it wrote to stderr.
        stderr_tail: Vec<String>,
    },
    /// The enclave broke the channel protocol.
    #[error("enclave channel protocol error: {0}")]
    Protocol(String),
    /// The channel framing or version failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The enclave asked for evidence about another identity than the host measured.
    #[error("enclave asked for evidence claiming another identity than the host measured")]
    IdentityMismatch,
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() { String::new() } else { format!("; its last words: {}", tail.join(" | ")) }
}

/// A measured, signature-checked enclave binary, ready to be started.
#[derive(Debug, Clone)]
pub struct SignedEnclave {
    /// The binary to run.
    pub binary: PathBuf,
    /// Extra arguments for the process.
    pub args: Vec<OsString>,
    /// What the host measured and the signature vouches for.
    pub identity: MeasuredIdentity,
}

impl SignedEnclave {
    /// Measures `binary` (SHA-256 of the file) and checks `<binary>.sig`:
    /// refuses a missing, malformed or invalid signature, or one for another code hash.
    pub fn load(binary: &Path) -> Result<Self, SimulationError> {
        // A missing binary is reported as such, not as a missing signature.
        std::fs::metadata(binary).map_err(|error| SimulationError::ReadBinary { path: binary.to_owned(), error })?;
        let mut sig_path = binary.as_os_str().to_owned();
        sig_path.push(".sig");
        let sig_path = PathBuf::from(sig_path);
        let signature = match std::fs::read(&sig_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SimulationError::SignatureMissing { binary: binary.to_owned(), signature: sig_path });
            }
            Err(error) => return Err(SimulationError::DataDir { action: "read", path: sig_path, error }),
        };
        let signature = EnclaveSignature::decode(&signature)
            .map_err(|cause| SimulationError::SignatureInvalid { signature: sig_path.clone(), cause })?;
        Self::with_signature(binary, &signature, Vec::new()).map_err(|e| match e {
            SimulationError::SignatureInvalid { cause, .. } => {
                SimulationError::SignatureInvalid { signature: sig_path.clone(), cause }
            }
            other => other,
        })
    }

    /// Measures `binary` and checks it against a signature held in memory;
    /// `args` are passed to the process.
    pub fn with_signature(
        binary: &Path,
        signature: &EnclaveSignature,
        args: Vec<OsString>,
    ) -> Result<Self, SimulationError> {
        let hash = measure(binary)?;
        signature
            .verify(&hash)
            .map_err(|cause| SimulationError::SignatureInvalid { signature: binary.to_owned(), cause })?;
        Ok(Self {
            binary: binary.to_owned(),
            args,
            identity: MeasuredIdentity {
                code_hash: hash,
                code_signing_key_hash: signature.signer_key_hash(),
                product_id: signature.product_id(),
                revocation_level: signature.revocation_level(),
            },
        })
    }
}

/// SHA-256 of a file: an enclave binary's code hash.
pub fn measure(binary: &Path) -> Result<[u8; 32], SimulationError> {
    let bytes =
        std::fs::read(binary).map_err(|error| SimulationError::ReadBinary { path: binary.to_owned(), error })?;
    Ok(code_hash(&bytes))
}

/// Reads a key file from the data directory, or creates it (mode 0600) on first use.
pub fn load_or_create_secret(path: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, SimulationError> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(SimulationError::DataDir { action: "read", path: path.to_owned(), error }),
    }
    let bytes = make();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |error| SimulationError::DataDir { action: "create", path: path.to_owned(), error };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io)?;
    Ok(bytes)
}

/// The host's simulated attestation key, kept in `<data_dir>/simulated-attestation.key`.
pub fn simulated_attestation_key(data_dir: &Path) -> Result<SigningKey, SimulationError> {
    let path = data_dir.join("simulated-attestation.key");
    let text = load_or_create_secret(&path, || {
        encode_signing_key(&SigningKey::generate(&mut OsRng)).as_str().as_bytes().to_vec()
    })?;
    let text = String::from_utf8_lossy(&text);
    decode_signing_key(text.trim()).map_err(|cause| SimulationError::SignatureInvalid { signature: path, cause })
}

/// What an enclave call answers: its response, its commands, its outcome code.
pub(crate) type CallAnswer = (Option<Vec<u8>>, Vec<HostCommand>, Option<String>);

struct EnclaveProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The simulation backend of `EnclaveHost`.
pub(crate) struct SimulationBackend {
    enclave: SignedEnclave,
    attestation_key: SigningKey,
    process: Option<EnclaveProcess>,
    info: Option<EnclaveInstanceInfo>,
    callback: Option<HostCallback>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    sandbox: Option<String>,
}

impl core::fmt::Debug for SimulationBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimulationBackend")
            .field("binary", &self.enclave.binary)
            .field("running", &self.process.is_some())
            .finish_non_exhaustive()
    }
}

impl SimulationBackend {
    pub(crate) fn new(enclave: SignedEnclave, attestation_key: SigningKey) -> Self {
        Self {
            enclave,
            attestation_key,
            process: None,
            info: None,
            callback: None,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            sandbox: None,
        }
    }

    pub(crate) fn is_started(&self) -> bool {
        self.process.is_some()
    }

    pub(crate) fn info(&self) -> Option<&EnclaveInstanceInfo> {
        self.info.as_ref()
    }

    pub(crate) fn sandbox_report(&self) -> Option<&str> {
        self.sandbox.as_deref()
    }

    pub(crate) fn identity(&self) -> &MeasuredIdentity {
        &self.enclave.identity
    }

    pub(crate) fn start(
        &mut self,
        callback: Option<HostCallback>,
        input: StartInput,
    ) -> Result<Vec<HostCommand>, HostError> {
        if self.process.is_some() {
            return Err(HostError::AlreadyStarted);
        }
        // The file on disk is what runs: it must still be what was measured.
        if measure(&self.enclave.binary)? != self.enclave.identity.code_hash {
            return Err(SimulationError::BinaryChanged { path: self.enclave.binary.clone() }.into());
        }
        self.callback = callback;
        let mut child = Command::new(&self.enclave.binary)
            .args(&self.enclave.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .spawn()
            .map_err(|error| SimulationError::Spawn { path: self.enclave.binary.clone(), error })?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err(SimulationError::Protocol("child pipes missing (this is a bug)".into()).into());
        };
        let tail = self.stderr_tail.clone();
        if let Ok(mut t) = tail.lock() {
            t.clear();
        }
        std::thread::spawn(move || forward_stderr(stderr, &tail));
        self.process = Some(EnclaveProcess { child, stdin, stdout: BufReader::new(stdout) });

        let result = self.handshake_and_start(input);
        if result.is_err() {
            self.kill();
        }
        result
    }

    fn handshake_and_start(&mut self, input: StartInput) -> Result<Vec<HostCommand>, HostError> {
        self.send(&HostToEnclave::Hello { version: CHANNEL_VERSION })?;
        match self.receive()? {
            EnclaveToHost::Hello { version, sandbox } => {
                if version != CHANNEL_VERSION {
                    return Err(SimulationError::Channel(ChannelError::VersionMismatch {
                        host: CHANNEL_VERSION,
                        enclave: version,
                    })
                    .into());
                }
                tracing::info!(binary = %self.enclave.binary.display(), "enclave process started; {sandbox}");
                self.sandbox = Some(sandbox);
            }
            other => return Err(SimulationError::Protocol(format!("expected Hello, got {other:?}")).into()),
        }
        let start = HostToEnclave::Start {
            identity: self.enclave.identity.clone(),
            platform_secret: input.platform_secret,
            sealed_state: input.sealed_state.map(ByteBuf::from),
            self_mail: input.self_mail.into_iter().map(|(id, blob)| (id, ByteBuf::from(blob))).collect(),
            persistent_map_limit: input.persistent_map_limit as u64,
        };
        let (info, commands, _) = self.call(&start)?;
        let info = info.ok_or_else(|| SimulationError::Protocol("start returned no attestation".into()))?;
        self.info = Some(EnclaveInstanceInfo::decode(&info).map_err(|e| SimulationError::Protocol(e.to_string()))?);
        Ok(commands)
    }

    /// Sends one enclave call and serves its ocalls until it answers:
    /// (response, commands, outcome code).
    pub(crate) fn call(&mut self, message: &HostToEnclave) -> Result<CallAnswer, HostError> {
        if self.process.is_none() {
            return Err(HostError::NotStarted);
        }
        self.send(message)?;
        loop {
            match self.receive()? {
                EnclaveToHost::Done { response, commands, outcome } => {
                    return Ok((response.map(ByteBuf::into_vec), commands, outcome));
                }
                EnclaveToHost::Failed { code } => return Err(HostError::EnclaveRemote { code }),
                EnclaveToHost::CallUntrustedHost { bytes } => {
                    let result = match &mut self.callback {
                        Some(callback) => Ok(callback(&bytes).map(ByteBuf::from)),
                        None => Err("the host registered no callback for call_untrusted_host".to_owned()),
                    };
                    self.send(&HostToEnclave::HostCallResult { result })?;
                }
                EnclaveToHost::EvidenceRequest { report } => {
                    let result = self.sign_evidence(&report);
                    self.send(&HostToEnclave::EvidenceResult { result })?;
                }
                other => return Err(SimulationError::Protocol(format!("unexpected message {other:?}")).into()),
            }
        }
    }

    /// Signs a report with the simulated attestation key, but only for the identity the host measured.
    fn sign_evidence(&self, report: &[u8]) -> Result<ByteBuf, String> {
        let report = EnclaveReport::from_bytes(report).map_err(|e| e.to_string())?;
        let id = &self.enclave.identity;
        if report.code_hash != id.code_hash
            || report.code_signing_key_hash != id.code_signing_key_hash
            || report.product_id != id.product_id
            || report.revocation_level != id.revocation_level
        {
            return Err(SimulationError::IdentityMismatch.to_string());
        }
        Ok(ByteBuf::from(Evidence::simulated_insecure(report, &self.attestation_key).to_bytes()))
    }

    fn send(&mut self, message: &HostToEnclave) -> Result<(), HostError> {
        let frame = encode_frame(message);
        let Some(process) = &mut self.process else { return Err(HostError::NotStarted) };
        if process.stdin.write_all(&frame).and_then(|()| process.stdin.flush()).is_err() {
            return Err(self.crashed());
        }
        Ok(())
    }

    fn receive(&mut self) -> Result<EnclaveToHost, HostError> {
        let Some(process) = &mut self.process else { return Err(HostError::NotStarted) };
        let mut prefix = [0u8; 4];
        if process.stdout.read_exact(&mut prefix).is_err() {
            return Err(self.crashed());
        }
        let len = match frame_len(prefix) {
            Ok(len) => len,
            Err(e) => {
                self.kill();
                return Err(SimulationError::Protocol(format!(
                    "{e} (did the enclave print to stdout? stdout is its channel)"
                ))
                .into());
            }
        };
        let mut body = vec![0u8; len];
        if process.stdout.read_exact(&mut body).is_err() {
            return Err(self.crashed());
        }
        decode_body(&body).map_err(|e| {
            self.kill();
            SimulationError::from(e).into()
        })
    }

    /// The process is gone: reap it and report how it ended.
    fn crashed(&mut self) -> HostError {
        let status = self.process.take().map(|mut p| {
            let _ = p.child.kill();
            p.child.wait()
        });
        self.info = None;
        // Give the stderr forwarder a moment to read the last lines.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let stderr_tail = self.stderr_tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        let status = match status {
            Some(Ok(status)) => describe(status),
            Some(Err(e)) => format!("status unknown: {e}"),
            None => "not running".to_owned(),
        };
        HostError::Simulation(SimulationError::Crashed { status, stderr_tail })
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.info = None;
    }

    /// Asks the enclave to stop, then makes sure the process is gone.
    pub(crate) fn stop(&mut self) -> Vec<HostCommand> {
        let commands = self.call(&HostToEnclave::Stop).map(|(_, c, _)| c).unwrap_or_default();
        if let Some(mut p) = self.process.take() {
            drop(p.stdin);
            // Give it a moment to exit by itself, then make sure.
            for _ in 0..50 {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.info = None;
        commands
    }

    /// The OS process id of the running enclave (for tests that kill it).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }
}

impl Drop for SimulationBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                9 => " (SIGKILL)",
                31 => " (SIGSYS: the sandbox stopped a forbidden system call)",
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended".to_owned(),
    }
}

/// The longest stderr line kept whole; longer ones are cut into pieces, so
/// an enclave cannot make the host buffer without limit.
const STDERR_LINE_MAX: u64 = 4096;

fn forward_stderr(stderr: impl Read, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match (&mut reader).take(STDERR_LINE_MAX).read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\n', '\r']).to_owned();
        tracing::info!(target: "enclave", "{line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_KEPT {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}
