//! Mail encryption and decryption next to the raw primitives they are made
//! of, measured in the same run so the overhead shows as a ratio.
//!
//! Run: `cargo bench -p conclave-core --bench mail`

use aes_gcm::{Aes256Gcm, KeyInit, aead::AeadInPlace};
use conclave_core::{MailHeader, PrivateKey, decrypt_mail, encrypt_mail};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

const SIZES: [(&str, usize); 2] = [("100B", 100), ("1MiB", 1 << 20)];

fn mail(c: &mut Criterion) {
    let sender = PrivateKey::generate(&mut OsRng);
    let recipient = PrivateKey::generate(&mut OsRng);
    let header = MailHeader::new("bench", 0).unwrap();
    // Derived once: a sender knows the recipient's public key already.
    let recipient_public = recipient.public_key();
    let mut group = c.benchmark_group("mail");
    for (name, size) in SIZES {
        let body = vec![0xA5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encrypt", name), &body, |b, body| {
            b.iter(|| encrypt_mail(&sender, &recipient_public, &header, body, 0, &mut OsRng).unwrap())
        });
        let encrypted = encrypt_mail(&sender, &recipient_public, &header, &body, 0, &mut OsRng).unwrap();
        group.bench_with_input(BenchmarkId::new("decrypt", name), &encrypted, |b, mail| {
            b.iter(|| decrypt_mail(&recipient, mail).unwrap())
        });
    }
    group.finish();
}

fn raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw");
    let a = StaticSecret::random_from_rng(OsRng);
    let b_public = PublicKey::from(&StaticSecret::random_from_rng(OsRng));
    group.bench_function("x25519_dh", |b| b.iter(|| a.diffie_hellman(&b_public)));
    group.bench_function("x25519_keygen", |b| b.iter(|| PublicKey::from(&StaticSecret::random_from_rng(OsRng))));
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    for (name, size) in SIZES {
        let mut buffer = vec![0xA5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("aes256gcm_seal", name), |b| {
            b.iter(|| cipher.encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut buffer).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, mail, raw);
criterion_main!(benches);
