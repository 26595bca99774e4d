//! A throwaway PostgreSQL cluster, for `conclave demo --scale-out` and for
//! tests: `initdb` and `pg_ctl` from the PATH or `/usr/lib/postgresql/*/bin`,
//! a temporary directory, a free loopback port, trust authentication, no
//! fsync. Stopped and deleted on drop. **Never** a place for real data.
//!
//! PostgreSQL refuses to run as root; as root, the cluster runs as the
//! `postgres` user (or `nobody`) through `runuser`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Why a throwaway cluster could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThrowawayError {
    /// The server binaries are not installed.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; \
         install them (Debian: apt-get install postgresql)"
    )]
    NotInstalled,
    /// A step of setting the cluster up failed.
    #[error("cannot {action}: {detail}")]
    Setup {
        /// What was being done.
        action: &'static str,
        /// What went wrong (the tool's output, or the OS error).
        detail: String,
    },
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    run_as: Option<String>,
    port: u16,
}

/// Where the PostgreSQL server binaries are, if anywhere.
pub fn find_binaries() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // Symlinks into a version directory: use the real directory, which has every tool.
                let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn setup(action: &'static str) -> impl Fn(std::io::Error) -> ThrowawayError {
    move |error| ThrowawayError::Setup { action, detail: error.to_string() }
}

fn free_port() -> Result<u16, ThrowawayError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup("bind a free port"))?;
    Ok(listener.local_addr().map_err(setup("read the free port"))?.port())
}

impl ThrowawayPostgres {
    /// Creates and starts a cluster.
    pub fn start() -> Result<Self, ThrowawayError> {
        let bin = find_binaries().ok_or(ThrowawayError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("conclave-postgres-")
            .tempdir()
            .map_err(setup("create a temporary directory"))?;
        let data = dir.path().join("cluster");
        std::fs::create_dir(&data).map_err(setup("create the cluster directory"))?;
        let run_as = if nix::unistd::Uid::effective().is_root() {
            let user =
                if nix::unistd::User::from_name("postgres").ok().flatten().is_some() { "postgres" } else { "nobody" };
            let account = nix::unistd::User::from_name(user).ok().flatten().ok_or(ThrowawayError::Setup {
                action: "find a user to run PostgreSQL as (it refuses root)",
                detail: format!("no user {user}"),
            })?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(setup("open the temporary directory to the cluster's user"))?;
            nix::unistd::chown(&data, Some(account.uid), Some(account.gid)).map_err(|e| ThrowawayError::Setup {
                action: "give the cluster directory to its user",
                detail: e.to_string(),
            })?;
            Some(user.to_owned())
        } else {
            None
        };
        let cluster = Self { _dir: dir, data, bin, run_as, port: free_port()? };
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])?;
        cluster.start_again()?;
        Ok(cluster)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        };
        command.current_dir("/");
        command
    }

    fn run(&self, tool: &'static str, args: &[&str]) -> Result<Output, ThrowawayError> {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .map_err(|e| ThrowawayError::Setup { action: "run a PostgreSQL tool", detail: format!("{tool}: {e}") })?;
        if !out.status.success() {
            return Err(ThrowawayError::Setup {
                action: "run a PostgreSQL tool",
                detail: format!(
                    "{tool} {args:?} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(out)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (a plain identifier), created if missing.
    pub fn database(&self, name: &str) -> Result<String, ThrowawayError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ThrowawayError::Setup { action: "name a database", detail: format!("{name:?}") });
        }
        let port = self.port.to_string();
        let exists = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-tAc"])
            .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
            .unwrap_or(false);
        if !exists {
            self.run("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name])?;
        }
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }

    /// A dump of database `name` (custom format), as an operator's backup.
    pub fn dump(&self, name: &str) -> Result<Vec<u8>, ThrowawayError> {
        let port = self.port.to_string();
        Ok(self.run("pg_dump", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-Fc", name])?.stdout)
    }

    /// Restores `dump` into database `name`, replacing what is there: what
    /// an operator does to go back to a backup (or to roll the enclave back).
    pub fn restore(&self, name: &str, dump: &[u8]) -> Result<(), ThrowawayError> {
        let file = self.data.join("restore.dump");
        std::fs::write(&file, dump).map_err(setup("write the dump"))?;
        if let Some(user) = &self.run_as
            && let Ok(Some(account)) = nix::unistd::User::from_name(user)
        {
            let _ = nix::unistd::chown(&file, Some(account.uid), Some(account.gid));
        }
        let port = self.port.to_string();
        let file = file.to_string_lossy().into_owned();
        self.run("pg_restore", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--clean", "-d", name, &file])?;
        Ok(())
    }

    /// Stops the server at once (as a crash would), keeping its files, so
    /// that [`start_again`](Self::start_again) brings it back.
    pub fn stop(&self) -> Result<(), ThrowawayError> {
        let data = self.data.to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]).map(drop)
    }

    /// Starts the server (again, after [`stop`](Self::stop)) on its port.
    pub fn start_again(&self) -> Result<(), ThrowawayError> {
        let data = self.data.to_string_lossy().into_owned();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c max_connections=200",
            self.port
        );
        let log = self.data.join("server.log").to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start"]).map(drop)
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
