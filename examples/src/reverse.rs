//! `reverse`: the smallest useful enclave. Each mail is answered, on the same
//! topic and to its authenticated sender, with the body's bytes reversed.

use conclave_enclave::{Enclave, EnclaveContext, EnclaveError, EnclaveMail};

/// The enclave. Counts the mail it has answered (visible to mock-mode tests).
#[derive(Debug, Default)]
pub struct ReverseEnclave {
    /// How many mails this instance has answered.
    pub answered: u64,
}

/// The reply the enclave sends for `body`.
pub fn reversed(body: &[u8]) -> Vec<u8> {
    body.iter().rev().copied().collect()
}

impl Enclave for ReverseEnclave {
    fn receive_mail(
        &mut self,
        ctx: &mut EnclaveContext<'_>,
        mail: EnclaveMail,
        routing_hint: Option<&str>,
    ) -> Result<(), EnclaveError> {
        self.answered += 1;
        ctx.reply(&mail, &reversed(&mail.body), routing_hint)
    }

    fn receive_from_untrusted_host(
        &mut self,
        _ctx: &mut EnclaveContext<'_>,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, EnclaveError> {
        Ok(Some(reversed(bytes)))
    }
}
