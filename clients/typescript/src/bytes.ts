/**
 * Byte helpers shared by every module: hex, base64, big-endian integers and
 * a bounds-checked reader. Integers on the wire are unsigned big-endian; a
 * `u64` is a `bigint` here so no value above 2^53 is ever rounded.
 */

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Decodes hex (either case); `undefined` when it is not hex of whole bytes. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Decodes hex that the caller knows is valid (constants, test data). */
export function hex(text: string): Uint8Array {
  const out = fromHex(text);
  if (out === undefined) throw new Error(`not hex: ${text.slice(0, 16)}`);
  return out;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 with padding (what the host's poll answers carry). */
export function toBase64(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + "==";
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + "=";
  }
  return out;
}

const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));

/** Decodes standard base64 (padding optional); `undefined` when malformed. */
export function fromBase64(text: string): Uint8Array | undefined {
  const clean = text.replace(/=+$/, "");
  if (clean.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const c of clean) {
    const v = B64_INDEX.get(c);
    if (v === undefined) return undefined;
    value = (value << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

/** Concatenates byte strings. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Constant-shape equality of two byte strings. */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export const U64_MAX = (1n << 64n) - 1n;

/** `n` as 8 big-endian bytes. */
export function u64(n: bigint | number): Uint8Array {
  const v = BigInt(n);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${v} does not fit a u64`);
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v);
  return out;
}

/** `n` as 2 big-endian bytes. */
export function u16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

/** `n` as 4 big-endian bytes. */
export function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

export const utf8 = new TextEncoder();
/** A strict UTF-8 decoder: invalid bytes throw. */
export const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** A lossy UTF-8 decoder (U+FFFD for invalid bytes), like Rust's `from_utf8_lossy`. */
export const lossyUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Reads a byte string from the front. `take` returns `undefined` when fewer
 * bytes are left, so each format decides what a short input means.
 */
export class Reader {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  /** The bytes not read yet. */
  rest(): Uint8Array {
    return this.bytes.subarray(this.at);
  }

  take(n: number): Uint8Array | undefined {
    if (this.bytes.length - this.at < n) return undefined;
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

/** Reads a big-endian `u64` from 8 bytes. */
export function readU64(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
}

/** Reads a big-endian `u16` from 2 bytes. */
export function readU16(bytes: Uint8Array): number {
  return (bytes[0]! << 8) | bytes[1]!;
}

/** Reads a big-endian `u32` from 4 bytes. */
export function readU32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
}

/** `count` cryptographically random bytes (WebCrypto, in browsers and Node 20). */
export function randomBytes(count: number): Uint8Array {
  const out = new Uint8Array(count);
  globalThis.crypto.getRandomValues(out);
  return out;
}
