//! Every sample seals its state after each change: a restarted enclave (new
//! keys, state unsealed from the host's store) resumes the round.

use conclave_client::EnclaveClient;
use conclave_enclave::Enclave;
use conclave_examples::{auction, psi};
use conclave_host::{EnclaveHost, LocalRelayHandle};

fn setup<E: Enclave + Default>(parties: usize) -> (LocalRelayHandle, Vec<EnclaveClient<LocalRelayHandle>>) {
    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<E>()).unwrap();
    let clients = (0..parties).map(|_| conclave_test_support::mock_client::<E>(&relay)).collect();
    (relay, clients)
}

fn restart(relay: &LocalRelayHandle, clients: &mut [EnclaveClient<LocalRelayHandle>]) {
    relay.lock().restart_enclave().unwrap();
    for client in clients {
        client.start().unwrap();
    }
}

#[test]
fn an_auction_survives_a_restart() {
    let (relay, mut c) = setup::<auction::AuctionEnclave>(3);
    c[0].send_mail("a", &auction::open()).unwrap();
    c[1].send_mail("a", &auction::bid(10, Some("ann"))).unwrap();
    c[2].send_mail("a", &auction::bid(20, Some("bo"))).unwrap();
    restart(&relay, &mut c);
    let result = auction::Response::parse(&c[0].send_mail("a", &auction::close()).unwrap().unwrap().body).unwrap();
    assert!(matches!(&result, auction::Response::Result { winner, price: 10, .. } if winner == "bo"), "{result:?}");
}

#[test]
fn a_psi_round_survives_a_restart() {
    let (relay, mut c) = setup::<psi::PsiEnclave>(2);
    c[0].send_mail("p", &psi::submit(&["a", "b"]).unwrap()).unwrap();
    restart(&relay, &mut c);
    let reply = psi::Response::parse(&c[1].send_mail("p", &psi::submit(&["b", "c"]).unwrap()).unwrap().unwrap().body);
    assert_eq!(reply.unwrap(), psi::Response::Intersection { items: vec!["b".into()] });
}
