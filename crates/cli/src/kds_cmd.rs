//! The host's side of the key derivation service: it relays an enclave's
//! key request to the KDS's web host and brings the answer back.
//!
//! ```text
//!  enclave ── KdsCall::Attestation ──► host ── GET /v1/attestation ──► KDS host
//!  enclave ── KdsCall::Deliver(mail) ─► host ── POST /v1/mail ───────► KDS host ──► KDS enclave
//!  enclave ◄── the KDS's encrypted answer ◄──────────── 200 (then acknowledged)
//! ```
//!
//! The host is untrusted here too: the enclave checks the KDS's attestation
//! against the constraint compiled into it and decrypts the answer itself,
//! so all this code can do wrong is fail to deliver.

use std::path::Path;

use anyhow::anyhow;
use conclave_client::{FailoverRelay, HttpRelay, HttpRelayOptions};
use conclave_core::MailRelay;
use conclave_enclave::KdsCall;
use conclave_host::KdsTransport;
use rand_core::{OsRng, RngCore};

/// A transport to the KDS at `urls` (`URL` or `URL,URL,...` for replicas).
pub fn transport(urls: &str, tls_ca: Option<&Path>) -> anyhow::Result<KdsTransport> {
    let mut options = HttpRelayOptions::default();
    if let Some(ca) = tls_ca {
        options = options.trust_ca_file(ca).map_err(|e| anyhow!("--kds-tls-ca: {}", e.message))?;
    }
    let relays = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| HttpRelay::with_options(url, options.clone()).map_err(|e| anyhow!("--kds {url}: {}", e.message)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut relay = FailoverRelay::new(relays).ok_or_else(|| anyhow!("--kds needs a URL"))?;
    // One correlation id per host process: the KDS's answers to it are
    // acknowledged as soon as they are read, so nothing piles up there.
    let mut id = [0u8; 12];
    OsRng.fill_bytes(&mut id);
    let correlation_id = format!("kds-requests-{}", hex::encode(id));
    Ok(Box::new(move |call| match call {
        KdsCall::Attestation => relay.attestation().map_err(|e| e.to_string()),
        KdsCall::Deliver(mail) => {
            let answer = match relay.deliver(&correlation_id, &mail).map_err(|e| e.to_string())? {
                Some(answer) => answer,
                // Not answered in the call: look in the queue once.
                None => relay
                    .poll(&correlation_id)
                    .map_err(|e| e.to_string())?
                    .pop()
                    .ok_or_else(|| "the KDS did not answer the key request".to_owned())?,
            };
            if let Err(error) = relay.acknowledge(&correlation_id, &[answer.id]) {
                tracing::warn!("cannot acknowledge the KDS's answer (it stays queued there): {error}");
            }
            Ok(answer.bytes)
        }
    }))
}
