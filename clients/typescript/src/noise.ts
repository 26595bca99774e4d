/**
 * The one Noise handshake Conclave mail uses, `Noise_X_25519_AESGCM_SHA256`
 * (Noise revision 34, pattern X: `<- s` known, then `-> e, es, s, ss`), built
 * on audited primitives: X25519 from @noble/curves, AES-256-GCM from
 * @noble/ciphers, SHA-256 and HMAC from @noble/hashes. This module is the
 * protocol glue of the specification's SymmetricState and CipherState
 * (sections 5.1-5.3), nothing more: no primitive is written here.
 *
 * No npm Noise library fits: the maintained ones implement other patterns
 * or ChaChaPoly only, and the vectors need the ephemeral key injected.
 */
import { gcm } from "@noble/ciphers/aes.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, utf8 } from "./bytes.js";

/** The protocol name, hashed into the initial handshake state. */
export const NOISE_PROTOCOL = "Noise_X_25519_AESGCM_SHA256";
const HASHLEN = 32;
/** The AES-GCM tag at the end of every Noise message. */
export const TAG_LEN = 16;

/** Thrown by a decryption that fails authentication. */
export class NoiseDecryptError extends Error {
  constructor() {
    super("noise message failed authentication");
  }
}

function hkdf2(chainingKey: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmac(sha256, chainingKey, input);
  const one = hmac(sha256, temp, new Uint8Array([1]));
  const two = hmac(sha256, temp, concat(one, new Uint8Array([2])));
  return [one, two];
}

/** Noise's nonce for AES-GCM: 32 zero bits, then the counter as big-endian u64. */
function gcmNonce(n: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n);
  return nonce;
}

/** A CipherState with a key: encrypts or decrypts in nonce order. */
export class CipherState {
  private n = 0n;
  constructor(private readonly key: Uint8Array) {}

  encrypt(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const out = gcm(this.key, gcmNonce(this.n), ad).encrypt(plaintext);
    this.n += 1n;
    return out;
  }

  decrypt(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    let out: Uint8Array;
    try {
      out = gcm(this.key, gcmNonce(this.n), ad).decrypt(ciphertext);
    } catch {
      throw new NoiseDecryptError();
    }
    // The nonce moves on only after a message authenticates, as Noise says.
    this.n += 1n;
    return out;
  }
}

class SymmetricState {
  private ck: Uint8Array;
  private h: Uint8Array;
  private cipher: CipherState | undefined;

  constructor(prologue: Uint8Array) {
    const name = utf8.encode(NOISE_PROTOCOL);
    // The name is shorter than HASHLEN: it is padded with zeros, not hashed.
    this.h = new Uint8Array(HASHLEN);
    this.h.set(name);
    this.ck = this.h;
    this.mixHash(prologue);
  }

  mixHash(data: Uint8Array): void {
    this.h = sha256(concat(this.h, data));
  }

  mixKey(input: Uint8Array): void {
    const [ck, key] = hkdf2(this.ck, input);
    this.ck = ck;
    this.cipher = new CipherState(key);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const out = this.cipher ? this.cipher.encrypt(this.h, plaintext) : plaintext;
    this.mixHash(out);
    return out;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const out = this.cipher ? this.cipher.decrypt(this.h, ciphertext) : ciphertext;
    this.mixHash(ciphertext);
    return out;
  }

  /** The initiator-to-responder cipher of Split() (the only direction X uses). */
  split(): CipherState {
    const [k1] = hkdf2(this.ck, new Uint8Array(0));
    return new CipherState(k1);
  }
}

function dh(secret: Uint8Array, publicKey: Uint8Array): Uint8Array {
  try {
    return x25519.getSharedSecret(secret, publicKey);
  } catch {
    // noble refuses low-order points outright; a handshake with one cannot succeed.
    throw new NoiseDecryptError();
  }
}

/**
 * Writes the initiator's only message. `ephemeralSecret` is 32 random bytes
 * (the X25519 private key of `e`), drawn by the caller.
 */
export function writeHandshake(
  prologue: Uint8Array,
  staticSecret: Uint8Array,
  remoteStatic: Uint8Array,
  ephemeralSecret: Uint8Array,
  payload: Uint8Array,
): { message: Uint8Array; transport: CipherState } {
  const ss = new SymmetricState(prologue);
  ss.mixHash(remoteStatic);
  const e = x25519.getPublicKey(ephemeralSecret);
  ss.mixHash(e);
  ss.mixKey(dh(ephemeralSecret, remoteStatic));
  const s = ss.encryptAndHash(x25519.getPublicKey(staticSecret));
  ss.mixKey(dh(staticSecret, remoteStatic));
  const body = ss.encryptAndHash(payload);
  return { message: concat(e, s, body), transport: ss.split() };
}

/**
 * Reads the initiator's message as the responder whose static secret is
 * `staticSecret`. Throws [[NoiseDecryptError]] if any part fails.
 */
export function readHandshake(
  prologue: Uint8Array,
  staticSecret: Uint8Array,
  message: Uint8Array,
): { remoteStatic: Uint8Array; payload: Uint8Array; transport: CipherState } {
  if (message.length < 32 + 32 + TAG_LEN + TAG_LEN) throw new NoiseDecryptError();
  const ss = new SymmetricState(prologue);
  ss.mixHash(x25519.getPublicKey(staticSecret));
  const e = message.subarray(0, 32);
  ss.mixHash(e);
  ss.mixKey(dh(staticSecret, e));
  const remoteStatic = ss.decryptAndHash(message.subarray(32, 32 + 32 + TAG_LEN));
  ss.mixKey(dh(staticSecret, remoteStatic));
  const payload = ss.decryptAndHash(message.subarray(32 + 32 + TAG_LEN));
  return { remoteStatic, payload, transport: ss.split() };
}
