//! The web host under slow, stalled and greedy clients: every attack opens
//! raw sockets against a host with short configured timeouts, and a normal
//! client must keep getting its mail through while they are open. Nothing
//! here asserts how long anything took; the timeouts only have to fire.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use conclave_examples::reverse::ReverseEnclave;
use conclave_host::{EnclaveHost, HostService, ServiceConfig, store::SqliteStore, web::WebConfig};
use conclave_test_support::web::{
    Answer, BlockedWorker, Gate, Party, WebHost, ack, agent, answer, get, poll, post_mail, wait_for,
};

fn reverse_in_memory() -> HostService {
    HostService::in_memory(EnclaveHost::load_mock_restartable::<ReverseEnclave>()).unwrap()
}

/// A service on a store in a file, so polls and acknowledgements use reader connections.
fn on_disk(host: EnclaveHost, dir: &tempfile::TempDir) -> HostService {
    let store = SqliteStore::open(&dir.path().join("host.db")).unwrap();
    HostService::new(host, store, ServiceConfig::new([3u8; 32])).unwrap()
}

/// Short timeouts, so the tests see them fire.
fn short() -> WebConfig {
    WebConfig::default()
        .with_header_timeout(Duration::from_millis(400))
        .with_body_timeout(Duration::from_millis(400))
        .with_idle_timeout(Duration::from_millis(400))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
}

/// Reads whatever the server sends until it closes the connection (or resets it).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Reads one response head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn metric(host: &WebHost, line_start: &str) -> u64 {
    let text = String::from_utf8(get(host, "/metrics").body).unwrap();
    text.lines().find_map(|l| l.strip_prefix(line_start).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
}

/// Sends `count` mails from a fresh party and returns how many got 200.
fn normal_mails(host: &WebHost, count: usize) -> usize {
    let mut party = Party::new(host, "normal");
    (0..count)
        .filter(|i| {
            let answer = post_mail(host, Some("normal-client"), &party.mail(format!("mail {i}").as_bytes()));
            answer.status == 200
        })
        .count()
}

#[test]
fn stalled_and_trickling_uploads_neither_hold_slots_nor_outlive_the_body_timeout() {
    // Four queue slots: the old host let five stalled uploads take every
    // admission slot and refuse all mail while they stayed open.
    // The uploads stay open while the normal client sends, then time out.
    let config = short().with_queue_capacity(4).with_body_timeout(Duration::from_millis(1500));
    let host = WebHost::start(reverse_in_memory(), config);
    let head = |id: usize| {
        format!("POST /v1/mail HTTP/1.1\r\nHost: x\r\nCorrelation-ID: attacker-{id}\r\nContent-Length: 100000\r\n\r\n")
    };
    let mut stalled: Vec<TcpStream> = (0..30)
        .map(|id| {
            let mut stream = connect(host.addr);
            stream.write_all(head(id).as_bytes()).unwrap();
            stream.write_all(b"0123456789").unwrap();
            stream
        })
        .collect();
    let tricklers: Vec<_> = (30..50)
        .map(|id| {
            let mut stream = connect(host.addr);
            stream.write_all(head(id).as_bytes()).unwrap();
            std::thread::spawn(move || {
                // One byte every 20 ms until the host cuts it off.
                while stream.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                read_to_close(&mut stream)
            })
        })
        .collect();

    assert_eq!(normal_mails(&host, 20), 20, "a normal client's mail was refused while uploads stalled");

    for stream in &mut stalled {
        let answer = read_to_close(stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "a stalled upload got {answer:?}");
        assert!(answer.contains("BODY_TIMEOUT"), "{answer}");
    }
    for trickler in tricklers {
        let answer = trickler.join().unwrap();
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "a trickling upload got {answer:?}");
    }
    assert!(metric(&host, "conclave_timeouts_total{cause=\"body\"}") >= 50);
    // Their bytes were given back.
    wait_for("the body budget to be free", || metric(&host, "conclave_body_bytes_held") == 0);
}

#[test]
fn slowloris_heads_and_silent_connections_are_closed_at_the_header_timeout() {
    let host = WebHost::start(reverse_in_memory(), short().with_idle_timeout(Duration::from_secs(60)));
    let mut slow: Vec<TcpStream> = (0..60)
        .map(|i| {
            let mut stream = connect(host.addr);
            if i % 2 == 0 {
                // Half send the start of a head and never finish it; half send nothing.
                stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            }
            stream
        })
        .collect();
    assert_eq!(normal_mails(&host, 10), 10);
    for stream in &mut slow {
        assert_eq!(read_to_close(stream), "", "a slow head got an answer");
    }
    assert!(metric(&host, "conclave_timeouts_total{cause=\"header\"}") >= 60);
}

#[test]
fn idle_kept_alive_connections_are_closed_after_the_idle_timeout() {
    let config = short().with_header_timeout(Duration::from_secs(60)).with_idle_timeout(Duration::from_millis(300));
    let host = WebHost::start(reverse_in_memory(), config);
    let mut stream = connect(host.addr);
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_head(&mut stream).starts_with("HTTP/1.1 200"));
    // The rest is the JSON body, then the close.
    read_to_close(&mut stream);
    assert_eq!(metric(&host, "conclave_timeouts_total{cause=\"idle\"}"), 1);
    assert_eq!(metric(&host, "conclave_timeouts_total{cause=\"header\"}"), 0);
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once_and_health_says_so() {
    let config = WebConfig::default().with_max_connections(5);
    let host = WebHost::start(reverse_in_memory(), config);
    let mut held: Vec<TcpStream> = (0..5).map(|_| connect(host.addr)).collect();
    wait_for("five open connections", || {
        let mut probe = connect(host.addr);
        // Refused at once while five are open: the probe reads a close.
        probe.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_ok()
            && read_to_close(&mut probe).is_empty()
    });
    assert!(metric_after_freeing_one(&host, &mut held) >= 1);
    let health = get(&host, "/v1/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["reasons"].as_array().unwrap().contains(&"connections_at_cap".into()), "{health}");
    assert_eq!(health["connections_limit"], 5);
}

/// Closes one held connection so a metrics request can get in, then reads the refusals.
fn metric_after_freeing_one(host: &WebHost, held: &mut Vec<TcpStream>) -> u64 {
    drop(held.pop());
    let mut refused = 0;
    wait_for("a free connection slot", || {
        let text = agent().get(host.url("/metrics")).call().ok().map(|r| answer(Ok(r)));
        match text {
            Some(Answer { status: 200, body, .. }) => {
                let text = String::from_utf8(body).unwrap();
                refused = text
                    .lines()
                    .find_map(|l| l.strip_prefix("conclave_refused_total{cause=\"connection_cap\"} "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                true
            }
            _ => false,
        }
    });
    refused
}

#[test]
fn an_oversize_content_length_is_refused_before_the_body_is_read() {
    let host = WebHost::start(reverse_in_memory(), WebConfig::default().with_max_body_bytes(64 * 1024));
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = connect(host.addr);
        let head = format!(
            "POST /v1/mail HTTP/1.1\r\nHost: x\r\nCorrelation-ID: big\r\nContent-Length: 1073741824\r\n{expect}\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        // Not a byte of the gigabyte is sent: the answer comes from the head alone.
        let answer = read_head(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 413"), "{expect:?}: {answer}");
    }
    assert_eq!(metric(&host, "conclave_refused_total{cause=\"payload_too_large\"}"), 2);
}

#[test]
fn acknowledgement_bodies_have_their_own_small_limit() {
    let host = WebHost::start(reverse_in_memory(), WebConfig::default());
    let mut party = Party::new(&host, "t");
    assert_eq!(post_mail(&host, Some("acker"), &party.mail(b"hi")).status, 200);
    let huge = format!("{{\"ids\": [{}1]}}", "1, ".repeat(30_000));
    assert!(huge.len() > 64 * 1024);
    let answer = answer(agent().post(host.url("/v1/mail/acker/ack")).send(huge.as_bytes()));
    answer.assert_error(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(ack(&host, "acker", &[1]).status, 200);
}

#[test]
fn a_large_upload_refused_as_busy_still_reads_its_503() {
    let (gate, entered, release) = Gate::new();
    let config = WebConfig::default().with_queue_capacity(1);
    let host = WebHost::start(HostService::in_memory(EnclaveHost::load_mock(gate)).unwrap(), config);
    let worker = BlockedWorker::start(&host, &entered, release);

    // 3 MiB without `Expect: 100-continue`: the host answers before reading
    // the body and keeps reading it, so the client's write completes and it
    // reads the 503, not a broken pipe.
    let mail = vec![0x5a; 3 * 1024 * 1024];
    let refused = agent().post(host.url("/v1/mail")).header("Correlation-ID", "big").send(&mail[..]);
    let refused = answer(refused);
    refused.assert_error(503, "BUSY");
    assert_eq!(refused.header("retry-after"), Some("1"));

    assert_eq!(worker.release(), (200, 200));
}

#[test]
fn polls_and_acknowledgements_do_not_wait_behind_mail() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, entered, release) = Gate::new();
    let service = on_disk(EnclaveHost::load_mock(gate), &dir);
    let host = WebHost::start(service, WebConfig::default().with_queue_capacity(1));
    let mut reader = Party::new(&host, "t");
    // One mail gets through and leaves a reply queued.
    release.send(()).unwrap();
    let first = post_mail(&host, Some("reader"), &reader.mail(b"queued reply"));
    assert_eq!(first.status, 200);
    entered.recv().unwrap();
    let id: u64 = first.header("reply-id").unwrap().parse().unwrap();

    // Now the worker blocks in the enclave and its queue is full.
    let worker = BlockedWorker::start(&host, &entered, release);

    // Polls, acknowledgements and unknown ids answer all the same.
    assert_eq!(poll(&host, "reader"), vec![(id, first.body.clone())]);
    assert_eq!(reader.open(&poll(&host, "reader")[0].1), b"queued reply");
    get(&host, "/v1/mail/never-seen").assert_error(404, "UNKNOWN_CORRELATION_ID");
    assert_eq!(ack(&host, "reader", &[id]).json()["deleted"], 1);
    assert!(poll(&host, "reader").is_empty());
    assert_eq!(get(&host, "/v1/health").json()["stored_replies"], 0);
    assert_eq!(worker.release(), (200, 200));
}

#[test]
fn the_reply_store_bound_refuses_mail_before_delivery_and_loses_nothing() {
    let host = WebHost::start(reverse_in_memory(), WebConfig::default().with_max_stored_replies(3));
    let mut party = Party::new(&host, "t");
    // Each mail under a new correlation id leaves one reply queued: the
    // per-id bound never triggers, the global one does.
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            let answer = post_mail(&host, Some(&format!("id-{i}")), &party.mail(b"x"));
            assert_eq!(answer.status, 200);
            answer.header("reply-id").unwrap().parse().unwrap()
        })
        .collect();
    let fourth = party.mail(b"fourth");
    let refused = post_mail(&host, Some("id-3"), &fourth);
    refused.assert_error(507, "REPLY_STORE_FULL");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let health = get(&host, "/v1/health").json();
    assert!(health["reasons"].as_array().unwrap().contains(&"reply_store_full".into()), "{health}");

    // Nothing was delivered: once a reply is acknowledged, the same bytes go through.
    assert_eq!(ack(&host, "id-0", &[ids[0]]).json()["deleted"], 1);
    let delivered = post_mail(&host, Some("id-3"), &fourth);
    assert_eq!(delivered.status, 200, "{}", String::from_utf8_lossy(&delivered.body));
    assert_eq!(party.open(&delivered.body), b"htruof");
}

#[test]
fn idle_correlation_ids_with_empty_queues_are_forgotten() {
    let config = WebConfig::default().with_correlation_id_pruning(Duration::ZERO, Duration::from_millis(50));
    let host = WebHost::start(reverse_in_memory(), config);
    let mut party = Party::new(&host, "t");
    let kept = post_mail(&host, Some("kept"), &party.mail(b"stays queued"));
    assert_eq!(kept.status, 200);
    let gone = post_mail(&host, Some("gone"), &party.mail(b"acknowledged"));
    assert_eq!(ack(&host, "gone", &[gone.header("reply-id").unwrap().parse().unwrap()]).status, 200);
    // "gone" has an empty queue and is idle: it is forgotten once a second
    // has passed; "kept" still has a reply and is kept.
    wait_for("the idle id to be pruned", || get(&host, "/v1/mail/gone").status == 404);
    assert_eq!(poll(&host, "kept").len(), 1);
    assert!(metric(&host, "conclave_correlation_ids_pruned_total") >= 1);
}

#[test]
fn health_returns_to_ok_once_the_window_has_passed() {
    let (gate, entered, release) = Gate::new();
    let config = WebConfig::default().with_queue_capacity(1).with_health_window(Duration::from_millis(200));
    let host = WebHost::start(HostService::in_memory(EnclaveHost::load_mock(gate)).unwrap(), config);
    let worker = BlockedWorker::start(&host, &entered, release);
    post_mail(&host, Some("c"), &Party::new(&host, "t").mail(b"m")).assert_error(503, "BUSY");
    assert_eq!(get(&host, "/v1/health").json()["status"], "degraded");
    assert_eq!(worker.release(), (200, 200));
    wait_for("health to recover", || get(&host, "/v1/health").json()["status"] == "ok");
}

#[test]
fn a_poll_answer_is_bounded_in_bytes_and_the_rest_follows() {
    let dir = tempfile::tempdir().unwrap();
    let service = on_disk(EnclaveHost::load_mock_restartable::<ReverseEnclave>(), &dir);
    let host = WebHost::start(service, WebConfig::default().with_poll_max_bytes(120_000));
    let mut party = Party::new(&host, "t");
    for _ in 0..5 {
        assert_eq!(post_mail(&host, Some("big"), &party.mail(&[7u8; 50_000])).status, 200);
    }
    let mut seen = 0;
    while seen < 5 {
        let batch = poll(&host, "big");
        let bytes: usize = batch.iter().map(|(_, mail)| mail.len()).sum();
        assert!(!batch.is_empty() && batch.len() < 5, "{} replies in one poll", batch.len());
        assert!(batch.len() == 1 || bytes <= 120_000, "{bytes} bytes in one poll");
        seen += batch.len();
        let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
        assert_eq!(ack(&host, "big", &ids).json()["deleted"], ids.len());
    }
    assert!(poll(&host, "big").is_empty());
    wait_for("the poll answers' budget to be given back", || metric(&host, "conclave_body_bytes_held") == 0);
}

#[test]
fn failing_commits_make_health_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let service = on_disk(EnclaveHost::load_mock_restartable::<ReverseEnclave>(), &dir);
    let host = WebHost::start(service, WebConfig::default());
    let mut party = Party::new(&host, "t");
    assert_eq!(post_mail(&host, Some("c"), &party.mail(b"fine")).status, 200);
    assert_eq!(get(&host, "/v1/health").json()["status"], "ok");

    // Another connection holds the store's write lock a little longer than
    // the host's busy timeout (5 s): the next commit fails, and nothing of it
    // is kept. (The service retries its restart until the lock is gone.)
    let path = dir.path().join("host.db");
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let blocker = std::thread::spawn(move || {
        let blocker = rusqlite::Connection::open(path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        blocker.execute_batch("ROLLBACK").unwrap();
    });
    locked.recv().unwrap();
    let slow: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mail = party.mail(b"not committed");
    let refused = answer(slow.post(host.url("/v1/mail")).header("Correlation-ID", "c").send(&mail[..]));
    refused.assert_error(503, "STORE_FAILED");
    assert!(refused.header("retry-after").is_some(), "a failed commit says when to retry");
    blocker.join().unwrap();
    let health = get(&host, "/v1/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["reasons"].as_array().unwrap().contains(&"commits_failing".into()), "{health}");
    // Nothing of the failed call was kept, so the same mail goes through now.
    assert_eq!(post_mail(&host, Some("c"), &mail).status, 200);
}
