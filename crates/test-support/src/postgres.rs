//! A throwaway PostgreSQL cluster for tests: `initdb` and `pg_ctl` from the
//! PATH or `/usr/lib/postgresql/*/bin`, a temporary directory, a free
//! loopback port, trust authentication, stopped and deleted on drop.
//!
//! When the binaries are missing, [`TempPostgres::start`] says so loudly and
//! returns `None` (the test then skips), unless `CONCLAVE_REQUIRE_POSTGRES=1`
//! is set, as `.ci/run` does: then it panics, so CI never skips silently.
//! PostgreSQL refuses to run as root; as root, the cluster runs as the
//! `postgres` user (or `nobody`) through `runuser`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TempPostgres {
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

/// Whether the tests must not skip when PostgreSQL is missing.
pub fn required() -> bool {
    std::env::var("CONCLAVE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a local address").port()
}

impl TempPostgres {
    /// Starts a cluster, or `None` (after saying so on stderr) if PostgreSQL
    /// is not installed and not required.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_binaries() else {
            let message = "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
                           /usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql)";
            assert!(!required(), "CONCLAVE_REQUIRE_POSTGRES=1 but {message}");
            eprintln!("\n!!! SKIPPED: {message}\n");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("cluster");
        std::fs::create_dir(&data).expect("create the cluster directory");
        let run_as = if is_root() {
            let user =
                if nix::unistd::User::from_name("postgres").ok().flatten().is_some() { "postgres" } else { "nobody" };
            let account = nix::unistd::User::from_name(user).ok().flatten().expect("a user to run PostgreSQL as");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("open the temp dir");
            nix::unistd::chown(&data, Some(account.uid), Some(account.gid)).expect("give the cluster to its user");
            Some(user.to_owned())
        } else {
            None
        };
        let cluster = Self { _dir: dir, data, bin, run_as, port: free_port() };
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c max_connections=200",
            cluster.port
        );
        let log = cluster.data.join("server.log").to_string_lossy().into_owned();
        cluster.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start"]);
        Some(cluster)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.command(tool).args(args).current_dir("/").output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (created if missing).
    pub fn database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let exists = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-tAc"])
            .arg(format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
            .unwrap_or(false);
        if !exists {
            self.run("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name]);
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A dump of database `name` (custom format), as an operator's backup.
    pub fn dump(&self, name: &str) -> Vec<u8> {
        let port = self.port.to_string();
        self.run("pg_dump", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-Fc", name]).stdout
    }

    /// Restores `dump` into database `name`, replacing what is there: what
    /// an operator does to go back to a backup (or to roll the enclave back).
    pub fn restore(&self, name: &str, dump: &[u8]) {
        let file = self.data.join("restore.dump");
        std::fs::write(&file, dump).expect("write the dump");
        if let Some(user) = &self.run_as
            && let Ok(Some(account)) = nix::unistd::User::from_name(user)
        {
            let _ = nix::unistd::chown(&file, Some(account.uid), Some(account.gid));
        }
        let port = self.port.to_string();
        let file = file.to_string_lossy().into_owned();
        self.run("pg_restore", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--clean", "-d", name, &file]);
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
