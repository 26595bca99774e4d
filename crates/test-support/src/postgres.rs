//! A throwaway PostgreSQL cluster for tests ([`conclave_host::store::throwaway`]).
//!
//! When the binaries are missing, [`TempPostgres::start`] says so loudly and
//! returns `None` (the test then skips), unless `CONCLAVE_REQUIRE_POSTGRES=1`
//! is set, as `.ci/run` does: then it panics, so CI never skips silently.

use conclave_host::store::throwaway::{ThrowawayError, ThrowawayPostgres};

/// A running throwaway cluster; methods panic on failure (tests only).
#[derive(Debug)]
pub struct TempPostgres(ThrowawayPostgres);

/// Whether the tests must not skip when PostgreSQL is missing.
pub fn required() -> bool {
    std::env::var("CONCLAVE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

impl TempPostgres {
    /// Starts a cluster, or `None` (after saying so on stderr) if PostgreSQL
    /// is not installed and not required.
    pub fn start() -> Option<Self> {
        match ThrowawayPostgres::start() {
            Ok(cluster) => Some(Self(cluster)),
            Err(error @ ThrowawayError::NotInstalled) => {
                assert!(!required(), "CONCLAVE_REQUIRE_POSTGRES=1 but {error}");
                eprintln!("\n!!! SKIPPED: {error}\n");
                None
            }
            Err(error) => panic!("cannot start a throwaway PostgreSQL: {error}"),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// The URL of database `name` (created if missing).
    pub fn database(&self, name: &str) -> String {
        self.0.database(name).unwrap()
    }

    /// A dump of database `name`, as an operator's backup.
    pub fn dump(&self, name: &str) -> Vec<u8> {
        self.0.dump(name).unwrap()
    }

    /// Restores `dump` into database `name`, replacing what is there.
    pub fn restore(&self, name: &str, dump: &[u8]) {
        self.0.restore(name, dump).unwrap()
    }

    /// Stops the server at once, keeping its files.
    pub fn stop(&self) {
        self.0.stop().unwrap()
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&self) {
        self.0.start_again().unwrap()
    }
}
