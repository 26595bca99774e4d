//! Where a host keeps what an enclave hands it: sealed state, mail to
//! itself, and replies waiting for clients. Every byte of it is encrypted by
//! the enclave; the store reads none of it.
//!
//! Two backends implement one [`Store`] trait:
//!
//! - [`SqliteStore`]: one file beside one host (a lock file keeps a second
//!   host off it). The default.
//! - [`PostgresStore`]: one database shared by several hosts of a cluster.
//!   Each enclave call holds a row lock on the shared state for its whole
//!   length, so calls from all hosts form one order, and a host whose enclave
//!   is behind brings it up to the committed state first.
//!
//! ```text
//!  begin_call ──► counter of the committed state (waits for the lock on PostgreSQL)
//!  enclave call ──► Batch { sealed state, states, self mail, replies, ... } ──► commit (one transaction)
//!  next start   ◄── sealed_state, self_mail (in order)
//!  client poll  ◄── replies(correlation id) ──► acknowledge(ids)
//! ```
//!
//! A commit either stores all of a call's output or none of it, and refuses
//! a batch whose first state does not follow the stored one, so two writers
//! never interleave states. See `docs/store.md` for the schemas and the
//! choice of crates.

use std::fmt;
use std::path::PathBuf;

pub use conclave_core::relay::QueuedMail;

mod postgresql;
mod sqlite;
pub mod throwaway;

pub use crate::postgresql::{POSTGRES_SCHEMA_VERSION, PostgresStore};
pub use crate::sqlite::{SCHEMA_VERSION, SqliteReader, SqliteStore};

/// Everything a host does with its store. Object safe: the host holds a
/// `Box<dyn Store>` and does not care which backend is behind it.
///
/// Methods take `&mut self` because a PostgreSQL connection needs it even to
/// read; one thread uses a store at a time.
pub trait Store: Send + fmt::Debug {
    /// What the store is, for messages: a file path or a database URL with
    /// its password hidden.
    fn describe(&self) -> String;

    /// Whether other hosts may write this store too (their calls then move
    /// the committed state on between this host's calls).
    fn is_shared(&self) -> bool;

    /// Starts an enclave call and returns the counter of the committed state.
    /// On a shared store this takes the cluster's call lock, waiting for
    /// other hosts' calls; the lock is released by [`commit`](Self::commit)
    /// or [`abort_call`](Self::abort_call).
    fn begin_call(&mut self) -> Result<u64, StoreError>;

    /// Ends a call that commits nothing, releasing its lock.
    fn abort_call(&mut self);

    /// Writes all of `batch` in one transaction (the call's, if one is open):
    /// everything is stored or, on error, nothing. Returns the ids given to
    /// `batch.replies`, in order.
    fn commit(&mut self, batch: &Batch) -> Result<Vec<u64>, StoreError>;

    /// The last sealed state committed, if any.
    fn sealed_state(&mut self) -> Result<Option<Vec<u8>>, StoreError>;

    /// The counter of the last sealed state committed (0 if none).
    fn state_counter(&mut self) -> Result<u64, StoreError>;

    /// The links of the state chain from `from` to `to` (inclusive), in order.
    fn chain(&mut self, from: u64, to: u64) -> Result<Vec<ChainEntry>, StoreError>;

    /// All self mail still stored, oldest first, with the ids to delete it by.
    fn self_mail(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Up to `limit` replies queued for `correlation_id`, oldest first. They
    /// stay queued until [acknowledged](Self::acknowledge).
    fn replies(&mut self, correlation_id: &str, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        self.replies_within(correlation_id, limit, usize::MAX)
    }

    /// Like [`replies`](Self::replies), but stops before the reply that
    /// would take the total past `max_bytes` (always returning the first, so
    /// a large reply is never stuck).
    fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError>;

    /// Deletes the replies `ids` of `correlation_id`; returns how many. Ids
    /// of another correlation id, or already gone, are left alone.
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError>;

    /// Whether the host ever recorded `correlation_id` (delivered mail for it
    /// or queued a reply for it).
    fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError>;

    /// Records `correlation_id` on its own, outside a batch.
    fn record_correlation_id(&mut self, correlation_id: &str) -> Result<(), StoreError>;

    /// How many replies are queued, over all correlation ids.
    fn queue_depth(&mut self) -> Result<u64, StoreError>;

    /// How many replies wait for `correlation_id`.
    fn queue_len(&mut self, correlation_id: &str) -> Result<u64, StoreError>;

    /// How many correlation ids the store knows.
    fn correlation_id_count(&mut self) -> Result<u64, StoreError>;

    /// Forgets correlation ids with no reply queued, last used before
    /// `now_unix - max_idle_secs`; returns how many.
    fn prune_correlation_ids(&mut self, now_unix: i64, max_idle_secs: i64) -> Result<usize, StoreError>;

    /// A value from the meta table.
    fn get_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets a value in the meta table, outside a batch.
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Replaces the sealed state outside any batch: what a malicious
    /// operator does to roll the enclave back. Tests use it to check that
    /// the enclave and its clients notice.
    fn replace_sealed_state_for_testing_only(&mut self, blob: &[u8], counter: u64) -> Result<(), StoreError>;

    /// Another connection for polls and acknowledgements beside the enclave
    /// calls, or `None` when the store cannot have one (SQLite in memory).
    fn open_reader(&self) -> Result<Option<Box<dyn StoreReads>>, StoreError>;
}

/// The reads (and acknowledgements) the web host serves from connections of
/// their own, so that polls never wait behind an enclave call.
pub trait StoreReads: Send + fmt::Debug {
    /// As [`Store::has_correlation_id`].
    fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError>;
    /// As [`Store::replies_within`].
    fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError>;
    /// As [`Store::acknowledge`].
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError>;
    /// As [`Store::queue_depth`].
    fn queue_depth(&mut self) -> Result<u64, StoreError>;
}

/// Opens the store `spec` names: a `postgres://` or `postgresql://` URL
/// opens [`PostgresStore`], anything else is the path of a [`SqliteStore`].
pub fn open(spec: &str) -> Result<Box<dyn Store>, StoreError> {
    if is_postgres_url(spec) {
        Ok(Box::new(PostgresStore::open(spec)?))
    } else {
        Ok(Box::new(SqliteStore::open(std::path::Path::new(spec))?))
    }
}

/// Whether `spec` is a PostgreSQL URL rather than a file path.
pub fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// The longest correlation id the store accepts, in bytes. The schema enforces
/// it; the web host should reject longer ids before they reach the store.
pub const MAX_CORRELATION_ID_LEN: usize = 256;

/// One link of the enclave's state chain, as the enclave reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEntry {
    /// The state's counter.
    pub counter: u64,
    /// The state's id.
    pub state_id: [u8; 32],
    /// The nonce that made the id from the previous one.
    pub nonce: [u8; 16],
}

/// The output of one enclave call, committed atomically by [`Store::commit`].
///
/// Within the transaction the parts are applied in field order; they touch
/// different tables, so the order only matters for which error a bad batch
/// reports.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The enclave's new sealed state, replacing the previous one; `None`
    /// keeps the previous one.
    pub sealed_state: Option<Vec<u8>>,
    /// The states the call sealed, in order (the last is `sealed_state`).
    /// The first must follow the stored state's counter by one, or the
    /// commit is refused: two writers never interleave states.
    pub states: Vec<ChainEntry>,
    /// Mail the enclave posted to itself, appended in this order.
    pub self_mail: Vec<Vec<u8>>,
    /// Ids of self mail the enclave has absorbed. Ids that are already gone
    /// are ignored, so replaying a deletion is harmless.
    pub delete_self_mail: Vec<u64>,
    /// Correlation ids the host delivered mail for in this call, recorded so
    /// that polling them answers "no replies yet" rather than "unknown id".
    /// Ids of `replies` are recorded without being listed here.
    pub correlation_ids: Vec<String>,
    /// Replies to queue, each for a correlation id, in this order.
    pub replies: Vec<(String, Vec<u8>)>,
    /// Host values to set in the meta table together with the rest (for
    /// example counters that must move in step with the state).
    pub meta: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Batch {
    /// Lengths only: the contents are ciphertext, and can be large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("sealed_state_len", &self.sealed_state.as_ref().map(Vec::len))
            .field("self_mail", &self.self_mail.len())
            .field("delete_self_mail", &self.delete_self_mail)
            .field("correlation_ids", &self.correlation_ids)
            .field("replies", &self.replies.len())
            .field("meta_keys", &self.meta.iter().map(|(key, _)| key).collect::<Vec<_>>())
            .finish()
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (another host) has the store open.
    #[error("store {path} is in use by another host process; give each host its own data directory")]
    InUse {
        /// The store.
        path: PathBuf,
    },
    /// The store's lock file could not be created.
    #[error("cannot lock store {path}: {error}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("store {path}: {action} failed: {cause}")]
    Database {
        /// What the store was doing, such as "committing a batch".
        action: &'static str,
        /// The database file, or `:memory:`.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// The batch's first state does not follow the stored one: another writer
    /// committed in between, or the enclave and the store are out of step.
    #[error("store {path}: the enclave's state {found} does not follow the stored state {stored}")]
    Conflict {
        /// The database file.
        path: PathBuf,
        /// The stored state's counter.
        stored: u64,
        /// The counter of the batch's first state.
        found: u64,
    },
    /// The file was written by an older host whose sealed state this one cannot read.
    #[error(
        "store {path} has schema version {found}, written by an older conclave whose sealed state this version \
         cannot read; start this host with a new data directory"
    )]
    OlderSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: u32,
    },
    /// The file was written by a newer host with a schema this code cannot read.
    #[error("store {path} has schema version {found}, newer than this host reads ({supported}); upgrade the host")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: u32,
        /// The schema version this code reads.
        supported: u32,
    },
    /// The file is an SQLite database of some other application.
    #[error("{path} is not a conclave store (application id {found:#010x}); point the host at another file")]
    NotAStore {
        /// The database file.
        path: PathBuf,
        /// The application id found in the file.
        found: i32,
    },
    /// PostgreSQL refused an operation, or the connection to it failed.
    #[error("store {database}: {action} failed: {cause}")]
    Postgres {
        /// What the store was doing, such as "committing a batch".
        action: &'static str,
        /// The database URL, its password hidden.
        database: String,
        /// The client's error.
        cause: postgres::Error,
    },
    /// A stored value breaks an invariant the store keeps, such as a negative
    /// id: the file was edited by hand, or this is a bug.
    #[error("store {path} is inconsistent: {reason}")]
    Inconsistent {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
}

impl StoreError {
    /// Whether the store failed because its disk (or the database's) is
    /// full: nothing was written, and the call can succeed once space is freed.
    pub fn is_full(&self) -> bool {
        match self {
            Self::Database { cause, .. } => {
                matches!(cause.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
            }
            Self::Postgres { cause, .. } => {
                // Class 53: insufficient resources (disk full, out of memory, too many connections).
                cause.code().is_some_and(|code| code.code().starts_with("53"))
            }
            _ => false,
        }
    }

    /// Whether the store could not be reached at all (a shared database that
    /// is down or unreachable), as opposed to refusing an operation.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Postgres { cause, .. } if cause.is_closed() || cause.code().is_none())
    }
}
