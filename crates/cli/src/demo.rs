//! `conclave demo`: the mock-mode flow in one process, narrated.

use std::process::ExitCode;

use conclave_client::EnclaveClient;
use conclave_core::EnclaveConstraint;
use conclave_examples::reverse::ReverseEnclave;
use conclave_host::{EnclaveHost, LocalRelayHandle, mock_identity};

pub fn run() -> anyhow::Result<ExitCode> {
    println!("Conclave for Rust: demo");
    println!();
    println!("!! MOCK MODE: INSECURE. The enclave runs inside this process with no protection;");
    println!("!! anyone who runs the host can read its memory. Use it to try the protocol only.");
    println!();

    println!("1. The host loads the `reverse` sample enclave and starts it.");
    let relay = LocalRelayHandle::in_memory(EnclaveHost::load_mock(ReverseEnclave::default()))?;

    let code_hash = hex::encode(mock_identity::<ReverseEnclave>().code_hash);
    let constraint = EnclaveConstraint::parse(&format!("C:{code_hash} SEC:INSECURE"))?;
    println!("2. A client fetches the enclave's attestation and checks it against:");
    println!("     {constraint}");
    let mut client = EnclaveClient::new(relay.clone(), constraint);
    let info = client.start()?;
    println!("   accepted: mode {}, security {}", info.mode, info.identity.security);
    println!("   reason:   {}", info.identity.security_reason);
    println!("   enclave encryption key: {}", info.encryption_key);

    let message = "the quick brown fox";
    println!("3. The client encrypts {message:?} to the enclave's key and sends it through the host.");
    let reply =
        client.send_mail("demo", message.as_bytes())?.ok_or_else(|| anyhow::anyhow!("the enclave sent no reply"))?;
    println!("4. What the host saw (it cannot read the mail):");
    for t in relay.lock().traffic() {
        let direction = if t.inbound { "client -> enclave" } else { "enclave -> client" };
        println!("     {direction}: {} bytes of ciphertext", t.size);
    }
    let text = String::from_utf8_lossy(&reply.body);
    println!("5. The client decrypts the enclave's reply: {text:?}");
    println!();
    let ok = reply.body == conclave_examples::reverse::reversed(message.as_bytes());
    println!(
        "Summary: {} one mail round trip to an attested MOCK (INSECURE) enclave; the host saw only ciphertext sizes.",
        if ok { "OK:" } else { "FAILED:" }
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
