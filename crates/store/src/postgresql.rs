//! The PostgreSQL backend: one database shared by every host of a cluster.
//!
//! Every enclave call runs inside one transaction that begins by locking the
//! cluster's state row (`SELECT … FOR UPDATE`), so calls from all hosts are
//! ordered against one shared state: the host that holds the lock brings its
//! enclave up to the committed state if another host moved it on, runs the
//! call, and commits its batch in the same transaction. A host that dies
//! holding the lock loses its connection, and PostgreSQL rolls the call back.
//!
//! ```text
//!  host A ─┐                         ┌─ BEGIN; SELECT counter … FOR UPDATE   (waits for the lock)
//!  host B ─┼── conclave_state (1 row) ┤   enclave call
//!  host C ─┘                         └─ INSERT replies, chain …; UPDATE state; COMMIT
//! ```
//!
//! The schema is created and upgraded by numbered migrations under an
//! advisory lock, so hosts that start together do not race; see
//! `docs/store.md`.

use std::time::{SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls};

use crate::{Batch, ChainEntry, QueuedMail, Store, StoreError, StoreReads};

/// The schema version this code creates and reads.
pub const POSTGRES_SCHEMA_VERSION: i32 = 1;

/// Every migration, in order: migration `i` brings the schema from version
/// `i` to `i + 1`.
const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE conclave_meta (
        key   TEXT PRIMARY KEY,
        value BYTEA NOT NULL
    );
    CREATE TABLE conclave_state (
        slot    SMALLINT PRIMARY KEY CHECK (slot = 0),
        blob    BYTEA,
        counter BIGINT NOT NULL CHECK (counter >= 0)
    );
    INSERT INTO conclave_state (slot, blob, counter) VALUES (0, NULL, 0);
    CREATE TABLE conclave_chain (
        counter  BIGINT PRIMARY KEY CHECK (counter > 0),
        state_id BYTEA NOT NULL CHECK (length(state_id) = 32),
        nonce    BYTEA NOT NULL CHECK (length(nonce) = 16)
    );
    CREATE TABLE conclave_self_mail (
        id   BIGSERIAL PRIMARY KEY,
        blob BYTEA NOT NULL
    );
    CREATE TABLE conclave_correlation_ids (
        correlation_id TEXT PRIMARY KEY CHECK (octet_length(correlation_id) BETWEEN 1 AND 256),
        first_seen_unix BIGINT NOT NULL
    );
    CREATE TABLE conclave_replies (
        id             BIGSERIAL PRIMARY KEY,
        correlation_id TEXT NOT NULL REFERENCES conclave_correlation_ids (correlation_id),
        bytes          BYTEA NOT NULL,
        created_unix   BIGINT NOT NULL
    );
    CREATE INDEX conclave_replies_by_correlation_id ON conclave_replies (correlation_id, id);
"];

/// An arbitrary but fixed key for the advisory lock migrations take ("Cclsmigr").
const MIGRATION_LOCK: i64 = 0x4363_6c73_6d69_6772;

/// A client that may be dropped anywhere. The `postgres` client runs a
/// small runtime of its own and closes its connection by blocking on it,
/// which panics on a thread that drives an async runtime (the web host's);
/// such a drop hands the client to a thread of its own.
struct Connection(Option<Client>);

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("the client is only taken on drop")
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("the client is only taken on drop")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(client) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new().name("postgres-close".into()).spawn(move || drop(client));
        }
    }
}

/// A connection to the cluster's database.
pub struct PostgresStore {
    client: Connection,
    /// The URL without its password, for messages.
    shown: String,
    url: String,
    /// Whether this connection holds the call lock (a transaction is open).
    in_call: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("database", &self.shown).field("in_call", &self.in_call).finish()
    }
}

/// `postgres://user:password@host/db` with the password replaced.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn database_error<'a>(action: &'static str, shown: &'a str) -> impl Fn(postgres::Error) -> StoreError + 'a {
    move |cause| StoreError::Postgres { action, database: shown.to_owned(), cause }
}

fn unix_now() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn to_i64(value: u64, what: &'static str, shown: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Inconsistent { path: shown.into(), reason: what })
}

fn to_u64(value: i64, shown: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Inconsistent { path: shown.into(), reason: "negative id or count in a table" })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`),
    /// then creates or upgrades the schema. A database with a newer schema
    /// than this code reads is refused, not modified.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = without_password(url);
        let client = Client::connect(url, NoTls).map_err(|cause| StoreError::Postgres {
            action: "connecting (is the server running, and the URL right?)",
            database: shown.clone(),
            cause,
        })?;
        let mut store = Self { client: Connection(Some(client)), shown, url: url.to_owned(), in_call: false };
        store.migrate()?;
        Ok(store)
    }

    fn error(&self, action: &'static str) -> impl Fn(postgres::Error) -> StoreError + '_ {
        database_error(action, &self.shown)
    }

    /// Applies the migrations this database lacks, under an advisory lock.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let shown = self.shown.clone();
        let err = |action| database_error(action, &shown);
        let mut tx = self.client.transaction().map_err(err("starting the migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(err("locking the schema"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS conclave_schema (version INT PRIMARY KEY, applied_unix BIGINT NOT NULL)",
        )
        .map_err(err("creating the schema table"))?;
        let current: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM conclave_schema", &[])
            .map_err(err("reading the schema version"))?
            .get(0);
        if current > POSTGRES_SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.shown.clone().into(),
                found: u32::try_from(current).unwrap_or(u32::MAX),
                supported: u32::try_from(POSTGRES_SCHEMA_VERSION).unwrap_or(0),
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
            tx.batch_execute(migration).map_err(err("applying a schema migration"))?;
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            tx.execute("INSERT INTO conclave_schema (version, applied_unix) VALUES ($1, $2)", &[&version, &unix_now()])
                .map_err(err("recording a schema migration"))?;
        }
        tx.commit().map_err(err("committing the schema"))
    }

    /// The database, its password hidden.
    pub fn describe(&self) -> String {
        self.shown.clone()
    }

    /// Connects again if the connection was lost (the server restarted, or
    /// the network failed) and no call is open: a call's transaction cannot
    /// survive its connection, but the next call can go on.
    fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() && !self.in_call {
            self.client = Connection(Some(Client::connect(&self.url, NoTls).map_err(self.error("connecting again"))?));
        }
        Ok(())
    }

    /// Takes the cluster's call lock (waiting for other hosts' calls to end)
    /// and returns the counter of the committed state.
    pub fn begin_call(&mut self) -> Result<u64, StoreError> {
        if self.in_call {
            self.abort_call();
        }
        self.ensure_connected()?;
        self.client.batch_execute("BEGIN").map_err(self.error("starting a call"))?;
        self.in_call = true;
        let counter: i64 = match self
            .client
            .query_one("SELECT counter FROM conclave_state WHERE slot = 0 FOR UPDATE", &[])
        {
            Ok(row) => row.get(0),
            Err(cause) => {
                self.abort_call();
                return Err(StoreError::Postgres { action: "locking the state", database: self.shown.clone(), cause });
            }
        };
        to_u64(counter, &self.shown)
    }

    /// Ends a call that commits nothing, releasing the lock.
    pub fn abort_call(&mut self) {
        if self.in_call {
            self.in_call = false;
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }

    /// Commits a batch: inside the call's transaction if a call is open
    /// (which then ends), or in a transaction of its own.
    pub fn commit(&mut self, batch: &Batch) -> Result<Vec<u64>, StoreError> {
        let own = !self.in_call;
        if own {
            self.begin_call()?;
        }
        let result = self.write(batch);
        match result {
            Ok(ids) => {
                self.in_call = false;
                self.client.batch_execute("COMMIT").map_err(self.error("committing a batch"))?;
                Ok(ids)
            }
            Err(error) => {
                self.abort_call();
                Err(error)
            }
        }
    }

    fn write(&mut self, batch: &Batch) -> Result<Vec<u64>, StoreError> {
        let now = unix_now();
        let shown = self.shown.clone();
        let err = |action| database_error(action, &shown);
        let client = &mut self.client;
        for (key, value) in &batch.meta {
            client
                .execute(
                    "INSERT INTO conclave_meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[key, value],
                )
                .map_err(err("storing a meta value"))?;
        }
        if let Some(first) = batch.states.first() {
            let stored: i64 = client
                .query_one("SELECT counter FROM conclave_state WHERE slot = 0", &[])
                .map_err(err("reading the stored state's counter"))?
                .get(0);
            let stored = to_u64(stored, &shown)?;
            if first.counter != stored.saturating_add(1) {
                return Err(StoreError::Conflict { path: shown.clone().into(), stored, found: first.counter });
            }
            for entry in &batch.states {
                let counter = to_i64(entry.counter, "a state counter beyond 2^63", &shown)?;
                client
                    .execute(
                        "INSERT INTO conclave_chain (counter, state_id, nonce) VALUES ($1, $2, $3) \
                         ON CONFLICT (counter) DO UPDATE SET state_id = EXCLUDED.state_id, nonce = EXCLUDED.nonce",
                        &[&counter, &&entry.state_id[..], &&entry.nonce[..]],
                    )
                    .map_err(err("storing a chain link"))?;
            }
        }
        if let Some(blob) = &batch.sealed_state {
            let counter = to_i64(batch.states.last().map_or(0, |e| e.counter), "a state counter beyond 2^63", &shown)?;
            client
                .execute("UPDATE conclave_state SET blob = $1, counter = $2 WHERE slot = 0", &[blob, &counter])
                .map_err(err("storing the sealed state"))?;
        }
        for &id in &batch.delete_self_mail {
            if let Ok(id) = i64::try_from(id) {
                client
                    .execute("DELETE FROM conclave_self_mail WHERE id = $1", &[&id])
                    .map_err(err("deleting self mail"))?;
            }
        }
        for blob in &batch.self_mail {
            client
                .execute("INSERT INTO conclave_self_mail (blob) VALUES ($1)", &[blob])
                .map_err(err("storing self mail"))?;
        }
        for correlation_id in batch.correlation_ids.iter().chain(batch.replies.iter().map(|(id, _)| id)) {
            client
                .execute(RECORD_CORRELATION_ID, &[correlation_id, &now])
                .map_err(err("recording a correlation id"))?;
        }
        let mut ids = Vec::with_capacity(batch.replies.len());
        for (correlation_id, bytes) in &batch.replies {
            let id: i64 = client
                .query_one(
                    "INSERT INTO conclave_replies (correlation_id, bytes, created_unix) VALUES ($1, $2, $3) RETURNING id",
                    &[correlation_id, bytes, &now],
                )
                .map_err(err("queuing a reply"))?
                .get(0);
            ids.push(to_u64(id, &shown)?);
        }
        Ok(ids)
    }

    /// The last sealed state committed, if any.
    pub fn sealed_state(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client
            .query_one("SELECT blob FROM conclave_state WHERE slot = 0", &[])
            .map_err(self.error("reading the sealed state"))?;
        Ok(row.get(0))
    }

    /// The counter of the last sealed state committed (0 if none).
    pub fn state_counter(&mut self) -> Result<u64, StoreError> {
        let counter: i64 = self
            .client
            .query_one("SELECT counter FROM conclave_state WHERE slot = 0", &[])
            .map_err(self.error("reading the sealed state's counter"))?
            .get(0);
        to_u64(counter, &self.shown)
    }

    /// The links of the state chain from `from` to `to` (inclusive), in order.
    pub fn chain(&mut self, from: u64, to: u64) -> Result<Vec<ChainEntry>, StoreError> {
        let (from, to) = (i64::try_from(from).unwrap_or(i64::MAX), i64::try_from(to).unwrap_or(i64::MAX));
        let rows = self
            .client
            .query(
                "SELECT counter, state_id, nonce FROM conclave_chain WHERE counter BETWEEN $1 AND $2 ORDER BY counter",
                &[&from, &to],
            )
            .map_err(self.error("reading the state chain"))?;
        rows.iter()
            .map(|row| {
                let bad = || StoreError::Inconsistent {
                    path: self.shown.clone().into(),
                    reason: "a chain link of the wrong length",
                };
                let id: Vec<u8> = row.get(1);
                let nonce: Vec<u8> = row.get(2);
                Ok(ChainEntry {
                    counter: to_u64(row.get(0), &self.shown)?,
                    state_id: id.try_into().map_err(|_| bad())?,
                    nonce: nonce.try_into().map_err(|_| bad())?,
                })
            })
            .collect()
    }

    /// All self mail still stored, oldest first, with the ids to delete it by.
    pub fn self_mail(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = self
            .client
            .query("SELECT id, blob FROM conclave_self_mail ORDER BY id", &[])
            .map_err(self.error("reading self mail"))?;
        rows.iter().map(|row| Ok((to_u64(row.get(0), &self.shown)?, row.get(1)))).collect()
    }

    /// Up to `limit` replies queued for `correlation_id`, oldest first, at
    /// most `max_bytes` of them (but always the first).
    pub fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT id, bytes FROM conclave_replies WHERE correlation_id = $1 ORDER BY id LIMIT $2",
                &[&correlation_id, &limit],
            )
            .map_err(self.error("reading replies"))?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for row in rows {
            let bytes: Vec<u8> = row.get(1);
            total = total.saturating_add(bytes.len());
            if !out.is_empty() && total > max_bytes {
                break;
            }
            out.push(QueuedMail { id: to_u64(row.get(0), &self.shown)?, bytes });
        }
        Ok(out)
    }

    /// Up to `limit` replies queued for `correlation_id`, oldest first.
    pub fn replies(&mut self, correlation_id: &str, limit: usize) -> Result<Vec<QueuedMail>, StoreError> {
        self.replies_within(correlation_id, limit, usize::MAX)
    }

    /// Deletes the replies `ids` of `correlation_id`; returns how many.
    pub fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        let ids: Vec<i64> = ids.iter().filter_map(|&id| i64::try_from(id).ok()).collect();
        let deleted = self
            .client
            .execute(
                "DELETE FROM conclave_replies WHERE correlation_id = $1 AND id = ANY($2)",
                &[&correlation_id, &ids],
            )
            .map_err(self.error("acknowledging replies"))?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    /// Whether the host ever recorded `correlation_id`.
    pub fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM conclave_correlation_ids WHERE correlation_id = $1)",
                &[&correlation_id],
            )
            .map_err(self.error("looking up a correlation id"))?;
        Ok(row.get(0))
    }

    /// Records `correlation_id` on its own, outside a batch.
    pub fn record_correlation_id(&mut self, correlation_id: &str) -> Result<(), StoreError> {
        self.client
            .execute(RECORD_CORRELATION_ID, &[&correlation_id, &unix_now()])
            .map(drop)
            .map_err(self.error("recording a correlation id"))
    }

    /// How many replies are queued, over all correlation ids.
    pub fn queue_depth(&mut self) -> Result<u64, StoreError> {
        let count: i64 = self
            .client
            .query_one("SELECT COUNT(*) FROM conclave_replies", &[])
            .map_err(self.error("counting queued replies"))?
            .get(0);
        to_u64(count, &self.shown)
    }

    /// How many replies wait for `correlation_id`.
    pub fn queue_len(&mut self, correlation_id: &str) -> Result<u64, StoreError> {
        let count: i64 = self
            .client
            .query_one("SELECT COUNT(*) FROM conclave_replies WHERE correlation_id = $1", &[&correlation_id])
            .map_err(self.error("counting a client's queued replies"))?
            .get(0);
        to_u64(count, &self.shown)
    }

    /// How many correlation ids the store knows.
    pub fn correlation_id_count(&mut self) -> Result<u64, StoreError> {
        let count: i64 = self
            .client
            .query_one("SELECT COUNT(*) FROM conclave_correlation_ids", &[])
            .map_err(self.error("counting correlation ids"))?
            .get(0);
        to_u64(count, &self.shown)
    }

    /// Forgets idle correlation ids with no reply queued; returns how many.
    pub fn prune_correlation_ids(&mut self, now_unix: i64, max_idle_secs: i64) -> Result<usize, StoreError> {
        let cutoff = now_unix.saturating_sub(max_idle_secs);
        let deleted = self
            .client
            .execute(
                "DELETE FROM conclave_correlation_ids c WHERE first_seen_unix < $1 AND NOT EXISTS \
                 (SELECT 1 FROM conclave_replies r WHERE r.correlation_id = c.correlation_id)",
                &[&cutoff],
            )
            .map_err(self.error("pruning idle correlation ids"))?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    /// A value from the meta table.
    pub fn get_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT value FROM conclave_meta WHERE key = $1", &[&key])
            .map_err(self.error("reading a meta value"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Sets a value in the meta table, outside a batch.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO conclave_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )
            .map(drop)
            .map_err(self.error("storing a meta value"))
    }

    /// Replaces the sealed state outside any batch: what a malicious
    /// operator does to roll the enclave back. For tests.
    pub fn replace_sealed_state_for_testing_only(&mut self, blob: &[u8], counter: u64) -> Result<(), StoreError> {
        let counter = to_i64(counter, "a state counter beyond 2^63", &self.shown)?;
        self.client
            .execute("UPDATE conclave_state SET blob = $1, counter = $2 WHERE slot = 0", &[&blob, &counter])
            .map(drop)
            .map_err(self.error("replacing the sealed state"))
    }

    /// Another connection to the same database, for reads beside the calls.
    pub fn open_reader(&self) -> Result<PostgresStore, StoreError> {
        PostgresStore::open(&self.url)
    }
}

impl Store for PostgresStore {
    fn describe(&self) -> String {
        PostgresStore::describe(self)
    }
    fn is_shared(&self) -> bool {
        true
    }
    fn begin_call(&mut self) -> Result<u64, StoreError> {
        PostgresStore::begin_call(self)
    }
    fn abort_call(&mut self) {
        PostgresStore::abort_call(self)
    }
    fn commit(&mut self, batch: &Batch) -> Result<Vec<u64>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::commit(self, batch)
    }
    fn sealed_state(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::sealed_state(self)
    }
    fn state_counter(&mut self) -> Result<u64, StoreError> {
        self.ensure_connected()?;
        PostgresStore::state_counter(self)
    }
    fn chain(&mut self, from: u64, to: u64) -> Result<Vec<ChainEntry>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::chain(self, from, to)
    }
    fn self_mail(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::self_mail(self)
    }
    fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::replies_within(self, correlation_id, limit, max_bytes)
    }
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        self.ensure_connected()?;
        PostgresStore::acknowledge(self, correlation_id, ids)
    }
    fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError> {
        self.ensure_connected()?;
        PostgresStore::has_correlation_id(self, correlation_id)
    }
    fn record_correlation_id(&mut self, correlation_id: &str) -> Result<(), StoreError> {
        self.ensure_connected()?;
        PostgresStore::record_correlation_id(self, correlation_id)
    }
    fn queue_depth(&mut self) -> Result<u64, StoreError> {
        self.ensure_connected()?;
        PostgresStore::queue_depth(self)
    }
    fn queue_len(&mut self, correlation_id: &str) -> Result<u64, StoreError> {
        self.ensure_connected()?;
        PostgresStore::queue_len(self, correlation_id)
    }
    fn correlation_id_count(&mut self) -> Result<u64, StoreError> {
        self.ensure_connected()?;
        PostgresStore::correlation_id_count(self)
    }
    fn prune_correlation_ids(&mut self, now_unix: i64, max_idle_secs: i64) -> Result<usize, StoreError> {
        self.ensure_connected()?;
        PostgresStore::prune_correlation_ids(self, now_unix, max_idle_secs)
    }
    fn get_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::get_meta(self, key)
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.ensure_connected()?;
        PostgresStore::put_meta(self, key, value)
    }
    fn replace_sealed_state_for_testing_only(&mut self, blob: &[u8], counter: u64) -> Result<(), StoreError> {
        self.ensure_connected()?;
        PostgresStore::replace_sealed_state_for_testing_only(self, blob, counter)
    }
    fn open_reader(&self) -> Result<Option<Box<dyn StoreReads>>, StoreError> {
        Ok(Some(Box::new(PostgresStore::open_reader(self)?)))
    }
}

impl StoreReads for PostgresStore {
    fn has_correlation_id(&mut self, correlation_id: &str) -> Result<bool, StoreError> {
        self.ensure_connected()?;
        PostgresStore::has_correlation_id(self, correlation_id)
    }
    fn replies_within(
        &mut self,
        correlation_id: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMail>, StoreError> {
        self.ensure_connected()?;
        PostgresStore::replies_within(self, correlation_id, limit, max_bytes)
    }
    fn acknowledge(&mut self, correlation_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        self.ensure_connected()?;
        PostgresStore::acknowledge(self, correlation_id, ids)
    }
    fn queue_depth(&mut self) -> Result<u64, StoreError> {
        self.ensure_connected()?;
        PostgresStore::queue_depth(self)
    }
}

/// Records an id, or refreshes when it was last used.
const RECORD_CORRELATION_ID: &str = "INSERT INTO conclave_correlation_ids (correlation_id, first_seen_unix) \
     VALUES ($1, $2) ON CONFLICT (correlation_id) DO UPDATE SET first_seen_unix = EXCLUDED.first_seen_unix";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(without_password("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(without_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(without_password("host=h user=u"), "host=h user=u");
    }
}
