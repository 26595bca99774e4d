//! Simulation mode, host side: measure and check a signed enclave binary,
//! run it as a separate sandboxed process, and talk to it over the framed
//! channel of `conclave_core::channel`.
//!
//! ```text
//!  enclave binary ──read once, hashed on the way──► sealed memfd (code hash) ◄── <binary>.sig checked
//!                                                      │ exec /proc/self/fd/N, at every (re)start
//!  EnclaveHost ──spawn, rlimits──► enclave process (sandboxed: no files, no network, fds 0-2 only)
//!     │  stdin:  Hello, Start, DeliverMail, CallEnclave, Stop, ocall answers
//!     │  stdout: Hello, Done / Failed, ocalls (CallUntrustedHost, EvidenceRequest)
//!     └─ stderr: the enclave's log, forwarded and kept for crash reports
//! ```
//!
//! What runs is what was measured: the binary is read once into a sealed
//! memfd (no one can change its bytes any more), the code hash is the
//! SHA-256 of exactly those bytes, and every start executes that memfd, not
//! the path. Replacing or rewriting the file afterwards changes nothing that
//! runs; loading it again measures the new bytes, which the old signature
//! does not cover.
//!
//! The process runs under [`EnclaveLimits`]: an address-space limit, no core
//! dumps, no file writes, a few descriptors, and a deadline for each call
//! after which the host kills it.
//!
//! Evidence is signed by a *simulated attestation key* that the host keeps in
//! its data directory: honest about being INSECURE, since whoever holds that
//! key can vouch for any code. That directory and its secrets must belong to
//! the host's user and be closed to others (see [`check_data_dir`]).

use std::{
    collections::VecDeque,
    ffi::OsString,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use conclave_core::{
    EnclaveInstanceInfo, EnclaveReport, EnclaveSignature, Evidence, HostCommand,
    channel::{
        CHANNEL_VERSION, ChannelError, EnclaveToHost, HostToEnclave, KdsMessage, MeasuredIdentity, decode_body,
        encode_frame, frame_len,
    },
    signature::{decode_signing_key, encode_signing_key},
};
use conclave_enclave::StartInput;
use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use crate::{HostCallback, HostError};

mod files;
mod sys;

pub use files::{PrivatePath, check_data_dir, load_or_create_secret, read_secret_file};

/// How many lines of the enclave's stderr are kept for crash reports.
const STDERR_KEPT: usize = 40;
/// How long a stopped enclave may take to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long a crash report waits for the enclave's last stderr lines.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(200);
/// The bytes every ELF executable starts with.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

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
    /// The binary is not an ELF executable (a script, say, whose interpreter
    /// would run unmeasured).
    #[error(
        "enclave binary {path} is not an ELF executable: a script's interpreter would run unmeasured; \
         build the enclave as a native binary"
    )]
    NotExecutable {
        /// The binary.
        path: PathBuf,
    },
    /// The sealed in-memory copy of the binary could not be made.
    #[error("cannot make a sealed in-memory copy of enclave binary {path}: {error}")]
    Image {
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
    /// The data directory or a secret file is open to other users.
    #[error("{}", files::describe(*.kind, .path, *.owner, *.user, *.mode))]
    UnsafePermissions {
        /// What the path is.
        kind: PrivatePath,
        /// The directory or file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// The uid of this process (the owner it must have).
        user: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The enclave process could not be started.
    #[error("cannot start enclave process {path}: {error}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The enclave process' resource limits could not be set.
    #[error("cannot set the resource limits of enclave process {path}: {error}")]
    Limits {
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
    /// A call did not finish within the call deadline; the host killed the process.
    #[error(
        "enclave call did not finish within its deadline of {deadline:?}, so its process was killed; \
         raise the call timeout if calls need longer"
    )]
    DeadlineExceeded {
        /// The deadline of one call ([`EnclaveLimits::call_timeout`]).
        deadline: Duration,
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

impl SimulationError {
    /// Whether the enclave process is gone after this error (it died, or the
    /// host killed it), so the enclave must be started again.
    pub fn ended_the_process(&self) -> bool {
        matches!(self, Self::Crashed { .. } | Self::DeadlineExceeded { .. })
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() { String::new() } else { format!("; its last words: {}", tail.join(" | ")) }
}

/// The limits an enclave process runs under.
///
/// Set by the host on the process (`prlimit`) before it sends the first
/// byte, so the enclave reads no input without them: an address-space limit
/// ([`memory_limit`](Self::memory_limit), `RLIMIT_AS`), no core dumps
/// (`RLIMIT_CORE` 0), no file writes (`RLIMIT_FSIZE` 0) and, once the
/// enclave has closed what it inherited, [`OPEN_FILES`](Self::OPEN_FILES)
/// descriptors (`RLIMIT_NOFILE`). Each call (start, mail, host call, stop)
/// has [`call_timeout`](Self::call_timeout) to finish, not counting the time
/// the host's own callback takes; past it the host kills the process and
/// the call fails with [`SimulationError::DeadlineExceeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnclaveLimits {
    memory_limit: u64,
    call_timeout: Duration,
}

impl Default for EnclaveLimits {
    /// 4 GiB of address space and 60 seconds per call: generous, so that an
    /// honest enclave never meets them and a runaway one still stops.
    fn default() -> Self {
        Self { memory_limit: 4 << 30, call_timeout: Duration::from_secs(60) }
    }
}

impl EnclaveLimits {
    /// The open-files limit: the standard streams and room for what the
    /// runtime might briefly need; the sandbox refuses opening files anyway.
    pub const OPEN_FILES: u64 = 16;

    /// The address-space limit in bytes (`RLIMIT_AS`). An allocation beyond
    /// it fails inside the enclave (a `try_reserve` error, or Rust's
    /// out-of-memory abort, which the host reports as a crash).
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// How long one call may take before the host kills the process.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The address-space limit in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// The deadline of one call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }
}

/// An enclave binary read once into a sealed in-memory file, and the SHA-256
/// of exactly those bytes (its code hash).
///
/// The copy is what every start of the enclave executes, so what runs is
/// what was measured, whatever happens to the file on disk afterwards.
/// Cloning shares the copy; nothing is read or hashed again.
#[derive(Debug, Clone)]
pub struct MeasuredBinary {
    path: PathBuf,
    image: Arc<sys::SealedImage>,
    code_hash: [u8; 32],
    len: u64,
}

impl MeasuredBinary {
    /// Copies `path` into a sealed memfd, hashing it on the way. Refuses a
    /// file that is not an ELF executable.
    pub fn open(path: &Path) -> Result<Self, SimulationError> {
        let read_error = |error| SimulationError::ReadBinary { path: path.to_owned(), error };
        let image_error = |error| SimulationError::Image { path: path.to_owned(), error };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(read_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
        }
        let expected = metadata.len();
        let mut image = sys::Image::create().map_err(image_error)?;
        // Sizing the memfd first spares the kernel growing it chunk by chunk.
        image.set_len(expected).map_err(image_error)?;
        let (hashed, mut image) = copy_hashing(&mut file, image).map_err(|e| match e {
            CopyError::Read(error) => read_error(error),
            CopyError::Write(error) => image_error(error),
        })?;
        // The file may have shrunk since its size was read: the image is
        // exactly the bytes hashed.
        image.set_len(hashed.len).map_err(image_error)?;
        if hashed.head != ELF_MAGIC {
            return Err(SimulationError::NotExecutable { path: path.to_owned() });
        }
        let image = image.seal().map_err(image_error)?;
        Ok(Self { path: path.to_owned(), image: Arc::new(image), code_hash: hashed.code_hash, len: hashed.len })
    }

    /// The file the bytes were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the bytes: the enclave's code hash.
    pub fn code_hash(&self) -> [u8; 32] {
        self.code_hash
    }

    /// How many bytes the binary has.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the binary is empty (it never is: an empty file is no ELF executable).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What [`copy_hashing`] read.
struct Hashed {
    code_hash: [u8; 32],
    len: u64,
    /// The first bytes, to check for the ELF magic.
    head: Vec<u8>,
}

/// How many bytes travel from the file to the image at a time: few enough to
/// stay in the CPU's cache between read, write and hash.
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the copying thread and the hashing one.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Why [`copy_hashing`] failed.
enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies `file` to its end into `image` and hashes it. Filling a memfd
/// costs about as much as hashing (the kernel allocates and clears every
/// page), so the two overlap: another thread reads each chunk and writes it
/// into the image, then hands that same buffer to this thread, which hashes
/// it while the next chunk is read and written. A buffer is refilled only
/// after it has been hashed, so the bytes hashed are exactly the bytes
/// written, whatever happens to the file meanwhile.
fn copy_hashing(file: &mut std::fs::File, mut image: sys::Image) -> Result<(Hashed, sys::Image), CopyError> {
    let (written, to_hash) = mpsc::sync_channel::<(Vec<u8>, usize)>(CHUNKS_IN_FLIGHT);
    let (hashed_chunk, to_fill) = mpsc::channel::<Vec<u8>>();
    for _ in 0..CHUNKS_IN_FLIGHT {
        // The receiver is alive: it is `to_fill`, just above.
        let _ = hashed_chunk.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let copier = scope.spawn(move || -> Result<sys::Image, CopyError> {
            // Ends at the end of the file, at the first error, or when the
            // hasher stops taking chunks.
            while let Ok(mut chunk) = to_fill.recv() {
                let n = fill(file, &mut chunk).map_err(CopyError::Read)?;
                if n == 0 {
                    break;
                }
                image.write_all(&chunk[..n]).map_err(CopyError::Write)?;
                if written.send((chunk, n)).is_err() {
                    break;
                }
            }
            Ok(image)
        });
        let mut hasher = Sha256::new();
        let mut hashed = Hashed { code_hash: [0; 32], len: 0, head: Vec::with_capacity(ELF_MAGIC.len()) };
        for (chunk, n) in to_hash {
            let bytes = &chunk[..n];
            let wanted = ELF_MAGIC.len().saturating_sub(hashed.head.len()).min(n);
            hashed.head.extend_from_slice(&bytes[..wanted]);
            hasher.update(bytes);
            hashed.len += n as u64;
            // The copier may have stopped; then the loop ends with its channel.
            let _ = hashed_chunk.send(chunk);
        }
        drop(hashed_chunk);
        let image = copier
            .join()
            .unwrap_or_else(|_| Err(CopyError::Write(std::io::Error::other("the copying thread panicked (a bug)"))))?;
        hashed.code_hash = hasher.finalize().into();
        Ok((hashed, image))
    })
}

/// Reads until `buffer` is full or the file ends; returns how many bytes.
fn fill(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A measured, signature-checked enclave binary, ready to be started: the
/// sealed copy ([`MeasuredBinary`]), the identity its signature vouches for,
/// the process' arguments and its [`EnclaveLimits`].
#[derive(Debug, Clone)]
pub struct SignedEnclave {
    binary: MeasuredBinary,
    identity: MeasuredIdentity,
    args: Vec<OsString>,
    limits: EnclaveLimits,
}

impl SignedEnclave {
    /// Measures `binary` (a sealed copy, hashed once, that is what runs) and
    /// checks `<binary>.sig` against that hash: refuses a missing, malformed
    /// or invalid signature, or one for another code hash.
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
        Self::new(MeasuredBinary::open(binary)?, &signature).map_err(|e| match e {
            SimulationError::SignatureInvalid { cause, .. } => {
                SimulationError::SignatureInvalid { signature: sig_path.clone(), cause }
            }
            other => other,
        })
    }

    /// Checks a measured binary against a signature held in memory (a
    /// binary signed on the fly, like the CLI's built-in samples).
    pub fn new(binary: MeasuredBinary, signature: &EnclaveSignature) -> Result<Self, SimulationError> {
        let code_hash = binary.code_hash();
        signature
            .verify(&code_hash)
            .map_err(|cause| SimulationError::SignatureInvalid { signature: binary.path().to_owned(), cause })?;
        let identity = MeasuredIdentity {
            code_hash,
            code_signing_key_hash: signature.signer_key_hash(),
            product_id: signature.product_id(),
            revocation_level: signature.revocation_level(),
        };
        Ok(Self { binary, identity, args: Vec::new(), limits: EnclaveLimits::default() })
    }

    /// The same enclave started with these arguments.
    pub fn with_args(mut self, args: Vec<OsString>) -> Self {
        self.args = args;
        self
    }

    /// The same enclave run under these limits.
    pub fn with_limits(mut self, limits: EnclaveLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The binary's path (what it was read from; what runs is the copy).
    pub fn path(&self) -> &Path {
        self.binary.path()
    }

    /// The measured binary.
    pub fn binary(&self) -> &MeasuredBinary {
        &self.binary
    }

    /// What the host measured and the signature vouches for.
    pub fn identity(&self) -> &MeasuredIdentity {
        &self.identity
    }

    /// The process' arguments.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The limits the process runs under.
    pub fn limits(&self) -> &EnclaveLimits {
        &self.limits
    }
}

/// SHA-256 of a file, read in chunks: an enclave binary's code hash.
pub fn measure(binary: &Path) -> Result<[u8; 32], SimulationError> {
    let error = |error| SimulationError::ReadBinary { path: binary.to_owned(), error };
    let mut file = std::fs::File::open(binary).map_err(error)?;
    let mut hasher = Sha256::new();
    // Large reads: `io::copy`'s 8 KiB would cost a system call per 8 KiB.
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match fill(&mut file, &mut chunk).map_err(error)? {
            0 => return Ok(hasher.finalize().into()),
            n => hasher.update(&chunk[..n]),
        }
    }
}

/// The host's simulated attestation key, kept in `<data_dir>/simulated-attestation.key`.
/// The directory and the key must belong to this user (see [`check_data_dir`]
/// and [`read_secret_file`]); a missing key is created with mode 0600.
pub fn simulated_attestation_key(data_dir: &Path) -> Result<SigningKey, SimulationError> {
    check_data_dir(data_dir)?;
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
    stdin: sys::TimedWriter,
    stdout: BufReader<sys::TimedReader>,
    /// Disconnected once the stderr forwarder has read the last line.
    stderr_done: mpsc::Receiver<()>,
}

impl EnclaveProcess {
    /// Makes every read and write of the channel give up at `deadline`.
    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.stdin.deadline = deadline;
        self.stdout.get_mut().deadline = deadline;
    }
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
    kds: crate::host::SharedKds,
}

impl core::fmt::Debug for SimulationBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimulationBackend")
            .field("binary", &self.enclave.path())
            .field("running", &self.process.is_some())
            .finish_non_exhaustive()
    }
}

impl SimulationBackend {
    pub(crate) fn new(enclave: SignedEnclave, attestation_key: SigningKey, kds: crate::host::SharedKds) -> Self {
        Self {
            enclave,
            attestation_key,
            process: None,
            info: None,
            callback: None,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            sandbox: None,
            kds,
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

    fn path(&self) -> PathBuf {
        self.enclave.path().to_owned()
    }

    pub(crate) fn start(
        &mut self,
        callback: Option<HostCallback>,
        input: StartInput,
    ) -> Result<Vec<HostCommand>, HostError> {
        if self.process.is_some() {
            return Err(HostError::AlreadyStarted);
        }
        self.callback = callback;
        // The sealed copy runs, never the path: it is what was measured. The
        // environment is cleared; argv[0] names the binary for `ps`.
        let mut command = Command::new(self.enclave.binary.image.program());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::arg0(&mut command, self.enclave.path());
        let mut child = command
            .args(&self.enclave.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .spawn()
            .map_err(|error| SimulationError::Spawn { path: self.path(), error })?;
        // Before the first byte of input.
        if let Err(error) = sys::limit_at_spawn(&child, &self.enclave.limits) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SimulationError::Limits { path: self.path(), error }.into());
        }
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SimulationError::Protocol("child pipes missing (this is a bug)".into()).into());
        };
        let stdin = match sys::TimedWriter::new(stdin) {
            Ok(stdin) => stdin,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SimulationError::Spawn { path: self.path(), error }.into());
            }
        };
        let tail = self.stderr_tail.clone();
        if let Ok(mut t) = tail.lock() {
            t.clear();
        }
        let (done, stderr_done) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            forward_stderr(stderr, &tail);
            drop(done);
        });
        self.process =
            Some(EnclaveProcess { child, stdin, stdout: BufReader::new(sys::TimedReader::new(stdout)), stderr_done });

        let result = self.handshake_and_start(input);
        if result.is_err() {
            self.kill();
        }
        result
    }

    fn handshake_and_start(&mut self, input: StartInput) -> Result<Vec<HostCommand>, HostError> {
        let deadline = sys::deadline_after(self.enclave.limits.call_timeout);
        self.send(&HostToEnclave::Hello { version: CHANNEL_VERSION }, deadline)?;
        match self.receive(deadline)? {
            EnclaveToHost::Hello { version, sandbox } => {
                if version != CHANNEL_VERSION {
                    return Err(SimulationError::Channel(ChannelError::VersionMismatch {
                        host: CHANNEL_VERSION,
                        enclave: version,
                    })
                    .into());
                }
                tracing::info!(binary = %self.enclave.path().display(), "enclave process started; {sandbox}");
                self.sandbox = Some(sandbox);
            }
            other => return Err(SimulationError::Protocol(format!("expected Hello, got {other:?}")).into()),
        }
        // The enclave has closed what it inherited and is sandboxed.
        if let Some(process) = &self.process {
            sys::limit_open_files(&process.child)
                .map_err(|error| SimulationError::Limits { path: self.path(), error })?;
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

    /// Sends one enclave call and serves its ocalls until it answers, all
    /// within the call deadline (the host's own callback time not counted):
    /// (response, commands, outcome code).
    pub(crate) fn call(&mut self, message: &HostToEnclave) -> Result<CallAnswer, HostError> {
        if self.process.is_none() {
            return Err(HostError::NotStarted);
        }
        let mut deadline = sys::deadline_after(self.enclave.limits.call_timeout);
        self.send(message, deadline)?;
        loop {
            match self.receive(deadline)? {
                EnclaveToHost::Done { response, commands, outcome } => {
                    return Ok((response.map(ByteBuf::into_vec), commands, outcome));
                }
                EnclaveToHost::Failed { code } => return Err(HostError::EnclaveRemote { code }),
                EnclaveToHost::CallUntrustedHost { bytes } => {
                    let asked = Instant::now();
                    let result = match &mut self.callback {
                        Some(callback) => Ok(callback(&bytes).map(ByteBuf::from)),
                        None => Err("the host registered no callback for call_untrusted_host".to_owned()),
                    };
                    deadline = deadline.and_then(|d| d.checked_add(asked.elapsed()));
                    self.send(&HostToEnclave::HostCallResult { result }, deadline)?;
                }
                EnclaveToHost::EvidenceRequest { report } => {
                    let result = self.sign_evidence(&report);
                    self.send(&HostToEnclave::EvidenceResult { result }, deadline)?;
                }
                EnclaveToHost::Kds { call } => {
                    let asked = Instant::now();
                    let call = match call {
                        KdsMessage::Attestation => conclave_enclave::KdsCall::Attestation,
                        KdsMessage::Deliver(mail) => conclave_enclave::KdsCall::Deliver(mail.into_vec()),
                    };
                    let result = crate::host::call_kds(&self.kds, call).map(ByteBuf::from);
                    // Time spent waiting for the KDS is the host's, not the enclave's.
                    deadline = deadline.and_then(|d| d.checked_add(asked.elapsed()));
                    self.send(&HostToEnclave::KdsResult { result }, deadline)?;
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

    /// The error for a failed channel read or write: the deadline passed
    /// (the host kills the process), or the process is gone.
    fn channel_failed(&mut self, error: &std::io::Error) -> HostError {
        if error.kind() == std::io::ErrorKind::TimedOut {
            self.kill();
            return SimulationError::DeadlineExceeded { deadline: self.enclave.limits.call_timeout }.into();
        }
        self.crashed()
    }

    fn send(&mut self, message: &HostToEnclave, deadline: Option<Instant>) -> Result<(), HostError> {
        let frame = encode_frame(message);
        let Some(process) = &mut self.process else { return Err(HostError::NotStarted) };
        process.set_deadline(deadline);
        if let Err(error) = process.stdin.write_all(&frame).and_then(|()| process.stdin.flush()) {
            return Err(self.channel_failed(&error));
        }
        Ok(())
    }

    fn receive(&mut self, deadline: Option<Instant>) -> Result<EnclaveToHost, HostError> {
        let Some(process) = &mut self.process else { return Err(HostError::NotStarted) };
        process.set_deadline(deadline);
        let mut prefix = [0u8; 4];
        if let Err(error) = process.stdout.read_exact(&mut prefix) {
            return Err(self.channel_failed(&error));
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
        if let Err(error) = process.stdout.read_exact(&mut body) {
            return Err(self.channel_failed(&error));
        }
        decode_body(&body).map_err(|e| {
            self.kill();
            SimulationError::from(e).into()
        })
    }

    /// The process is gone: reap it and report how it ended, with the last
    /// lines it wrote to stderr.
    fn crashed(&mut self) -> HostError {
        let ended = self.process.take().map(|mut p| {
            let _ = p.child.kill();
            let status = p.child.wait();
            // Once the process is reaped its stderr is closed: the forwarder
            // reads the last lines and ends. Wait for that, within a bound.
            let _ = p.stderr_done.recv_timeout(LAST_WORDS_WAIT);
            status
        });
        self.info = None;
        let stderr_tail = self.stderr_tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        let status = match ended {
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

    /// Asks the enclave to stop, lets it exit by itself, then makes sure the process is gone.
    pub(crate) fn stop(&mut self) -> Vec<HostCommand> {
        let commands = self.call(&HostToEnclave::Stop).map(|(_, c, _)| c).unwrap_or_default();
        if let Some(process) = self.process.take() {
            let EnclaveProcess { mut child, stdin, mut stdout, .. } = process;
            drop(stdin);
            // The enclave exits after answering Stop: its stdout then ends.
            // Wait for that (no polling), at most EXIT_GRACE.
            stdout.get_mut().deadline = sys::deadline_after(EXIT_GRACE);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            let _ = child.kill();
            let _ = child.wait();
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;

    use super::*;

    /// A file that starts like an ELF executable, with a length that is no
    /// multiple of the copy's chunk size.
    fn elf_like(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
        let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        bytes[..4].copy_from_slice(ELF_MAGIC);
        let path = dir.join("enclave");
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[test]
    fn the_image_holds_exactly_the_hashed_bytes_and_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        for len in [4, CHUNK - 1, CHUNK, 3 * CHUNK + 12_345, (CHUNKS_IN_FLIGHT + 3) * CHUNK] {
            let (path, bytes) = elf_like(dir.path(), len);
            let binary = MeasuredBinary::open(&path).unwrap();
            assert_eq!(binary.code_hash(), conclave_core::signature::code_hash(&bytes), "{len}");
            assert_eq!(binary.len(), len as u64);
            let program = binary.image.program();
            assert_eq!(std::fs::read(&program).unwrap(), bytes, "{len}");

            // Sealed: not even this process can change it.
            let mut writable = std::fs::OpenOptions::new().write(true).open(&program).unwrap();
            let err = writable.write_all(b"x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::PERM.raw_os_error()), "{err}");
            assert!(writable.set_len(1).is_err());
            assert!(writable.set_len(len as u64 + 1).is_err());
        }
    }

    #[test]
    fn only_an_elf_file_is_an_enclave_binary() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&b""[..], b"\x7fEL", b"#!/bin/sh\n", b"MZ\x90\x00"] {
            let path = dir.path().join("enclave");
            std::fs::write(&path, bytes).unwrap();
            let err = MeasuredBinary::open(&path).unwrap_err();
            assert!(matches!(err, SimulationError::NotExecutable { .. }), "{bytes:?}: {err:?}");
        }
        let err = MeasuredBinary::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = MeasuredBinary::open(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, SimulationError::ReadBinary { .. }), "{err:?}");
    }
}
