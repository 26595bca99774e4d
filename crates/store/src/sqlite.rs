//! The SQLite backend: one file beside one host.
//!
//! An enclave call's output is written as one [`Batch`] in one database
//! transaction, so a crash leaves either all of a call's output or none of
//! it. The file runs in WAL mode with `synchronous = FULL`; a lock file
//! beside it keeps a second host process off it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{Batch, ChainEntry, QueuedMail, Store, StoreError, StoreReads};

/// The schema version this code creates and reads, kept in SQLite's
/// `user_version` header field so it can be read before any table is trusted.
pub const SCHEMA_VERSION: u32 = 2;

/// Written to SQLite's `application_id` header field, so the host refuses to
/// use some other application's database as its store. ASCII "Ccls".
const APPLICATION_ID: i32 = 0x4363_6c73;

/// Version 2 of the schema. Ids are `AUTOINCREMENT` so an id is never reused
/// after deletion: a client that acknowledges a stale id can never delete a
/// newer reply that happened to get the same number. The sealed state's
/// counter is kept beside it (in clear: it is not secret) so that every
/// commit can check it continues the stored state, and `chain` keeps the
/// public links of the state chain (counter, id, nonce).
const SCHEMA_V2: &str = "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sealed_state (
        slot    INTEGER PRIMARY KEY CHECK (slot = 0),
        blob    BLOB NOT NULL,
        counter INTEGER NOT NULL CHECK (counter >= 0)
    );
    CREATE TABLE chain (
        counter  INTEGER PRIMARY KEY CHECK (counter > 0),
        state_id BLOB NOT NULL CHECK (length(state_id) = 32),
        nonce    BLOB NOT NULL CHECK (length(nonce) = 16)
    );
    CREATE TABLE self_mail (
        id    INTEGER PRIMARY KEY AUTOINCREMENT,
        blob  BLOB NOT NULL
    );
    CREATE TABLE correlation_ids (
        correlation_id TEXT PRIMARY KEY CHECK (length(CAST(correlation_id AS BLOB)) BETWEEN 1 AND 256),
        first_seen_unix INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE replies (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        correlation_id TEXT NOT NULL REFERENCES correlation_ids (correlation_id),
        bytes          BLOB NOT NULL,
        created_unix   INTEGER NOT NULL
    );
    CREATE INDEX replies_by_correlation_id ON replies (correlation_id, id);
";

/// The host's store for one enclave: one SQLite connection.
///
/// It is `Send` but not `Sync`: one thread uses it at a time (the web host
/// keeps it behind a mutex or on a dedicated thread).
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
    /// An exclusive lock on `<store>.lock`, held while the store is open:
    /// two hosts on one store would run two copies of the enclave from one
    /// state, which clients rightly report as an attack.
    _lock: Option<std::fs::File>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and the schema if needed.
    ///
    /// The database runs in WAL mode with `synchronous = FULL`: a commit that
    /// returned is on disk, and a crash mid-commit leaves the previous state.
    /// A file of a newer schema version is refused, not modified.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = lock_exclusively(path)?;
        let connection = Connection::open(path).map_err(database_error("opening the database", path))?;
        let store = Self { connection, path: path.to_owned(), _lock: Some(lock) };
        // Check what the file is before changing anything in it.
        store.configure()?;
        let journal_mode: String = store
            .connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(store.error("enabling write-ahead logging"))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network ones) cannot host a WAL; the rollback
            // journal still gives atomic commits, so carry on.
            store
                .connection
                .pragma_update(None, "journal_mode", "DELETE")
                .map_err(store.error("setting the journal"))?;
        }
        Ok(store)
    }

    /// Opens a fresh store that lives in memory and vanishes on drop. For
    /// tests and mock hosts.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let path = Path::new(":memory:");
        let connection = Connection::open_in_memory().map_err(database_error("opening the database", path))?;
        let store = Self { connection, path: path.to_owned(), _lock: None };
        store.configure()?;
        Ok(store)
    }

    /// Sets the per-connection options and creates or checks the schema.
    fn configure(&self) -> Result<(), StoreError> {
        let connection = &self.connection;
        // FULL: fsync the WAL at every commit, so a commit that returned
        // survives power loss, not only a crash of the process.
        connection.pragma_update(None, "synchronous", "FULL").map_err(self.error("setting synchronous mode"))?;
        connection.pragma_update(None, "foreign_keys", true).map_err(self.error("enabling foreign keys"))?;
        // Another process (a CLI inspecting the store) may hold a lock briefly.
        connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(self.error("setting the busy timeout"))?;

        let application_id: i32 = connection
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(self.error("reading the application id"))?;
        let version: u32 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.error("reading the schema version"))?;
        match (application_id, version) {
            (APPLICATION_ID, SCHEMA_VERSION) => Ok(()),
            (APPLICATION_ID, found) if found > SCHEMA_VERSION => {
                Err(StoreError::NewerSchema { path: self.path.clone(), found, supported: SCHEMA_VERSION })
            }
            (APPLICATION_ID, found @ 1..) => Err(StoreError::OlderSchema { path: self.path.clone(), found }),
            (APPLICATION_ID, _) => Err(self.inconsistent("schema version older than any this code wrote")),
            // A new, empty file gets the schema; a database with tables but
            // no marks belongs to someone else and is left alone.
            (0, 0) if self.is_empty()? => self.create_schema(),
            (found, _) => Err(StoreError::NotAStore { path: self.path.clone(), found }),
        }
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        let objects: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(self.error("reading the schema"))?;
        Ok(objects == 0)
    }

    fn create_schema(&self) -> Result<(), StoreError> {
        // The pragmas are transactional in SQLite, so the schema and the
        // marks that say it exists appear together.
        let sql = format!(
            "BEGIN IMMEDIATE; {SCHEMA_V2} PRAGMA application_id = {APPLICATION_ID}; \
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        );
        self.connection.execute_batch(&sql).map_err(|cause| {
            // execute_batch stops at the failing statement and leaves the
            // transaction open; roll it back so nothing half-made stays.
            let _ = self.connection.execute_batch("ROLLBACK");
            StoreError::Database { action: "creating the schema", path: self.path.clone(), cause }
        })
    }

    /// The database file, or `:memory:`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all of `batch` in one transaction: either everything is stored
    /// or, on error, nothing is. Returns the ids given to `batch.replies`, in
    /// order.
    pub fn commit(&mut self, batch: &Batch) -> Result<Vec<u64>, StoreError> {
        let now = unix_now();
        let path = &self.path;
        let error = |action| database_error(action, path);
        // IMMEDIATE takes the write lock at once, so the transaction cannot
        // fail halfway because another connection started writing first.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error("starting a transaction"))?;
        {
            let mut put_meta = transaction.prepare_cached(PUT_META).map_err(error("preparing the meta update"))?;
            for (key, value) in &batch.meta {
                put_meta.execute(params![key, value]).map_err(error("storing a meta value"))?;
            }
        }
        if let Some(first) = batch.states.first() {
            let stored: i64 = transaction
                .query_row("SELECT counter FROM sealed_state WHERE slot = 0", [], |row| row.get(0))
                .optional()
                .map_err(error("reading the stored state's counter"))?
                .unwrap_or(0);
            let stored = row_id(stored, path)?;
            if first.counter != stored.saturating_add(1) {
                return Err(StoreError::Conflict { path: path.to_owned(), stored, found: first.counter });
            }
            let mut link = transaction.prepare_cached(PUT_CHAIN).map_err(error("preparing the chain update"))?;
            for entry in &batch.states {
                let counter = i64::try_from(entry.counter).map_err(|_| StoreError::Inconsistent {
                    path: path.to_owned(),
                    reason: "a state counter beyond 2^63",
                })?;
                link.execute(params![counter, &entry.state_id[..], &entry.nonce[..]])
                    .map_err(error("storing a chain link"))?;
            }
        }
        if let Some(blob) = &batch.sealed_state {
            let counter = batch.states.last().map_or(0, |e| e.counter);
            let counter = i64::try_from(counter).unwrap_or(i64::MAX);
            transaction.execute(PUT_SEALED_STATE, params![blob, counter]).map_err(error("storing the sealed state"))?;
        }
        {
            let mut delete = transaction
                .prepare_cached("DELETE FROM self_mail WHERE id = ?1")
                .map_err(error("preparing the self-mail deletion"))?;
            for &id in &batch.delete_self_mail {
                // An id beyond i64 was never handed out; nothing to delete.
                if let Ok(id) = i64::try_from(id) {
                    delete.execute([id]).map_err(error("deleting self mail"))?;
                }
            }
            let mut insert = transaction
                .prepare_cached("INSERT INTO self_mail (blob) VALUES (?1)")
                .map_err(error("preparing the self-mail insertion"))?;
            for blob in &batch.self_mail {
                insert.execute([blob]).map_err(error("storing self mail"))?;
            }
        }
        let mut reply_ids = Vec::with_capacity(batch.replies.len());
        {
            let mut record = transaction
                .prepare_cached(RECORD_CORRELATION_ID)
                .map_err(error("preparing the correlation id record"))?;
            for correlation_id in batch.correlation_ids.iter().chain(batch.replies.iter().map(|(id, _)| id)) {
                record.execute(params![correlation_id, now]).map_err(error("recording a correlation id"))?;
            }
            let mut insert = transaction
                .prepare_cached("INSERT INTO replies (correlation_id, bytes, created_unix) VALUES (?1, ?2, ?3)")
                .map_err(error("preparing the reply insertion"))?;
            for (correlation_id, bytes) in &batch.replies {
                insert.execute(params![correlation_id, bytes, now]).map_err(error("queuing a reply"))?;
                reply_ids.push(row_id(transaction.last_insert_rowid(), path)?);
            }
        }
        transaction.commit().map_err(error("committing a batch"))?;
        Ok(reply_ids)
    }

    /// Starts an enclave call: returns the counter of the committed state.
    /// One host has a SQLite store to itself (the lock file sees to that),
    /// so there is no lock to wait for; the commit checks it follows.
    pub fn begin_call(&mut self) -> Result<u64, StoreError> {
        self.state_counter()
    }

    /// Ends a call that commits nothing. Nothing to release for SQLite.
    pub fn abort_call(&mut self) {}

    /// The counter of the last sealed state committed (0 if none).
    pub fn state_counter(&self) -> Result<u64, StoreError> {
        let counter: Option<i64> = self
            .connection
            .query_row("SELECT counter FROM sealed_state WHERE slot = 0", [], |row| row.get(0))
            .optional()
            .map_err(self.error("reading the sealed state's counter"))?;
        row_id(counter.unwrap_or(0), &self.path)
    }

    /// The links of the state chain from `from` to `to` (inclusive), in order.
    pub fn chain(&self, from: u64, to: u64) -> Result<Vec<ChainEntry>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT counter, state_id, nonce FROM chain WHERE counter BETWEEN ?1 AND ?2 ORDER BY counter",
            )
            .map_err(self.error("reading the state chain"))?;
        let rows = statement
            .query_map(params![from, to], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Vec<u8>>(2)?))
            })
            .map_err(self.error("reading the state chain"))?;
        rows.map(|row| {
            let (counter, id, nonce) = row.map_err(self.error("reading the state chain"))?;
            let bad = || self.inconsistent("a chain link of the wrong length");
            Ok(ChainEntry {
                counter: row_id(counter, &self.path)?,
                state_id: id.try_into().map_err(|_| bad())?,
                nonce: nonce.try_into().map_err(|_| bad())?,
            })
        })
        .collect()
    }

    /// The last sealed state committed, if any.
    pub fn sealed_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.connection
            .query_row("SELECT blob FROM sealed_state WHERE slot = 0", [], |row| row.get(0))
            .optional()
            .map_err(self.error("reading the sealed state"))
    }

    /// All self mail still stored, oldest first, with the ids to delete it by.
    pub fn self_mail(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT id, blob FROM self_mail ORDER BY id")
            .map_err(self.error("reading self mail"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
            .map_err(self.error("reading self mail"))?;
        rows.map(|row| {
            let (id, blob) = row.map_err(self.error("reading self mail"))?;
            Ok((row_id(id, &self.path)?, blob))
        })
        .collect()
    }

    /// Up to `limit` replies queued for `correlation_id`, oldest first. They
    /// stay queued until [acknowledged](Self::acknowledge).
    pub fn replies(&self, correlation_id: &str, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self
            .connection
            .prepare_cached("SELECT id, bytes FROM replies WHERE correlation_id = ?1 ORDER BY id LIMIT ?2")
            .map_err(self.error("reading replies"))?;
        let rows = statement
            .query_map(params![correlation_id, limit], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
            .map_err(self.error("reading replies"))?;
        rows.map(|row| {
            let (id, bytes) = row.map_err(self.error("reading replies"))?;
            Ok(QueuedMail { id: row_id(id, &self.path)?, bytes })
        })
        .collect()
    }

    /// Deletes the replies `ids` of `correlation_id` and returns how many were
    /// deleted. Ids that belong to another correlation id, or are already
    /// gone, are left alone: a client can only acknowledge its own mail.
    pub fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        let path = &self.path;
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database_error("starting a transaction", path))?;
        let mut deleted = 0;
        {
            let mut delete = transaction
                .prepare_cached("DELETE FROM replies WHERE id = ?1 AND correlation_id = ?2")
                .map_err(database_error("preparing the acknowledgement", path))?;
            for &id in ids {
                if let Ok(id) = i64::try_from(id) {
                    deleted += delete
                        .execute(params![id, correlation_id])
                        .map_err(database_error("acknowledging replies", path))?;
                }
            }
        }
        transaction.commit().map_err(database_error("committing an acknowledgement", path))?;
        Ok(deleted)
    }

    /// Whether the host ever recorded `correlation_id`: it delivered mail for
    /// it ([`Batch::correlation_ids`], [`record_correlation_id`](Self::record_correlation_id))
    /// or queued a reply for it. Stays true after every reply is acknowledged,
    /// so the web host answers "unknown id" only for ids it never saw.
    pub fn has_correlation_id(&self, correlation_id: &str) -> Result<bool, StoreError> {
        self.connection
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM correlation_ids WHERE correlation_id = ?1)",
                [correlation_id],
                |row| row.get(0),
            )
            .map_err(self.error("looking up a correlation id"))
    }

    /// Records `correlation_id` on its own, outside a batch. Recording an id
    /// twice is harmless.
    pub fn record_correlation_id(&mut self, correlation_id: &str) -> Result<(), StoreError> {
        self.connection
            .execute(RECORD_CORRELATION_ID, params![correlation_id, unix_now()])
            .map(drop)
            .map_err(self.error("recording a correlation id"))
    }

    /// How many replies are queued, over all correlation ids (for
    /// back-pressure and metrics).
    pub fn queue_depth(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM replies", [], |row| row.get(0))
            .map_err(self.error("counting queued replies"))?;
        row_id(count, &self.path)
    }

    /// How many replies wait for `correlation_id`.
    pub fn queue_len(&self, correlation_id: &str) -> Result<u64, StoreError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM replies WHERE correlation_id = ?1", [correlation_id], |row| row.get(0))
            .map_err(self.error("counting a client's queued replies"))?;
        row_id(count, &self.path)
    }

    /// A value from the meta table.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(self.error("reading a meta value"))
    }

    /// Sets a value in the meta table, outside a batch. To move a value in
    /// step with the enclave's output, put it in [`Batch::meta`] instead.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.connection.execute(PUT_META, params![key, value]).map(drop).map_err(self.error("storing a meta value"))
    }

    /// Replaces the sealed state with `blob` (whose counter is `counter`)
    /// outside any batch. This is what a malicious host does to roll the
    /// enclave back; tests use it to check that the enclave and its clients
    /// notice.
    pub fn replace_sealed_state_for_testing_only(&mut self, blob: &[u8], counter: u64) -> Result<(), StoreError> {
        let counter = i64::try_from(counter).unwrap_or(i64::MAX);
        self.connection
            .execute(PUT_SEALED_STATE, params![blob, counter])
            .map(drop)
            .map_err(self.error("replacing the sealed state"))
    }

    /// Wraps an SQLite error with `action` and this store's path.
    fn error(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        database_error(action, &self.path)
    }

    fn inconsistent(&self, reason: &'static str) -> StoreError {
        StoreError::Inconsistent { path: self.path.clone(), reason }
    }
}

/// A second connection to an on-disk store, for the web host's polls and
/// acknowledgements so that they never wait behind an enclave call.
///
/// It shares the store's WAL database (readers see every committed batch and
/// never block the writer; an acknowledgement is a short write that SQLite
/// serialises with the owner's commits) and takes no lock file: it belongs
/// to the process that holds the [`SqliteStore`]. Open it with [`SqliteStore::open_reader`].
pub struct SqliteReader(SqliteStore);

impl fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReader").field("path", &self.0.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens another connection to this store's file, or `None` for a store
    /// in memory (a second connection would see another, empty database).
    pub fn open_reader(&self) -> Result<Option<SqliteReader>, StoreError> {
        if self.path == Path::new(":memory:") {
            return Ok(None);
        }
        let connection = Connection::open(&self.path).map_err(self.error("opening a second connection"))?;
        let reader = Self { connection, path: self.path.clone(), _lock: None };
        reader.configure()?;
        // Polls read recent replies; a small page cache per reader is enough.
        reader.connection.pragma_update(None, "cache_size", -512).map_err(reader.error("sizing the page cache"))?;
        Ok(Some(SqliteReader(reader)))
    }

    /// Forgets correlation ids with no reply queued that were last recorded
    /// (by a delivery or a reply) before `now_unix - max_idle_secs`; returns
    /// how many. A forgotten id answers "unknown" until it is used again;
    /// reply ids stay unique because they never depend on it.
    pub fn prune_correlation_ids(&mut self, now_unix: i64, max_idle_secs: i64) -> Result<usize, StoreError> {
        let cutoff = now_unix.saturating_sub(max_idle_secs);
        self.connection
            .execute(
                "DELETE FROM correlation_ids WHERE first_seen_unix < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM replies WHERE replies.correlation_id = correlation_ids.correlation_id)",
                [cutoff],
            )
            .map_err(self.error("pruning idle correlation ids"))
    }

    /// Like [`replies`](Self::replies), but stops before the reply that would
    /// take the total past `max_bytes` (always returning the first one, so a
    /// large reply is never stuck), so one poll cannot load a whole queue of
    /// large replies into memory.
    pub fn replies_within(
        &self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self
            .connection
            .prepare_cached("SELECT id, length(bytes) FROM replies WHERE correlation_id = ?1 ORDER BY id LIMIT ?2")
            .map_err(self.error("reading replies"))?;
        let sizes = statement
            .query_map(params![correlation_id, limit], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
            .map_err(self.error("reading replies"))?;
        let mut wanted = Vec::new();
        let mut total = 0usize;
        for row in sizes {
            let (id, len) = row.map_err(self.error("reading replies"))?;
            total = total.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            if !wanted.is_empty() && total > max_bytes {
                break;
            }
            wanted.push(id);
        }
        let mut read = self
            .connection
            .prepare_cached("SELECT bytes FROM replies WHERE id = ?1")
            .map_err(self.error("reading replies"))?;
        let mut replies = Vec::with_capacity(wanted.len());
        for id in wanted {
            // A reply acknowledged between the two reads is simply gone.
            if let Some(bytes) =
                read.query_row([id], |row| row.get(0)).optional().map_err(self.error("reading replies"))?
            {
                replies.push(QueuedMail { id: row_id(id, &self.path)?, bytes });
            }
        }
        Ok(replies)
    }

    /// How many correlation ids the store knows.
    pub fn correlation_id_count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM correlation_ids", [], |row| row.get(0))
            .map_err(self.error("counting correlation ids"))?;
        row_id(count, &self.path)
    }
}

impl SqliteReader {
    /// As [`SqliteStore::has_correlation_id`].
    pub fn has_correlation_id(&self, correlation_id: &str) -> Result<bool, StoreError> {
        self.0.has_correlation_id(correlation_id)
    }

    /// As [`SqliteStore::replies`].
    pub fn replies(&self, correlation_id: &str, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        self.0.replies(correlation_id, limit)
    }

    /// As [`SqliteStore::replies_within`].
    pub fn replies_within(
        &self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        self.0.replies_within(correlation_id, limit, max_bytes)
    }

    /// As [`SqliteStore::acknowledge`].
    pub fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        self.0.acknowledge(correlation_id, ids)
    }

    /// As [`SqliteStore::queue_depth`].
    pub fn queue_depth(&self) -> Result<u64, StoreError> {
        self.0.queue_depth()
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn is_shared(&self) -> bool {
        false
    }
    /// One host has an SQLite store to itself (the lock file sees to that),
    /// so there is no lock to wait for; the commit checks that it follows.
    fn begin_call(&mut self) -> Result<u64, StoreError> {
        SqliteStore::state_counter(self)
    }
    fn abort_call(&mut self) {}
    fn commit(&mut self, batch: &Batch) -> Result<Vec<u64>, StoreError> {
        SqliteStore::commit(self, batch)
    }
    fn sealed_state(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        SqliteStore::sealed_state(self)
    }
    fn state_counter(&mut self) -> Result<u64, StoreError> {
        SqliteStore::state_counter(self)
    }
    fn chain(&mut self, from: u64, to: u64) -> Result<Vec<ChainEntry>, StoreError> {
        SqliteStore::chain(self, from, to)
    }
    fn self_mail(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        SqliteStore::self_mail(self)
    }
    fn replies(&mut self, correlation_id: &str, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        SqliteStore::replies(self, correlation_id, limit)
    }
    fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        SqliteStore::replies_within(self, correlation_id, limit, max_bytes)
    }
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        SqliteStore::acknowledge(self, correlation_id, ids)
    }
    fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError> {
        SqliteStore::has_correlation_id(self, correlation_id)
    }
    fn record_correlation_id(&mut self, correlation_id: &str) -> Result<(), StoreError> {
        SqliteStore::record_correlation_id(self, correlation_id)
    }
    fn queue_depth(&mut self) -> Result<u64, StoreError> {
        SqliteStore::queue_depth(self)
    }
    fn queue_len(&mut self, correlation_id: &str) -> Result<u64, StoreError> {
        SqliteStore::queue_len(self, correlation_id)
    }
    fn correlation_id_count(&mut self) -> Result<u64, StoreError> {
        SqliteStore::correlation_id_count(self)
    }
    fn prune_correlation_ids(&mut self, now_unix: i64, max_idle_secs: i64) -> Result<usize, StoreError> {
        SqliteStore::prune_correlation_ids(self, now_unix, max_idle_secs)
    }
    fn get_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        SqliteStore::get_meta(self, key)
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        SqliteStore::put_meta(self, key, value)
    }
    fn replace_sealed_state_for_testing_only(&mut self, blob: &[u8], counter: u64) -> Result<(), StoreError> {
        SqliteStore::replace_sealed_state_for_testing_only(self, blob, counter)
    }
    fn open_reader(&self) -> Result<Option<Box<dyn StoreReads>>, StoreError> {
        Ok(SqliteStore::open_reader(self)?.map(|reader| Box::new(reader) as Box<dyn StoreReads>))
    }
}

impl StoreReads for SqliteReader {
    fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError> {
        self.0.has_correlation_id(correlation_id)
    }
    fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        self.0.replies_within(correlation_id, limit, max_bytes)
    }
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        self.0.acknowledge(correlation_id, ids)
    }
    fn queue_depth(&mut self) -> Result<u64, StoreError> {
        self.0.queue_depth()
    }
}

const PUT_META: &str =
    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const PUT_SEALED_STATE: &str = "INSERT INTO sealed_state (slot, blob, counter) VALUES (0, ?1, ?2) \
     ON CONFLICT (slot) DO UPDATE SET blob = excluded.blob, counter = excluded.counter";
/// A link replaces one at the same counter: after a rollback the log follows
/// the branch the enclave is on.
const PUT_CHAIN: &str = "INSERT INTO chain (counter, state_id, nonce) VALUES (?1, ?2, ?3) \
     ON CONFLICT (counter) DO UPDATE SET state_id = excluded.state_id, nonce = excluded.nonce";
/// Records an id, or refreshes the time it was last recorded: despite the
/// column's name, `first_seen_unix` is the last delivery or reply under the
/// id, which is what pruning idle ids needs.
const RECORD_CORRELATION_ID: &str = "INSERT INTO correlation_ids (correlation_id, first_seen_unix) VALUES (?1, ?2) \
     ON CONFLICT (correlation_id) DO UPDATE SET first_seen_unix = excluded.first_seen_unix";

fn database_error<'a>(action: &'static str, path: &'a Path) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |cause| StoreError::Database { action, path: path.to_owned(), cause }
}

/// SQLite ids and counts are `i64`; ours are never negative.
fn row_id(value: i64, path: &Path) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Inconsistent { path: path.to_owned(), reason: "negative id or count in a table" })
}

/// Seconds since the Unix epoch, written to the `created_unix` and
/// `first_seen_unix` columns. The one decision taken by them,
/// [`SqliteStore::prune_correlation_ids`], takes the current time as an argument.
fn unix_now() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// Takes an exclusive lock on `<path>.lock`, or says who holds it.
fn lock_exclusively(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|error| StoreError::Lock { path: lock_path.clone(), error })?;
    // A process forked by this one (an enclave being spawned) holds a copy
    // of the lock until it execs, a few milliseconds at most: wait that out
    // before calling the store taken.
    for _ in 0..25 {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(std::fs::TryLockError::Error(error)) => return Err(StoreError::Lock { path: lock_path, error }),
        }
    }
    Err(StoreError::InUse { path: path.to_owned() })
}
