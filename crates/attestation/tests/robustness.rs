//! Robustness of `HardwareEvidence::decode`, `verify` and the `formats` helpers
//! on stable Rust: the `fuzz/` targets' properties, checked by deterministic
//! loops over random input and mutations of the real samples in `tests/data`.
//!
//! ```text
//!  real evidence ─► mutate one field (seeded) ─► verify(now) ─► error, or exactly
//!  random bytes  ─► decode / formats::*        ─► no panic      the genuine result
//! ```
//!
//! Verification is the expensive part (tens of milliseconds per sample in a
//! debug build, more for the ones that reach every signature), so its loops
//! are short; `fuzz/` runs the same properties for as long as one likes.

mod common;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use base64::Engine;
use common::{JULY_2025, NITRO_TIME, nitro, nitro_document, sgx, snp_milan, snp_report_milan, tdx};
use conclave_attestation::{HardwareEvidence, VerifiedEvidence, formats};

/// xorshift64*: reproducible, not cryptographic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Writes `value` as `width` bytes at `at`, big- or little-endian (quotes are
/// little-endian, the evidence encoding and DER lengths big-endian).
fn write_int(out: &mut [u8], at: usize, width: usize, value: u64, little: bool) {
    for i in 0..width {
        let shift = if little { 8 * i } else { 8 * (width - 1 - i) };
        if let Some(b) = out.get_mut(at + i) {
            *b = (value >> shift) as u8;
        }
    }
}

/// One to three mutations: bit flips, byte changes, truncation, insertion,
/// deletion, duplicated ranges, and integers (length fields) set to extremes.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len();
        match rng.below(8) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let random = rng.next() as u8;
                out[i] = rng.pick(&[0x00, 0x01, 0x7F, 0x80, 0xFF, random]);
            }
            3 => out.truncate(rng.below(len + 1)),
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                out.splice(at..at, extra);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                out.drain(at..at + n);
            }
            6 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let copy = out[at..at + n].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            _ if len > 0 => {
                let width = rng.pick(&[1, 2, 4]);
                let max = (1u64 << (8 * width)) - 1;
                let value = rng.pick(&[0, 1, max, max - 1, max >> 1, 0xFF & max, 0xFFFF & max]);
                let at = rng.below(len);
                let little = rng.below(2) == 0;
                write_int(&mut out, at, width, value, little);
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out
}

/// Records the largest single allocation per thread (see core's robustness
/// tests): a forged length must never become a huge allocation.
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

fn allocation_budget(input_len: usize) -> usize {
    4 * 1024 * 1024 + 8 * input_len
}

/// Runs `check`; a panic, a failed property or an allocation over budget fails
/// the test and saves the input under `CARGO_TARGET_TMPDIR`.
fn run(what: &str, input: &[u8], check: impl FnOnce() -> Result<(), String>) {
    let (outcome, largest) = probe::largest_during(|| catch_unwind(AssertUnwindSafe(check)));
    let problem = match outcome {
        Err(panic) => Some(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        )),
        Ok(Err(property)) => Some(property),
        Ok(Ok(())) if largest > allocation_budget(input.len()) => {
            Some(format!("allocated {largest} bytes at once for a {}-byte input", input.len()))
        }
        Ok(Ok(())) => None,
    };
    if let Some(problem) = problem {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("robustness-failures").join(what);
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!(
            "{:016x}",
            input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| { (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3) })
        ));
        let _ = std::fs::write(&path, input);
        let head = hex::encode(&input[..input.len().min(96)]);
        panic!("{what}: {problem}\ninput ({} bytes): {head}…\nsaved to {}", input.len(), path.display());
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// Decoding: one encoding per value, and no allocation a length field asks for.
fn check_decode(input: &[u8]) -> Result<(), String> {
    match HardwareEvidence::decode(input) {
        Ok(evidence) => ensure(evidence.encode() == input, || "decoded evidence re-encodes differently".into()),
        Err(_) => Ok(()),
    }
}

/// Verification of altered evidence: an error, or exactly the genuine result
/// (an edit that changed nothing signed, such as JSON whitespace).
fn check_verify(evidence: &HardwareEvidence, now: u64, genuine: &VerifiedEvidence) -> Result<(), String> {
    match evidence.verify(now) {
        Ok(verified) => ensure(&verified == genuine, || format!("altered evidence verified as {verified:?}")),
        Err(_) => Ok(()),
    }
}

/// The four samples with their verification times, and the field each mutation edits.
fn samples() -> Vec<(&'static str, HardwareEvidence, u64)> {
    vec![
        ("sgx", sgx(), JULY_2025),
        ("tdx", tdx(), JULY_2025),
        ("sev-snp", snp_milan(), JULY_2025),
        ("nitro", nitro(), NITRO_TIME),
    ]
}

/// `evidence` with field `index` (in encoding order) replaced by `f(field)`.
fn edit_field(evidence: &HardwareEvidence, index: usize, f: impl FnOnce(&[u8]) -> Vec<u8>) -> HardwareEvidence {
    let mut e = evidence.clone();
    let fields: Vec<&mut Vec<u8>> = match &mut e {
        HardwareEvidence::SgxDcap { quote, collateral } | HardwareEvidence::Tdx { quote, collateral } => {
            vec![quote, collateral]
        }
        HardwareEvidence::SevSnp { report, vcek, chain } => vec![report, vcek, chain],
        HardwareEvidence::Nitro { document } => vec![document],
    };
    let n = fields.len();
    let field = fields.into_iter().nth(index % n).unwrap();
    *field = f(field);
    e
}

fn field_count(evidence: &HardwareEvidence) -> usize {
    match evidence {
        HardwareEvidence::SgxDcap { .. } | HardwareEvidence::Tdx { .. } => 2,
        HardwareEvidence::SevSnp { .. } => 3,
        HardwareEvidence::Nitro { .. } => 1,
    }
}

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

#[test]
fn decode_survives_random_and_mutated_encodings() {
    let mut rng = Rng::new(21);
    let encodings: Vec<Vec<u8>> = samples().iter().map(|(_, e, _)| e.encode()).collect();
    for encoding in &encodings {
        run("decode", encoding, || check_decode(encoding));
    }
    for i in 0..3000 {
        let len = rng.pick(&[0, 1, 2, 5, 6, 10, 40, 300]) + rng.below(8);
        let mut input = vec![1, 1 + (i % 5) as u8];
        input.extend(rng.bytes(len));
        if i % 4 == 0 {
            input[0] = rng.next() as u8;
        }
        run("decode", &input, || check_decode(&input));
    }
    for i in 0..2000 {
        let input = mutate(&mut rng, &encodings[i % encodings.len()]);
        run("decode", &input, || check_decode(&input));
    }
}

#[test]
fn decode_of_a_short_input_claiming_huge_lengths_fails_fast_and_small() {
    for tag in 0..=5u8 {
        for huge in [0x7FFF_FFFFu32, 0xFFFF_FFFF, 0x0100_0000] {
            for tail in [&[][..], &[0xAB; 7]] {
                let mut input = vec![1, tag];
                input.extend_from_slice(&huge.to_be_bytes());
                input.extend_from_slice(tail);
                within("a forged field length", Duration::from_millis(500), || {
                    run("decode", &input, || {
                        ensure(HardwareEvidence::decode(&input).is_err(), || "a forged length decoded".into())
                    })
                });
            }
        }
    }
    // A second field that lies, after an honest first one.
    let mut input = vec![1, 3, 0, 0, 0, 2, 0xAA, 0xBB];
    input.extend_from_slice(&u32::MAX.to_be_bytes());
    run("decode", &input, || ensure(HardwareEvidence::decode(&input).is_err(), || "decoded".into()));
}

/// Altered real evidence never verifies as anything but the genuine result.
/// Each iteration edits one field of one sample; the counts keep a debug run
/// to a few seconds (a mutation that reaches every signature costs ~50 ms).
#[test]
fn mutated_real_evidence_never_verifies_as_something_else() {
    let mut rng = Rng::new(22);
    let samples = samples();
    let genuine: Vec<VerifiedEvidence> = samples.iter().map(|(_, e, now)| e.verify(*now).unwrap()).collect();
    let mut accepted = 0;
    within("verifying mutated evidence", Duration::from_secs(120), || {
        for i in 0..240 {
            let k = i % samples.len();
            let (name, evidence, now) = &samples[k];
            let field = rng.below(field_count(evidence));
            let altered = edit_field(evidence, field, |bytes| mutate(&mut rng, bytes));
            let encoded = altered.encode();
            run(name, &encoded, || {
                let result = check_verify(&altered, *now, &genuine[k]);
                if altered.verify(*now).is_ok() {
                    accepted += 1;
                }
                result
            });
        }
    });
    // Only edits outside every signed byte may verify; they are rare.
    assert!(accepted < 24, "{accepted} of 240 altered samples verified");
}

/// Single bit flips spread evenly over each field: each one must either fail
/// or leave the verified result unchanged.
#[test]
fn evenly_spread_bit_flips_never_verify_as_something_else() {
    let samples = samples();
    for (k, (name, evidence, now)) in samples.iter().enumerate() {
        let genuine = evidence.verify(*now).unwrap();
        for field in 0..field_count(evidence) {
            for step in 0..12usize {
                let altered = edit_field(evidence, field, |bytes| {
                    let mut out = bytes.to_vec();
                    let at = step * out.len() / 12 + k;
                    if let Some(b) = out.get_mut(at) {
                        *b ^= 1 << (step % 8);
                    }
                    out
                });
                let encoded = altered.encode();
                run(name, &encoded, || check_verify(&altered, *now, &genuine));
            }
        }
    }
}

#[test]
fn verify_survives_random_fields() {
    let mut rng = Rng::new(23);
    for i in 0..400 {
        let field = |rng: &mut Rng| {
            let len = rng.pick(&[0, 1, 16, 200, 1184, 3000]);
            rng.bytes(len)
        };
        let evidence = match i % 4 {
            0 => HardwareEvidence::SgxDcap { quote: field(&mut rng), collateral: field(&mut rng) },
            1 => HardwareEvidence::Tdx { quote: field(&mut rng), collateral: b"{}".to_vec() },
            2 => HardwareEvidence::SevSnp { report: field(&mut rng), vcek: field(&mut rng), chain: field(&mut rng) },
            _ => {
                let mut document = field(&mut rng);
                if let Some(first) = document.first_mut() {
                    *first = 0x84;
                }
                HardwareEvidence::Nitro { document }
            }
        };
        let encoded = evidence.encode();
        run("verify-random", &encoded, || {
            ensure(evidence.verify(JULY_2025).is_err(), || "random evidence verified".into())
        });
    }
}

#[test]
fn formats_survive_random_and_mutated_files() {
    let mut rng = Rng::new(24);
    let report = snp_report_milan();
    let document = nitro_document();
    let hex_text = format!("{}\n", hex::encode_upper(&report)).into_bytes();
    let b64_text = base64::engine::general_purpose::STANDARD.encode(&document).into_bytes();
    // The helpers decode what the vendors' tools write.
    assert_eq!(formats::snp_report(&hex_text).unwrap(), report);
    assert_eq!(formats::snp_report(&report).unwrap(), report);
    assert_eq!(formats::nitro_document(&b64_text).unwrap(), document);
    assert_eq!(formats::nitro_document(&document).unwrap(), document);

    // Decoding text never yields more bytes than it was given.
    let check = |input: &[u8]| {
        let snp = formats::snp_report(input).map_or(0, |out| out.len());
        let nitro = formats::nitro_document(input).map_or(0, |out| out.len());
        ensure(snp <= input.len(), || format!("snp_report made {snp} bytes of {}", input.len()))?;
        ensure(nitro <= input.len(), || format!("nitro_document made {nitro} bytes of {}", input.len()))
    };
    for sample in [&hex_text, &b64_text, &report, &document] {
        for _ in 0..300 {
            let input = mutate(&mut rng, sample);
            run("formats", &input, || check(&input));
        }
    }
    for _ in 0..1000 {
        let len = rng.pick(&[0, 1, 2, 3, 4, 64, 1184, 2368, 2369]);
        let input = rng.bytes(len);
        run("formats", &input, || check(&input));
    }
}
