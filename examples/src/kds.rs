//! Any sample, taking its keys from a key derivation service.
//!
//! [`WithKds`] wraps a sample enclave and declares a KDS for it, derived
//! from the enclave's own identity, so nothing the host says decides it:
//!
//! - the KDS must be signed by the same key as the sample, with product id
//!   [`KDS_PRODUCT_ID`] (the samples and `conclave kds` come from one signer);
//! - the mail key and the persistence key go to every enclave of that
//!   signer with the sample's own product id.
//!
//! A sample run with a KDS has its own product id ([`kds_product_id`]), so a
//! client's constraint says which of the two it accepts: a host cannot
//! quietly run the sample without its KDS.
//!
//! `SEC:INSECURE` is in these constraints because the samples run in mock
//! and simulation modes; an enclave of your own compiles in the KDS's code
//! hash or signer and `SEC:SECURE`.

use conclave_core::SealingPolicy;
use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveIdentity, EnclaveMail, KdsConfig, SelfMail};

/// The product id of the key derivation service `conclave kds` runs.
pub const KDS_PRODUCT_ID: u16 = 100;

/// The product id of a sample with product id `product_id` when it uses a KDS.
pub const fn kds_product_id(product_id: u16) -> u16 {
    product_id + 16
}

/// A sample enclave that takes its keys from a key derivation service.
#[derive(Debug, Default)]
pub struct WithKds<E>(pub E);

impl<E: Enclave> Enclave for WithKds<E> {
    fn on_startup(&mut self, ctx: &mut EnclaveContext<'_>) -> Result<(), EnclaveError> {
        self.0.on_startup(ctx)
    }

    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        self.0.receive_mail(ctx, mail, routing_hint)
    }

    fn receive_from_untrusted_host(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, EnclaveError> {
        self.0.receive_from_untrusted_host(ctx, bytes)
    }

    fn receive_mail_from_self(&mut self, ctx: &mut EnclaveContext<'_>, mail: SelfMail) -> Result<(), EnclaveError> {
        self.0.receive_mail_from_self(ctx, mail)
    }

    fn sealing_policy(&self) -> SealingPolicy {
        self.0.sealing_policy()
    }

    fn on_shutdown(&mut self, ctx: &mut EnclaveContext<'_>) {
        self.0.on_shutdown(ctx);
    }

    fn kds(&self, identity: &EnclaveIdentity) -> Option<KdsConfig> {
        let signer = hex::encode(identity.code_signing_key_hash);
        let policy = format!("S:{signer} PROD:{} SEC:INSECURE", identity.product_id);
        Some(KdsConfig {
            constraint: format!("S:{signer} PROD:{KDS_PRODUCT_ID} SEC:INSECURE"),
            mail_key_policy: Some(policy.clone()),
            persistence_key_policy: Some(policy),
        })
    }
}
