//! Every sample through the real web host over HTTP on port 0, with one
//! `EnclaveClient<HttpRelay>` per party: what a deployment does, in mock mode
//! so that the test needs no enclave binary.

use conclave_client::{EnclaveClient, EnclaveReply, HttpRelay};
use conclave_core::EnclaveConstraint;
use conclave_enclave::Enclave;
use conclave_examples::{auction, psi, reverse::ReverseEnclave, stats};
use conclave_host::{EnclaveHost, HostService, ServiceConfig, mock_identity, store::SqliteStore, web};

/// A web host on a loopback port, stopped when dropped.
struct Served {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve<E: Enclave + Default>() -> (Served, EnclaveConstraint) {
    let service = HostService::new(
        EnclaveHost::load_mock_restartable::<E>(),
        SqliteStore::open_in_memory().unwrap(),
        ServiceConfig::new([3; 32]),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime
            .block_on(web::run(listener, service, web::WebConfig::default(), async {
                let _ = stopped.await;
            }))
            .unwrap();
    });
    let code = hex::encode(mock_identity::<E>().code_hash);
    let constraint = EnclaveConstraint::parse(&format!("C:{code} SEC:INSECURE")).unwrap();
    (Served { url, stop: Some(stop), thread: Some(thread) }, constraint)
}

fn party(served: &Served, constraint: &EnclaveConstraint) -> EnclaveClient<HttpRelay> {
    let mut client = EnclaveClient::new(HttpRelay::new(&served.url).unwrap(), constraint.clone());
    client.start().unwrap();
    client
}

fn only(replies: Vec<EnclaveReply>) -> EnclaveReply {
    assert_eq!(replies.len(), 1, "expected exactly one queued reply");
    replies.into_iter().next().unwrap()
}

#[test]
fn reverse_over_http() {
    let (served, constraint) = serve::<ReverseEnclave>();
    let mut alice = party(&served, &constraint);
    assert_eq!(alice.send_mail("t", b"live").unwrap().unwrap().body, b"evil");
}

#[test]
fn auction_over_http() {
    let (served, constraint) = serve::<auction::AuctionEnclave>();
    let mut auctioneer = party(&served, &constraint);
    let mut ann = party(&served, &constraint);
    let mut bob = party(&served, &constraint);
    let parse = |r: EnclaveReply| auction::Response::parse(&r.body).unwrap();
    assert_eq!(parse(auctioneer.send_mail("a", &auction::open()).unwrap().unwrap()), auction::Response::Opened);
    assert_eq!(
        parse(ann.send_mail("a", &auction::bid(70, Some("ann"))).unwrap().unwrap()),
        auction::Response::BidAccepted
    );
    assert_eq!(
        parse(bob.send_mail("a", &auction::bid(90, Some("bob"))).unwrap().unwrap()),
        auction::Response::BidAccepted
    );
    let result = parse(auctioneer.send_mail("a", &auction::close()).unwrap().unwrap());
    assert!(matches!(&result, auction::Response::Result { winner, price: 70, .. } if winner == "bob"), "{result:?}");
    // Bidders learn the outcome from their queues.
    let ann_result = parse(only(ann.poll_mail().unwrap()));
    assert!(matches!(ann_result, auction::Response::Result { price: 70, you_won: false, .. }), "{ann_result:?}");
    let bob_result = parse(only(bob.poll_mail().unwrap()));
    assert!(matches!(bob_result, auction::Response::Result { you_won: true, .. }), "{bob_result:?}");
    // Acknowledged: polling again finds nothing.
    assert!(bob.poll_mail().unwrap().is_empty());
}

#[test]
fn stats_over_http() {
    let (served, constraint) = serve::<stats::StatsEnclave>();
    let mut parties: Vec<_> = (0..3).map(|_| party(&served, &constraint)).collect();
    for (party, values) in parties.iter_mut().zip([&[1.0, 2.0][..], &[3.0], &[10.0, 4.0]]) {
        party.send_mail("s", &stats::submit(values).unwrap()).unwrap().unwrap();
    }
    let first = stats::Response::parse(&parties[0].send_mail("s", &stats::compute()).unwrap().unwrap().body).unwrap();
    let stats::Response::Result(summary) = first else { panic!("{first:?}") };
    assert_eq!((summary.parties, summary.count, summary.min, summary.max), (3, 5, 1.0, 10.0));
    assert!((summary.mean - 4.0).abs() < 1e-12);
    for party in &mut parties[1..] {
        let reply = stats::Response::parse(&only(party.poll_mail().unwrap()).body).unwrap();
        assert_eq!(reply, stats::Response::Result(summary.clone()));
    }
}

#[test]
fn psi_over_http() {
    let (served, constraint) = serve::<psi::PsiEnclave>();
    let mut a = party(&served, &constraint);
    let mut b = party(&served, &constraint);
    let parse = |r: EnclaveReply| psi::Response::parse(&r.body).unwrap();
    assert_eq!(
        parse(a.send_mail("p", &psi::submit(&["x", "y", "z"]).unwrap()).unwrap().unwrap()),
        psi::Response::Waiting
    );
    let expected = psi::Response::Intersection { items: vec!["y".into(), "z".into()] };
    assert_eq!(parse(b.send_mail("p", &psi::submit(&["y", "z", "w"]).unwrap()).unwrap().unwrap()), expected);
    assert_eq!(parse(only(a.poll_mail().unwrap())), expected);
}
