//! The sandbox a simulation enclave enters before it reads any input.
//!
//! In simulation mode the enclave is an ordinary OS process that the host
//! starts from a signed binary. Nothing but this sandbox stands between the
//! enclave's code and the machine, so the enclave calls [`enter_sandbox`] first
//! thing, while it is still single threaded, and from then on can only compute
//! and talk to the host over the standard streams it was started with:
//!
//! ```text
//!   host ──stdin (fd 0)──► enclave process ──stdout (fd 1)──► host
//!                          │ stderr (fd 2) ──► host's log
//!                          ╳ files, sockets, new processes or threads, exec
//! ```
//!
//! Before anything else the runtime calls [`close_inherited_descriptors`]:
//! the process keeps no descriptor of the host's but the three streams.
//! Then [`enter_sandbox`] applies, in this order, and irreversibly for the
//! whole process:
//!
//! 1. **no new privileges** (`PR_SET_NO_NEW_PRIVS`): no set-uid or file
//!    capability can ever raise the process' privileges again. Both later steps
//!    also require it.
//! 2. **not dumpable** (`PR_SET_DUMPABLE 0`): no core dumps, and other
//!    processes of the same user cannot `ptrace` it or read `/proc/<pid>/mem`.
//! 3. **landlock**, where the kernel has it: every file system access right and,
//!    from landlock ABI v4, TCP bind and connect are denied with no exception
//!    (no rule is added to the ruleset); from ABI v6 signals and abstract UNIX
//!    sockets leaving the sandbox are denied too. The ruleset asks for
//!    everything the `landlock` crate knows; an older kernel enforces what it
//!    can ("partially enforced") and the report says so. Landlock is the second
//!    wall: the seccomp filter below already refuses the system calls that
//!    would reach a file or a socket, landlock still holds if that list is ever
//!    widened by mistake.
//! 4. **a seccomp allow-list**, on all threads (`SECCOMP_FILTER_FLAG_TSYNC`),
//!    installed last because it forbids the system calls the earlier steps
//!    use.
//!
//! # The seccomp policy
//!
//! Allowed: what a single-threaded Rust program needs to compute, allocate,
//! read its input and write its output:
//!
//! * `read`, `readv`, `write`, `writev` on fds 0, 1 and 2 only; `close`;
//! * memory: `brk`; `mmap` of anonymous memory only (`MAP_ANONYMOUS` set,
//!   descriptor -1) and without `PROT_EXEC`; `mprotect` without `PROT_EXEC`;
//!   `munmap`, `mremap`, `madvise`. No file can be mapped, so a descriptor
//!   the enclave should not hold is no way around "no files", and no new
//!   executable memory can be made (neither mapped executable nor turned
//!   executable later: a JIT or injected code has nowhere to run);
//! * synchronisation and time: `futex`, `sched_yield`, `clock_gettime`,
//!   `clock_getres`, `gettimeofday`, `clock_nanosleep`, `nanosleep`;
//! * randomness: `getrandom` (key generation after entering the sandbox works);
//! * signals and exit: `rt_sigreturn`, `rt_sigprocmask`, `rt_sigaction`,
//!   `sigaltstack` (std's stack-overflow guard), `restart_syscall`, `getpid`,
//!   `gettid`, `tgkill` aimed at this process only (what `abort()` does), `exit`,
//!   `exit_group`.
//!
//! Refused with `EPERM`, so the enclave gets an ordinary error it can report:
//! opening files (`open`, `openat`, `openat2`, `creat`), making sockets
//! (`socket`, `socketpair`), creating threads or processes (`clone`, `clone3`,
//! `fork`, `vfork`), and `getcwd`, `readlink`, `readlinkat`. The first three
//! groups are the calls an honest enclave makes by mistake (`File::open`,
//! `TcpStream::connect`, `thread::spawn`), and a clear "operation not
//! permitted" is the useful answer. The last three are what std's panic
//! handler uses to print a backtrace (`RUST_BACKTRACE=1`): refused, it prints
//! the panic message and a backtrace without symbols and the process exits
//! with the usual panic status instead of dying mid-report. The enclave
//! runtime is single threaded, so threads are refused:
//! `std::thread::Builder::spawn` returns an error and `std::thread::spawn`
//! panics.
//!
//! Everything else **kills the process** (`SECCOMP_RET_KILL_PROCESS`, the
//! host sees it die of `SIGSYS`), and so does an allowed call with arguments
//! outside its limits (`read` on descriptor 3, a file-backed or executable
//! `mmap`). Those calls (`execve`, `ptrace`, `mount`,
//! `ioctl`, `pipe2`, `chdir`, …) have no use inside an enclave, so reaching one
//! means either a bug to fix by hand or code that is not doing what its author
//! intended; stopping at once is the safe outcome, and a listed refusal is only
//! worth having where it helps an honest enclave explain itself.
//!
//! The policy is two filters, because one seccompiler filter has one action
//! for matches and one for the rest: the allow-list (allowed and refused calls
//! match, the rest kills) and the refusal list (refused calls get `EPERM`, the
//! rest passes). The kernel runs both and takes the most severe answer, so a
//! refused call gets `EPERM` and an unlisted one is killed.

use std::fmt;

/// What [`enter_sandbox`] must achieve; the default is the full sandbox with
/// landlock on a best-effort basis.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    require_landlock: bool,
}

impl SandboxOptions {
    /// The default options: landlock is used where the kernel supports it, and
    /// its absence is reported, not an error.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `true`, [`enter_sandbox`] fails when the kernel enforces no
    /// landlock restriction at all (landlock missing or disabled at boot).
    /// A partially enforced ruleset (an older landlock ABI) is accepted.
    pub fn require_landlock(mut self, require: bool) -> Self {
        self.require_landlock = require;
        self
    }
}

/// How much of the requested landlock ruleset the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LandlockState {
    /// Every requested restriction is enforced.
    FullyEnforced {
        /// The kernel's landlock ABI version.
        abi: u32,
    },
    /// The kernel's landlock is older than the ruleset: the restrictions it
    /// knows are enforced, newer ones (e.g. network rules before ABI v4) are not.
    PartiallyEnforced {
        /// The kernel's landlock ABI version.
        abi: u32,
    },
    /// Nothing is enforced: the kernel lacks landlock or it is disabled.
    NotEnforced,
}

impl fmt::Display for LandlockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FullyEnforced { abi } => write!(f, "fully enforced (ABI v{abi})"),
            Self::PartiallyEnforced { abi } => {
                // Landlock denies file access from ABI v1 and TCP from v4;
                // later versions add finer rules this enclave does not need.
                let covered = if *abi >= 4 { "files and TCP denied" } else { "files denied, TCP not (needs ABI v4)" };
                write!(f, "partially enforced (kernel landlock ABI v{abi} of the v10 requested: {covered})")
            }
            Self::NotEnforced => f.write_str("not enforced (unsupported by the kernel)"),
        }
    }
}

/// The protections in force after [`enter_sandbox`]. Its `Display` is a
/// one-line start-up log message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxReport {
    /// `PR_SET_NO_NEW_PRIVS` is set, as read back from the kernel.
    pub no_new_privs: bool,
    /// The process is still dumpable, as read back from the kernel (`false`
    /// after a successful [`enter_sandbox`]).
    pub dumpable: bool,
    /// How much of the landlock ruleset is enforced.
    pub landlock: LandlockState,
    /// The seccomp filter is installed on every thread.
    pub seccomp: bool,
    /// How many system calls the seccomp filter allows.
    pub allowed_syscalls: usize,
    /// How many system calls the seccomp filter refuses with `EPERM` (the rest
    /// kill the process).
    pub refused_syscalls: usize,
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |on: bool| if on { "on" } else { "off" };
        write!(
            f,
            "sandbox: no_new_privs={} dumpable={} seccomp={}",
            on_off(self.no_new_privs),
            on_off(self.dumpable),
            on_off(self.seccomp),
        )?;
        if self.seccomp {
            write!(f, " ({} syscalls allowed, {} refused, others kill)", self.allowed_syscalls, self.refused_syscalls)?;
        }
        write!(f, " landlock={}", self.landlock)
    }
}

/// Why [`enter_sandbox`] failed, naming the step. After any failure but
/// [`Unsupported`](Self::Unsupported) and
/// [`AlreadyEntered`](Self::AlreadyEntered) the process may be partly
/// restricted: treat the error as fatal and exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// This build has no sandbox for the platform it runs on.
    #[error("sandbox not supported on this platform ({platform}); run the enclave on Linux x86_64 or aarch64")]
    Unsupported {
        /// The operating system and architecture, e.g. `macos/aarch64`.
        platform: String,
    },
    /// [`enter_sandbox`] was already called in this process.
    #[error("sandbox already entered in this process")]
    AlreadyEntered,
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("could not set no_new_privs")]
    NoNewPrivs(#[source] std::io::Error),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("could not make the process not dumpable")]
    NotDumpable(#[source] std::io::Error),
    /// Building or enforcing the landlock ruleset failed.
    #[error("could not restrict file system and network access with landlock")]
    Landlock(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// [`SandboxOptions::require_landlock`] is set and the kernel enforces nothing.
    #[error("landlock is required but {state}; enable landlock in the kernel (lsm=landlock) or stop requiring it")]
    LandlockRequired {
        /// What the kernel enforces.
        state: LandlockState,
    },
    /// Compiling the seccomp filter failed; this is a bug in the filter.
    #[error("could not build the seccomp filter (a bug)")]
    SeccompBuild(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The kernel refused the seccomp filter.
    #[error("could not install the seccomp filter")]
    SeccompInstall(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Whether this build can sandbox the process: Linux on x86_64 or aarch64.
/// Elsewhere [`enter_sandbox`] returns [`SandboxError::Unsupported`].
pub fn is_supported() -> bool {
    cfg!(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))
}

/// Closes every descriptor but the standard streams (0, 1 and 2) and
/// returns how many were open.
///
/// A process inherits every descriptor its parent opened without
/// close-on-exec: a file, a socket or a database of the host, readable and
/// writable through `read`/`write` whatever the sandbox says about opening
/// files. The enclave runtime calls this as its very first act, before
/// [`enter_sandbox`] and before it reads any input.
///
/// It lists `/proc/self/fd` (before the sandbox, which refuses `openat`),
/// or where that cannot be read closes every number below the
/// open-files limit (at most 65 536). Call it while the process is single
/// threaded and before anything else holds a descriptor it means to keep:
/// whatever is open is closed.
pub fn close_inherited_descriptors() -> usize {
    imp::close_inherited_descriptors()
}

/// Restricts the calling process for good: no new privileges, not dumpable,
/// landlock where available, and the seccomp policy described in the
/// [module documentation](self).
///
/// Call it once, early, before reading any input and before spawning threads
/// (the seccomp filter reaches every thread, but landlock before ABI v8 only
/// the calling one). A second call returns [`SandboxError::AlreadyEntered`]
/// without touching anything.
pub fn enter_sandbox(options: &SandboxOptions) -> Result<SandboxReport, SandboxError> {
    imp::enter_sandbox(options)
}

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use landlock::{
        ABI, Access, AccessFs, AccessNet, LandlockStatus, RestrictSelfAttr, Ruleset, RulesetAttr, RulesetStatus, Scope,
    };
    use nix::libc;
    use nix::sys::prctl;
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
        TargetArch,
    };

    use super::{LandlockState, SandboxError, SandboxOptions, SandboxReport};

    static ENTERED: AtomicBool = AtomicBool::new(false);

    /// The most descriptor numbers tried when `/proc/self/fd` is unreadable.
    const MAX_DESCRIPTORS_TRIED: u64 = 1 << 16;

    pub(super) fn close_inherited_descriptors() -> usize {
        // The listing's own descriptor is open while it is read and closed
        // when `entries` ends; closing its number again finds nothing.
        let listed: Option<Vec<i32>> = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect());
        let candidates = listed.unwrap_or_else(|| {
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(1024, |(soft, _hard)| soft)
                .min(MAX_DESCRIPTORS_TRIED);
            (3..i32::try_from(limit).unwrap_or(i32::MAX)).collect()
        });
        // On Linux `close` releases the number whatever it returns, except
        // EBADF: nothing was open there.
        candidates
            .into_iter()
            .filter(|&fd| fd > 2)
            .filter(|&fd| nix::unistd::close(fd) != Err(nix::errno::Errno::EBADF))
            .count()
    }

    /// The newest landlock ABI the `landlock` crate knows. The ruleset asks for
    /// everything it defines; best-effort mode lets an older kernel enforce
    /// what it supports, and the report then says "partially enforced".
    const LANDLOCK_ABI: ABI = ABI::V10;

    pub(super) fn enter_sandbox(options: &SandboxOptions) -> Result<SandboxReport, SandboxError> {
        if ENTERED.swap(true, Ordering::SeqCst) {
            return Err(SandboxError::AlreadyEntered);
        }

        prctl::set_no_new_privs().map_err(|e| SandboxError::NoNewPrivs(e.into()))?;
        prctl::set_dumpable(false).map_err(|e| SandboxError::NotDumpable(e.into()))?;

        let landlock = restrict_with_landlock()?;
        if options.require_landlock && landlock == LandlockState::NotEnforced {
            return Err(SandboxError::LandlockRequired { state: landlock });
        }

        // Read the state back rather than echo what was asked for: a log line
        // that says "on" must mean the kernel says so. This happens before the
        // seccomp filter, which kills on `prctl`.
        let no_new_privs = prctl::get_no_new_privs().map_err(|e| SandboxError::NoNewPrivs(e.into()))?;
        let dumpable = prctl::get_dumpable().map_err(|e| SandboxError::NotDumpable(e.into()))?;

        let (allowed, refused) = syscall_policy();
        install_seccomp(&allowed, &refused)?;

        Ok(SandboxReport {
            no_new_privs,
            dumpable,
            landlock,
            seccomp: true,
            allowed_syscalls: allowed.len(),
            refused_syscalls: refused.len(),
        })
    }

    fn restrict_with_landlock() -> Result<LandlockState, SandboxError> {
        let boxed = |e: landlock::RulesetError| SandboxError::Landlock(Box::new(e));
        // No rule is added: with every access right handled and nothing
        // granted, the file system and TCP are closed entirely.
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(LANDLOCK_ABI))
            .map_err(boxed)?
            .handle_access(AccessNet::from_all(LANDLOCK_ABI))
            .map_err(boxed)?
            .scope(Scope::from_all(LANDLOCK_ABI))
            .map_err(boxed)?
            .create()
            .map_err(boxed)?
            // Best effort: needs ABI v8, otherwise only this thread is
            // restricted, which is why the enclave sandboxes itself before
            // it starts any thread.
            .all_threads(true)
            .map_err(boxed)?
            .restrict_self()
            .map_err(boxed)?;

        let abi = match status.landlock {
            LandlockStatus::Available { effective_abi, kernel_abi } => {
                kernel_abi.and_then(|v| u32::try_from(v).ok()).unwrap_or(effective_abi as u32)
            }
            _ => 0,
        };
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => LandlockState::FullyEnforced { abi },
            RulesetStatus::PartiallyEnforced => LandlockState::PartiallyEnforced { abi },
            _ => LandlockState::NotEnforced,
        })
    }

    /// Which arguments of an allowed system call are checked.
    #[derive(Clone, Copy)]
    enum Only {
        /// Any arguments.
        Any,
        /// The first argument (a file descriptor) is 0, 1 or 2.
        StandardStreams,
        /// The third argument (`prot` of `mmap`/`mprotect`) lacks `PROT_EXEC`.
        NoExec,
        /// `mmap` of anonymous memory: `prot` lacks `PROT_EXEC`, `flags` has
        /// `MAP_ANONYMOUS` and the descriptor is -1.
        AnonymousNoExec,
        /// The first argument (a thread group id) is this process.
        ThisProcess,
    }

    /// An allowed system call: name, number, and the arguments it is allowed with.
    type Allowed = (&'static str, i64, Only);
    /// A system call refused with `EPERM`: name and number.
    type Refused = (&'static str, i64);

    /// The allowed and the refused system calls.
    fn syscall_policy() -> (Vec<Allowed>, Vec<Refused>) {
        use Only::*;
        #[rustfmt::skip]
        let allowed = vec![
            ("read", libc::SYS_read, StandardStreams),
            ("readv", libc::SYS_readv, StandardStreams),
            ("write", libc::SYS_write, StandardStreams),
            ("writev", libc::SYS_writev, StandardStreams),
            ("close", libc::SYS_close, Any),
            ("brk", libc::SYS_brk, Any),
            ("mmap", libc::SYS_mmap, AnonymousNoExec),
            ("mprotect", libc::SYS_mprotect, NoExec),
            ("munmap", libc::SYS_munmap, Any),
            ("mremap", libc::SYS_mremap, Any),
            ("madvise", libc::SYS_madvise, Any),
            ("futex", libc::SYS_futex, Any),
            ("sched_yield", libc::SYS_sched_yield, Any),
            ("clock_gettime", libc::SYS_clock_gettime, Any),
            ("clock_getres", libc::SYS_clock_getres, Any),
            ("gettimeofday", libc::SYS_gettimeofday, Any),
            ("clock_nanosleep", libc::SYS_clock_nanosleep, Any),
            ("nanosleep", libc::SYS_nanosleep, Any),
            ("getrandom", libc::SYS_getrandom, Any),
            ("rt_sigreturn", libc::SYS_rt_sigreturn, Any),
            ("rt_sigprocmask", libc::SYS_rt_sigprocmask, Any),
            ("rt_sigaction", libc::SYS_rt_sigaction, Any),
            ("sigaltstack", libc::SYS_sigaltstack, Any),
            ("restart_syscall", libc::SYS_restart_syscall, Any),
            ("getpid", libc::SYS_getpid, Any),
            ("gettid", libc::SYS_gettid, Any),
            ("tgkill", libc::SYS_tgkill, ThisProcess),
            ("exit", libc::SYS_exit, Any),
            ("exit_group", libc::SYS_exit_group, Any),
        ];
        #[allow(unused_mut)] // only x86_64 adds the legacy calls
        let mut refused = vec![
            ("openat", libc::SYS_openat),
            ("openat2", libc::SYS_openat2),
            ("socket", libc::SYS_socket),
            ("socketpair", libc::SYS_socketpair),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("getcwd", libc::SYS_getcwd),
            ("readlinkat", libc::SYS_readlinkat),
        ];
        // Calls that newer architectures only have in their `*at` form.
        #[cfg(target_arch = "x86_64")]
        refused.extend([
            ("open", libc::SYS_open),
            ("creat", libc::SYS_creat),
            ("fork", libc::SYS_fork),
            ("vfork", libc::SYS_vfork),
            ("readlink", libc::SYS_readlink),
        ]);
        (allowed, refused)
    }

    fn install_seccomp(allowed: &[Allowed], refused: &[Refused]) -> Result<(), SandboxError> {
        let backend = |e: seccompiler::BackendError| SandboxError::SeccompBuild(Box::new(e));
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(backend)?;

        let condition =
            |index: u8, op: SeccompCmpOp, value: u64| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
        let no_exec = || condition(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0);
        let rules_for = |only: Only| -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
            // The conditions of one rule must all hold.
            let conditions = match only {
                Only::Any => return Ok(Vec::new()),
                Only::StandardStreams => vec![condition(0, SeccompCmpOp::Le, 2)?],
                Only::NoExec => vec![no_exec()?],
                Only::AnonymousNoExec => {
                    let anonymous = libc::MAP_ANONYMOUS as u64;
                    vec![
                        no_exec()?,
                        condition(3, SeccompCmpOp::MaskedEq(anonymous), anonymous)?,
                        // The descriptor is an `int`: compare its 32 bits with -1.
                        condition(4, SeccompCmpOp::Eq, u64::from(u32::MAX))?,
                    ]
                }
                Only::ThisProcess => vec![condition(0, SeccompCmpOp::Eq, u64::from(std::process::id()))?],
            };
            Ok(vec![SeccompRule::new(conditions)?])
        };

        let mut allow_rules = BTreeMap::new();
        for &(_, number, only) in allowed {
            allow_rules.insert(number, rules_for(only).map_err(backend)?);
        }
        let mut refuse_rules = BTreeMap::new();
        for &(_, number) in refused {
            // Listed in both filters: the allow-list must not kill what the
            // refusal list answers with EPERM.
            allow_rules.insert(number, Vec::new());
            refuse_rules.insert(number, Vec::new());
        }

        let eperm = libc::EPERM as u32;
        let refusals: BpfProgram =
            SeccompFilter::new(refuse_rules, SeccompAction::Allow, SeccompAction::Errno(eperm), arch)
                .and_then(BpfProgram::try_from)
                .map_err(backend)?;
        let allow_list: BpfProgram =
            SeccompFilter::new(allow_rules, SeccompAction::KillProcess, SeccompAction::Allow, arch)
                .and_then(BpfProgram::try_from)
                .map_err(backend)?;

        // The refusal list lets `seccomp` itself through, so it goes first;
        // once the allow-list is in, no further filter can be added.
        let install = |e: seccompiler::Error| SandboxError::SeccompInstall(Box::new(e));
        seccompiler::apply_filter_all_threads(&refusals).map_err(install)?;
        seccompiler::apply_filter_all_threads(&allow_list).map_err(install)?;
        Ok(())
    }
}

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod imp {
    use super::{SandboxError, SandboxOptions, SandboxReport};

    pub(super) fn enter_sandbox(_: &SandboxOptions) -> Result<SandboxReport, SandboxError> {
        Err(SandboxError::Unsupported { platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH) })
    }

    /// Nothing to do where there is no sandbox: entering it fails anyway.
    pub(super) fn close_inherited_descriptors() -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_one_line_naming_each_protection() {
        let report = SandboxReport {
            no_new_privs: true,
            dumpable: false,
            landlock: LandlockState::FullyEnforced { abi: 5 },
            seccomp: true,
            allowed_syscalls: 29,
            refused_syscalls: 10,
        };
        assert_eq!(
            report.to_string(),
            "sandbox: no_new_privs=on dumpable=off seccomp=on \
             (29 syscalls allowed, 10 refused, others kill) landlock=fully enforced (ABI v5)"
        );
        let weaker = SandboxReport { landlock: LandlockState::NotEnforced, seccomp: false, ..report };
        assert_eq!(
            weaker.to_string(),
            "sandbox: no_new_privs=on dumpable=off seccomp=off \
             landlock=not enforced (unsupported by the kernel)"
        );
    }

    #[test]
    fn unsupported_error_names_the_platform() {
        let err = SandboxError::Unsupported { platform: "macos/aarch64".into() };
        assert!(err.to_string().starts_with("sandbox not supported on this platform (macos/aarch64)"));
    }
}
