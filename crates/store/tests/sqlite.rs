//! What only the SQLite store does: its schema marks, its lock file, and
//! commits that survive a SIGKILL of the writing process. What every store
//! does is checked on both backends in conclave-test-support's
//! `tests/store_contract.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use conclave_store::{Batch, SCHEMA_VERSION, SqliteStore, StoreError};

fn reply(correlation_id: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    (correlation_id.to_owned(), bytes.to_vec())
}

fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    (dir, path)
}

#[test]
fn an_older_schema_is_refused_with_what_to_do() {
    let (_dir, path) = temp_store();
    drop(SqliteStore::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", 1).unwrap();
    drop(raw);
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::OlderSchema { found: 1, .. }), "{error:?}");
    assert!(error.to_string().contains("new data directory"), "{error}");
}

#[test]
fn a_newer_schema_is_refused_and_named() {
    let (_dir, path) = temp_store();
    drop(SqliteStore::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(raw);

    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::NewerSchema { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("schema version 3") && message.contains("reads (2)"), "{message}");
}

#[test]
fn another_applications_database_is_refused_and_left_alone() {
    let (_dir, path) = temp_store();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE accounts (name TEXT)").unwrap();
    drop(raw);
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { found: 0, .. }), "{error:?}");
    let raw = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = raw.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0)).unwrap();
    assert_eq!(tables, 1, "the foreign database was modified");

    std::fs::write(&path, b"not a database at all, just some bytes that are long enough to be read as a header....")
        .unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Database { .. }), "{error:?}");
}

#[test]
fn store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<SqliteStore>();
    assert_send::<StoreError>();
}

/// Set in the re-executed test binary: the store the child commits to.
const CHILD_STORE_ENV: &str = "CONCLAVE_STORE_SIGKILL_CHILD";
/// Each batch n writes state "state n", self mail "mail n" and reply "reply n".
const CHILD_CORRELATION_ID: &str = "sigkill";

/// Runs only in the child process of `commits_survive_sigkill`: commits
/// batches until killed, printing the number of each batch whose commit
/// returned.
#[test]
#[ignore = "child process of commits_survive_sigkill"]
fn sigkill_child_commits_until_killed() {
    let Some(path) = std::env::var_os(CHILD_STORE_ENV) else { return };
    let mut store = SqliteStore::open(Path::new(&path)).unwrap();
    // Bounded so an orphaned child stops by itself.
    for n in 1..=100_000u64 {
        store
            .commit(&Batch {
                sealed_state: Some(format!("state {n}").into_bytes()),
                self_mail: vec![format!("mail {n}").into_bytes()],
                replies: vec![reply(CHILD_CORRELATION_ID, format!("reply {n}").as_bytes())],
                meta: vec![("batch".to_owned(), n.to_be_bytes().to_vec())],
                ..Batch::default()
            })
            .unwrap();
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "committed {n}").unwrap();
        stdout.flush().unwrap();
    }
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn commits_survive_sigkill() {
    use std::os::unix::process::ExitStatusExt;

    let (_dir, path) = temp_store();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child_commits_until_killed", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_STORE_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();

    let mut last_printed = 0u64;
    // The test harness prints "test <name> ... " before the child's output,
    // without a newline, so the marker can start mid-line.
    let parse = |line: &str| line.split_once("committed ").map(|(_, n)| n.trim().parse::<u64>().unwrap());
    for line in lines.by_ref() {
        if let Some(n) = parse(&line.unwrap()) {
            assert_eq!(n, last_printed + 1);
            last_printed = n;
            if n == 25 {
                break;
            }
        }
    }
    assert_eq!(last_printed, 25, "the child stopped early");
    child.0.kill().unwrap(); // SIGKILL on Unix
    // The child may have printed more before the signal landed.
    for line in lines {
        if let Some(n) = parse(&line.unwrap()) {
            last_printed = n;
        }
    }
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the child was not killed mid-run: {status:?}");

    let store = SqliteStore::open(&path).unwrap();
    let state = String::from_utf8(store.sealed_state().unwrap().unwrap()).unwrap();
    let committed: u64 = state.strip_prefix("state ").unwrap().parse().unwrap();
    // Every batch whose commit returned is there; at most one more (committed,
    // but killed before it printed).
    assert!((last_printed..=last_printed + 1).contains(&committed), "state {committed}, printed {last_printed}");

    // No batch is partly there: state, self mail, replies and meta agree.
    let replies = store.replies(CHILD_CORRELATION_ID, usize::MAX).unwrap();
    let expected_replies: Vec<Vec<u8>> = (1..=committed).map(|n| format!("reply {n}").into_bytes()).collect();
    assert_eq!(replies.into_iter().map(|mail| mail.bytes).collect::<Vec<_>>(), expected_replies);
    let expected_mail: Vec<Vec<u8>> = (1..=committed).map(|n| format!("mail {n}").into_bytes()).collect();
    assert_eq!(store.self_mail().unwrap().into_iter().map(|(_, bytes)| bytes).collect::<Vec<_>>(), expected_mail);
    assert_eq!(store.get_meta("batch").unwrap(), Some(committed.to_be_bytes().to_vec()));
}

#[test]
fn a_store_open_in_one_host_cannot_be_opened_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let first = conclave_store::SqliteStore::open(&path).unwrap();
    let err = conclave_store::SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, conclave_store::StoreError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("own data directory"), "{err}");
    drop(first);
    // Released on drop. Another test in this binary may be forking a child at
    // this instant, which holds a copy of the lock until it execs (the file
    // is close-on-exec), so allow that moment to pass.
    let reopened = (0..50).find_map(|_| match conclave_store::SqliteStore::open(&path) {
        Ok(store) => Some(store),
        Err(_) => {
            std::thread::sleep(std::time::Duration::from_millis(20));
            None
        }
    });
    assert!(reopened.is_some(), "the lock was not released");
}
