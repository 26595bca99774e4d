//! The PSI enclave in mock mode: an in-process host, one client per party.

use conclave_client::EnclaveClient;
use conclave_examples::psi::{self, PsiEnclave, Response};
use conclave_host::{EnclaveHost, LocalRelayHandle};

const TOPIC: &str = "psi";

/// One party: its client and every reply body it ever received.
struct Party {
    client: EnclaveClient<LocalRelayHandle>,
    received: Vec<Vec<u8>>,
}

impl Party {
    fn join(relay: &LocalRelayHandle) -> Self {
        Self { client: conclave_test_support::mock_client::<PsiEnclave>(relay), received: Vec::new() }
    }

    /// Sends `body` and returns the enclave's direct reply.
    fn send(&mut self, body: &[u8]) -> Response {
        let reply = self.client.send_mail(TOPIC, body).unwrap().expect("the enclave answers every mail at once");
        assert_eq!(reply.topic, TOPIC);
        self.received.push(reply.body.clone());
        Response::parse(&reply.body).unwrap()
    }

    fn submit(&mut self, items: &[&str]) -> Response {
        self.send(&psi::submit(items).unwrap())
    }

    /// Sends `body` and returns the error message the enclave answered with.
    fn send_refused(&mut self, body: &[u8]) -> String {
        match self.send(body) {
            Response::Error { message } => message,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    /// Fetches queued replies.
    fn poll(&mut self) -> Vec<Response> {
        let replies = self.client.poll_mail().unwrap();
        replies
            .into_iter()
            .map(|reply| {
                assert_eq!(reply.topic, TOPIC);
                self.received.push(reply.body.clone());
                Response::parse(&reply.body).unwrap()
            })
            .collect()
    }

    /// Whether `needle` appears in any reply this party received.
    fn saw(&self, needle: &str) -> bool {
        self.received.iter().any(|body| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

fn relay() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock(PsiEnclave::default())).unwrap()
}

fn done(relay: &LocalRelayHandle) -> bool {
    relay.lock().host_mut().mock_enclave::<PsiEnclave>().unwrap().is_done()
}

fn intersection(items: &[&str]) -> Response {
    Response::Intersection { items: items.iter().map(|s| s.to_string()).collect() }
}

#[test]
fn both_parties_learn_the_intersection_and_nothing_else() {
    let relay = relay();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    assert_eq!(alice.submit(&["zebra@x", "alice-only-1", "apple@x", "alice-only-2", "mango@x"]), Response::Waiting);
    assert!(alice.poll().is_empty());
    assert!(!done(&relay));
    let expected = intersection(&["apple@x", "mango@x", "zebra@x"]);
    assert_eq!(bob.submit(&["mango@x", "bob-only-1", "zebra@x", "apple@x", "mango@x"]), expected);
    assert!(done(&relay));
    assert_eq!(alice.poll(), vec![expected]);
    assert!(bob.poll().is_empty());

    for secret in ["alice-only-1", "alice-only-2"] {
        assert!(!bob.saw(secret), "bob saw {secret}");
    }
    assert!(!alice.saw("bob-only-1"));
    // Both results are byte for byte the same: they depend on nothing but the intersection.
    assert_eq!(alice.received.last(), bob.received.last());
}

#[test]
fn an_empty_intersection_and_empty_sets_are_fine() {
    let relay = relay();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    assert_eq!(alice.submit(&[]), Response::Waiting);
    assert_eq!(bob.submit(&["a", "b"]), intersection(&[]));
    assert_eq!(alice.poll(), vec![intersection(&[])]);
    assert!(!alice.saw("\"a\"") && !alice.saw("\"b\""));
}

#[test]
fn the_first_party_may_replace_its_set_until_the_second_submits() {
    let relay = relay();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    assert_eq!(alice.submit(&["old-1", "shared"]), Response::Waiting);
    assert_eq!(alice.submit(&["new-1", "shared"]), Response::Waiting);
    assert_eq!(bob.submit(&["old-1", "new-1", "shared"]), intersection(&["new-1", "shared"]));
    assert_eq!(alice.poll(), vec![intersection(&["new-1", "shared"])]);
}

#[test]
fn a_third_party_and_resubmissions_after_the_result_are_refused() {
    let relay = relay();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    let mut carol = Party::join(&relay);
    alice.submit(&["x", "alice-secret"]);
    bob.submit(&["x", "bob-secret"]);

    // A third party is refused whatever it sends, even garbage, and learns nothing.
    for body in [psi::submit(&["x", "alice-secret"]).unwrap(), b"junk".to_vec()] {
        let refused = carol.send_refused(&body);
        assert!(refused.contains("already has two parties"), "{refused}");
    }
    assert!(carol.poll().is_empty());
    assert!(!carol.saw("\"x\"") && !carol.saw("alice-secret"));

    // The parties cannot probe with a second set.
    for party in [&mut alice, &mut bob] {
        let refused = party.send_refused(&psi::submit(&["alice-secret", "bob-secret"]).unwrap());
        assert!(refused.contains("cannot be resubmitted"), "{refused}");
    }
    assert!(!bob.saw("alice-secret") && !alice.saw("bob-secret"));
    assert_eq!(alice.poll(), vec![intersection(&["x"])]);
}

#[test]
fn bad_input_gets_an_error_reply_that_says_what_is_wrong() {
    let relay = relay();
    let mut alice = Party::join(&relay);
    let long_item = "y".repeat(psi::MAX_ITEM_LEN + 1);
    let many: Vec<String> = (0..=psi::MAX_ITEMS).map(|i| i.to_string()).collect();
    let too_many = format!(r#"{{"v":1,"kind":"submit","items":{}}}"#, serde_json::to_string(&many).unwrap());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{".to_vec(), "not JSON"),
        (b"42".to_vec(), "JSON object"),
        (br#"{"kind":"submit","items":[]}"#.to_vec(), "no version"),
        (br#"{"v":0,"kind":"submit","items":[]}"#.to_vec(), "unsupported version 0"),
        (br#"{"v":1,"kind":"peek"}"#.to_vec(), "unknown variant"),
        (br#"{"v":1,"kind":"submit"}"#.to_vec(), "missing field `items`"),
        (br#"{"v":1,"kind":"submit","items":[1,2]}"#.to_vec(), "malformed message"),
        (br#"{"v":1,"kind":"submit","items":"abc"}"#.to_vec(), "malformed message"),
        (format!(r#"{{"v":1,"kind":"submit","items":["ok","{long_item}"]}}"#).into_bytes(), "item 1 is longer than"),
        (too_many.into_bytes(), "too many items"),
    ];
    for (body, expected) in cases {
        let message = alice.send_refused(&body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        assert!(message.contains(expected), "{shown:?}: {message:?} lacks {expected:?}");
    }
    // None of it made Alice a party: Bob and Carol are the two parties now.
    let mut bob = Party::join(&relay);
    let mut carol = Party::join(&relay);
    assert_eq!(bob.submit(&["k"]), Response::Waiting);
    assert_eq!(carol.submit(&["k", "j"]), intersection(&["k"]));
    assert!(alice.send_refused(&psi::submit(&["k"]).unwrap()).contains("already has two parties"));

    // The client helper checks before sending.
    assert!(psi::submit(&[long_item.as_str()]).unwrap_err().to_string().contains("longer than"));
}

#[test]
fn the_helpers_build_what_the_enclave_parses() {
    assert_eq!(psi::submit(&["a", "b"]).unwrap(), br#"{"v":1,"kind":"submit","items":["a","b"]}"#);
    assert_eq!(Response::Waiting.to_body(), br#"{"v":1,"kind":"waiting"}"#);
    let result = intersection(&["a"]);
    assert_eq!(Response::parse(&result.to_body()).unwrap(), result);
    let debug = format!("{:?}", PsiEnclave::default());
    assert!(debug.contains("done: false"), "{debug}");
}
