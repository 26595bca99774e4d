//! PostOffice: one conversation, one (destination key, sender key, topic).
//!
//! It numbers outgoing mail (0, 1, 2, …), pads it by policy, and checks that
//! replies really come from the destination it writes to.

use rand_core::{CryptoRng, RngCore};

use crate::{
    keys::{PrivateKey, PublicKey},
    mail::{DecryptedMail, MailError, MailHeader, decrypt_mail, encrypt_mail, validate_topic},
    padding::PaddingPolicy,
};

/// Encrypts mail to one destination on one topic and decrypts its replies.
#[derive(Debug, Clone)]
pub struct PostOffice {
    sender: PrivateKey,
    destination: PublicKey,
    topic: String,
    next_sequence_number: u64,
    padding: PaddingPolicy,
}

impl PostOffice {
    /// A post office whose first mail will carry sequence number 0.
    pub fn new(sender: PrivateKey, destination: PublicKey, topic: &str) -> Result<Self, MailError> {
        Self::resume(sender, destination, topic, 0)
    }

    /// A post office continuing a conversation at `next_sequence_number`
    /// (after a client restart, for instance).
    pub fn resume(
        sender: PrivateKey,
        destination: PublicKey,
        topic: &str,
        next_sequence_number: u64,
    ) -> Result<Self, MailError> {
        validate_topic(topic)?;
        Ok(Self {
            sender,
            destination,
            topic: topic.to_owned(),
            next_sequence_number,
            padding: PaddingPolicy::default(),
        })
    }

    /// Replaces the padding policy.
    pub fn set_padding(&mut self, policy: PaddingPolicy) {
        self.padding = policy;
    }

    /// The padding policy, with the history it has recorded.
    pub fn padding(&self) -> &PaddingPolicy {
        &self.padding
    }

    /// The topic of this conversation.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The key mail is encrypted to.
    pub fn destination(&self) -> &PublicKey {
        &self.destination
    }

    /// The sender's public key, as the destination will see it.
    pub fn sender_public_key(&self) -> PublicKey {
        self.sender.public_key()
    }

    /// The sequence number the next mail will carry.
    pub fn next_sequence_number(&self) -> u64 {
        self.next_sequence_number
    }

    /// Encrypts `body` as the next mail of this conversation.
    pub fn encrypt_mail<R: RngCore + CryptoRng>(&mut self, body: &[u8], rng: &mut R) -> Result<Vec<u8>, MailError> {
        self.encrypt_mail_with_envelope(body, Vec::new(), rng)
    }

    /// Encrypts `body` with clear-but-authenticated `envelope` bytes.
    pub fn encrypt_mail_with_envelope<R: RngCore + CryptoRng>(
        &mut self,
        body: &[u8],
        envelope: Vec<u8>,
        rng: &mut R,
    ) -> Result<Vec<u8>, MailError> {
        let header = MailHeader::new(&self.topic, self.next_sequence_number)?.with_envelope(envelope)?;
        let min_size = self.padding.min_size_for(body.len());
        let mail = encrypt_mail(&self.sender, &self.destination, &header, body, min_size, rng)?;
        // Only a mail that was built consumes a number.
        self.next_sequence_number += 1;
        Ok(mail)
    }

    /// Decrypts a mail addressed to this post office's sender key and checks
    /// that it comes from the destination and is on this topic.
    pub fn decrypt_mail(&self, mail: &[u8]) -> Result<DecryptedMail, MailError> {
        let decrypted = decrypt_mail(&self.sender, mail)?;
        if decrypted.sender != self.destination {
            return Err(MailError::UnexpectedSender { expected: self.destination, actual: decrypted.sender });
        }
        if decrypted.header.topic() != self.topic {
            return Err(MailError::UnexpectedTopic {
                expected: self.topic.clone(),
                actual: decrypted.header.topic().to_owned(),
            });
        }
        Ok(decrypted)
    }
}
