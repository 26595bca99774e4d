//! Mail protocol: round trips, and every way a hostile host can damage a mail.

use conclave_core::{
    MailDecryptor, MailError, MailHeader, PaddingPolicy, PostOffice, PrivateKey, decrypt_mail, encrypt_mail,
    mail::{HANDSHAKE_LEN, MAX_PACKET_PLAINTEXT, encrypted_len, peek_header},
};
use rand_core::OsRng;

fn keys() -> (PrivateKey, PrivateKey) {
    (PrivateKey::generate(&mut OsRng), PrivateKey::generate(&mut OsRng))
}

fn sample(sender: &PrivateKey, recipient: &PrivateKey, body: &[u8]) -> Vec<u8> {
    let header = MailHeader::new("topic-1", 7).unwrap().with_envelope(b"env".to_vec()).unwrap();
    encrypt_mail(sender, &recipient.public_key(), &header, body, 0, &mut OsRng).unwrap()
}

#[test]
fn round_trip_exposes_header_body_and_authenticated_sender() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"secret body");
    let got = decrypt_mail(&enclave, &mail).unwrap();
    assert_eq!(got.body, b"secret body");
    assert_eq!(got.sender, alice.public_key());
    assert_eq!(got.header.topic(), "topic-1");
    assert_eq!(got.header.sequence_number(), 7);
    assert_eq!(got.header.envelope(), b"env");
    assert_eq!(peek_header(&mail).unwrap(), got.header);
}

#[test]
fn the_body_is_not_in_clear() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"attack at dawn, attack at dawn");
    assert!(!mail.windows(6).any(|w| w == b"attack"));
}

#[test]
fn empty_body_round_trips() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"");
    assert_eq!(decrypt_mail(&enclave, &mail).unwrap().body, b"");
}

#[test]
fn a_flipped_bit_anywhere_is_rejected() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"a body of some length, to cover a packet");
    for i in 0..mail.len() {
        for bit in [0u8, 3, 7] {
            let mut bad = mail.clone();
            bad[i] ^= 1 << bit;
            let err = decrypt_mail(&enclave, &bad).expect_err(&format!("flip of bit {bit} at byte {i} accepted"));
            // Every part of the mail is covered: header by the prologue,
            // handshake by its own tags, packets by theirs.
            assert!(
                matches!(
                    err,
                    MailError::HandshakeFailed
                        | MailError::PacketAuthentication { .. }
                        | MailError::Malformed { .. }
                        | MailError::UnsupportedVersion { .. }
                        | MailError::InvalidTopic { .. }
                        | MailError::Truncated { .. }
                        | MailError::TrailingBytes { .. }
                ),
                "byte {i}: unexpected error {err:?}"
            );
        }
    }
}

#[test]
fn header_tampering_breaks_the_handshake() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"body");
    // The sequence number's last byte sits at 4 + topic length + 7.
    let mut bad = mail.clone();
    bad[4 + 7 + 7] ^= 1;
    assert_eq!(peek_header(&bad).unwrap().sequence_number(), 6);
    assert_eq!(decrypt_mail(&enclave, &bad), Err(MailError::HandshakeFailed));
}

#[test]
fn truncation_at_every_length_is_rejected() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"short body");
    for len in 0..mail.len() {
        assert!(decrypt_mail(&enclave, &mail[..len]).is_err(), "prefix of {len} bytes accepted");
    }
}

#[test]
fn missing_terminator_and_cut_packet_are_named() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, b"short body");
    // The terminator is the last 2 + 16 bytes.
    let without_terminator = &mail[..mail.len() - 18];
    assert_eq!(
        decrypt_mail(&enclave, without_terminator),
        Err(MailError::Truncated { reason: "the terminator packet is missing" })
    );
    let cut = &mail[..mail.len() - 18 - 5];
    assert_eq!(decrypt_mail(&enclave, cut), Err(MailError::Truncated { reason: "the last packet is cut short" }));
}

#[test]
fn trailing_bytes_are_rejected() {
    let (alice, enclave) = keys();
    let mut mail = sample(&alice, &enclave, b"body");
    mail.extend_from_slice(b"junk");
    assert_eq!(decrypt_mail(&enclave, &mail), Err(MailError::TrailingBytes { count: 4 }));
}

#[test]
fn reordered_packets_are_rejected() {
    let (alice, enclave) = keys();
    let body = vec![9u8; MAX_PACKET_PLAINTEXT * 2];
    let mail = sample(&alice, &enclave, &body);
    let prefix = 4 + 7 + 8 + 2 + 3 + 2 + HANDSHAKE_LEN;
    let packet = 2 + 65535;
    let mut swapped = mail[..prefix].to_vec();
    swapped.extend_from_slice(&mail[prefix + packet..prefix + 2 * packet]);
    swapped.extend_from_slice(&mail[prefix..prefix + packet]);
    swapped.extend_from_slice(&mail[prefix + 2 * packet..]);
    assert_eq!(swapped.len(), mail.len());
    assert_eq!(decrypt_mail(&enclave, &swapped), Err(MailError::PacketAuthentication { index: 0 }));
}

#[test]
fn mail_for_another_key_is_rejected() {
    let (alice, enclave) = keys();
    let other = PrivateKey::generate(&mut OsRng);
    let mail = sample(&alice, &enclave, b"body");
    assert_eq!(decrypt_mail(&other, &mail), Err(MailError::HandshakeFailed));
}

#[test]
fn a_reply_from_an_unexpected_sender_is_rejected() {
    let (client, enclave) = keys();
    let impostor = PrivateKey::generate(&mut OsRng);
    let post_office = PostOffice::new(client.clone(), enclave.public_key(), "t").unwrap();
    let reply =
        encrypt_mail(&impostor, &client.public_key(), &MailHeader::new("t", 0).unwrap(), b"hi", 0, &mut OsRng).unwrap();
    assert_eq!(
        post_office.decrypt_mail(&reply),
        Err(MailError::UnexpectedSender { expected: enclave.public_key(), actual: impostor.public_key() })
    );
    let genuine =
        encrypt_mail(&enclave, &client.public_key(), &MailHeader::new("t", 0).unwrap(), b"hi", 0, &mut OsRng).unwrap();
    assert_eq!(post_office.decrypt_mail(&genuine).unwrap().body, b"hi");
}

#[test]
fn fixed_padding_makes_different_bodies_the_same_length() {
    let (client, enclave) = keys();
    let mut po = PostOffice::new(client, enclave.public_key(), "t").unwrap();
    po.set_padding(PaddingPolicy::fixed(1000));
    let sizes: Vec<usize> = [0usize, 1, 10, 999, 1000]
        .iter()
        .map(|&n| {
            let mail = po.encrypt_mail(&vec![1u8; n], &mut OsRng).unwrap();
            assert_eq!(decrypt_mail(&enclave, &mail).unwrap().body.len(), n);
            mail.len()
        })
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "lengths differ: {sizes:?}");
    // Without padding, lengths follow the body.
    let mut plain = PostOffice::new(PrivateKey::generate(&mut OsRng), enclave.public_key(), "t").unwrap();
    plain.set_padding(PaddingPolicy::None);
    let a = plain.encrypt_mail(b"a", &mut OsRng).unwrap().len();
    let b = plain.encrypt_mail(b"ab", &mut OsRng).unwrap().len();
    assert_eq!(a + 1, b);
}

#[test]
fn encrypted_len_predicts_the_size() {
    let (alice, enclave) = keys();
    for n in [0, 1, MAX_PACKET_PLAINTEXT - 1, MAX_PACKET_PLAINTEXT, MAX_PACKET_PLAINTEXT + 1, 200_000] {
        let header = MailHeader::new("t", 0).unwrap();
        let mail = encrypt_mail(&alice, &enclave.public_key(), &header, &vec![0; n], 0, &mut OsRng).unwrap();
        assert_eq!(mail.len(), encrypted_len(&header, n), "body of {n} bytes");
    }
}

#[test]
fn five_mib_body_streams_through_the_decryptor() {
    let (alice, enclave) = keys();
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mail = sample(&alice, &enclave, &body);
    let mut decryptor = MailDecryptor::new(&enclave);
    let mut out = Vec::new();
    // Odd piece sizes cross every boundary: header, handshake, packet lengths.
    for piece in mail.chunks(7919) {
        decryptor.update(piece, &mut out).unwrap();
    }
    let opened = decryptor.finish().unwrap();
    assert_eq!(opened.sender, alice.public_key());
    assert_eq!(opened.body_len, body.len() as u64);
    assert!(out == body, "streamed body differs");
}

#[test]
fn streaming_shows_the_sender_before_the_body_ends() {
    let (alice, enclave) = keys();
    let mail = sample(&alice, &enclave, &[5u8; 100_000]);
    let mut decryptor = MailDecryptor::new(&enclave);
    let mut out = Vec::new();
    decryptor.update(&mail[..200], &mut out).unwrap();
    assert_eq!(decryptor.opened().unwrap().sender, alice.public_key());
    assert!(decryptor.finish().is_err(), "finish before the end must fail");
}

#[test]
fn topics_are_validated() {
    for bad in ["", "has space", "slash/", "ü", &"x".repeat(256)] {
        assert!(matches!(MailHeader::new(bad, 0), Err(MailError::InvalidTopic { .. })), "{bad:?} accepted");
    }
    assert!(MailHeader::new(&"a-Z-9".repeat(51), 0).is_ok());
}

#[test]
fn post_office_numbers_mail_from_zero() {
    let (client, enclave) = keys();
    let mut po = PostOffice::new(client, enclave.public_key(), "t").unwrap();
    for expected in 0..3 {
        let mail = po.encrypt_mail(b"x", &mut OsRng).unwrap();
        assert_eq!(decrypt_mail(&enclave, &mail).unwrap().header.sequence_number(), expected);
    }
    assert_eq!(po.next_sequence_number(), 3);
}

#[test]
fn wrong_version_is_named() {
    let (alice, enclave) = keys();
    let mut mail = sample(&alice, &enclave, b"x");
    mail[2] = 9;
    assert_eq!(decrypt_mail(&enclave, &mail), Err(MailError::UnsupportedVersion { found: 9, supported: 2 }));
}

#[test]
fn padding_longer_than_a_packet_round_trips() {
    // A short body padded across several packets: whole packets of padding
    // come after the body's end.
    let (alice, enclave) = keys();
    for (body_len, min_size) in [(10usize, 200_000usize), (0, 65_520), (65_519, 131_038), (70_000, 140_000)] {
        let header = MailHeader::new("t", 0).unwrap();
        let body = vec![0x5Au8; body_len];
        let mail = encrypt_mail(&alice, &enclave.public_key(), &header, &body, min_size, &mut OsRng).unwrap();
        assert_eq!(mail.len(), encrypted_len(&header, min_size.max(body_len)));
        assert_eq!(decrypt_mail(&enclave, &mail).unwrap().body, body, "body {body_len}, padded to {min_size}");
    }
}
