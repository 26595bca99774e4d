//! Robustness of every parser in `conclave-core`, on stable Rust: the `fuzz/`
//! targets' properties, checked by deterministic loops that run in `cargo test`.
//!
//! ```text
//!  seed ─► xorshift ─► random bytes ┐
//!  valid input ─► mutate ───────────┼─► parser, under catch_unwind and an allocation probe
//!  tests/regressions/<parser>/* ────┘        │
//!                                            └─► never a panic, never a forgery,
//!                                                no allocation a length field asked for
//! ```
//!
//! Everything is reproducible: keys, nonces and mutations come from fixed
//! seeds. When a check fails, the input is written to `CARGO_TARGET_TMPDIR`
//! and the message says where; copy it into `tests/regressions/<parser>/` so it
//! is replayed forever (see the README there).

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use conclave_attestation::HardwareEvidence;
use conclave_core::{
    EnclaveConstraint, EnclaveInstanceInfo, EnclaveReport, Evidence, MailDecryptor, MailHeader, PrivateKey,
    RequestFrame, ResponseFrame,
    channel::{self, EnclaveToHost, HostToEnclave, MAX_FRAME_LEN},
    command::HostCommand,
    decrypt_mail, encrypt_mail, key_binding,
    mail::{MAIL_MAGIC, MAIL_VERSION, peek_header},
    sealing::{self, SealingIdentity, SealingPolicy},
    signature::{self, EnclaveSignature},
};
use ed25519_dalek::SigningKey;
use rand_core::{CryptoRng, RngCore};
use serde_bytes::ByteBuf;

// ---------------------------------------------------------------------------
// Deterministic randomness and mutation
// ---------------------------------------------------------------------------

/// xorshift64*: tiny, fast and reproducible. Not cryptographic; it only drives
/// the mutations and the test keys, never anything outside this file.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias does not matter here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill_bytes(&mut out);
        out
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.next() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.iter_mut().for_each(|b| *b = self.next() as u8);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Test-only: the ephemeral keys and nonces of these tests' samples come from
/// the seeded generator so that every mutated input can be reproduced.
impl CryptoRng for Rng {}

/// A big-endian length (or count, or version) field of a valid input.
#[derive(Debug, Clone, Copy)]
struct Field {
    at: usize,
    width: usize,
}

/// Values a length field is set to: the edges parsers get wrong.
fn extremes(width: usize, current: u64) -> Vec<u64> {
    let max = if width >= 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
    let mut v = vec![0, 1, max, max - 1, max >> 1, (max >> 1) + 1, current.wrapping_add(1), current.wrapping_sub(1)];
    v.extend([0xFF, 0xFFFF, 0xFFFF_FFFF].into_iter().filter(|&x| x <= max));
    v.into_iter().map(|x| x & max).collect()
}

fn write_be(out: &mut [u8], at: usize, width: usize, value: u64) {
    for i in 0..width {
        if let Some(b) = out.get_mut(at + i) {
            *b = (value >> (8 * (width - 1 - i))) as u8;
        }
    }
}

fn read_be(input: &[u8], at: usize, width: usize) -> u64 {
    (0..width).fold(0, |acc, i| (acc << 8) | u64::from(input.get(at + i).copied().unwrap_or(0)))
}

/// One to three mutations of `input`: bit flips, byte changes, truncation,
/// insertion, deletion, duplicated ranges, and length fields (the known ones in
/// `fields`, else any offset, or a postcard varint) set to extremes.
fn mutate(rng: &mut Rng, input: &[u8], fields: &[Field]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                let random = rng.next() as u8;
                out[i] = rng.pick(&[0x00, 0x01, 0x7F, 0x80, 0xFF, random]);
            }
            2 => out.truncate(rng.below(len + 1)),
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                out.splice(at..at, extra);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                out.drain(at..at + n);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let copy = out[at..at + n].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            6 | 7 if !fields.is_empty() => {
                let f = rng.pick(fields);
                let value = rng.pick(&extremes(f.width, read_be(&out, f.at, f.width)));
                write_be(&mut out, f.at, f.width, value);
            }
            8 if len > 0 => {
                let width = rng.pick(&[1, 2, 4, 8]);
                let at = rng.below(len);
                let value = rng.pick(&extremes(width, read_be(&out, at, width)));
                write_be(&mut out, at, width, value);
            }
            9 => {
                // A postcard varint of u32::MAX or u64::MAX, or a dangling continuation byte.
                let varint: &[u8] = rng.pick(&[
                    &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F][..],
                    &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
                    &[0x80],
                ]);
                let at = rng.below(len + 1);
                if rng.chance(2) {
                    let end = (at + varint.len()).min(len);
                    out.splice(at..end, varint.iter().copied());
                } else {
                    out.splice(at..at, varint.iter().copied());
                }
            }
            _ => {
                if let Some(b) = out.last_mut() {
                    *b = b.wrapping_add(1);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running a parser: no panic, bounded allocation, a reproducible failure
// ---------------------------------------------------------------------------

/// Records the largest single allocation each thread asks for, so a test can
/// prove that a forged length field never turns into a huge allocation (a
/// `Vec::with_capacity(len)` of 4 GiB can succeed lazily and go unnoticed).
mod probe {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    pub(crate) struct LargestAllocation;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn record(size: usize) {
        // `try_with`: allocations during thread teardown are simply not recorded.
        let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    }

    // A global allocator is an `unsafe` trait; this one forwards every call to
    // `System` unchanged and only notes the requested size.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for LargestAllocation {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            // SAFETY: the caller's contract for `alloc` is passed on unchanged.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            record(new_size);
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Runs `f` and returns its result with the largest allocation it made on this thread.
    pub(crate) fn largest_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let outer = LARGEST.with(|l| l.replace(0));
        let out = f();
        let inner = LARGEST.with(|l| l.replace(outer));
        LARGEST.with(|l| l.set(outer.max(inner)));
        (out, inner)
    }
}

#[global_allocator]
static PROBE: probe::LargestAllocation = probe::LargestAllocation;

/// What one parser may allocate at once: a small multiple of its input plus a
/// fixed allowance (postcard preallocates at most 1 MiB per sequence; a mail
/// packet is at most 64 KiB). Never what a length field claims.
fn allocation_budget(input_len: usize) -> usize {
    2 * 1024 * 1024 + 4 * input_len
}

fn hex_head(input: &[u8]) -> String {
    let shown = &input[..input.len().min(96)];
    let more = if input.len() > shown.len() { format!("… ({} bytes)", input.len()) } else { String::new() };
    format!("{}{more}", hex::encode(shown))
}

/// Saves a failing input where the failure message points, for tests/regressions/.
fn save_failure(parser: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("robustness-failures").join(parser);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{:016x}", fnv1a(input)));
    let _ = std::fs::write(&path, input);
    path
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Runs `check` on `input` for `parser`: a panic, a failed property or an
/// allocation beyond [`allocation_budget`] fails the test, naming the input.
fn run(parser: &str, input: &[u8], check: impl FnOnce() -> Result<(), String>) {
    let (outcome, largest) = probe::largest_during(|| catch_unwind(AssertUnwindSafe(check)));
    let problem = match outcome {
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Some(format!("panicked: {text}"))
        }
        Ok(Err(property)) => Some(property),
        Ok(Ok(())) if largest > allocation_budget(input.len()) => {
            Some(format!("allocated {largest} bytes at once for a {}-byte input", input.len()))
        }
        Ok(Ok(())) => None,
    };
    if let Some(problem) = problem {
        let saved = save_failure(parser, input);
        panic!(
            "{parser}: {problem}\ninput: {}\nsaved to {}; copy it to crates/core/tests/regressions/{parser}/",
            hex_head(input),
            saved.display()
        );
    }
}

/// Random inputs of many lengths, biased to short ones and to `prefixes` that get
/// past a parser's first checks.
fn random_inputs(rng: &mut Rng, count: usize, prefixes: &[&[u8]]) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = match i % 4 {
                0 => rng.below(16),
                1 => rng.below(160),
                2 => rng.below(1024),
                _ => rng.below(8192),
            };
            let mut input = if !prefixes.is_empty() && rng.chance(2) { rng.pick(prefixes).to_vec() } else { vec![] };
            input.extend(rng.bytes(len));
            input
        })
        .collect()
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

// ---------------------------------------------------------------------------
// Parser properties, shared by the loops and the regression replay
// ---------------------------------------------------------------------------

fn enclave_key() -> PrivateKey {
    PrivateKey::from_bytes([0x42; 32])
}

fn client_key() -> PrivateKey {
    PrivateKey::from_bytes([0x24; 32])
}

/// Mail: `decrypt_mail` and a `MailDecryptor` fed in random pieces agree; a mail
/// that decrypts is byte-identical to a genuine one; `peek_header` never panics.
fn check_mail(input: &[u8], genuine: &[Vec<u8>], chunk_seed: u64) -> Result<(), String> {
    let key = enclave_key();
    let _ = peek_header(input);
    let whole = decrypt_mail(&key, input);

    let mut rng = Rng::new(chunk_seed);
    let mut decryptor = MailDecryptor::new(&key);
    let mut body = Vec::new();
    let mut rest = input;
    let mut streamed = Ok(());
    while !rest.is_empty() {
        let n = (1 + rng.below(rest.len().min(4096))).min(rest.len());
        if let Err(e) = decryptor.update(&rest[..n], &mut body) {
            streamed = Err(e);
            break;
        }
        rest = &rest[n..];
    }
    let streamed = streamed.and_then(|()| decryptor.finish());

    match (&whole, &streamed) {
        (Ok(mail), Ok(opened)) => {
            ensure(genuine.iter().any(|g| g == input), || "a mail that is not genuine decrypted".into())?;
            ensure(mail.body == body && mail.header == opened.header && mail.sender == opened.sender, || {
                "streaming and whole decryption disagree on a good mail".into()
            })?;
            ensure(mail.sender == client_key().public_key(), || "wrong sender authenticated".into())
        }
        (Err(_), Err(_)) => Ok(()),
        _ => Err(format!("whole decryption {:?} but streaming {:?}", whole.is_ok(), streamed.is_ok())),
    }
}

/// EnclaveInstanceInfo: what decodes re-encodes to the same bytes (one encoding
/// per value), and simulated evidence verifies only if nothing was changed.
fn check_info(input: &[u8], genuine_simulated: &[u8]) -> Result<(), String> {
    let Ok(info) = EnclaveInstanceInfo::decode(input) else { return Ok(()) };
    ensure(info.encode() == input, || "decoded info re-encodes differently".into())?;
    let verified = info.verify(NOW);
    if matches!(info.evidence(), Evidence::Simulation { .. }) && verified.is_ok() {
        ensure(input == genuine_simulated, || "altered simulated evidence verified".into())?;
    }
    Ok(())
}

fn check_evidence(input: &[u8]) -> Result<(), String> {
    if let Ok(evidence) = Evidence::from_bytes(input) {
        ensure(evidence.to_bytes() == input, || "decoded evidence re-encodes differently".into())?;
    }
    if let Ok(report) = EnclaveReport::from_bytes(input) {
        ensure(report.to_bytes() == input, || "decoded report re-encodes differently".into())?;
    }
    Ok(())
}

/// Constraint: an error, or a constraint whose canonical form re-parses to the
/// same constraint and is a fixed point of printing.
fn check_constraint(text: &str) -> Result<(), String> {
    let Ok(constraint) = EnclaveConstraint::parse(text) else { return Ok(()) };
    let canonical = constraint.to_string();
    match EnclaveConstraint::parse(&canonical) {
        Ok(again) if again == constraint && again.to_string() == canonical => Ok(()),
        Ok(again) => Err(format!("canonical form {canonical:?} re-parses to {again:?}, not {constraint:?}")),
        Err(e) => Err(format!("canonical form {canonical:?} of {text:?} does not parse: {e}")),
    }
}

/// Channel: what decodes survives a round trip; a length prefix is refused above the limit.
fn check_channel(input: &[u8]) -> Result<(), String> {
    if let Ok(message) = channel::decode_body::<HostToEnclave>(input) {
        let again = channel::decode_body::<HostToEnclave>(&channel::encode_frame(&message)[4..]);
        ensure(again.as_ref() == Ok(&message), || format!("host message {message:?} does not round-trip"))?;
    }
    if let Ok(message) = channel::decode_body::<EnclaveToHost>(input) {
        let again = channel::decode_body::<EnclaveToHost>(&channel::encode_frame(&message)[4..]);
        ensure(again.as_ref() == Ok(&message), || format!("enclave message {message:?} does not round-trip"))?;
    }
    if let Some(prefix) = input.first_chunk::<4>() {
        let claimed = u32::from_be_bytes(*prefix) as usize;
        let accepted = channel::frame_len(*prefix).is_ok();
        ensure(accepted == (claimed <= MAX_FRAME_LEN), || format!("frame_len({claimed}) accepted = {accepted}"))?;
    }
    Ok(())
}

const PLATFORM_SECRET: [u8; 32] = [0x5a; 32];
const SEALING_IDENTITY: SealingIdentity =
    SealingIdentity { code_hash: [0x11; 32], code_signing_key_hash: [0x22; 32], product_id: 7, revocation_level: 3 };

/// Sealing: only a genuine blob unseals, and only to its own plaintext.
fn check_sealed(input: &[u8], genuine: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
    let Ok(unsealed) = sealing::unseal(&PLATFORM_SECRET, &SEALING_IDENTITY, input, b"aad") else { return Ok(()) };
    ensure(genuine.iter().any(|(blob, plain)| blob == input && plain[..] == unsealed.plaintext[..]), || {
        "an altered blob unsealed".into()
    })
}

/// Enclave signature files: one encoding per value; only the genuine file verifies.
fn check_signature(input: &[u8], genuine: &[u8], code_hash: &[u8; 32]) -> Result<(), String> {
    let Ok(decoded) = EnclaveSignature::decode(input) else { return Ok(()) };
    ensure(decoded.encode() == input, || "decoded signature re-encodes differently".into())?;
    if decoded.verify(code_hash).is_ok() {
        ensure(input == genuine, || "an altered signature file verified".into())?;
    }
    Ok(())
}

/// Signing-key text: errors never quote the input (it may be a secret).
fn check_signing_key(text: &str) -> Result<(), String> {
    match signature::decode_signing_key(text) {
        Ok(key) => {
            let hex_key = hex::encode(key.to_bytes());
            ensure(text.to_ascii_lowercase().contains(&hex_key), || "decoded a key that is not in the text".into())
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            let leaked = text
                .split_whitespace()
                .filter(|word| word.len() >= 16 && word.bytes().all(|b| b.is_ascii_hexdigit()))
                .any(|word| shown.contains(&word[..16]));
            ensure(!leaked, || format!("error quotes the key text: {shown}"))
        }
    }
}

/// Request and response frames: what splits re-wraps to the same bytes.
fn check_frame(input: &[u8]) -> Result<(), String> {
    if let Ok((frame, rest)) = RequestFrame::unwrap(input) {
        ensure(frame.wrap(rest) == input, || "request frame re-wraps differently".into())?;
    }
    if let Ok((frame, rest)) = ResponseFrame::unwrap(input) {
        ensure(frame.wrap(rest) == input, || "response frame re-wraps differently".into())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------

const NOW: u64 = 1_800_000_000;

/// Genuine mails with every length field located: empty body, a short body with
/// an envelope, padding, and a body of two packets.
fn sample_mails(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<Field>)> {
    let header = MailHeader::new("topic-1", 7).unwrap();
    let cases: [(MailHeader, Vec<u8>, usize); 4] = [
        (header.clone(), vec![], 0),
        (header.clone().with_envelope(b"envelope".to_vec()).unwrap(), b"a short body".to_vec(), 0),
        (MailHeader::new("a", u64::MAX).unwrap(), b"padded".to_vec(), 300),
        (header, rng.bytes(70_000), 0),
    ];
    let enclave = enclave_key().public_key();
    cases
        .into_iter()
        .map(|(header, body, min_size)| {
            let mail = encrypt_mail(&client_key(), &enclave, &header, &body, min_size, rng).unwrap();
            let topic_len = header.topic().len();
            let mut fields = vec![Field { at: 3, width: 1 }, Field { at: 4 + topic_len + 8, width: 2 }];
            let mut at = header.encode_prefix().len();
            while at + 2 <= mail.len() {
                fields.push(Field { at, width: 2 });
                at += 2 + read_be(&mail, at, 2) as usize;
            }
            assert_eq!(at, mail.len(), "sample mail frames do not tile the mail");
            (mail, fields)
        })
        .collect()
}

fn report(rng: &mut Rng, data_signing_key: &[u8; 32], encryption_key: &conclave_core::PublicKey) -> EnclaveReport {
    EnclaveReport {
        code_hash: rng.array(),
        code_signing_key_hash: rng.array(),
        product_id: rng.next() as u16,
        revocation_level: rng.next() as u16,
        report_data: key_binding(data_signing_key, encryption_key),
        timestamp_unix: NOW - 60,
    }
}

/// Encoded infos (mock, simulated, and with a small synthetic hardware
/// evidence) and their length fields.
fn sample_infos(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<Field>)> {
    let signing_key = SigningKey::from_bytes(&rng.array());
    let signing = signing_key.verifying_key().to_bytes();
    let encryption = PrivateKey::from_bytes(rng.array()).public_key();
    let attestation_key = SigningKey::from_bytes(&rng.array());
    let evidences = [
        Evidence::Mock(report(rng, &signing, &encryption)),
        Evidence::simulated_insecure(report(rng, &signing, &encryption), &attestation_key),
        Evidence::Hardware(HardwareEvidence::SgxDcap { quote: rng.bytes(40), collateral: b"{}".to_vec() }),
        Evidence::Hardware(HardwareEvidence::SevSnp { report: rng.bytes(20), vcek: vec![], chain: rng.bytes(3) }),
    ];
    evidences
        .into_iter()
        .map(|evidence| {
            let run = conclave_core::StateCheckpoint { counter: 1, id: rng.array() };
            let bytes = EnclaveInstanceInfo::signed(&signing_key, encryption, run, evidence).encode();
            // Version, evidence kind and length (after the keys, the run
            // checkpoint and its signature), then the hardware encoding's
            // version, tag and field lengths.
            const K: usize = 4 + 2 + 64 + 40 + 64;
            let mut fields = vec![Field { at: 4, width: 2 }, Field { at: K, width: 1 }, Field { at: K + 1, width: 4 }];
            if bytes[K] == 3 {
                fields.push(Field { at: K + 5, width: 1 });
                fields.push(Field { at: K + 6, width: 1 });
                let mut at = K + 7;
                while at + 4 <= bytes.len() {
                    fields.push(Field { at, width: 4 });
                    at += 4 + read_be(&bytes, at, 4) as usize;
                }
            }
            (bytes, fields)
        })
        .collect()
}

/// A `Start` message, built from its postcard bytes so that this file does not
/// depend on the variant's exact fields (they change as the runtime grows):
/// the layouts with and without the one-byte sealing policy are both tried.
fn start_message(rng: &mut Rng) -> HostToEnclave {
    let mut head = vec![1u8]; // variant index of Start
    head.extend(rng.bytes(64)); // code hash, code-signing key hash
    head.extend([0x03, 0xAC, 0x02]); // product id 3, revocation level 300 (varints)
    head.extend(rng.bytes(32)); // platform secret
    head.extend([0x01, 40]); // Some(sealed state) of 40 bytes
    head.extend(rng.bytes(40));
    head.extend([0x02, 0x01, 0x05]); // two mails to self: id 1, 5 bytes ...
    head.extend(rng.bytes(5));
    head.extend([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00]); // ... id u64::MAX, empty
    let limit = [0x80, 0x80, 0x40]; // persistent map limit 1 MiB (varint)
    let with_policy = [&head[..], &[0x02], &limit].concat();
    let without_policy = [&head[..], &limit].concat();
    [without_policy, with_policy]
        .iter()
        .find_map(|bytes| match channel::decode_body::<HostToEnclave>(bytes) {
            Ok(start @ HostToEnclave::Start { .. }) => Some(start),
            _ => None,
        })
        .expect("a Start message decodes")
}

fn host_messages(rng: &mut Rng) -> Vec<HostToEnclave> {
    vec![
        HostToEnclave::Hello { version: 1 },
        start_message(rng),
        HostToEnclave::DeliverMail { mail: ByteBuf::from(rng.bytes(60)), routing_hint: Some("client-1".into()) },
        HostToEnclave::CallEnclave { bytes: ByteBuf::from(rng.bytes(10)) },
        HostToEnclave::Stop,
        HostToEnclave::HostCallResult { result: Ok(Some(ByteBuf::from(rng.bytes(7)))) },
        HostToEnclave::HostCallResult { result: Err("no callback".into()) },
        HostToEnclave::EvidenceResult { result: Ok(ByteBuf::from(rng.bytes(150))) },
    ]
}

fn enclave_messages(rng: &mut Rng) -> Vec<EnclaveToHost> {
    vec![
        EnclaveToHost::Hello { version: 1, sandbox: "seccomp, landlock".into() },
        EnclaveToHost::CallUntrustedHost { bytes: ByteBuf::from(rng.bytes(12)) },
        EnclaveToHost::EvidenceRequest { report: ByteBuf::from(rng.bytes(140)) },
        EnclaveToHost::Done {
            response: Some(ByteBuf::from(rng.bytes(30))),
            commands: vec![
                HostCommand::PostMail { bytes: rng.bytes(50), routing_hint: Some("c".into()) },
                HostCommand::StoreSealedState {
                    blob: rng.bytes(20),
                    counter: 4,
                    state_id: rng.array(),
                    nonce: rng.array(),
                },
                HostCommand::StoreMailToSelf { blob: rng.bytes(9) },
                HostCommand::DeleteMailToSelf { id: 77 },
            ],
            outcome: Some("ACCEPTED".into()),
        },
        EnclaveToHost::Failed { code: "enclave-error".into() },
    ]
}

fn sealed_samples(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    [(SealingPolicy::CodeHash, vec![]), (SealingPolicy::SignerAndProduct, rng.bytes(100))]
        .into_iter()
        .map(|(policy, plain)| {
            let blob = sealing::seal(&PLATFORM_SECRET, &SEALING_IDENTITY, policy, &plain, b"aad", rng).unwrap();
            (blob, plain)
        })
        .collect()
}

/// Runs `body` and says so if it took longer than `limit` (a hang or a
/// quadratic blow-up, not a slow machine: the limits are generous).
fn within<T>(what: &str, limit: Duration, body: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = body();
    let took = start.elapsed();
    // Reported, not asserted: wall-clock limits make tests flaky on a busy
    // machine. A real hang still stops the run; a blow-up shows here.
    if took >= limit {
        eprintln!("note: {what} took {took:?}, more than the expected {limit:?}");
    }
    out
}

// ---------------------------------------------------------------------------
// The loops
// ---------------------------------------------------------------------------

#[test]
fn mail_survives_random_and_mutated_input() {
    let mut rng = Rng::new(1);
    let samples = sample_mails(&mut rng);
    let genuine: Vec<Vec<u8>> = samples.iter().map(|(m, _)| m.clone()).collect();
    for mail in &genuine {
        run("mail", mail, || {
            check_mail(mail, &genuine, 0)
                .and_then(|()| ensure(decrypt_mail(&enclave_key(), mail).is_ok(), || "a genuine mail failed".into()))
        });
    }

    // Random bytes, and random bytes after a valid magic and version or a whole valid prefix.
    let prefix = MailHeader::new("topic-1", 7).unwrap().encode_prefix();
    let mut with_handshake_len = prefix.clone();
    with_handshake_len.extend_from_slice(&(conclave_core::mail::HANDSHAKE_LEN as u16).to_be_bytes());
    let starts: [&[u8]; 3] = [&[MAIL_MAGIC[0], MAIL_MAGIC[1], MAIL_VERSION], &prefix, &with_handshake_len];
    within("random mails", Duration::from_secs(20), || {
        for (i, input) in random_inputs(&mut rng, 1500, &starts).into_iter().enumerate() {
            run("mail", &input, || check_mail(&input, &genuine, i as u64));
        }
    });

    within("mutated mails", Duration::from_secs(30), || {
        for i in 0..2400u64 {
            let (mail, fields) = &samples[i as usize % samples.len()];
            let input = mutate(&mut rng, mail, fields);
            run("mail", &input, || check_mail(&input, &genuine, i));
        }
    });
}

#[test]
fn instance_info_and_evidence_survive_random_and_mutated_input() {
    let mut rng = Rng::new(2);
    let samples = sample_infos(&mut rng);
    let simulated = samples[1].0.clone();
    for (info, _) in &samples {
        run("info", info, || {
            let decoded = EnclaveInstanceInfo::decode(info).map_err(|e| e.to_string())?;
            ensure(decoded.encode() == *info, || "sample does not round-trip".into())
        });
    }
    assert!(EnclaveInstanceInfo::decode(&simulated).unwrap().verify(NOW).is_ok(), "the simulated sample verifies");

    let starts: [&[u8]; 2] = [b"CEII\x00\x02", &simulated[..174]];
    for input in random_inputs(&mut rng, 1500, &starts) {
        run("info", &input, || check_info(&input, &simulated));
    }
    for i in 0..4000 {
        let (info, fields) = &samples[i % samples.len()];
        let input = mutate(&mut rng, info, fields);
        run("info", &input, || check_info(&input, &simulated));
        // The evidence alone, and the report inside it.
        let evidence = &input[input.len().min(174)..];
        run("evidence", evidence, || check_evidence(evidence));
        let report = &info[179..info.len().min(179 + 140)];
        let report = mutate(&mut rng, report, &[]);
        run("evidence", &report, || check_evidence(&report));
    }
}

#[test]
fn short_inputs_claiming_huge_lengths_fail_fast_and_small() {
    let mut rng = Rng::new(3);
    let infos = sample_infos(&mut rng);
    let (mails, sealed) = (sample_mails(&mut rng), sealed_samples(&mut rng));
    let genuine: Vec<Vec<u8>> = mails.iter().map(|(m, _)| m.clone()).collect();
    let genuine_sealed = sealed.clone();
    for huge in [0u64, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, MAX_FRAME_LEN as u64, MAX_FRAME_LEN as u64 + 1] {
        // Every known length field of every sample, set to `huge` and cut short.
        for (sample, fields) in infos.iter().chain(mails.iter()) {
            for field in fields {
                let mut input = sample.clone();
                write_be(&mut input, field.at, field.width, huge);
                input.truncate((field.at + field.width + 8).min(input.len()));
                within("a forged length", Duration::from_secs(1), || {
                    run("info", &input, || check_info(&input, &infos[1].0));
                    run("mail", &input, || check_mail(&input, &genuine, huge));
                });
            }
        }
        // The channel's u32 prefix: refused above MAX_FRAME_LEN, never allocated by frame_len.
        let prefix = (huge as u32).to_be_bytes();
        run("channel", &prefix, || check_channel(&prefix));
        // Sealed blobs carry no length: a huge tail is just ciphertext that fails its tag.
        let mut blob = genuine_sealed[0].0.clone();
        write_be(&mut blob, 5, 2, huge);
        run("sealed", &blob, || check_sealed(&blob, &genuine_sealed));
    }
    assert!(channel::frame_len(u32::MAX.to_be_bytes()).is_err());
    assert_eq!(channel::frame_len((MAX_FRAME_LEN as u32).to_be_bytes()), Ok(MAX_FRAME_LEN));
    assert!(channel::frame_len((MAX_FRAME_LEN as u32 + 1).to_be_bytes()).is_err());
    // Postcard counts: a Start whose self_mail claims u32::MAX entries, and a
    // byte string claiming u64::MAX bytes, with nothing behind them.
    for body in [
        &[1u8, 0x00][..],
        &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
        &[2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ] {
        within("a forged postcard count", Duration::from_secs(1), || run("channel", body, || check_channel(body)));
    }
    let start = channel::encode_frame(&host_messages(&mut rng)[1]);
    // Variant 1 (Start), then 32 + 32 + 2 + 2 bytes of identity (u16s as varints) ...
    for cut in 0..start.len() - 4 {
        let mut input = start[4..4 + cut].to_vec();
        input.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        run("channel", &input, || check_channel(&input));
    }
}

#[test]
fn constraints_error_or_round_trip_through_their_canonical_form() {
    let mut rng = Rng::new(4);
    // Random text over the constraint alphabet, and random bytes read as UTF-8.
    const ALPHABET: &[&str] = &[
        "C", "S", "PROD", "REVOKE", "SEC", "EXPIRE", "SIMKEY", ":", "0", "1", "7", "9", "a", "F", "e", "P", "T", "W",
        "Y", "M", "D", "H", "S", ".", ",", "-", "+", " ", "\t", "\n", "\u{a0}", "\u{2003}", "é", "INSECURE", "STALE",
        "SECURE", "\0",
    ];
    for _ in 0..3000 {
        let len = rng.below(40);
        let text: String = (0..len).map(|_| rng.pick(ALPHABET)).collect();
        run("constraint", text.as_bytes(), || check_constraint(&text));
        let len = rng.below(200);
        let bytes = rng.bytes(len);
        let text = String::from_utf8_lossy(&bytes);
        run("constraint", &bytes, || check_constraint(&text));
    }
    // Mutations of valid constraints, at byte and token level.
    for i in 0..4000 {
        let (valid, _) = valid_constraint(&mut rng);
        let text = if i % 2 == 0 {
            String::from_utf8_lossy(&mutate(&mut rng, valid.as_bytes(), &[])).into_owned()
        } else {
            let mut tokens: Vec<String> = valid.split_whitespace().map(str::to_owned).collect();
            let n = tokens.len();
            match rng.below(5) {
                0 => {
                    let t = tokens[rng.below(n)].clone();
                    tokens.insert(rng.below(n + 1), t);
                }
                1 => {
                    tokens.remove(rng.below(n));
                }
                2 => tokens.swap(rng.below(n), rng.below(n)),
                3 => {
                    let at = rng.below(n);
                    tokens[at].push_str(rng.pick(ALPHABET));
                }
                _ => {
                    let at = rng.below(n);
                    let token = &tokens[at];
                    let cut = rng.below(token.len() + 1);
                    tokens[at] = token.get(..cut).unwrap_or(token).to_owned();
                }
            }
            tokens.join(rng.pick(&[" ", "\t", "  "]))
        };
        run("constraint", text.as_bytes(), || check_constraint(&text));
    }
}

/// A random valid constraint, with tokens shuffled and odd whitespace, and the
/// canonical form it must print.
fn valid_constraint(rng: &mut Rng) -> (String, String) {
    let hash = |rng: &mut Rng| {
        let len = rng.pick(&[32, 48]);
        let bytes = rng.bytes(len);
        if rng.chance(3) { hex::encode_upper(bytes) } else { hex::encode(bytes) }
    };
    let mut tokens = Vec::new();
    for _ in 0..rng.below(3) {
        tokens.push(format!("C:{}", hash(rng)));
    }
    let with_signer = tokens.is_empty() || rng.chance(2);
    if with_signer {
        for _ in 0..1 + rng.below(2) {
            tokens.push(format!("S:{}", hash(rng)));
        }
        let product = rng.next() as u16;
        // Leading zeros are accepted and dropped by the canonical form.
        tokens.push(if rng.chance(4) { format!("PROD:00{product}") } else { format!("PROD:{product}") });
    }
    if rng.chance(2) {
        tokens.push(format!("REVOKE:{}", rng.next() as u16));
    }
    if rng.chance(2) {
        tokens.push(format!("SEC:{}", rng.pick(&["INSECURE", "STALE", "SECURE"])));
    }
    if rng.chance(2) {
        let n = 1 + rng.below(1000);
        let periods = [
            format!("P{n}D"),
            format!("PT{n}H"),
            format!("P{n}W"),
            format!("PT{n}M"),
            format!("PT{n}S"),
            format!("P1Y{n}M"),
            format!("P{n}DT12H30M5S"),
            format!("P6M{n}W5D"),
            format!("P{n}W1DT1H"),
        ];
        let period = &periods[rng.below(periods.len())];
        tokens.push(format!("EXPIRE:{period}"));
    }
    for _ in 0..rng.below(3) {
        // SIMKEY values must be ed25519 points, so derive them from a random secret.
        let key = SigningKey::from_bytes(&rng.array()).verifying_key().to_bytes();
        tokens.push(format!("SIMKEY:{}", if rng.chance(3) { hex::encode_upper(key) } else { hex::encode(key) }));
    }
    if rng.chance(3) && tokens.iter().any(|t| t.starts_with("C:")) {
        // A repeated code hash, in the other case.
        let first = tokens.iter().find(|t| t.starts_with("C:")).unwrap().clone();
        tokens.push(format!("C:{}", first[2..].to_ascii_lowercase()));
    }
    for i in (1..tokens.len()).rev() {
        tokens.swap(i, rng.below(i + 1));
    }

    // The canonical form: C and S in order of first appearance, lowercase and
    // deduplicated, then PROD, REVOKE, SEC (default STALE), EXPIRE as written, then
    // SIMKEY like C and S.
    let values = |key: &str| {
        let mut seen: Vec<String> = Vec::new();
        for t in &tokens {
            if let Some(v) = t.strip_prefix(key) {
                let v = v.to_ascii_lowercase();
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
        }
        seen
    };
    let mut canonical: Vec<String> = values("C:").into_iter().map(|v| format!("C:{v}")).collect();
    canonical.extend(values("S:").into_iter().map(|v| format!("S:{v}")));
    for key in ["PROD:", "REVOKE:"] {
        if let Some(v) = values(key).first() {
            canonical.push(format!("{key}{}", v.parse::<u16>().unwrap()));
        }
    }
    let sec = tokens.iter().find_map(|t| t.strip_prefix("SEC:")).unwrap_or("STALE");
    canonical.push(format!("SEC:{sec}"));
    if let Some(period) = tokens.iter().find_map(|t| t.strip_prefix("EXPIRE:")) {
        canonical.push(format!("EXPIRE:{period}"));
    }
    canonical.extend(values("SIMKEY:").into_iter().map(|v| format!("SIMKEY:{v}")));

    let space = |rng: &mut Rng| rng.pick(&[" ", "  ", "\t", "\n", "\r\n", " \u{a0}", "\u{2003}"]).to_string();
    let mut text = if rng.chance(4) { space(rng) } else { String::new() };
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            text.push_str(&space(rng));
        }
        text.push_str(t);
    }
    if rng.chance(4) {
        text.push_str(&space(rng));
    }
    (text, canonical.join(" "))
}

#[test]
fn generated_valid_constraints_parse_to_their_canonical_form() {
    let mut rng = Rng::new(5);
    for _ in 0..3000 {
        let (text, expected) = valid_constraint(&mut rng);
        run("constraint", text.as_bytes(), || {
            let parsed = EnclaveConstraint::parse(&text).map_err(|e| format!("valid constraint refused: {e}"))?;
            ensure(parsed.to_string() == expected, || format!("{text:?} printed as {parsed} not {expected}"))?;
            check_constraint(&text)
        });
    }
}

/// `iso8601::duration` stopped at the first character it could not use and did not
/// report the rest, so `EXPIRE:` used to accept trailing garbage and silently drop
/// components: `P1W2D` meant 7 days, `PT1H30` one hour. Saved under
/// `tests/regressions/constraint/`. The jiff parser refuses leftovers, and `P1W2D`
/// is now what it says, 9 days (`tests/constraint.rs` checks the ages).
#[test]
fn expire_refuses_trailing_garbage() {
    let code = format!("C:{}", "ab".repeat(32));
    for period in ["PT1H30", "P30Dxyz", "P1D1Y", "P1DT", "P1W2Dx", "P1W 2D"] {
        let text = format!("{code} EXPIRE:{period}");
        assert!(EnclaveConstraint::parse(&text).is_err(), "{text:?} was accepted");
    }
    let text = format!("{code} EXPIRE:P1W2D");
    assert_eq!(EnclaveConstraint::parse(&text).unwrap().to_string(), format!("{code} SEC:STALE EXPIRE:P1W2D"));
}

#[test]
fn channel_messages_survive_random_and_mutated_input() {
    let mut rng = Rng::new(6);
    let mut samples: Vec<Vec<u8>> =
        host_messages(&mut rng).iter().map(|m| channel::encode_frame(m)[4..].to_vec()).collect();
    samples.extend(enclave_messages(&mut rng).iter().map(|m| channel::encode_frame(m)[4..].to_vec()));
    for sample in &samples {
        run("channel", sample, || check_channel(sample));
    }
    for input in random_inputs(&mut rng, 3000, &[&[1], &[3], &[5], &[6]]) {
        run("channel", &input, || check_channel(&input));
    }
    for i in 0..6000 {
        let input = mutate(&mut rng, &samples[i % samples.len()], &[]);
        run("channel", &input, || check_channel(&input));
    }
    for _ in 0..2000 {
        let prefix = rng.array::<4>();
        run("channel", &prefix, || check_channel(&prefix));
    }
}

#[test]
fn sealed_blobs_never_unseal_when_altered() {
    let mut rng = Rng::new(7);
    let genuine = sealed_samples(&mut rng);
    for (blob, _) in &genuine {
        run("sealed", blob, || {
            let unsealed = sealing::unseal(&PLATFORM_SECRET, &SEALING_IDENTITY, blob, b"aad");
            ensure(unsealed.is_ok(), || "a genuine blob failed".into()).and_then(|()| check_sealed(blob, &genuine))
        });
    }
    let header = &genuine[0].0[..24];
    for input in random_inputs(&mut rng, 1500, &[b"CSEAL\x00\x01", header]) {
        run("sealed", &input, || check_sealed(&input, &genuine));
    }
    let fields = [Field { at: 5, width: 2 }, Field { at: 7, width: 1 }];
    for i in 0..4000 {
        let input = mutate(&mut rng, &genuine[i % genuine.len()].0, &fields);
        run("sealed", &input, || check_sealed(&input, &genuine));
    }
}

#[test]
fn signature_files_and_signing_keys_survive_random_and_mutated_input() {
    let mut rng = Rng::new(8);
    let signer = SigningKey::from_bytes(&rng.array());
    let code_hash: [u8; 32] = rng.array();
    let genuine = EnclaveSignature::sign(&signer, code_hash, 3, 1).encode();
    run("signature", &genuine, || {
        EnclaveSignature::decode(&genuine).map_err(|e| e.to_string())?.verify(&code_hash).map_err(|e| e.to_string())
    });
    for input in random_inputs(&mut rng, 1500, &[b"CNCLSIG\0\x00\x01"]) {
        run("signature", &input, || check_signature(&input, &genuine, &code_hash));
    }
    for _ in 0..4000 {
        let input = mutate(&mut rng, &genuine, &[Field { at: 8, width: 2 }]);
        run("signature", &input, || check_signature(&input, &genuine, &code_hash));
    }

    let key_text = signature::encode_signing_key(&signer);
    let key_text = key_text.as_str();
    for i in 0..3000 {
        let text = if i % 3 == 0 {
            let len = rng.below(120);
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        } else {
            String::from_utf8_lossy(&mutate(&mut rng, key_text.as_bytes(), &[])).into_owned()
        };
        run("signing-key", text.as_bytes(), || check_signing_key(&text));
    }
}

#[test]
fn frames_survive_random_and_mutated_input() {
    use conclave_core::{Answer, ReplyChain, ResponseKind, StateCheckpoint, freshness::ChainLink};
    let mut rng = Rng::new(9);
    let run_checkpoint = StateCheckpoint { counter: 3, id: [7; 32] };
    let request = RequestFrame {
        request_id: [1; 16],
        chain: ReplyChain { index: 2, digest: [2; 32] },
        runs: vec![run_checkpoint],
    };
    let response = ResponseFrame {
        kind: ResponseKind::Reply,
        state: run_checkpoint,
        link: Some(ChainLink { index: 3, previous: [4; 32] }),
        answers: Some(Answer { topic: "t".into(), sequence_number: 5, request_id: [1; 16] }),
    };
    let genuine = [request.wrap(b"mail body"), response.wrap(b"reply body")];
    for input in random_inputs(&mut rng, 2000, &[&[1]]) {
        run("frame", &input, || check_frame(&input));
    }
    for sample in &genuine {
        for _ in 0..3000 {
            let input = mutate(&mut rng, sample, &[Field { at: 0, width: 1 }]);
            run("frame", &input, || check_frame(&input));
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------

/// Replays every file under `tests/regressions/<parser>/` through that parser's
/// checks. A directory name that no parser claims is an error, so a file is
/// never silently skipped.
#[test]
fn regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut rng = Rng::new(10);
    let mails: Vec<Vec<u8>> = sample_mails(&mut rng).into_iter().map(|(m, _)| m).collect();
    let simulated = sample_infos(&mut rng).swap_remove(1).0;
    let sealed = sealed_samples(&mut rng);
    let signer = SigningKey::from_bytes(&[8; 32]);
    let genuine_signature = EnclaveSignature::sign(&signer, [1; 32], 1, 1).encode();

    let mut replayed = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|p| p.is_dir()) {
        let parser = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).unwrap();
            let text = String::from_utf8_lossy(&input);
            let name = format!("{parser}/{}", file.file_name().unwrap().to_string_lossy());
            let check = || match parser.as_str() {
                "mail" => check_mail(&input, &mails, 0),
                "info" => check_info(&input, &simulated),
                "evidence" => check_evidence(&input),
                "constraint" => check_constraint(&text),
                "channel" => check_channel(&input),
                "sealed" => check_sealed(&input, &sealed),
                "signature" => check_signature(&input, &genuine_signature, &[1; 32]),
                "signing-key" => check_signing_key(&text),
                "frame" => check_frame(&input),
                other => Err(format!("no parser is named {other:?}; see tests/regressions/README.md")),
            };
            within(&name, Duration::from_secs(2), || run(&parser, &input, check));
            replayed += 1;
        }
    }
    assert!(replayed > 0, "tests/regressions/ holds no inputs");
}

/// The harness itself: a panic, a failed property and a large allocation are
/// all caught, so a green run means something.
#[test]
fn harness_catches_panics_failed_properties_and_large_allocations() {
    let fails = |check: Box<dyn FnOnce() -> Result<(), String>>| {
        catch_unwind(AssertUnwindSafe(|| run("harness-self-test", b"input", check))).is_err()
    };
    assert!(fails(Box::new(|| panic!("a parser bug"))));
    assert!(fails(Box::new(|| Err("a forgery".into()))));
    assert!(fails(Box::new(|| {
        let big: Vec<u8> = Vec::with_capacity(allocation_budget(5) + 1);
        ensure(big.capacity() > 0, String::new)
    })));
    assert!(!fails(Box::new(|| Ok(()))));

    let mut rng = Rng::new(11);
    let sample = rng.bytes(64);
    let distinct: std::collections::HashSet<Vec<u8>> = (0..200).map(|_| mutate(&mut rng, &sample, &[])).collect();
    assert!(distinct.len() > 150, "mutations repeat: {} distinct of 200", distinct.len());
}
