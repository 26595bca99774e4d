//! The auction enclave in mock mode: an in-process host, one client per party.

use conclave_client::EnclaveClient;
use conclave_examples::auction::{self, AuctionEnclave, Response};
use conclave_host::{EnclaveHost, LocalRelayHandle};

const TOPIC: &str = "auction";

/// One party: its client and every reply body it ever received.
struct Party {
    client: EnclaveClient<LocalRelayHandle>,
    received: Vec<Vec<u8>>,
}

impl Party {
    fn join(relay: &LocalRelayHandle) -> Self {
        Self { client: conclave_test_support::mock_client::<AuctionEnclave>(relay), received: Vec::new() }
    }

    /// Sends `body` and returns the enclave's direct reply.
    fn send(&mut self, body: &[u8]) -> Response {
        let reply = self.client.send_mail(TOPIC, body).unwrap().expect("the enclave answers every mail at once");
        assert_eq!(reply.topic, TOPIC);
        self.received.push(reply.body.clone());
        Response::parse(&reply.body).unwrap()
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

    /// The one result waiting for this party.
    fn poll_result(&mut self) -> (String, u64, bool) {
        let results: Vec<_> = self
            .poll()
            .into_iter()
            .filter_map(|r| match r {
                Response::Result { winner, price, you_won } => Some((winner, price, you_won)),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 1, "exactly one result per bidder: {results:?}");
        results.into_iter().next().unwrap()
    }

    fn key_hex(&self) -> String {
        self.client.public_key().unwrap().to_hex()
    }

    /// Whether `needle` appears in any reply this party received.
    fn saw(&self, needle: &str) -> bool {
        self.received.iter().any(|body| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

fn relay() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock(AuctionEnclave::default())).unwrap()
}

/// An opened auction: the relay and its auctioneer.
fn opened() -> (LocalRelayHandle, Party) {
    let relay = relay();
    let mut auctioneer = Party::join(&relay);
    assert_eq!(auctioneer.send(&auction::open()), Response::Opened);
    (relay, auctioneer)
}

fn bid(party: &mut Party, amount: u64, name: Option<&str>) {
    assert_eq!(party.send(&auction::bid(amount, name)), Response::BidAccepted);
}

fn closed(relay: &LocalRelayHandle) -> bool {
    relay.lock().host_mut().mock_enclave::<AuctionEnclave>().unwrap().is_closed()
}

#[test]
fn the_highest_bidder_wins_at_the_second_price_and_every_bidder_learns_only_that() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    let mut carol = Party::join(&relay);
    bid(&mut alice, 5_000_123, Some("alice"));
    bid(&mut bob, 7_000_456, Some("bob"));
    bid(&mut carol, 3_000_789, Some("carol"));
    // Nothing reaches a bidder before the close.
    for party in [&mut alice, &mut bob, &mut carol] {
        assert!(party.poll().is_empty());
    }
    assert!(!closed(&relay));

    let result = auctioneer.send(&auction::close());
    assert_eq!(result, Response::Result { winner: "bob".into(), price: 5_000_123, you_won: false });
    assert!(closed(&relay));
    assert_eq!(alice.poll_result(), ("bob".into(), 5_000_123, false));
    assert_eq!(bob.poll_result(), ("bob".into(), 5_000_123, true));
    assert_eq!(carol.poll_result(), ("bob".into(), 5_000_123, false));

    // The winner's own bid and the losing bid below the price reach nobody
    // else; the price is the second-highest bid by design.
    for party in [&alice, &carol, &auctioneer] {
        assert!(!party.saw("7000456"));
    }
    for party in [&alice, &bob, &auctioneer] {
        assert!(!party.saw("3000789"));
        assert!(!party.saw("carol"));
    }
    assert!(!bob.saw("alice"));
    // Each acknowledgement is the same few bytes whatever was bid.
    assert_eq!(alice.received[0], bob.received[0]);
    assert_eq!(alice.received[0], br#"{"v":1,"kind":"bid_accepted"}"#);
}

#[test]
fn equal_top_bids_go_to_the_earliest_and_the_price_is_the_tied_amount() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    let mut carol = Party::join(&relay);
    bid(&mut alice, 100, Some("alice"));
    bid(&mut bob, 100, Some("bob"));
    bid(&mut carol, 50, Some("carol"));
    assert_eq!(
        auctioneer.send(&auction::close()),
        Response::Result { winner: "alice".into(), price: 100, you_won: false }
    );
    assert_eq!(alice.poll_result(), ("alice".into(), 100, true));
    assert_eq!(bob.poll_result(), ("alice".into(), 100, false));
}

#[test]
fn a_re_bid_replaces_the_earlier_bid_and_counts_from_when_it_arrived() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    bid(&mut alice, 100, Some("alice"));
    bid(&mut bob, 100, Some("bob"));
    // Alice lowers then restores her bid: it now arrived after Bob's, so Bob wins the tie.
    bid(&mut alice, 1, Some("alice"));
    bid(&mut alice, 100, Some("alice"));
    assert_eq!(
        auctioneer.send(&auction::close()),
        Response::Result { winner: "bob".into(), price: 100, you_won: false }
    );
    assert_eq!(alice.poll_result(), ("bob".into(), 100, false));
    assert_eq!(bob.poll_result(), ("bob".into(), 100, true));
}

#[test]
fn the_latest_bid_counts_and_a_re_bid_is_still_one_bidder() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    bid(&mut alice, 1000, Some("alice"));
    bid(&mut alice, 10, Some("ally"));
    let refused = auctioneer.send_refused(&auction::close());
    assert!(refused.contains("at least 2 bidders"), "{refused}");
    assert!(!closed(&relay));
    bid(&mut bob, 500, Some("bob"));
    assert_eq!(
        auctioneer.send(&auction::close()),
        Response::Result { winner: "bob".into(), price: 10, you_won: false }
    );
    assert_eq!(alice.poll_result(), ("bob".into(), 10, false));
    // Alice's replaced bid reached nobody.
    assert!(!bob.saw("1000") && !auctioneer.saw("1000"));
}

#[test]
fn a_bidder_without_a_name_is_announced_by_its_key() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    bid(&mut alice, 9, None);
    bid(&mut bob, 3, Some("bob"));
    let key = alice.key_hex();
    assert_eq!(auctioneer.send(&auction::close()), Response::Result { winner: key.clone(), price: 3, you_won: false });
    assert_eq!(alice.poll_result(), (key.clone(), 3, true));
    assert_eq!(bob.poll_result(), (key, 3, false));
}

#[test]
fn after_the_close_bids_and_closes_are_refused() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    bid(&mut alice, 20, Some("alice"));
    bid(&mut bob, 30, Some("bob"));
    auctioneer.send(&auction::close());
    let mut dave = Party::join(&relay);
    for (party, body) in [
        (&mut dave, auction::bid(1_000_000, Some("dave"))),
        (&mut alice, auction::bid(1_000_000, Some("alice"))),
        (&mut auctioneer, auction::close()),
    ] {
        let refused = party.send_refused(&body);
        assert!(refused.contains("closed"), "{refused}");
    }
    // The late bid changed nothing: the result stays as announced.
    assert_eq!(alice.poll_result(), ("bob".into(), 20, false));
    assert_eq!(bob.poll_result(), ("bob".into(), 20, true));
    assert!(dave.poll().is_empty());
    assert!(!dave.saw("bob") && !dave.saw("20"));
}

#[test]
fn roles_are_enforced() {
    let relay = relay();
    let mut alice = Party::join(&relay);
    let mut bob = Party::join(&relay);
    let mut carol = Party::join(&relay);
    // Bids may arrive before the auctioneer; a bidder cannot then become it.
    bid(&mut alice, 10, Some("alice"));
    assert!(alice.send_refused(&auction::open()).contains("bidder cannot become the auctioneer"));
    assert!(alice.send_refused(&auction::close()).contains("only the auctioneer"));
    assert_eq!(carol.send(&auction::open()), Response::Opened);
    assert!(bob.send_refused(&auction::open()).contains("already has an auctioneer"));
    assert!(carol.send_refused(&auction::bid(99, Some("carol"))).contains("auctioneer cannot bid"));
    bid(&mut bob, 5, Some("bob"));
    assert!(bob.send_refused(&auction::close()).contains("only the auctioneer"));
    assert!(!closed(&relay));
    assert_eq!(carol.send(&auction::close()), Response::Result { winner: "alice".into(), price: 5, you_won: false });
}

#[test]
fn bad_input_gets_an_error_reply_that_says_what_is_wrong() {
    let (relay, mut auctioneer) = opened();
    let mut alice = Party::join(&relay);
    let long_name = "x".repeat(auction::MAX_NAME_LEN + 1);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not JSON"),
        (br#"[1,2]"#.to_vec(), "JSON object"),
        (br#"{"kind":"bid","amount":5}"#.to_vec(), "no version"),
        (br#"{"v":2,"kind":"bid","amount":5}"#.to_vec(), "unsupported version 2"),
        (br#"{"v":"1","kind":"bid","amount":5}"#.to_vec(), "whole number"),
        (br#"{"v":1,"kind":"steal","amount":5}"#.to_vec(), "unknown variant"),
        (br#"{"v":1,"kind":"bid"}"#.to_vec(), "missing field `amount`"),
        (br#"{"v":1,"kind":"bid","amount":-5}"#.to_vec(), "malformed message"),
        (br#"{"v":1,"kind":"bid","amount":1.5}"#.to_vec(), "malformed message"),
        (br#"{"v":1,"kind":"bid","amount":18446744073709551616}"#.to_vec(), "malformed message"),
        (br#"{"v":1,"kind":"bid","amount":5,"extra":true}"#.to_vec(), "unknown field"),
        (auction::bid(0, Some("alice")), "at least 1"),
        (auction::bid(5, Some("")), "1 to 64 bytes"),
        (auction::bid(5, Some(&long_name)), "1 to 64 bytes"),
        (auction::bid(5, Some("a\nb")), "control characters"),
    ];
    for (body, expected) in cases {
        let message = alice.send_refused(&body);
        assert!(message.contains(expected), "{:?}: {message:?} lacks {expected:?}", String::from_utf8_lossy(&body));
    }
    // None of it counted as a bid: one bidder is still too few.
    assert!(auctioneer.send_refused(&auction::close()).contains("at least 2 bidders"));

    // A name another bidder holds is refused; the same bidder may keep its own.
    bid(&mut alice, 5, Some("alice"));
    let mut bob = Party::join(&relay);
    assert!(bob.send_refused(&auction::bid(6, Some("alice"))).contains("taken"));
    bid(&mut alice, 4, Some("alice"));
    bid(&mut bob, 6, Some("bob"));
    assert_eq!(auctioneer.send(&auction::close()), Response::Result { winner: "bob".into(), price: 4, you_won: false });
}

#[test]
fn the_helpers_build_what_the_enclave_parses() {
    assert_eq!(auction::bid(7, Some("al")), br#"{"v":1,"kind":"bid","amount":7,"name":"al"}"#);
    assert_eq!(auction::bid(7, None), br#"{"v":1,"kind":"bid","amount":7}"#);
    assert_eq!(auction::open(), br#"{"v":1,"kind":"open"}"#);
    assert_eq!(auction::close(), br#"{"v":1,"kind":"close"}"#);
    let result = Response::Result { winner: "w".into(), price: 3, you_won: true };
    assert_eq!(Response::parse(&result.to_body()).unwrap(), result);
    assert!(Response::parse(br#"{"v":1,"kind":"result"}"#).is_err());
    // Debug output shows progress, never bids.
    let debug = format!("{:?}", AuctionEnclave::default());
    assert!(debug.contains("bidders: 0"), "{debug}");
}
