//! `decrypt_mail`, `MailDecryptor` and `peek_header`: a mail addressed to a
//! fixed key. The first input byte sets the streaming chunk size; whole and
//! streamed decryption must agree. libFuzzer cannot forge Noise, so success is
//! only expected from seeds made with `enclave_key` (see docs/fuzzing.md).
#![no_main]

use conclave_core::{MailDecryptor, PrivateKey, decrypt_mail, mail::peek_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, mail)) = data.split_first() else { return };
    let key = PrivateKey::from_bytes([0x42; 32]);
    let _ = peek_header(mail);
    let whole = decrypt_mail(&key, mail);

    let mut decryptor = MailDecryptor::new(&key);
    let mut body = Vec::new();
    let streamed = mail
        .chunks(usize::from(chunk).max(1))
        .try_for_each(|piece| decryptor.update(piece, &mut body))
        .and_then(|()| decryptor.finish());
    match (whole, streamed) {
        (Ok(mail), Ok(opened)) => {
            assert_eq!(mail.body, body);
            assert_eq!(mail.header, opened.header);
            assert_eq!(mail.sender, opened.sender);
        }
        (Err(_), Err(_)) => {}
        (whole, streamed) => panic!("whole {:?} but streamed {:?}", whole.is_ok(), streamed.is_ok()),
    }
});
