//! The enclave's side of the key derivation service: at start, before it
//! unseals anything, an enclave that declares a KDS checks the KDS's
//! attestation against the constraint in its own code, then asks for its
//! keys in one mail, through the host (which sees only ciphertext).

use std::time::{SystemTime, UNIX_EPOCH};

use conclave_core::{
    EnclaveConstraint, EnclaveInstanceInfo, EnclaveReport, MailHeader, PrivateKey, ReplyChainVerifier, RequestFrame,
    ResponseFrame, ResponseKind, StateCheckpoint, decrypt_mail, encrypt_mail,
    freshness::ChainVerdict,
    kds::{KDS_TOPIC, KDS_VERSION, KeyRequest, KeyResponse, KeySpec, MAIL_KEY, PERSISTENCE_KEY},
    key_binding,
};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::{EnclaveError, EnclaveIdentity, HostInterface, KdsCall, KdsConfig, KdsProblem};

/// The keys a KDS issued.
pub(crate) struct KdsKeys {
    pub mail: Option<Zeroizing<[u8; 32]>>,
    pub persistence: Option<Zeroizing<[u8; 32]>>,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn problem(p: KdsProblem) -> EnclaveError {
    EnclaveError::Kds(p)
}

/// Runs the key request of `config` for an enclave of `identity` whose
/// data-signing key is `signing_key`.
pub(crate) fn obtain(
    config: &KdsConfig,
    identity: &EnclaveIdentity,
    host: &mut dyn HostInterface,
    signing_key: &SigningKey,
) -> Result<KdsKeys, EnclaveError> {
    let constraint = EnclaveConstraint::parse(&config.constraint).map_err(|e| {
        problem(KdsProblem::Untrusted(format!("the KDS constraint in this enclave's code is invalid: {e}")))
    })?;
    // 1. The KDS is the one this enclave's code trusts.
    let attestation = host.kds(KdsCall::Attestation)?;
    let kds_info = EnclaveInstanceInfo::decode(&attestation)
        .map_err(|e| problem(KdsProblem::BadAnswer(format!("its attestation is unreadable: {e}"))))?;
    let kds = constraint.check(&kds_info, now_unix()).map_err(|e| problem(KdsProblem::Untrusted(e.to_string())))?;

    // 2. Our own attestation, for a key of this request only: the KDS encrypts the keys to it.
    let request_key = PrivateKey::generate(&mut OsRng);
    let signing_public = signing_key.verifying_key().to_bytes();
    let report = EnclaveReport {
        code_hash: identity.code_hash,
        code_signing_key_hash: identity.code_signing_key_hash,
        product_id: identity.product_id,
        revocation_level: identity.revocation_level,
        report_data: key_binding(&signing_public, &request_key.public_key()),
        timestamp_unix: now_unix(),
    };
    let evidence = host.evidence(report)?;
    let ours = EnclaveInstanceInfo::signed(signing_key, request_key.public_key(), StateCheckpoint::GENESIS, evidence);

    let mut specs = Vec::new();
    for (name, policy) in [(MAIL_KEY, &config.mail_key_policy), (PERSISTENCE_KEY, &config.persistence_key_policy)] {
        if let Some(policy) = policy {
            specs.push(KeySpec::new(name, policy).map_err(|e| {
                problem(KdsProblem::Refused(format!("the {name} policy in this enclave's code is invalid: {e}")))
            })?);
        }
    }
    let request = KeyRequest { v: KDS_VERSION, attestation: ours.encode(), keys: specs };
    let body = serde_json::to_vec(&request).map_err(|e| EnclaveError::Internal(e.to_string()))?;
    let mut request_id = [0u8; 16];
    OsRng.fill_bytes(&mut request_id);
    let frame = RequestFrame { request_id, chain: conclave_core::ReplyChain::START, runs: vec![kds.run] };
    let header = MailHeader::new(KDS_TOPIC, 0)?;
    let mail = encrypt_mail(&request_key, &kds.encryption_key, &header, &frame.wrap(&body), 0, &mut OsRng)?;

    // 3. Its answer: from the KDS's key, the first reply on a fresh chain, answering this request.
    let answer = host.kds(KdsCall::Deliver(mail))?;
    let opened = decrypt_mail(&request_key, &answer)
        .map_err(|e| problem(KdsProblem::BadAnswer(format!("it does not decrypt: {e}"))))?;
    if opened.sender != kds.encryption_key {
        return Err(problem(KdsProblem::BadAnswer("it comes from another key than the attested KDS's".into())));
    }
    let (frame, body) = ResponseFrame::unwrap(&opened.body)
        .map_err(|e| problem(KdsProblem::BadAnswer(format!("its frame is malformed: {e}"))))?;
    let answers_us = frame.answers.as_ref().is_some_and(|a| a.request_id == request_id && a.sequence_number == 0);
    if !answers_us {
        return Err(problem(KdsProblem::BadAnswer("it does not answer this request".into())));
    }
    let in_order =
        frame.link.is_some_and(|link| ReplyChainVerifier::default().check(&link, &frame.state) == ChainVerdict::Next);
    match frame.kind {
        ResponseKind::Reply if in_order => {}
        ResponseKind::Refused => {
            return Err(problem(KdsProblem::Refused(String::from_utf8_lossy(body).into_owned())));
        }
        ResponseKind::Rejected(rejection, _) => {
            return Err(problem(KdsProblem::BadAnswer(format!("the KDS rejected the request: {}", rejection.code()))));
        }
        _ => return Err(problem(KdsProblem::BadAnswer("it is not the first reply of a fresh conversation".into()))),
    }
    let response: KeyResponse = serde_json::from_slice(body)
        .map_err(|e| problem(KdsProblem::BadAnswer(format!("its body is not a key response: {e}"))))?;
    if response.v != KDS_VERSION {
        return Err(problem(KdsProblem::BadAnswer(format!(
            "KDS protocol version {} (this enclave speaks {KDS_VERSION})",
            response.v
        ))));
    }
    let find = |name: &str| response.keys.iter().find(|k| k.name == name).map(|k| k.key.clone());
    let keys = KdsKeys { mail: find(MAIL_KEY), persistence: find(PERSISTENCE_KEY) };
    if (config.mail_key_policy.is_some() && keys.mail.is_none())
        || (config.persistence_key_policy.is_some() && keys.persistence.is_none())
    {
        return Err(problem(KdsProblem::BadAnswer("a key this enclave asked for is missing".into())));
    }
    Ok(keys)
}
