//! The boundary around a simulation enclave, seen from the host: the
//! process holds none of the host's descriptors, maps no file, runs exactly
//! the bytes that were measured, and lives within memory and time limits.
#![cfg(target_os = "linux")]

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use conclave_core::EnclaveInstanceInfo;
use conclave_host::{
    EnclaveHost, HostError, HostService, ServiceConfig,
    simulation::{EnclaveLimits, SignedEnclave, SimulationError, measure, simulated_attestation_key},
    store::SqliteStore,
};
use conclave_test_support::{sign, signed_copy};
use ed25519_dalek::SigningKey;
use tempfile::TempDir;

const PROBE: &str = env!("CARGO_BIN_EXE_probe-enclave");
const WRONG_VERSION: &str = env!("CARGO_BIN_EXE_wrong-version-enclave");

struct Setup {
    dir: TempDir,
    binary: PathBuf,
    key: SigningKey,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (binary, key) = signed_copy(Path::new(PROBE), dir.path(), 1, 0);
    std::fs::create_dir(dir.path().join("data")).unwrap();
    Setup { dir, binary, key }
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn host(&self, limits: EnclaveLimits) -> EnclaveHost {
        let enclave = SignedEnclave::load(&self.binary).unwrap().with_limits(limits);
        EnclaveHost::load_simulation(enclave, simulated_attestation_key(&self.data()).unwrap())
    }

    fn service(&self, limits: EnclaveLimits) -> HostService {
        let store = SqliteStore::open(&self.data().join("host.db")).unwrap();
        HostService::new(self.host(limits), store, ServiceConfig::new([7; 32])).unwrap()
    }
}

fn answer(service: &mut HostService, request: &str) -> String {
    String::from_utf8(service.call_enclave(request.as_bytes()).unwrap().unwrap()).unwrap()
}

/// The code hash the running enclave's attestation carries.
fn attested_code_hash(service: &mut HostService) -> Vec<u8> {
    let info = EnclaveInstanceInfo::decode(&service.attestation().unwrap()).unwrap();
    info.verify(0).unwrap().identity.code_hash
}

/// Overwrites `path` in place (same inode) with the bytes of `other`.
fn rewrite_in_place(path: &Path, other: &str) {
    let bytes = std::fs::read(other).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn the_enclave_holds_no_descriptor_but_the_standard_streams() {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
    use nix::sys::stat::Mode;

    let s = setup();
    // A descriptor some other part of the host opened without close-on-exec:
    // every process the host starts inherits it.
    let leaked = open(Path::new(PROBE), OFlag::O_RDONLY, Mode::empty()).unwrap();
    let flags = FdFlag::from_bits_truncate(fcntl(&leaked, FcntlArg::F_GETFD).unwrap());
    assert!(!flags.contains(FdFlag::FD_CLOEXEC));

    let mut service = s.service(EnclaveLimits::default());
    assert_eq!(answer(&mut service, "descriptors"), "none");
    drop(leaked);
}

#[test]
fn a_file_backed_mapping_kills_the_enclave() {
    let s = setup();
    let mut service = s.service(EnclaveLimits::default());
    let err = service.call_enclave(b"mmap-stdin").unwrap_err();
    assert!(matches!(err, HostError::Simulation(SimulationError::Crashed { .. })), "{err:?}");
    assert!(err.to_string().contains("SIGSYS"), "{err}");
    // The host restarted it; anonymous memory (the heap) still works.
    assert_eq!(answer(&mut service, "alloc:16"), "allocated 16 MiB");
}

#[test]
fn the_code_hash_is_the_sha256_of_the_binary() {
    let s = setup();
    let enclave = SignedEnclave::load(&s.binary).unwrap();
    let bytes = std::fs::read(&s.binary).unwrap();
    assert_eq!(enclave.identity().code_hash, conclave_core::signature::code_hash(&bytes));
    assert_eq!(measure(&s.binary).unwrap(), enclave.identity().code_hash);
}

/// The host measured a binary; an operator (or an attacker on the host's
/// file system) then puts another program at the same path. What runs, now
/// and after every restart, is still what was measured.
#[test]
fn replacing_the_binary_after_load_changes_nothing_that_runs() {
    let s = setup();
    let mut service = s.service(EnclaveLimits::default());
    let measured = attested_code_hash(&mut service);
    assert_eq!(measured, measure(&s.binary).unwrap());

    let other = s.dir.path().join("other");
    std::fs::copy(WRONG_VERSION, &other).unwrap();
    std::fs::rename(&other, &s.binary).unwrap();
    service.restart_enclave().unwrap();

    assert_eq!(attested_code_hash(&mut service), measured);
    assert_eq!(answer(&mut service, "count"), "0");
}

/// The same with the file rewritten in place (same inode), which a host that
/// executes by path would run on its next start; and the rewritten file
/// cannot be loaded with the old signature either.
#[test]
fn a_binary_rewritten_in_place_cannot_sneak_in() {
    let s = setup();
    let mut service = s.service(EnclaveLimits::default());
    let measured = attested_code_hash(&mut service);

    rewrite_in_place(&s.binary, WRONG_VERSION);
    service.restart_enclave().unwrap();
    assert_eq!(attested_code_hash(&mut service), measured);
    assert_eq!(answer(&mut service, "count"), "0");

    let err = SignedEnclave::load(&s.binary).unwrap_err();
    assert!(matches!(err, SimulationError::SignatureInvalid { .. }), "{err:?}");
    assert!(err.to_string().contains("changed after signing"), "{err}");
}

/// A script's measurement covers the script, not the interpreter that would
/// run it, so it is no enclave binary.
#[test]
fn a_script_is_refused_at_load() {
    let s = setup();
    let script = s.dir.path().join("enclave.sh");
    std::fs::write(&script, "#!/bin/sh\nexec cat\n").unwrap();
    sign(&script, &s.key, 1, 0);
    let err = SignedEnclave::load(&script).unwrap_err();
    assert!(matches!(err, SimulationError::NotExecutable { .. }), "{err:?}");
    assert!(err.to_string().contains("not an ELF executable"), "{err}");
}

/// Reads one limit ("Max address space" …) of a process: soft and hard.
fn limit_of(pid: u32, name: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {limits}"));
    let mut fields = line[name.len()..].split_whitespace();
    (fields.next().unwrap().to_owned(), fields.next().unwrap().to_owned())
}

#[test]
fn the_enclave_process_runs_under_its_limits() {
    let s = setup();
    let limits = EnclaveLimits::default().with_memory_limit(512 << 20);
    let mut service = s.service(limits);
    let pid = service.host_mut().enclave_pid().unwrap();
    let both = |v: &str| (v.to_owned(), v.to_owned());
    assert_eq!(limit_of(pid, "Max address space"), both(&(512u64 << 20).to_string()));
    assert_eq!(limit_of(pid, "Max core file size"), both("0"));
    assert_eq!(limit_of(pid, "Max file size"), both("0"));
    assert_eq!(limit_of(pid, "Max open files"), both(&EnclaveLimits::OPEN_FILES.to_string()));
}

#[test]
fn the_default_limits_are_generous() {
    let limits = EnclaveLimits::default();
    assert_eq!(limits.memory_limit(), 4 << 30);
    assert_eq!(limits.call_timeout(), Duration::from_secs(60));
}

#[test]
fn an_allocation_beyond_the_memory_limit_fails_inside_the_enclave() {
    let s = setup();
    // Control: with the default limit the same allocation succeeds.
    let mut generous = s.service(EnclaveLimits::default());
    assert_eq!(answer(&mut generous, "alloc:1024"), "allocated 1024 MiB");
    drop(generous);

    let mut service = s.service(EnclaveLimits::default().with_memory_limit(256 << 20));
    let refused = answer(&mut service, "alloc:1024");
    assert!(refused.starts_with("refused: memory allocation failed"), "{refused}");
    // The enclave and the host carry on.
    assert_eq!(answer(&mut service, "alloc:16"), "allocated 16 MiB");
    assert_eq!(answer(&mut service, "count"), "0");
    assert_eq!(service.restarts(), 0);
}

#[test]
fn a_call_past_its_deadline_kills_the_enclave_and_says_so() {
    let s = setup();
    // Short enough to keep the test quick, long enough for every honest call
    // of a debug build on a busy machine (start-up included).
    let deadline = Duration::from_secs(1);
    let mut service = s.service(EnclaveLimits::default().with_call_timeout(deadline));
    let pid = service.host_mut().enclave_pid().unwrap();

    let err = service.call_enclave(b"spin").unwrap_err();
    assert!(
        matches!(err, HostError::Simulation(SimulationError::DeadlineExceeded { deadline: d }) if d == deadline),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("deadline of 1s") && message.contains("killed"), "{message}");

    // The host started a fresh enclave that answers.
    assert_ne!(service.host_mut().enclave_pid(), Some(pid));
    assert_eq!(answer(&mut service, "count"), "0");
    assert_eq!(service.restarts(), 1);
}

/// The simulated attestation key vouches for any code: a host refuses a data
/// directory others can write, or a key file others can read.
#[test]
fn the_host_refuses_a_data_directory_or_key_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &Path, mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();

    let s = setup();
    chmod(&s.data(), 0o777);
    let err = EnclaveHost::load(&s.binary, &s.data()).unwrap_err();
    assert!(err.to_string().contains("chmod 700"), "{err}");
    chmod(&s.data(), 0o700);

    EnclaveHost::load(&s.binary, &s.data()).unwrap();
    let key = s.data().join("simulated-attestation.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    chmod(&key, 0o644);
    let err = EnclaveHost::load(&s.binary, &s.data()).unwrap_err();
    assert!(err.to_string().contains(&format!("chmod 600 {}", key.display())), "{err}");
}
