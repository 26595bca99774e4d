//! The stats enclave in mock mode: an in-process host, one client per party.

use conclave_client::EnclaveClient;
use conclave_examples::stats::{self, Response, StatsEnclave, Summary};
use conclave_host::{EnclaveHost, LocalRelayHandle};

const TOPIC: &str = "stats";

/// One party: its client and every reply body it ever received.
struct Party {
    client: EnclaveClient<LocalRelayHandle>,
    received: Vec<Vec<u8>>,
}

impl Party {
    fn join(relay: &LocalRelayHandle) -> Self {
        Self { client: conclave_test_support::mock_client::<StatsEnclave>(relay), received: Vec::new() }
    }

    /// Sends `body` and returns the enclave's direct reply.
    fn send(&mut self, body: &[u8]) -> Response {
        let reply = self.client.send_mail(TOPIC, body).unwrap().expect("the enclave answers every mail at once");
        assert_eq!(reply.topic, TOPIC);
        self.received.push(reply.body.clone());
        Response::parse(&reply.body).unwrap()
    }

    fn submit(&mut self, values: &[f64]) {
        assert_eq!(self.send(&stats::submit(values).unwrap()), Response::Submitted { count: values.len() });
    }

    /// Sends `body` and returns the error message the enclave answered with.
    fn send_refused(&mut self, body: &[u8]) -> String {
        match self.send(body) {
            Response::Error { message } => message,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    fn compute(&mut self) -> Summary {
        match self.send(&stats::compute()) {
            Response::Result(summary) => summary,
            other => panic!("expected a result, got {other:?}"),
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

    /// The one result waiting for this party.
    fn poll_result(&mut self) -> Summary {
        let results: Vec<_> = self
            .poll()
            .into_iter()
            .filter_map(|r| match r {
                Response::Result(summary) => Some(summary),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1, "exactly one result per party: {results:?}");
        results.into_iter().next().unwrap()
    }

    /// Whether `needle` appears in any reply this party received.
    fn saw(&self, needle: &str) -> bool {
        self.received.iter().any(|body| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

fn relay() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock(StatsEnclave::default())).unwrap()
}

fn released(relay: &LocalRelayHandle) -> bool {
    relay.lock().host_mut().mock_enclave::<StatsEnclave>().unwrap().is_released()
}

#[test]
fn every_party_gets_the_joint_summary_and_nobody_sees_another_s_values() {
    let relay = relay();
    let mut a = Party::join(&relay);
    let mut b = Party::join(&relay);
    let mut c = Party::join(&relay);
    a.submit(&[10.25, 41.125]);
    b.submit(&[-3.5, 77.75, 12.0625]);
    c.submit(&[55.5]);
    for party in [&mut a, &mut b, &mut c] {
        assert!(party.poll().is_empty(), "nothing before the result");
    }
    let expected = Summary {
        parties: 3,
        count: 6,
        mean: (10.25 + 41.125 - 3.5 + 77.75 + 12.0625 + 55.5) / 6.0,
        min: -3.5,
        max: 77.75,
    };
    let result = b.compute();
    assert_eq!(result.parties, expected.parties);
    assert_eq!(result.count, expected.count);
    assert!((result.mean - expected.mean).abs() < 1e-9, "{} vs {}", result.mean, expected.mean);
    assert_eq!((result.min, result.max), (expected.min, expected.max));
    assert!(released(&relay));
    // The others get exactly the same result, queued.
    assert_eq!(a.poll_result(), result);
    assert_eq!(c.poll_result(), result);
    assert!(b.poll().is_empty());

    // Values that are neither the minimum nor the maximum reach no other party.
    for (owner, value) in [("a", "10.25"), ("a", "41.125"), ("b", "12.0625"), ("c", "55.5")] {
        for (name, party) in [("a", &a), ("b", &b), ("c", &c)] {
            if name != owner {
                assert!(!party.saw(value), "party {name} saw {owner}'s {value}");
            }
        }
    }
    // An acknowledgement carries only the sender's own count.
    assert_eq!(a.received[0], br#"{"v":1,"kind":"submitted","count":2}"#);
}

#[test]
fn no_result_before_three_parties_and_only_submitters_may_ask() {
    let relay = relay();
    let mut a = Party::join(&relay);
    let mut b = Party::join(&relay);
    let mut outsider = Party::join(&relay);
    a.submit(&[1.0]);
    let refused = a.send_refused(&stats::compute());
    assert!(refused.contains("1 of 3"), "{refused}");
    b.submit(&[2.0]);
    let refused = b.send_refused(&stats::compute());
    assert!(refused.contains("2 of 3"), "{refused}");
    let refused = outsider.send_refused(&stats::compute());
    assert!(refused.contains("only parties that submitted"), "{refused}");
    assert!(!released(&relay));
    // A re-submission is still one party.
    a.submit(&[1.0, 1.5]);
    assert!(a.send_refused(&stats::compute()).contains("2 of 3"));

    let mut c = Party::join(&relay);
    c.submit(&[3.0]);
    let result = c.compute();
    assert_eq!((result.parties, result.count), (3, 4));
    assert_eq!(result.mean, (1.0 + 1.5 + 2.0 + 3.0) / 4.0);
    // The outsider, who never submitted, learns nothing even now.
    let refused = outsider.send_refused(&stats::compute());
    assert!(refused.contains("only parties that submitted"), "{refused}");
    assert!(outsider.poll().is_empty());
    assert!(!outsider.saw("\"mean\""));
}

#[test]
fn the_latest_submission_counts_and_the_round_freezes_at_the_result() {
    let relay = relay();
    let mut a = Party::join(&relay);
    let mut b = Party::join(&relay);
    let mut c = Party::join(&relay);
    a.submit(&[1000.0]);
    a.submit(&[4.0]);
    b.submit(&[5.0]);
    c.submit(&[6.0]);
    let first = a.compute();
    assert_eq!((first.count, first.mean, first.min, first.max), (3, 5.0, 4.0, 6.0));
    assert!(!b.saw("1000") && !c.saw("1000"));

    // No differencing: submissions after the result are refused, and asking
    // again returns the same frozen result.
    let refused = c.send_refused(&stats::submit(&[600.0]).unwrap());
    assert!(refused.contains("submissions are closed"), "{refused}");
    let mut d = Party::join(&relay);
    assert!(d.send_refused(&stats::submit(&[7.0]).unwrap()).contains("submissions are closed"));
    assert_eq!(b.poll_result(), first);
    assert_eq!(c.poll_result(), first);
    assert_eq!(b.compute(), first);
    assert_eq!(a.compute(), first);
}

#[test]
fn huge_values_do_not_overflow_the_mean() {
    let relay = relay();
    let mut parties: Vec<Party> = (0..3).map(|_| Party::join(&relay)).collect();
    parties[0].submit(&[f64::MAX, f64::MAX]);
    parties[1].submit(&[f64::MAX]);
    parties[2].submit(&[-f64::MAX]);
    let result = parties[2].compute();
    assert!(result.mean.is_finite(), "{}", result.mean);
    assert!((result.mean - f64::MAX / 2.0).abs() <= f64::MAX * 1e-12, "{}", result.mean);
    assert_eq!((result.min, result.max), (-f64::MAX, f64::MAX));
}

#[test]
fn bad_input_gets_an_error_reply_that_says_what_is_wrong() {
    let relay = relay();
    let mut a = Party::join(&relay);
    let too_many = format!(r#"{{"v":1,"kind":"submit","values":[{}]}}"#, vec!["1"; stats::MAX_VALUES + 1].join(","));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xfe".to_vec(), "not JSON"),
        (br#""submit""#.to_vec(), "JSON object"),
        (br#"{"kind":"compute"}"#.to_vec(), "no version"),
        (br#"{"v":7,"kind":"compute"}"#.to_vec(), "unsupported version 7"),
        (br#"{"v":1,"kind":"average"}"#.to_vec(), "unknown variant"),
        (br#"{"v":1,"kind":"submit"}"#.to_vec(), "missing field `values`"),
        (br#"{"v":1,"kind":"submit","values":[]}"#.to_vec(), "must not be empty"),
        (br#"{"v":1,"kind":"submit","values":[1,null]}"#.to_vec(), "malformed message"),
        (br#"{"v":1,"kind":"submit","values":[1,"2"]}"#.to_vec(), "malformed message"),
        (br#"{"v":1,"kind":"submit","values":[1e999]}"#.to_vec(), "not JSON"),
        (br#"{"v":1,"kind":"submit","values":[NaN]}"#.to_vec(), "not JSON"),
        (too_many.into_bytes(), "too many values"),
    ];
    for (body, expected) in cases {
        let message = a.send_refused(&body);
        assert!(message.contains(expected), "{:?}: {message:?} lacks {expected:?}", String::from_utf8_lossy(&body));
    }
    // None of it counted as a submission.
    assert!(a.send_refused(&stats::compute()).contains("only parties that submitted"));

    // The client helper refuses non-finite numbers before sending anything.
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = stats::submit(&[1.0, bad]).unwrap_err();
        assert!(err.to_string().contains("value 1 is not a finite number"), "{err}");
    }
    assert!(stats::submit(&[]).is_err());
}

#[test]
fn the_helpers_build_what_the_enclave_parses() {
    assert_eq!(stats::submit(&[1.5, -2.0]).unwrap(), br#"{"v":1,"kind":"submit","values":[1.5,-2.0]}"#);
    assert_eq!(stats::compute(), br#"{"v":1,"kind":"compute"}"#);
    let result = Response::Result(Summary { parties: 3, count: 4, mean: 2.5, min: 1.0, max: 4.0 });
    assert_eq!(
        result.to_body(),
        br#"{"v":1,"kind":"result","parties":3,"count":4,"mean":2.5,"min":1.0,"max":4.0}"#.to_vec()
    );
    assert_eq!(Response::parse(&result.to_body()).unwrap(), result);
    let debug = format!("{:?}", StatsEnclave::default());
    assert!(debug.contains("parties: 0"), "{debug}");
}

#[test]
fn the_round_survives_an_enclave_restart() {
    use conclave_examples::stats::{self, StatsEnclave};
    use conclave_host::{EnclaveHost, LocalRelayHandle};

    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<StatsEnclave>()).unwrap();
    let mut parties: Vec<_> = (0..3).map(|_| conclave_test_support::mock_client::<StatsEnclave>(&relay)).collect();
    for (i, party) in parties.iter_mut().enumerate() {
        party.send_mail("stats", &stats::submit(&[i as f64 * 10.0]).unwrap()).unwrap();
    }
    // The host restarts the enclave: new keys, state from the sealed map.
    relay.lock().restart_enclave().unwrap();
    let party = &mut parties[0];
    party.start().unwrap();
    let reply = party.send_mail("stats", &stats::compute()).unwrap().unwrap();
    let text = String::from_utf8(reply.body).unwrap();
    assert!(text.contains("\"parties\":3"), "{text}");
    assert!(text.contains("\"mean\":10"), "{text}");
}

#[test]
fn replies_queued_before_a_restart_are_still_read_after_it() {
    use conclave_examples::stats::{self, StatsEnclave};
    use conclave_host::{EnclaveHost, LocalRelayHandle};

    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<StatsEnclave>()).unwrap();
    let mut parties: Vec<_> = (0..3).map(|_| conclave_test_support::mock_client::<StatsEnclave>(&relay)).collect();
    for (i, party) in parties.iter_mut().enumerate() {
        party.send_mail("stats", &stats::submit(&[i as f64]).unwrap()).unwrap();
    }
    parties[0].send_mail("stats", &stats::compute()).unwrap().unwrap();
    // Results for parties 1 and 2 wait in the queue; the enclave restarts with new keys.
    relay.lock().restart_enclave().unwrap();
    for party in &mut parties[1..] {
        party.start().unwrap();
        let replies = party.poll_mail().unwrap();
        assert_eq!(replies.len(), 1);
        assert!(String::from_utf8_lossy(&replies[0].body).contains("\"parties\":3"));
    }
}
