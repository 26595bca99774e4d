//! What every store backend does, checked on both: SQLite (a file) and
//! PostgreSQL (a throwaway cluster; skipped loudly when PostgreSQL is not
//! installed, unless `CONCLAVE_REQUIRE_POSTGRES=1`). Then what only a store
//! shared by several hosts does: its call lock orders calls from several
//! connections, a host that dies holding it loses nothing, concurrent first
//! starts migrate once, and a lost connection is made again.

use std::sync::mpsc;

use conclave_host::store::{
    Batch, ChainEntry, MAX_CORRELATION_ID_LEN, POSTGRES_SCHEMA_VERSION, PostgresStore, SqliteStore, Store, StoreError,
};
use conclave_test_support::postgres::TempPostgres;

/// A place a store lives, opened as often as a check needs.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn open(&self) -> Box<dyn Store> {
        match self {
            Self::Sqlite(dir) => Box::new(SqliteStore::open(&dir.path().join("host.db")).unwrap()),
            Self::Postgres(url) => Box::new(PostgresStore::open(url).unwrap()),
        }
    }
}

type Check = fn(&mut dyn Store);
type BackendCheck = fn(&Backend);

const CHECKS: &[(&str, Check)] = &[
    ("a_committed_batch_reads_back", a_committed_batch_reads_back),
    ("a_batch_without_state_keeps_the_previous_state", a_batch_without_state_keeps_the_previous_state),
    ("self_mail_keeps_its_order_and_is_deleted_by_id", self_mail_keeps_its_order_and_is_deleted_by_id),
    (
        "replies_queue_per_correlation_id_and_acknowledge_deletes_only_that_ids_mail",
        replies_queue_per_correlation_id_and_acknowledge_deletes_only_that_ids_mail,
    ),
    ("correlation_ids_are_known_once_recorded_and_stay_known", correlation_ids_are_known_once_recorded_and_stay_known),
    ("correlation_ids_are_bounded", correlation_ids_are_bounded),
    ("replacing_the_state_for_a_rollback_test_works", replacing_the_state_for_a_rollback_test_works),
    (
        "states_must_follow_the_stored_one_and_their_links_are_kept",
        states_must_follow_the_stored_one_and_their_links_are_kept,
    ),
    (
        "idle_correlation_ids_with_empty_queues_are_pruned_by_the_given_clock",
        idle_correlation_ids_with_empty_queues_are_pruned_by_the_given_clock,
    ),
    ("replies_within_a_byte_budget_always_return_the_first", replies_within_a_byte_budget_always_return_the_first),
];

const BACKEND_CHECKS: &[(&str, BackendCheck)] = &[
    ("a_failed_batch_leaves_nothing", a_failed_batch_leaves_nothing),
    ("data_survives_close_and_reopen", data_survives_close_and_reopen),
    ("a_reader_sees_committed_replies_and_acknowledges_them", a_reader_sees_committed_replies_and_acknowledges_them),
];

#[test]
fn the_contract_holds_on_sqlite() {
    for (name, check) in CHECKS {
        eprintln!("sqlite: {name}");
        let backend = Backend::Sqlite(tempfile::tempdir().unwrap());
        check(backend.open().as_mut());
    }
    for (name, check) in BACKEND_CHECKS {
        eprintln!("sqlite: {name}");
        check(&Backend::Sqlite(tempfile::tempdir().unwrap()));
    }
}

#[test]
fn the_contract_holds_on_postgres() {
    let Some(pg) = TempPostgres::start() else { return };
    for (name, check) in CHECKS {
        eprintln!("postgres: {name}");
        let backend = Backend::Postgres(pg.database(&short(name)));
        check(backend.open().as_mut());
    }
    for (name, check) in BACKEND_CHECKS {
        eprintln!("postgres: {name}");
        check(&Backend::Postgres(pg.database(&short(name))));
    }
}

/// A database name from a check's name (PostgreSQL names stop at 63 bytes).
fn short(name: &str) -> String {
    name.chars().take(60).collect()
}

fn reply(correlation_id: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    (correlation_id.to_owned(), bytes.to_vec())
}

fn bytes_of(mail: &[(u64, Vec<u8>)]) -> Vec<&[u8]> {
    mail.iter().map(|(_, bytes)| bytes.as_slice()).collect()
}

fn link(counter: u64) -> ChainEntry {
    ChainEntry { counter, state_id: [counter as u8; 32], nonce: [1; 16] }
}

fn now_unix() -> i64 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    i64::try_from(seconds).unwrap()
}

fn a_committed_batch_reads_back(store: &mut dyn Store) {
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

fn a_batch_without_state_keeps_the_previous_state(store: &mut dyn Store) {
    store.commit(&Batch { sealed_state: Some(b"state 1".to_vec()), ..Batch::default() }).unwrap();
    store.commit(&Batch { replies: vec![reply("alice", b"r")], ..Batch::default() }).unwrap();
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 1"[..]));
    store.commit(&Batch { sealed_state: Some(b"state 2".to_vec()), ..Batch::default() }).unwrap();
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 2"[..]));
}

fn self_mail_keeps_its_order_and_is_deleted_by_id(store: &mut dyn Store) {
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

fn replies_queue_per_correlation_id_and_acknowledge_deletes_only_that_ids_mail(store: &mut dyn Store) {
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

fn correlation_ids_are_known_once_recorded_and_stay_known(store: &mut dyn Store) {
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

fn correlation_ids_are_bounded(store: &mut dyn Store) {
    let longest = "x".repeat(MAX_CORRELATION_ID_LEN);
    store.record_correlation_id(&longest).unwrap();
    assert!(store.record_correlation_id(&format!("{longest}x")).is_err());
    assert!(store.record_correlation_id("").is_err());
    // The bound counts bytes, not characters.
    assert!(store.record_correlation_id(&"é".repeat(MAX_CORRELATION_ID_LEN / 2 + 1)).is_err());
}

fn replacing_the_state_for_a_rollback_test_works(store: &mut dyn Store) {
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

fn states_must_follow_the_stored_one_and_their_links_are_kept(store: &mut dyn Store) {
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

fn idle_correlation_ids_with_empty_queues_are_pruned_by_the_given_clock(store: &mut dyn Store) {
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

fn replies_within_a_byte_budget_always_return_the_first(store: &mut dyn Store) {
    let big = vec![7u8; 1000];
    store
        .commit(&Batch { replies: vec![reply("c", &big), reply("c", &big), reply("c", b"s")], ..Batch::default() })
        .unwrap();
    // A budget smaller than the first reply still returns it: a large reply is never stuck.
    assert_eq!(store.replies_within("c", 10, 10).unwrap().len(), 1);
    assert_eq!(store.replies_within("c", 10, 1999).unwrap().len(), 1);
    assert_eq!(store.replies_within("c", 10, 2000).unwrap().len(), 2);
    assert_eq!(store.replies_within("c", 10, 2001).unwrap().len(), 3);
    assert_eq!(store.replies_within("c", 2, usize::MAX).unwrap().len(), 2);
}

/// A batch that fails halfway (its last reply has an empty correlation id,
/// which the schema refuses) leaves no trace, also after a reopen.
fn a_failed_batch_leaves_nothing(backend: &Backend) {
    let mut store = backend.open();
    store
        .commit(&Batch {
            sealed_state: Some(b"state 1".to_vec()),
            states: vec![link(1)],
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
            states: vec![link(2)],
        })
        .unwrap_err();
    assert!(error.to_string().contains("recording a correlation id"), "{error}");
    assert!(error.to_string().contains(&store.describe()), "{error} does not name {}", store.describe());

    let check = |store: &mut dyn Store| {
        assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state 1"[..]));
        assert_eq!(store.state_counter().unwrap(), 1);
        assert_eq!(store.chain(1, 10).unwrap(), vec![link(1)]);
        assert_eq!(bytes_of(&store.self_mail().unwrap()), [b"mail 1"]);
        assert_eq!(store.replies("alice", 10).unwrap().len(), 1);
        assert!(!store.has_correlation_id("bob").unwrap());
        assert_eq!(store.get_meta("counter").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.queue_depth().unwrap(), 1);
    };
    check(store.as_mut());
    // The store is still usable after the failure.
    store.commit(&Batch { replies: vec![reply("alice", b"reply 3")], ..Batch::default() }).unwrap();
    let third = store.replies("alice", 10).unwrap()[1].id;
    store.acknowledge("alice", &[third]).unwrap();
    drop(store);
    check(backend.open().as_mut());
}

fn data_survives_close_and_reopen(backend: &Backend) {
    let ids = {
        let mut store = backend.open();
        store.put_meta("instance", b"one").unwrap();
        store
            .commit(&Batch {
                sealed_state: Some(b"state".to_vec()),
                states: vec![link(1)],
                self_mail: vec![b"m1".to_vec(), b"m2".to_vec()],
                replies: vec![reply("alice", b"r1")],
                ..Batch::default()
            })
            .unwrap()
    };
    let mut store = backend.open();
    assert_eq!(store.sealed_state().unwrap().as_deref(), Some(&b"state"[..]));
    assert_eq!(store.state_counter().unwrap(), 1);
    assert_eq!(bytes_of(&store.self_mail().unwrap()), [b"m1", b"m2"]);
    assert_eq!(store.replies("alice", 10).unwrap()[0].id, ids[0]);
    assert!(store.has_correlation_id("alice").unwrap());
    assert_eq!(store.get_meta("instance").unwrap().as_deref(), Some(&b"one"[..]));
    // Ids keep counting across reopens.
    let later = store.commit(&Batch { replies: vec![reply("alice", b"r2")], ..Batch::default() }).unwrap();
    assert!(later[0] > ids[0]);
}

fn a_reader_sees_committed_replies_and_acknowledges_them(backend: &Backend) {
    let mut store = backend.open();
    let mut reader = store.open_reader().unwrap().expect("a store on disk or on a server has readers");
    let ids = store.commit(&Batch { replies: vec![reply("c", b"r1"), reply("c", b"r2")], ..Batch::default() }).unwrap();
    assert!(reader.has_correlation_id("c").unwrap());
    assert_eq!(reader.replies_within("c", 10, usize::MAX).unwrap().len(), 2);
    assert_eq!(reader.acknowledge("c", &[ids[0]]).unwrap(), 1);
    assert_eq!(reader.queue_depth().unwrap(), 1);
    // The owner sees the reader's acknowledgement, and keeps committing.
    assert_eq!(store.queue_len("c").unwrap(), 1);
    store.commit(&Batch { replies: vec![reply("c", b"r3")], ..Batch::default() }).unwrap();
    assert_eq!(reader.replies_within("c", 10, usize::MAX).unwrap().len(), 2);
}

#[test]
fn a_store_in_memory_has_no_reader() {
    assert!(Store::open_reader(&SqliteStore::open_in_memory().unwrap()).unwrap().is_none());
}

/// Waits (polling PostgreSQL's own view, not a clock) until some backend of
/// the database waits for a lock.
fn wait_for_a_lock_waiter(url: &str) {
    let mut watcher = postgres::Client::connect(url, postgres::NoTls).unwrap();
    for _ in 0..4_000 {
        let waiting: i64 = watcher
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("no connection ever waited for the call lock");
}

#[test]
fn the_call_lock_orders_calls_from_two_hosts() {
    let Some(pg) = TempPostgres::start() else { return };
    let url = pg.database("call_lock");
    let mut a = PostgresStore::open(&url).unwrap();
    let mut b = PostgresStore::open(&url).unwrap();
    assert_eq!(a.begin_call().unwrap(), 0);

    // Host B's call waits for host A's to end, then sees A's state.
    let (began, began_at) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let head = b.begin_call().unwrap();
        began.send(head).unwrap();
        // B's state must follow A's: it commits state 2, not a second state 1.
        b.commit(&Batch { sealed_state: Some(b"b".to_vec()), states: vec![link(head + 1)], ..Batch::default() })
            .unwrap();
        b
    });
    wait_for_a_lock_waiter(&url);
    assert!(began_at.try_recv().is_err(), "host B began a call while host A held the lock");
    a.commit(&Batch { sealed_state: Some(b"a".to_vec()), states: vec![link(1)], ..Batch::default() }).unwrap();
    assert_eq!(began_at.recv().unwrap(), 1, "host B did not see host A's state");
    let mut b = waiter.join().unwrap();
    assert_eq!(b.state_counter().unwrap(), 2);
    assert_eq!(a.sealed_state().unwrap().as_deref(), Some(&b"b"[..]));

    // A commit of a host that did not take the lock, from a stale counter, is refused whole.
    let stale = a.commit(&Batch {
        sealed_state: Some(b"stale".to_vec()),
        states: vec![link(2)],
        replies: vec![reply("x", b"y")],
        ..Batch::default()
    });
    assert!(matches!(stale, Err(StoreError::Conflict { stored: 2, found: 2, .. })), "{stale:?}");
    assert_eq!(a.queue_depth().unwrap(), 0);
}

#[test]
fn a_host_that_dies_holding_the_lock_leaves_nothing_and_frees_it() {
    let Some(pg) = TempPostgres::start() else { return };
    let url = pg.database("dies");
    let mut a = PostgresStore::open(&url).unwrap();
    a.commit(&Batch { sealed_state: Some(b"one".to_vec()), states: vec![link(1)], ..Batch::default() }).unwrap();
    assert_eq!(a.begin_call().unwrap(), 1);
    // A's process dies mid-call: its connection closes and the server rolls its transaction back.
    drop(a);
    let mut b = PostgresStore::open(&url).unwrap();
    assert_eq!(b.begin_call().unwrap(), 1);
    b.commit(&Batch { sealed_state: Some(b"two".to_vec()), states: vec![link(2)], ..Batch::default() }).unwrap();
    assert_eq!(b.sealed_state().unwrap().as_deref(), Some(&b"two"[..]));
}

#[test]
fn hosts_that_start_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(pg) = TempPostgres::start() else { return };
    let url = pg.database("migrate");
    let opened: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&url).map(drop))
        })
        .collect();
    for host in opened {
        host.join().unwrap().unwrap();
    }
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = raw
        .query("SELECT version FROM conclave_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=POSTGRES_SCHEMA_VERSION).collect::<Vec<_>>());

    raw.execute(
        "INSERT INTO conclave_schema (version, applied_unix) VALUES ($1, 0)",
        &[&(POSTGRES_SCHEMA_VERSION + 1)],
    )
    .unwrap();
    let error = PostgresStore::open(&url).unwrap_err();
    assert!(matches!(error, StoreError::NewerSchema { .. }), "{error:?}");
    assert!(error.to_string().contains("upgrade the host"), "{error}");
}

#[test]
fn a_lost_connection_is_made_again_for_the_next_call() {
    let Some(pg) = TempPostgres::start() else { return };
    let url = pg.database("reconnect");
    let mut store = PostgresStore::open(&url).unwrap();
    store.commit(&Batch { sealed_state: Some(b"one".to_vec()), states: vec![link(1)], ..Batch::default() }).unwrap();
    pg.stop();
    let down = Store::begin_call(&mut store).unwrap_err();
    assert!(down.to_string().contains("postgres://postgres@127.0.0.1"), "{down}");
    pg.start_again();
    assert_eq!(Store::begin_call(&mut store).unwrap(), 1);
    Store::abort_call(&mut store);
    assert_eq!(Store::sealed_state(&mut store).unwrap().as_deref(), Some(&b"one"[..]));
}

#[test]
fn passwords_stay_out_of_messages() {
    // Nothing listens on port 1: the connection fails, and the message names the database without its password.
    let error = PostgresStore::open("postgres://someone:hunter2@127.0.0.1:1/db").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("someone:***@127.0.0.1:1/db"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}
