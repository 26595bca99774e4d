//! The operating-system calls simulation mode needs, in one place: a sealed
//! in-memory copy of the enclave binary, the enclave process' resource
//! limits, and pipe reads and writes that give up at a deadline.
//!
//! Simulation mode runs on Linux only (the enclave's sandbox is Linux's
//! seccomp and landlock, its image a sealed memfd). Elsewhere this module
//! compiles to stubs whose first step, [`Image::create`], fails.

use std::{
    io::{self, Read, Write},
    process::{ChildStdin, ChildStdout},
    time::Instant,
};

#[cfg(target_os = "linux")]
mod imp {
    use std::{
        ffi::OsString,
        fs::File,
        io::{self, Write},
        os::fd::{AsFd, AsRawFd, OwnedFd},
        process::Child,
        time::Instant,
    };

    use rustix::{
        event::{PollFd, PollFlags, Timespec, poll},
        fs::{MemfdFlags, OFlags, SealFlags, fcntl_add_seals, fcntl_getfl, fcntl_setfl, memfd_create},
        io::Errno,
        process::{Pid, Resource, Rlimit, prlimit},
    };

    use crate::simulation::EnclaveLimits;

    /// An error for a pipe operation that reached its deadline.
    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "the call deadline passed")
    }

    /// A memfd that holds an enclave binary; sealed, it can no longer change.
    #[derive(Debug)]
    pub(crate) struct Image {
        file: File,
    }

    impl Image {
        /// A new, empty, executable memfd that allows seals.
        pub(crate) fn create() -> io::Result<Self> {
            let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
            // Since Linux 6.3 a memfd may be made non-executable by default
            // (`vm.memfd_noexec`); MFD_EXEC asks for the exec bits. Older
            // kernels do not know the flag and say EINVAL.
            let fd = match memfd_create("conclave-enclave", flags | MemfdFlags::EXEC) {
                Err(Errno::INVAL) => memfd_create("conclave-enclave", flags)?,
                other => other?,
            };
            Ok(Self { file: File::from(fd) })
        }

        pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.file.write_all(bytes)
        }

        pub(crate) fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }

        /// Seals the image: from now on no one, this process included, can
        /// write, shrink or grow it, or remove the seals.
        pub(crate) fn seal(self) -> io::Result<SealedImage> {
            let seals = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
            fcntl_add_seals(&self.file, seals)?;
            Ok(SealedImage { fd: OwnedFd::from(self.file) })
        }
    }

    /// A sealed image, ready to execute.
    #[derive(Debug)]
    pub(crate) struct SealedImage {
        fd: OwnedFd,
    }

    impl SealedImage {
        /// The path to execute: the kernel resolves `/proc/self/fd/N` in the
        /// new process before it closes its close-on-exec descriptors, and
        /// the memfd is close-on-exec, so the enclave does not inherit it.
        pub(crate) fn program(&self) -> OsString {
            format!("/proc/self/fd/{}", self.fd.as_raw_fd()).into()
        }
    }

    /// The limits that take effect as soon as the process exists: memory, no
    /// core dumps, no file writes.
    pub(crate) fn limit_at_spawn(child: &Child, limits: &EnclaveLimits) -> io::Result<()> {
        let pid = Some(Pid::from_child(child));
        let both = |value: u64| Rlimit { current: Some(value), maximum: Some(value) };
        prlimit(pid, Resource::As, both(limits.memory_limit()))?;
        prlimit(pid, Resource::Core, both(0))?;
        prlimit(pid, Resource::Fsize, both(0))?;
        Ok(())
    }

    /// The open-files limit, set once the enclave said hello: by then it has
    /// closed what it inherited (a low limit set earlier could leave it no
    /// free number to list its descriptors with).
    pub(crate) fn limit_open_files(child: &Child) -> io::Result<()> {
        let open_files = EnclaveLimits::OPEN_FILES;
        let limit = Rlimit { current: Some(open_files), maximum: Some(open_files) };
        prlimit(Some(Pid::from_child(child)), Resource::Nofile, limit)?;
        Ok(())
    }

    /// Waits until `fd` is ready for `events`, or `deadline` passes.
    fn wait(fd: &impl AsFd, events: PollFlags, deadline: Option<Instant>) -> io::Result<()> {
        loop {
            let left = match deadline {
                Some(deadline) => Some(
                    Timespec::try_from(deadline.saturating_duration_since(Instant::now()))
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
                ),
                None => None,
            };
            let mut fds = [PollFd::new(fd, events)];
            match poll(&mut fds, left.as_ref()) {
                // Ready, or hung up / in error: the read or write says which.
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) => return Err(timed_out()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn wait_readable(fd: &impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
        wait(fd, PollFlags::IN, deadline)
    }

    pub(crate) fn wait_writable(fd: &impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
        wait(fd, PollFlags::OUT, deadline)
    }

    /// O_NONBLOCK is a property of this end's open file description, which
    /// only the host holds; the enclave's end of the pipe stays blocking.
    pub(crate) fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
        let flags = fcntl_getfl(fd)?;
        fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    //! Stubs: no image can be made, so no enclave process is ever started.

    use std::{ffi::OsString, io, process::Child, time::Instant};

    use crate::simulation::EnclaveLimits;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "simulation mode needs Linux (sealed memfd, seccomp, landlock)")
    }

    #[derive(Debug)]
    pub(crate) struct Image;

    impl Image {
        pub(crate) fn create() -> io::Result<Self> {
            Err(unsupported())
        }
        pub(crate) fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
            Err(unsupported())
        }
        pub(crate) fn set_len(&mut self, _: u64) -> io::Result<()> {
            Err(unsupported())
        }
        pub(crate) fn seal(self) -> io::Result<SealedImage> {
            Err(unsupported())
        }
    }

    #[derive(Debug)]
    pub(crate) struct SealedImage;

    impl SealedImage {
        pub(crate) fn program(&self) -> OsString {
            OsString::new()
        }
    }

    pub(crate) fn limit_at_spawn(_: &Child, _: &EnclaveLimits) -> io::Result<()> {
        Err(unsupported())
    }

    pub(crate) fn limit_open_files(_: &Child) -> io::Result<()> {
        Err(unsupported())
    }

    /// Without poll the pipes block: no deadline is kept (and no enclave
    /// process is started here anyway).
    pub(crate) fn wait_readable<T>(_: &T, _: Option<Instant>) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn wait_writable<T>(_: &T, _: Option<Instant>) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn set_nonblocking<T>(_: &T) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) use imp::{Image, SealedImage, limit_at_spawn, limit_open_files};

/// The enclave's stdout, read with a deadline.
#[derive(Debug)]
pub(crate) struct TimedReader {
    inner: ChildStdout,
    /// When a read gives up with `TimedOut`; `None` waits for ever.
    pub(crate) deadline: Option<Instant>,
}

impl TimedReader {
    pub(crate) fn new(inner: ChildStdout) -> Self {
        Self { inner, deadline: None }
    }
}

impl Read for TimedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        imp::wait_readable(&self.inner, self.deadline)?;
        self.inner.read(buf)
    }
}

/// The enclave's stdin, written with a deadline: non-blocking, so a write
/// into a full pipe waits in `poll` and can give up.
#[derive(Debug)]
pub(crate) struct TimedWriter {
    inner: ChildStdin,
    /// When a write gives up with `TimedOut`; `None` waits for ever.
    pub(crate) deadline: Option<Instant>,
}

impl TimedWriter {
    pub(crate) fn new(inner: ChildStdin) -> io::Result<Self> {
        imp::set_nonblocking(&inner)?;
        Ok(Self { inner, deadline: None })
    }
}

impl Write for TimedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.inner.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => imp::wait_writable(&self.inner, self.deadline)?,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// This process' effective user id: the owner its private files must have.
#[cfg(unix)]
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `deadline`, or none at all when the timeout is too large to add to now.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
