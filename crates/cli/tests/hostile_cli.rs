//! The `conclave` client commands against a hostile host: the attacks on
//! the wire that a user of the command line meets (a lost answer, a swapped
//! reply, lengths), through the hostile proxy in front of a real web host.

use std::process::{Command, Output};

use conclave_client::{EnclaveClient, HttpRelay};
use conclave_test_support::{
    ProbeEnclave,
    hostile::{HostileProxy, PollRule, Rule},
    mock_constraint,
    webhost::WebHost,
};

fn conclave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conclave")).args(args).output().expect("running conclave")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Setup {
    dir: tempfile::TempDir,
    host: WebHost,
    proxy: HostileProxy,
    constraint: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let host = WebHost::start(&dir.path().join("host"));
    let proxy = HostileProxy::start(host.url());
    Setup { dir, host, proxy, constraint: mock_constraint::<ProbeEnclave>().to_string() }
}

impl Setup {
    fn send(&self, topic: &str, body: &str) -> Output {
        let state = self.dir.path().join("client.json");
        conclave(&[
            "send",
            self.proxy.url(),
            "--constraint",
            &self.constraint,
            "--state",
            state.to_str().unwrap(),
            "--topic",
            topic,
            body,
        ])
    }

    /// The enclave's counter, read straight from the host.
    fn peek(&self) -> String {
        let mut client =
            EnclaveClient::new(HttpRelay::new(self.host.url()).unwrap(), mock_constraint::<ProbeEnclave>());
        client.start().unwrap();
        text(&client.send_mail("peek", b"peek").unwrap().unwrap().body)
    }
}

/// Attack 11: the host processes a submission and then looks unreachable;
/// the user runs the same command again. It must be processed once.
#[test]
fn rerunning_send_after_unreachable_processes_the_submission_once() {
    let s = setup();
    s.proxy.next(Rule::ForwardThenDrop);
    let first = s.send("bids", "count");
    assert_eq!(first.status.code(), Some(2), "{}", text(&first.stderr));
    assert!(text(&first.stderr).contains("Run the same command again"), "{}", text(&first.stderr));
    let again = s.send("bids", "count");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), "1", "the retry printed another answer");
    assert!(text(&again.stderr).contains("not a second copy"), "{}", text(&again.stderr));
    assert_eq!(s.peek(), "1", "the submission was processed twice");
}

/// Attack 12: the host withholds the reply to one mail and returns it as
/// the answer to the next: the command must not print it as that answer.
#[test]
fn send_never_prints_the_reply_to_another_mail() {
    let s = setup();
    s.proxy.next(Rule::Withhold);
    s.proxy.control().poll_rules.extend(std::iter::repeat_n(PollRule::Hide, 64));
    let alpha = s.send("a", "alpha");
    assert_eq!(alpha.status.code(), Some(2), "{}", text(&alpha.stderr));
    let withheld = s.proxy.control().kept.pop().expect("the proxy kept alpha's reply");
    s.proxy.next(Rule::ReplaceReply(withheld));
    let bravo = s.send("b", "bravo");
    assert_ne!(text(&bravo.stdout), "alpha", "alpha's reply was printed as bravo's answer");
    if bravo.status.success() {
        assert_eq!(text(&bravo.stdout), "bravo");
    }
}

/// Attack 24: "largest seen" padding must remember across runs of the
/// command, or every mail shows its exact length.
#[test]
fn send_keeps_its_padding_history_across_runs() {
    let s = setup();
    let long = "x".repeat(1000);
    assert!(s.send("t", &long).status.success());
    assert!(s.send("t", "short").status.success());
    let lengths: Vec<usize> = s.proxy.control().deliveries.iter().map(Vec::len).collect();
    assert_eq!(lengths.len(), 2);
    assert!(lengths[1] >= lengths[0], "the short mail showed its length: {lengths:?}");
}

/// The printable checkpoint: what a party compares with the others.
#[test]
fn checkpoint_prints_the_verified_state() {
    let s = setup();
    assert!(s.send("t", "count").status.success());
    let state = s.dir.path().join("client.json");
    let out = conclave(&["checkpoint", "--state", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("checkpoint:") && stdout.contains("replies verified:  1"), "{stdout}");
}
