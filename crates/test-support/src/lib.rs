//! Fixtures shared by Conclave's tests: a probe enclave that exercises
//! persistence, mail-to-self and the sandbox, and helpers to sign enclave
//! binaries in a temporary directory.
//!
//! The probe runs in process (mock mode) or as the `probe-enclave` binary
//! (simulation mode).
#![deny(missing_docs)]

pub mod hostile;
#[cfg(unix)]
pub mod postgres;
pub mod process;
pub mod web;
pub mod webhost;

use std::path::{Path, PathBuf};

use conclave_core::{EnclaveSignature, signature::code_hash};
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail, SelfMail};
use ed25519_dalek::SigningKey;

/// An enclave for tests. Mail bodies are commands:
///
/// - `count`: increments the counter in the persistent map; replies with it.
/// - `peek`: replies with the counter, unchanged.
/// - `note:<text>`: posts `<text>` to itself as mail-to-self; replies `ok`.
/// - `replayed`: replies with the mail-to-self bodies handed back at start, joined by `,`.
/// - `forget`: deletes every mail-to-self handed back at start; replies `ok`.
/// - `fail`: changes the map, then fails the call (the change must not survive).
/// - `refuse:<text>`: refuses the mail with `<text>` as the application's message.
/// - `panic`: changes the map, then panics (enclave code must not take the host down).
/// - `silent`: counts, and does not reply (the runtime sends a receipt).
/// - anything else: echoes it.
///
/// Host calls (`call_enclave`): `open-file`, `connect:<addr>` and `spawn-thread`
/// try what the sandbox refuses and answer with what happened; `chdir` makes
/// a system call the sandbox kills the process for; `crash` aborts the
/// process; `panic` panics; `refuse:<text>` fails with `<text>`; `count`
/// answers with the counter.
///
/// Host calls that probe the process' limits:
///
/// - `descriptors`: closes every descriptor from 3 to 1023 and answers with
///   those that were open (`none` if only the standard streams were);
/// - `mmap-stdin`: maps descriptor 0 into memory (a file-backed mapping);
/// - `alloc:<MiB>`: tries to reserve that much heap and answers whether it could;
/// - `spin`: computes forever and never answers.
#[derive(Debug, Default)]
pub struct ProbeEnclave {
    replayed: Vec<SelfMail>,
}

fn counter(ctx: &mut EnclaveContext<'_>) -> u64 {
    ctx.persistent_map().get("count").and_then(|v| v.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

impl Enclave for ProbeEnclave {
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        let body = String::from_utf8_lossy(&mail.body).into_owned();
        let reply = match body.as_str() {
            "count" => {
                let next = counter(ctx) + 1;
                ctx.persistent_map().insert("count", next.to_be_bytes().to_vec())?;
                next.to_string()
            }
            "peek" => counter(ctx).to_string(),
            "replayed" => self.replayed.iter().map(|m| String::from_utf8_lossy(&m.body)).collect::<Vec<_>>().join(","),
            "forget" => {
                for mail in self.replayed.drain(..) {
                    ctx.delete_mail_to_self(mail.id);
                }
                "ok".to_owned()
            }
            "fail" => {
                ctx.persistent_map().insert("count", 999u64.to_be_bytes().to_vec())?;
                return Err(EnclaveError::application("asked to fail"));
            }
            "panic" => {
                ctx.persistent_map().insert("count", 999u64.to_be_bytes().to_vec())?;
                panic!("asked to panic");
            }
            "silent" => {
                let next = counter(ctx) + 1;
                ctx.persistent_map().insert("count", next.to_be_bytes().to_vec())?;
                return Ok(());
            }
            other => {
                if let Some(text) = other.strip_prefix("note:") {
                    ctx.post_mail_to_self("notes", text.as_bytes())?;
                    "ok".to_owned()
                } else if let Some(text) = other.strip_prefix("refuse:") {
                    return Err(EnclaveError::application(text));
                } else {
                    other.to_owned()
                }
            }
        };
        ctx.reply(&mail, reply.as_bytes(), routing_hint)
    }

    fn receive_mail_from_self(&mut self, _ctx: &mut EnclaveContext<'_>, mail: SelfMail) -> Result<(), EnclaveError> {
        self.replayed.push(mail);
        Ok(())
    }

    fn receive_from_untrusted_host(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, EnclaveError> {
        let request = String::from_utf8_lossy(bytes).into_owned();
        let answer = match request.as_str() {
            "open-file" => match std::fs::File::open("/etc/hostname") {
                Ok(_) => "opened".to_owned(),
                Err(e) => format!("refused: {e}"),
            },
            "spawn-thread" => match std::thread::Builder::new().spawn(|| ()) {
                Ok(_) => "spawned".to_owned(),
                Err(e) => format!("refused: {e}"),
            },
            "crash" => std::process::abort(),
            // A system call on neither of the sandbox's lists: the process is killed.
            "chdir" => match std::env::set_current_dir("/") {
                Ok(()) => "changed directory".to_owned(),
                Err(e) => format!("refused: {e}"),
            },
            "count" => counter(ctx).to_string(),
            "panic" => panic!("asked to panic"),
            "descriptors" => open_descriptors(),
            "mmap-stdin" => match limits::map_stdin() {
                Ok(()) => "mapped".to_owned(),
                Err(e) => format!("refused: {e}"),
            },
            "spin" => spin(),
            other => {
                if let Some(addr) = other.strip_prefix("connect:") {
                    match std::net::TcpStream::connect(addr) {
                        Ok(_) => "connected".to_owned(),
                        Err(e) => format!("refused: {e}"),
                    }
                } else if let Some(text) = other.strip_prefix("refuse:") {
                    return Err(EnclaveError::application(text));
                } else if let Some(mib) = other.strip_prefix("alloc:") {
                    let bytes = mib.parse::<usize>().unwrap_or(0) << 20;
                    let mut heap: Vec<u8> = Vec::new();
                    match heap.try_reserve_exact(bytes) {
                        Ok(()) => format!("allocated {mib} MiB"),
                        Err(e) => format!("refused: {e}"),
                    }
                } else {
                    format!("unknown request {other:?}")
                }
            }
        };
        Ok(Some(answer.into_bytes()))
    }
}

/// Closes descriptors 3 to 1023 and lists those that were open. Closing is
/// the one test for "open" the sandbox allows (`close` on any descriptor;
/// `fcntl` and `fstat` would kill the process).
fn open_descriptors() -> String {
    #[cfg(unix)]
    {
        let open: Vec<String> =
            (3..1024).filter(|&fd: &i32| nix::unistd::close(fd).is_ok()).map(|fd| fd.to_string()).collect();
        if open.is_empty() { "none".to_owned() } else { open.join(",") }
    }
    #[cfg(not(unix))]
    "unsupported".to_owned()
}

/// Computes forever: a call that never ends.
fn spin() -> ! {
    let mut x = 1u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

#[cfg(unix)]
#[allow(unsafe_code)] // nix's mmap is unsafe: a mapping could alias memory Rust owns
mod limits {
    use std::num::NonZeroUsize;

    use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

    /// Maps one page of descriptor 0 read-only, then unmaps it.
    pub(crate) fn map_stdin() -> nix::Result<()> {
        let page = NonZeroUsize::new(4096).expect("non-zero");
        // SAFETY: a new private read-only mapping at an address the kernel
        // picks; nothing reads it and it is unmapped before returning. The
        // descriptor is only borrowed for the call.
        unsafe {
            let address = mmap(None, page, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE, std::io::stdin(), 0)?;
            munmap(address, page.get())
        }
    }
}

#[cfg(not(unix))]
mod limits {
    pub(crate) fn map_stdin() -> Result<(), &'static str> {
        Err("not supported on this platform")
    }
}

/// The constraint that accepts the mock enclave of type `E` (its mock code
/// hash, and `SEC:INSECURE` since mock mode protects nothing).
pub fn mock_constraint<E: Enclave>() -> conclave_core::EnclaveConstraint {
    let code = hex::encode(conclave_host::mock_identity::<E>().code_hash);
    conclave_core::EnclaveConstraint::parse(&format!("C:{code} SEC:INSECURE")).expect("a valid constraint")
}

/// A client with a fresh key that has attested the mock enclave `E` behind `relay`.
pub fn mock_client<E: Enclave>(
    relay: &conclave_host::LocalRelayHandle,
) -> conclave_client::EnclaveClient<conclave_host::LocalRelayHandle> {
    let mut client = conclave_client::EnclaveClient::new(relay.clone(), mock_constraint::<E>());
    client.start().expect("the mock enclave attests");
    client
}

/// A binary copied into `dir` and signed there with a fresh key: what a
/// developer does with `conclave sign`. Returns the copy's path and the key.
pub fn signed_copy(binary: &Path, dir: &Path, product_id: u16, revocation_level: u16) -> (PathBuf, SigningKey) {
    let key = SigningKey::from_bytes(&rand_bytes());
    let copy = dir.join(binary.file_name().expect("binary has a file name"));
    std::fs::copy(binary, &copy).expect("copy the enclave binary");
    sign(&copy, &key, product_id, revocation_level);
    (copy, key)
}

/// Writes `<binary>.sig` for the binary as it is now.
pub fn sign(binary: &Path, key: &SigningKey, product_id: u16, revocation_level: u16) {
    let bytes = std::fs::read(binary).expect("read the enclave binary");
    let signature = EnclaveSignature::sign(key, code_hash(&bytes), product_id, revocation_level);
    let mut sig = binary.as_os_str().to_owned();
    sig.push(".sig");
    std::fs::write(sig, signature.encode()).expect("write the signature");
}

fn rand_bytes() -> [u8; 32] {
    use rand_core::RngCore;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}
