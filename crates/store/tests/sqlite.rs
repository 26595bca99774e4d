//! The host's store: batches are atomic, queues keep order, data survives a
//! reopen and a SIGKILL of the writing process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use conclave_store::{Batch, ChainEntry, MAX_CORRELATION_ID_LEN, SCHEMA_VERSION, SqliteStore, StoreError};

fn reply(correlation_id: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    (correlation_id.to_owned(), bytes.to_vec())
}

fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    (dir, path)
}

fn bytes_of(mail: &[(u64, Vec<u8>)]) -> Vec<&[u8]> {
    mail.iter().map(|(_, bytes)| bytes.as_slice()).collect()
}

#[test]
fn a_committed_batch_reads_back() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    assert_eq!(store.sealed_state().unwrap(), None);
    assert!(store.self_mail().unwrap().is_empty());

    let ids = store
        .commit(&Batch {
            sealed_state: Some(b"state 1".to_vec()),
            self_mail: vec![b"note to self".to_vec()],
            replies: vec![reply("alice", b"hello alice"), reply("bob", b"hello bob")],
            meta: vec![("counter".to_owned(), 1u64.to_be_bytes().to_vec())],
            ..Batch::default()
        })
        .unwrap();

    assert_eq!(ids.len(), 2);
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 1"[..]));
    assert_eq!(bytes_of(&store.self_mail().unwrap()), [b"note to self"]);
    let alice = store.replies("alice", 10).unwrap();
    assert_eq!(alice.len(), 1);
    assert_eq!((alice[0].id, alice[0].bytes.as_slice()), (ids[0], &b"hello alice"[..]));
    assert_eq!(store.replies("bob", 10).unwrap()[0].id, ids[1]);
    assert_eq!(store.get_meta("counter").unwrap(), Some(1u64.to_be_bytes().to_vec()));
    assert_eq!(store.get_meta("absent").unwrap(), None);
    assert_eq!(store.queue_depth().unwrap(), 2);
}

#[test]
fn a_batch_without_state_keeps_the_previous_state() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.commit(&Batch { sealed_state: Some(b"state 1".to_vec()), ..Batch::default() }).unwrap();
    store.commit(&Batch { replies: vec![reply("alice", b"r")], ..Batch::default() }).unwrap();
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 1"[..]));
    store.commit(&Batch { sealed_state: Some(b"state 2".to_vec()), ..Batch::default() }).unwrap();
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 2"[..]));
}

#[test]
fn self_mail_keeps_its_order_and_is_deleted_by_id() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.commit(&Batch { self_mail: vec![b"one".to_vec(), b"two".to_vec()], ..Batch::default() }).unwrap();
    store.commit(&Batch { self_mail: vec![b"three".to_vec()], ..Batch::default() }).unwrap();
    let mail = store.self_mail().unwrap();
    assert_eq!(bytes_of(&mail), [&b"one"[..], b"two", b"three"]);
    assert!(mail.windows(2).all(|pair| pair[0].0 < pair[1].0), "ids must increase: {mail:?}");

    // The enclave absorbed "two"; an id that never existed is ignored.
    store.commit(&Batch { delete_self_mail: vec![mail[1].0, 9999, u64::MAX], ..Batch::default() }).unwrap();
    assert_eq!(bytes_of(&store.self_mail().unwrap()), [&b"one"[..], b"three"]);

    // New mail goes after the old, never into the freed id.
    store.commit(&Batch { self_mail: vec![b"four".to_vec()], ..Batch::default() }).unwrap();
    let mail_after = store.self_mail().unwrap();
    assert_eq!(bytes_of(&mail_after), [&b"one"[..], b"three", b"four"]);
    assert!(mail_after[2].0 > mail[2].0);
}

#[test]
fn replies_queue_per_correlation_id_and_acknowledge_deletes_only_that_ids_mail() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let ids = store
        .commit(&Batch {
            replies: vec![reply("alice", b"a1"), reply("bob", b"b1"), reply("alice", b"a2"), reply("alice", b"a3")],
            ..Batch::default()
        })
        .unwrap();
    let [a1, b1, a2, a3] = ids[..] else { panic!("four ids expected: {ids:?}") };

    let alice: Vec<_> = store.replies("alice", 10).unwrap().into_iter().map(|mail| (mail.id, mail.bytes)).collect();
    assert_eq!(alice, [(a1, b"a1".to_vec()), (a2, b"a2".to_vec()), (a3, b"a3".to_vec())]);
    assert_eq!(store.replies("alice", 2).unwrap().iter().map(|mail| mail.id).collect::<Vec<_>>(), [a1, a2]);
    assert!(store.replies("carol", 10).unwrap().is_empty());

    // Alice cannot delete Bob's reply, even knowing its id.
    assert_eq!(store.acknowledge("alice", &[b1]).unwrap(), 0);
    assert_eq!(store.replies("bob", 10).unwrap().len(), 1);

    assert_eq!(store.acknowledge("alice", &[a1, a3, 424242, u64::MAX]).unwrap(), 2);
    assert_eq!(store.replies("alice", 10).unwrap().iter().map(|mail| mail.id).collect::<Vec<_>>(), [a2]);
    // Acknowledging twice is harmless.
    assert_eq!(store.acknowledge("alice", &[a1]).unwrap(), 0);
    assert_eq!(store.queue_depth().unwrap(), 2);

    // A reply queued after an acknowledgement never reuses a freed id.
    store.acknowledge("alice", &[a2]).unwrap();
    let later = store.commit(&Batch { replies: vec![reply("alice", b"a4")], ..Batch::default() }).unwrap();
    assert!(later[0] > a3, "id {} reused (last was {a3})", later[0]);
}

#[test]
fn correlation_ids_are_known_once_recorded_and_stay_known() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    assert!(!store.has_correlation_id("alice").unwrap());

    // Mail delivered, reply returned synchronously: nothing queued, but the id is known.
    store.commit(&Batch { correlation_ids: vec!["alice".to_owned()], ..Batch::default() }).unwrap();
    assert!(store.has_correlation_id("alice").unwrap());
    assert!(store.replies("alice", 10).unwrap().is_empty());

    // A reply records its id; acknowledging every reply does not forget it.
    let ids = store.commit(&Batch { replies: vec![reply("bob", b"b1")], ..Batch::default() }).unwrap();
    store.acknowledge("bob", &ids).unwrap();
    assert!(store.has_correlation_id("bob").unwrap());

    store.record_correlation_id("carol").unwrap();
    store.record_correlation_id("carol").unwrap();
    assert!(store.has_correlation_id("carol").unwrap());
    assert!(!store.has_correlation_id("dave").unwrap());
}

#[test]
fn correlation_ids_are_bounded() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let longest = "x".repeat(MAX_CORRELATION_ID_LEN);
    store.record_correlation_id(&longest).unwrap();
    assert!(store.record_correlation_id(&format!("{longest}x")).is_err());
    assert!(store.record_correlation_id("").is_err());
    // The bound counts bytes, not characters.
    assert!(store.record_correlation_id(&"é".repeat(MAX_CORRELATION_ID_LEN / 2 + 1)).is_err());
}

/// A batch that fails halfway (its last reply has an empty correlation id,
/// which the schema refuses) leaves no trace, also after a reopen.
#[test]
fn a_failed_batch_leaves_nothing() {
    let (_dir, path) = temp_store();
    let mut store = SqliteStore::open(&path).unwrap();
    store
        .commit(&Batch {
            sealed_state: Some(b"state 1".to_vec()),
            self_mail: vec![b"mail 1".to_vec()],
            replies: vec![reply("alice", b"reply 1")],
            meta: vec![("counter".to_owned(), b"1".to_vec())],
            ..Batch::default()
        })
        .unwrap();
    let mail_id = store.self_mail().unwrap()[0].0;

    let error = store
        .commit(&Batch {
            sealed_state: Some(b"state 2".to_vec()),
            self_mail: vec![b"mail 2".to_vec()],
            delete_self_mail: vec![mail_id],
            correlation_ids: vec!["bob".to_owned()],
            replies: vec![reply("alice", b"reply 2"), reply("", b"unroutable")],
            meta: vec![("counter".to_owned(), b"2".to_vec())],
            states: Vec::new(),
        })
        .unwrap_err();
    assert!(matches!(error, StoreError::Database { action: "recording a correlation id", .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");

    let check = |store: &SqliteStore| {
        assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 1"[..]));
        assert_eq!(bytes_of(&store.self_mail().unwrap()), [b"mail 1"]);
        assert_eq!(store.replies("alice", 10).unwrap().len(), 1);
        assert!(!store.has_correlation_id("bob").unwrap());
        assert_eq!(store.get_meta("counter").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.queue_depth().unwrap(), 1);
    };
    check(&store);
    // The store is still usable after the failure.
    store.commit(&Batch { replies: vec![reply("alice", b"reply 3")], ..Batch::default() }).unwrap();
    store.acknowledge("alice", &[store.replies("alice", 10).unwrap()[1].id]).unwrap();
    drop(store);
    check(&SqliteStore::open(&path).unwrap());
}

#[test]
fn data_survives_close_and_reopen() {
    let (_dir, path) = temp_store();
    let ids = {
        let mut store = SqliteStore::open(&path).unwrap();
        store.put_meta("instance", b"one").unwrap();
        store
            .commit(&Batch {
                sealed_state: Some(b"state".to_vec()),
                self_mail: vec![b"m1".to_vec(), b"m2".to_vec()],
                replies: vec![reply("alice", b"r1")],
                ..Batch::default()
            })
            .unwrap()
    };
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state"[..]));
    assert_eq!(bytes_of(&store.self_mail().unwrap()), [b"m1", b"m2"]);
    assert_eq!(store.replies("alice", 10).unwrap()[0].id, ids[0]);
    assert!(store.has_correlation_id("alice").unwrap());
    assert_eq!(store.get_meta("instance").unwrap().as_deref(), Some(&b"one"[..]));
    // Ids keep counting across reopens.
    let later = store.commit(&Batch { replies: vec![reply("alice", b"r2")], ..Batch::default() }).unwrap();
    assert!(later[0] > ids[0]);
}

#[test]
fn replacing_the_state_for_a_rollback_test_works() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.replace_sealed_state_for_testing_only(b"old", 0).unwrap();
    store.commit(&Batch { sealed_state: Some(b"new".to_vec()), states: vec![link(1)], ..Batch::default() }).unwrap();
    store.replace_sealed_state_for_testing_only(b"old", 0).unwrap();
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(store.state_counter().unwrap(), 0);
    // After the rollback the next state is 1 again, and its link replaces the old one.
    let again = ChainEntry { nonce: [9; 16], ..link(1) };
    store.commit(&Batch { sealed_state: Some(b"other".to_vec()), states: vec![again], ..Batch::default() }).unwrap();
    assert_eq!(store.chain(1, 1).unwrap(), vec![again]);
}

fn link(counter: u64) -> ChainEntry {
    ChainEntry { counter, state_id: [counter as u8; 32], nonce: [1; 16] }
}

#[test]
fn states_must_follow_the_stored_one_and_their_links_are_kept() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let batch = |states: Vec<ChainEntry>| Batch { sealed_state: Some(b"s".to_vec()), states, ..Batch::default() };
    store.commit(&batch(vec![link(1)])).unwrap();
    store.commit(&batch(vec![link(2), link(3)])).unwrap();
    assert_eq!(store.state_counter().unwrap(), 3);
    assert_eq!(store.chain(2, 10).unwrap(), vec![link(2), link(3)]);
    // A state that does not follow (another writer, or a stale enclave) is refused, whole.
    for wrong in [3, 5, 1] {
        let error = store.commit(&Batch { replies: vec![reply("a", b"x")], ..batch(vec![link(wrong)]) }).unwrap_err();
        assert!(matches!(error, StoreError::Conflict { stored: 3, found, .. } if found == wrong), "{error:?}");
    }
    assert!(store.replies("a", 10).unwrap().is_empty());
    assert_eq!(store.state_counter().unwrap(), 3);
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

fn now_unix() -> i64 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    i64::try_from(seconds).unwrap()
}

#[test]
fn idle_correlation_ids_with_empty_queues_are_pruned_by_the_given_clock() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let ids = store
        .commit(&Batch {
            correlation_ids: vec!["empty".to_owned()],
            replies: vec![reply("waiting", b"not yet acknowledged"), reply("acked", b"done")],
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(store.acknowledge("acked", &[ids[1]]).unwrap(), 1);
    let day = 24 * 3600;
    // Not idle for a day yet: nothing goes.
    assert_eq!(store.prune_correlation_ids(now_unix(), day).unwrap(), 0);
    // A day and a bit later: the two empty ids go, the one with a reply stays.
    assert_eq!(store.prune_correlation_ids(now_unix() + day + 10, day).unwrap(), 2);
    assert!(!store.has_correlation_id("empty").unwrap());
    assert!(!store.has_correlation_id("acked").unwrap());
    assert!(store.has_correlation_id("waiting").unwrap());
    assert_eq!(store.correlation_id_count().unwrap(), 1);
    // A later delivery refreshes the id's activity: it survives the next prune.
    store.commit(&Batch { correlation_ids: vec!["waiting".to_owned()], ..Batch::default() }).unwrap();
    store.acknowledge("waiting", &[ids[0]]).unwrap();
    assert_eq!(store.prune_correlation_ids(now_unix() + 10, day).unwrap(), 0);
    // Reply ids are never reused after pruning.
    let next = store.commit(&Batch { replies: vec![reply("acked", b"again")], ..Batch::default() }).unwrap();
    assert!(next[0] > ids[1]);
}

#[test]
fn a_reader_sees_committed_replies_and_acknowledges_them() {
    let (_dir, path) = temp_store();
    let mut store = SqliteStore::open(&path).unwrap();
    let mut reader = store.open_reader().unwrap().expect("a file store has readers");
    assert!(SqliteStore::open_in_memory().unwrap().open_reader().unwrap().is_none());
    let ids = store.commit(&Batch { replies: vec![reply("c", b"r1"), reply("c", b"r2")], ..Batch::default() }).unwrap();
    assert!(reader.has_correlation_id("c").unwrap());
    assert_eq!(reader.replies("c", 10).unwrap().len(), 2);
    assert_eq!(reader.acknowledge("c", &[ids[0]]).unwrap(), 1);
    assert_eq!(reader.queue_depth().unwrap(), 1);
    // The owner sees the reader's acknowledgement, and keeps committing.
    assert_eq!(store.queue_len("c").unwrap(), 1);
    store.commit(&Batch { replies: vec![reply("c", b"r3")], ..Batch::default() }).unwrap();
    assert_eq!(reader.replies("c", 10).unwrap().len(), 2);
}
