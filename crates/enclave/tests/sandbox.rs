//! The enclave sandbox, tested from the outside.
//!
//! `enter_sandbox` restricts the whole process for good, so every test here
//! runs this same test binary again as a child process that executes only
//! [`sandbox_child_entry_point`], selected by the `CONCLAVE_SANDBOX_CHILD`
//! environment variable. The child enters the sandbox (unless
//! `CONCLAVE_SANDBOX_SKIP` is set: the control run that proves each check can
//! fail), performs one scenario and prints `CHILD <label> <outcome>` lines; the
//! parent judges its output and how it ended.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use conclave_enclave::sandbox::{
    SandboxError, SandboxOptions, close_inherited_descriptors, enter_sandbox, is_supported,
};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use rand_core::{OsRng, RngCore};

const CHILD_ENV: &str = "CONCLAVE_SANDBOX_CHILD";
const SKIP_ENV: &str = "CONCLAVE_SANDBOX_SKIP";
const PORT_ENV: &str = "CONCLAVE_SANDBOX_PORT";
const PATH_ENV: &str = "CONCLAVE_SANDBOX_PATH";

/// The child side. In an ordinary test run (no `CONCLAVE_SANDBOX_CHILD`) it
/// does nothing; in a child it runs one scenario and exits the process itself,
/// so the test harness never gets to run anything after the sandbox is on.
#[test]
fn sandbox_child_entry_point() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    if scenario == "descriptors" {
        // What the enclave runtime does first, before the sandbox.
        let closed = close_inherited_descriptors();
        say("closed", &closed.to_string());
        say("open", &open_descriptors().join(","));
        io::stdout().flush().unwrap();
        std::process::exit(0);
    }
    // A descriptor opened before the sandbox, as one inherited from the host would be.
    let file_opened_before = (scenario == "mmap-file").then(|| std::fs::File::open(std::env::current_exe().unwrap()));
    if std::env::var_os(SKIP_ENV).is_none() {
        let report = enter_sandbox(&SandboxOptions::new()).expect("enter the sandbox");
        say("report", &report.to_string());
    }
    match scenario.as_str() {
        "open-file" => {
            outcome("open", std::fs::File::open("/etc/hostname"));
            let path = std::env::var(PATH_ENV).unwrap();
            outcome("create", std::fs::File::create(path));
        }
        "connect" => {
            let port: u16 = std::env::var(PORT_ENV).unwrap().parse().unwrap();
            outcome("connect", TcpStream::connect(("127.0.0.1", port)));
        }
        "channel" => channel(),
        "thread" => {
            let spawned = std::thread::Builder::new().spawn(|| 6 * 7);
            outcome("spawn", spawned.map(|handle| handle.join()));
        }
        "forbidden" => {
            // chdir is on neither list: the default action applies.
            let changed = std::env::set_current_dir("/");
            say("survived", &format!("{:?}", changed.is_ok()));
        }
        "exec" => {
            outcome("exec", Command::new("/bin/true").status());
        }
        "panic" => panic!("enclave bug: the answer is {}", 6 * 7),
        "mmap-file" => {
            let file = file_opened_before.expect("opened before").expect("open this test binary");
            say("map", &memory::errno_text(memory::map_file(&file)));
        }
        "mmap-exec" => say("map", &memory::errno_text(memory::map_executable())),
        "mprotect-exec" => say("protect", &memory::errno_text(memory::make_executable())),
        "mmap-anonymous" => say("map", &memory::errno_text(memory::map_anonymous())),
        "twice" => {
            let again = enter_sandbox(&SandboxOptions::new());
            let already = matches!(again, Err(SandboxError::AlreadyEntered));
            say("twice", &format!("already_entered={already}"));
        }
        other => panic!("unknown child scenario {other:?}"),
    }
    io::stdout().flush().unwrap();
    std::process::exit(0);
}

/// The enclave's channel: announce readiness, then read framed lines from
/// stdin and answer on stdout, generating randomness and allocating on the way.
fn channel() {
    say("ready", "");
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    say("random", &hex(&key));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in io::stdin().lock().lines() {
        let line = line.unwrap();
        *counts.entry(line.clone()).or_default() += 1;
        say("echo", &line.to_uppercase());
    }
    let big: Vec<u64> = (0..1_000_000).collect();
    say("sum", &big.iter().sum::<u64>().to_string());
    say("distinct", &counts.len().to_string());
}

/// The descriptors `/proc/self/fd` lists, but the listing's own.
fn open_descriptors() -> Vec<String> {
    let mut listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    listed.sort();
    // The highest number is the listing's own descriptor: gone once listed.
    let own = listed.pop();
    assert!(own.is_some_and(|fd| fd > 2), "{listed:?}");
    listed.iter().map(ToString::to_string).collect()
}

/// The raw memory calls of the mapping scenarios. nix marks them unsafe
/// because a mapping can alias memory Rust already owns.
#[allow(unsafe_code)] // sound: see each block; no Rust value ever points into these mappings
mod memory {
    use std::num::NonZeroUsize;

    use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, mprotect, munmap};

    const PAGE: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

    pub fn errno_text(result: nix::Result<()>) -> String {
        match result {
            Ok(()) => "ok".to_owned(),
            Err(errno) => format!("err {}", errno as i32),
        }
    }

    /// Maps the first page of `file` read-only, then unmaps it.
    pub fn map_file(file: &std::fs::File) -> nix::Result<()> {
        // SAFETY: a new private read-only mapping at an address the kernel
        // picks; nothing reads it, and it is unmapped before returning.
        unsafe {
            let address = mmap(None, PAGE, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE, file, 0)?;
            munmap(address, PAGE.get())
        }
    }

    /// Maps one anonymous page readable and writable, then unmaps it.
    pub fn map_anonymous() -> nix::Result<()> {
        // SAFETY: as in `map_file`; the page is anonymous.
        unsafe {
            let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
            let address = mmap_anonymous(None, PAGE, prot, MapFlags::MAP_PRIVATE)?;
            munmap(address, PAGE.get())
        }
    }

    /// Maps one anonymous page readable and executable, then unmaps it.
    pub fn map_executable() -> nix::Result<()> {
        // SAFETY: as in `map_file`; nothing is executed from the page.
        unsafe {
            let prot = ProtFlags::PROT_READ | ProtFlags::PROT_EXEC;
            let address = mmap_anonymous(None, PAGE, prot, MapFlags::MAP_PRIVATE)?;
            munmap(address, PAGE.get())
        }
    }

    /// Maps one anonymous writable page, then asks to make it executable.
    pub fn make_executable() -> nix::Result<()> {
        // SAFETY: the page belongs to this function alone; changing its
        // protection affects no other memory, and nothing is executed from it.
        unsafe {
            let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
            let address = mmap_anonymous(None, PAGE, prot, MapFlags::MAP_PRIVATE)?;
            let changed = mprotect(address, PAGE.get(), ProtFlags::PROT_READ | ProtFlags::PROT_EXEC);
            munmap(address, PAGE.get())?;
            changed
        }
    }
}

fn say(label: &str, text: &str) {
    println!("CHILD {label} {text}");
}

fn outcome<T>(label: &str, result: io::Result<T>) {
    match result {
        Ok(_) => say(label, "ok"),
        Err(e) => say(label, &format!("err {}", e.raw_os_error().unwrap_or(-1))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a child run ended.
#[derive(Debug)]
struct ChildRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ChildRun {
    /// The text after `CHILD <label> ` on each line with that label.
    fn said(&self, label: &str) -> Vec<&str> {
        let prefix = format!("CHILD {label} ");
        self.stdout.lines().filter_map(|line| line.strip_prefix(&prefix)).collect()
    }

    fn single(&self, label: &str) -> &str {
        match self.said(label)[..] {
            [text] => text,
            _ => panic!("expected one {label:?} line from the child: {self:#?}"),
        }
    }

    fn killed_by_sigsys(&self) -> bool {
        self.status.signal() == Some(Signal::SIGSYS as i32)
    }

    fn assert_exited_cleanly(&self) {
        assert!(self.status.success(), "child failed: {self:#?}");
    }
}

fn child_command(scenario: &str, sandboxed: bool) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "sandbox_child_entry_point", "--nocapture", "--test-threads=1", "--quiet"])
        .env(CHILD_ENV, scenario)
        .env_remove(SKIP_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !sandboxed {
        command.env(SKIP_ENV, "1");
    }
    command
}

fn run_child(scenario: &str, sandboxed: bool, env: &[(&str, String)]) -> ChildRun {
    let output = child_command(scenario, sandboxed).envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    ChildRun {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The errors the sandbox may answer a forbidden call with: seccomp's EPERM
/// or, behind it, landlock's EACCES.
fn is_denied(outcome: &str) -> bool {
    let eperm = format!("err {}", Errno::EPERM as i32);
    let eacces = format!("err {}", Errno::EACCES as i32);
    outcome == eperm || outcome == eacces
}

fn scratch_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("conclave-sandbox-{name}-{}-{nanos}", std::process::id()))
}

#[test]
fn this_platform_is_supported() {
    assert!(is_supported());
}

#[test]
fn report_names_every_protection() {
    let run = run_child("twice", true, &[]);
    run.assert_exited_cleanly();
    let report = run.single("report");
    eprintln!("{report}");
    assert!(report.starts_with("sandbox: "), "{report}");
    for expected in ["no_new_privs=on", "dumpable=off", "seccomp=on (", "landlock="] {
        assert!(report.contains(expected), "{expected:?} missing: {report}");
    }
}

#[test]
fn entering_twice_is_refused_without_harm() {
    let run = run_child("twice", true, &[]);
    run.assert_exited_cleanly();
    assert_eq!(run.single("twice"), "already_entered=true");
}

#[test]
fn opening_or_creating_a_file_fails_and_is_reported() {
    let path = scratch_path("create");
    let env = [(PATH_ENV, path.to_str().unwrap().to_owned())];

    let control = run_child("open-file", false, &env);
    control.assert_exited_cleanly();
    assert_eq!(control.single("open"), "ok", "control: {control:#?}");
    assert_eq!(control.single("create"), "ok", "control: {control:#?}");
    assert!(path.exists(), "control run should have created {path:?}");
    std::fs::remove_file(&path).unwrap();

    let run = run_child("open-file", true, &env);
    run.assert_exited_cleanly();
    assert!(is_denied(run.single("open")), "{run:#?}");
    assert!(is_denied(run.single("create")), "{run:#?}");
    assert!(!path.exists(), "sandboxed child created {path:?}");
}

#[test]
fn connecting_a_socket_fails_and_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let env = [(PORT_ENV, listener.local_addr().unwrap().port().to_string())];

    let control = run_child("connect", false, &env);
    control.assert_exited_cleanly();
    assert_eq!(control.single("connect"), "ok", "control: {control:#?}");
    assert!(listener.accept().is_ok(), "control connection should be waiting");

    let run = run_child("connect", true, &env);
    run.assert_exited_cleanly();
    assert!(is_denied(run.single("connect")), "{run:#?}");
    let err = listener.accept().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "a connection arrived");
}

/// The enclave's channel keeps working inside the sandbox: reading stdin,
/// writing stdout, allocating, randomness. While the child waits for input the
/// parent checks the kernel's own view in /proc.
#[test]
fn stdin_stdout_memory_and_randomness_work_inside() {
    let mut child = child_command("channel", true).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdout = io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("CHILD ready") {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "child quit: {seen}");
        seen.push_str(&line);
    }

    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_owned();
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "filter mode: {status}");
    assert_eq!(field("Seccomp_filters:"), "2", "{status}");

    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\nhello\n").unwrap();
    drop(stdin);
    stdout.read_to_string(&mut seen).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let run = ChildRun { status: child.wait().unwrap(), stdout: seen, stderr };
    run.assert_exited_cleanly();
    assert_eq!(run.said("echo"), ["HELLO", "WORLD", "HELLO"]);
    assert_eq!(run.single("sum"), "499999500000");
    assert_eq!(run.single("distinct"), "2");
    let random = run.single("random");
    assert_eq!(random.len(), 64);
    assert_ne!(random, "0".repeat(64));
}

#[test]
fn threads_are_refused_with_an_error() {
    let control = run_child("thread", false, &[]);
    control.assert_exited_cleanly();
    assert_eq!(control.single("spawn"), "ok");

    let run = run_child("thread", true, &[]);
    run.assert_exited_cleanly();
    assert!(is_denied(run.single("spawn")), "{run:#?}");
}

#[test]
fn an_unlisted_syscall_kills_the_process() {
    let control = run_child("forbidden", false, &[]);
    control.assert_exited_cleanly();
    assert_eq!(control.single("survived"), "true");

    let run = run_child("forbidden", true, &[]);
    assert!(run.killed_by_sigsys(), "{run:#?}");
    assert!(run.said("survived").is_empty(), "{run:#?}");
}

#[test]
fn running_another_program_is_impossible() {
    let control = run_child("exec", false, &[]);
    control.assert_exited_cleanly();
    assert_eq!(control.single("exec"), "ok");

    let run = run_child("exec", true, &[]);
    run.assert_exited_cleanly();
    assert!(is_denied(run.single("exec")), "{run:#?}");
}

/// A descriptor the parent left without close-on-exec reaches the child;
/// `close_inherited_descriptors` leaves only the standard streams.
#[test]
fn inherited_descriptors_are_closed() {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;

    let leaked = open(&std::env::current_exe().unwrap(), OFlag::O_RDONLY, Mode::empty()).unwrap();
    let run = run_child("descriptors", false, &[]);
    drop(leaked);
    run.assert_exited_cleanly();
    let closed: usize = run.single("closed").parse().unwrap();
    assert!(closed >= 1, "{run:#?}");
    assert_eq!(run.single("open"), "0,1,2", "{run:#?}");
}

/// A file-backed mapping is a way around "no files": with a descriptor the
/// enclave should not hold, it could read (or with MAP_SHARED, write) the
/// file through memory. Only anonymous mappings are allowed; anything else
/// kills the process, like every call the enclave has no use for.
#[test]
fn a_file_backed_mapping_kills_the_process() {
    let control = run_child("mmap-file", false, &[]);
    control.assert_exited_cleanly();
    assert_eq!(control.single("map"), "ok", "control: {control:#?}");

    let run = run_child("mmap-file", true, &[]);
    assert!(run.killed_by_sigsys(), "{run:#?}");
    assert!(run.said("map").is_empty(), "{run:#?}");
}

#[test]
fn anonymous_mappings_still_work() {
    let run = run_child("mmap-anonymous", true, &[]);
    run.assert_exited_cleanly();
    assert_eq!(run.single("map"), "ok", "{run:#?}");
}

/// No new executable memory: neither a fresh executable mapping nor turning
/// a writable page executable (what a JIT or injected shellcode needs).
#[test]
fn executable_memory_cannot_be_created() {
    for (scenario, label) in [("mmap-exec", "map"), ("mprotect-exec", "protect")] {
        let control = run_child(scenario, false, &[]);
        control.assert_exited_cleanly();
        assert_eq!(control.single(label), "ok", "control: {control:#?}");

        let run = run_child(scenario, true, &[]);
        assert!(run.killed_by_sigsys(), "{scenario}: {run:#?}");
        assert!(run.said(label).is_empty(), "{scenario}: {run:#?}");
    }
}

/// A panic still unwinds, prints its message and exits with Rust's panic
/// status, instead of dying of a system call the panic machinery needs, even
/// when asked for a backtrace.
#[test]
fn a_panic_is_reported_normally() {
    let run = run_child("panic", true, &[("RUST_BACKTRACE", "1".to_owned())]);
    assert_eq!(run.status.code(), Some(101), "{run:#?}");
    assert!(run.stderr.contains("enclave bug: the answer is 42"), "{run:#?}");
}
