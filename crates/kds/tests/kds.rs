//! The key derivation service with enclaves that use it, in mock mode over
//! the in-process relay: the same mail key at every start, sealed state that
//! opens on another host, and every refusal with its reason.

use conclave_client::EnclaveClient;
use conclave_core::{EnclaveConstraint, MailRelay};
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveIdentity, EnclaveMail, KdsCall, KdsConfig};
use conclave_host::{
    EnclaveHost, HostError, HostService, LocalRelayHandle, ServiceConfig, mock_identity, store::SqliteStore,
};
use conclave_kds::KdsEnclave;

fn mock_code(identity: &EnclaveIdentity) -> String {
    hex::encode(identity.code_hash)
}

/// A counter that keeps its count in the persistent map and gets its keys from the KDS.
#[derive(Default)]
struct Counter;

fn kds_constraint() -> String {
    format!("C:{} SEC:INSECURE", mock_code(&mock_identity::<KdsEnclave>()))
}

impl Enclave for Counter {
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        let count =
            ctx.persistent_map().get("n").map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or_default())) + 1;
        ctx.persistent_map().insert("n", count.to_be_bytes().to_vec())?;
        let _ = mail.body;
        ctx.reply(&mail, count.to_string().as_bytes(), hint)
    }

    fn kds(&self, identity: &EnclaveIdentity) -> Option<KdsConfig> {
        // Every instance of this very code gets the keys.
        let policy = format!("C:{} SEC:INSECURE", mock_code(identity));
        Some(KdsConfig {
            constraint: kds_constraint(),
            mail_key_policy: Some(policy.clone()),
            persistence_key_policy: Some(policy),
        })
    }
}

/// The same counter asking for keys under a policy it does not satisfy.
#[derive(Default)]
struct Greedy;

impl Enclave for Greedy {
    fn receive_mail(
        &mut self,
        _: &mut EnclaveContext<'_>,
        _: EnclaveMail,
        _: Option<&str>,
    ) -> Result<(), EnclaveError> {
        Ok(())
    }

    fn kds(&self, _: &EnclaveIdentity) -> Option<KdsConfig> {
        Some(KdsConfig {
            constraint: kds_constraint(),
            mail_key_policy: Some(format!("C:{} SEC:INSECURE", "ab".repeat(32))),
            persistence_key_policy: None,
        })
    }
}

/// Another enclave posing as a KDS: it is not the code the counter trusts.
#[derive(Default)]
struct Impostor(KdsEnclave);

impl Enclave for Impostor {
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        self.0.on_startup(ctx)
    }
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        self.0.receive_mail(ctx, mail, hint)
    }
}

fn kds_of<E: Enclave + Default>() -> LocalRelayHandle {
    LocalRelayHandle::in_memory(EnclaveHost::load_mock_restartable::<E>()).unwrap()
}

/// An app host whose enclave reaches `kds` through the in-process relay.
fn app_host<E: Enclave + Default>(kds: &LocalRelayHandle) -> EnclaveHost {
    let mut host = EnclaveHost::load_mock_restartable::<E>();
    let mut relay = kds.clone();
    host.set_kds(Box::new(move |call| match call {
        KdsCall::Attestation => relay.attestation().map_err(|e| e.to_string()),
        KdsCall::Deliver(mail) => relay
            .deliver("key-requests", &mail)
            .map_err(|e| e.to_string())?
            .map(|answer| answer.bytes)
            .ok_or_else(|| "the KDS gave no answer".to_owned()),
    }));
    host
}

fn service(host: EnclaveHost, store: SqliteStore, secret: u8) -> Result<HostService, HostError> {
    HostService::new(host, store, ServiceConfig::new([secret; 32]))
}

fn counter_constraint() -> EnclaveConstraint {
    EnclaveConstraint::parse(&format!("C:{} SEC:INSECURE", mock_code(&mock_identity::<Counter>()))).unwrap()
}

fn count(client: &mut EnclaveClient<LocalRelayHandle>) -> String {
    String::from_utf8(client.send_mail("t", b"+1").unwrap().unwrap().body).unwrap()
}

#[test]
fn the_mail_key_is_the_same_at_every_start_so_clients_need_not_attest_again() {
    let kds = kds_of::<KdsEnclave>();
    let relay =
        LocalRelayHandle::new(service(app_host::<Counter>(&kds), SqliteStore::open_in_memory().unwrap(), 1).unwrap());
    let mut client = EnclaveClient::new(relay.clone(), counter_constraint());
    let key = client.start().unwrap().encryption_key;
    assert_eq!(count(&mut client), "1");
    relay.lock().restart_enclave().unwrap();
    // No start(): the same key still reads the mail, and its replies are accepted.
    assert_eq!(count(&mut client), "2");
    assert_eq!(client.start().unwrap().encryption_key, key, "the mail key changed at a restart");
}

#[test]
fn sealed_state_opens_on_another_host_through_the_persistence_key() {
    let kds = kds_of::<KdsEnclave>();
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a.db");
    let relay =
        LocalRelayHandle::new(service(app_host::<Counter>(&kds), SqliteStore::open(&a_path).unwrap(), 1).unwrap());
    let mut client = EnclaveClient::new(relay.clone(), counter_constraint());
    client.start().unwrap();
    assert_eq!(count(&mut client), "1");
    assert_eq!(count(&mut client), "2");
    let state = client.save();
    // Stop host A (the store is closed, its log written through).
    drop(client);
    drop(relay);
    // Host B: another machine, another platform secret; the same store file copied over.
    let b_path = dir.path().join("b.db");
    std::fs::copy(&a_path, &b_path).unwrap();
    let relay =
        LocalRelayHandle::new(service(app_host::<Counter>(&kds), SqliteStore::open(&b_path).unwrap(), 2).unwrap());
    let mut client = EnclaveClient::restore(relay, state).unwrap();
    client.start().unwrap();
    assert_eq!(count(&mut client), "3");
    drop(client);
    // Without the KDS, the platform secret of host B cannot open it.
    let mut lone = EnclaveHost::load_mock_restartable::<Counter>();
    lone.set_kds(Box::new(|_| Err("no KDS here".into())));
    let err = service(lone, SqliteStore::open(&dir.path().join("b.db")).unwrap(), 2).unwrap_err();
    assert_eq!(err.code(), "KDS_FAILED");
}

#[test]
fn an_enclave_that_does_not_satisfy_the_policy_gets_no_key_and_is_told_which_token_failed() {
    let kds = kds_of::<KdsEnclave>();
    let err = service(app_host::<Greedy>(&kds), SqliteStore::open_in_memory().unwrap(), 1).unwrap_err();
    assert_eq!(err.code(), "KDS_REFUSED");
    let message = err.to_string();
    assert!(message.contains("does not satisfy its policy") && message.contains("C/S"), "{message}");
}

#[test]
fn an_enclave_refuses_a_kds_that_does_not_satisfy_its_kds_constraint() {
    let impostor = kds_of::<Impostor>();
    let err = service(app_host::<Counter>(&impostor), SqliteStore::open_in_memory().unwrap(), 1).unwrap_err();
    assert_eq!(err.code(), "KDS_UNTRUSTED");
    assert!(err.to_string().contains("KDS constraint"), "{err}");
}

#[test]
fn the_kds_state_does_not_grow_with_every_start() {
    let kds = kds_of::<KdsEnclave>();
    let relay =
        LocalRelayHandle::new(service(app_host::<Counter>(&kds), SqliteStore::open_in_memory().unwrap(), 1).unwrap());
    relay.lock().restart_enclave().unwrap();
    let size = || kds.lock().store_mut().sealed_state().unwrap().unwrap().len();
    let before = size();
    for _ in 0..20 {
        relay.lock().restart_enclave().unwrap();
    }
    assert_eq!(size(), before, "every start left a record in the KDS's state");
}

#[test]
fn two_kds_replicas_sharing_a_master_key_issue_the_same_keys() {
    // A replica is a copy of the KDS's data: its store (sealed master) and platform secret.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kds.db");
    let open = |path: &std::path::Path| {
        HostService::new(
            EnclaveHost::load_mock_restartable::<KdsEnclave>(),
            SqliteStore::open(path).unwrap(),
            ServiceConfig::new([7; 32]),
        )
        .unwrap()
    };
    // The first start makes the master key; the replica is a copy of that data.
    drop(open(&path));
    let replica_path = dir.path().join("replica.db");
    std::fs::copy(&path, &replica_path).unwrap();
    let first = LocalRelayHandle::new(open(&path));
    let replica = LocalRelayHandle::new(
        HostService::new(
            EnclaveHost::load_mock_restartable::<KdsEnclave>(),
            SqliteStore::open(&replica_path).unwrap(),
            ServiceConfig::new([7; 32]),
        )
        .unwrap(),
    );
    let key_from = |kds: &LocalRelayHandle| {
        let relay = LocalRelayHandle::new(
            service(app_host::<Counter>(kds), SqliteStore::open_in_memory().unwrap(), 1).unwrap(),
        );
        let mut client = EnclaveClient::new(relay, counter_constraint());
        client.start().unwrap().encryption_key
    };
    assert_eq!(key_from(&first), key_from(&replica));
}

#[test]
fn a_new_build_of_the_kds_keeps_the_master_key() {
    // Two builds: different code, the same signer and product id.
    let build = |code: u8| {
        let identity = conclave_enclave::EnclaveIdentity { code_hash: [code; 32], ..mock_identity::<KdsEnclave>() };
        EnclaveHost::load_mock_restartable_with_identity::<KdsEnclave>(identity)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kds.db");
    let kds_service =
        |code| HostService::new(build(code), SqliteStore::open(&path).unwrap(), ServiceConfig::new([7; 32]));
    let old = LocalRelayHandle::new(kds_service(1).unwrap());
    // This counter trusts the KDS by its signer, as a deployment that upgrades its KDS does.
    let key_from = |kds: &LocalRelayHandle| {
        let host = app_host::<TrustsKdsSigner>(kds);
        let relay = LocalRelayHandle::new(service(host, SqliteStore::open_in_memory().unwrap(), 1).unwrap());
        let code = mock_code(&mock_identity::<TrustsKdsSigner>());
        let constraint = EnclaveConstraint::parse(&format!("C:{code} SEC:INSECURE")).unwrap();
        let mut client = EnclaveClient::new(relay, constraint);
        client.start().unwrap().encryption_key
    };
    let before = key_from(&old);
    drop(old);
    let new = LocalRelayHandle::new(kds_service(2).unwrap());
    assert_eq!(key_from(&new), before, "the upgraded KDS issued other keys: its master key was lost");
}

/// The counter, trusting any KDS build of the mock signer.
#[derive(Default)]
struct TrustsKdsSigner(Counter);

impl Enclave for TrustsKdsSigner {
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        self.0.receive_mail(ctx, mail, hint)
    }

    fn kds(&self, identity: &EnclaveIdentity) -> Option<KdsConfig> {
        let signer = hex::encode(mock_identity::<KdsEnclave>().code_signing_key_hash);
        let policy = format!("C:{} SEC:INSECURE", mock_code(identity));
        Some(KdsConfig {
            constraint: format!("S:{signer} PROD:0 SEC:INSECURE"),
            mail_key_policy: Some(policy.clone()),
            persistence_key_policy: Some(policy),
        })
    }
}
