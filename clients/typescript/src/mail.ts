/**
 * Mail: an authenticated clear header and a Noise-encrypted, packetised body
 * (docs/wire-format.md, section 1).
 *
 * ```text
 *  sender                                              recipient
 *  MailHeader ──┐                                 ┌── MailHeader (checked)
 *  body ────────┼─ encryptMail ─► bytes ─► MailDecryptor ─► body bytes
 *  sender key ──┘  (Noise X, prefix = prologue)    └── authenticated sender key
 * ```
 */
import { x25519 } from "@noble/curves/ed25519.js";

import { concat, randomBytes, readU16, readU64, strictUtf8, u16, u64, utf8 } from "./bytes.js";
import { CipherState, NoiseDecryptError, TAG_LEN, readHandshake, writeHandshake } from "./noise.js";

export { NOISE_PROTOCOL, TAG_LEN } from "./noise.js";

/** The wire-format version this package writes and reads. */
export const MAIL_VERSION = 2;
/** The two bytes every mail starts with: "CM". */
export const MAIL_MAGIC = new Uint8Array([0x43, 0x4d]);
/** The longest packet on the wire (tag included). */
export const MAX_PACKET_LEN = 65535;
/** The most plaintext one packet carries. */
export const MAX_PACKET_PLAINTEXT = MAX_PACKET_LEN - TAG_LEN;
/** The handshake message: e, encrypted s, encrypted 8-byte body length. */
export const HANDSHAKE_LEN = 32 + (32 + TAG_LEN) + (8 + TAG_LEN);
/** The longest topic, in bytes. */
export const MAX_TOPIC_LEN = 255;

/** What went wrong with a mail, one name per row of wire-format section 1.5. */
export type MailErrorKind =
  | "invalid_topic"
  | "envelope_too_long"
  | "malformed"
  | "unsupported_version"
  | "truncated"
  | "handshake_failed"
  | "packet_authentication"
  | "trailing_bytes"
  | "body_length_mismatch";

/** Why a mail could not be built or read. The message matches the Rust client's. */
export class MailError extends Error {
  override readonly name = "MailError";
  constructor(
    readonly kind: MailErrorKind,
    message: string,
    /** The packet index, for `packet_authentication`. */
    readonly index?: number,
  ) {
    super(message);
  }
}

const TOPIC = /^[A-Za-z0-9-]{1,255}$/;

/** Checks a topic: 1 to 255 ASCII letters, digits and '-'. */
export function validateTopic(topic: string): void {
  if (!TOPIC.test(topic)) {
    throw new MailError(
      "invalid_topic",
      `invalid topic ${JSON.stringify(topic)}: use 1 to 255 characters of letters, digits and '-'`,
    );
  }
}

/** A mail's clear, authenticated header. */
export interface MailHeader {
  readonly topic: string;
  readonly sequenceNumber: bigint;
  readonly envelope: Uint8Array;
}

/** A header with a checked topic. */
export function mailHeader(topic: string, sequenceNumber: bigint | number, envelope: Uint8Array = new Uint8Array(0)): MailHeader {
  validateTopic(topic);
  if (envelope.length > 0xffff) {
    throw new MailError("envelope_too_long", `envelope of ${envelope.length} bytes is too long (at most 65535)`);
  }
  return { topic, sequenceNumber: BigInt(sequenceNumber), envelope };
}

/** The clear prefix: magic, version and header. It is also the Noise prologue. */
export function encodePrefix(header: MailHeader): Uint8Array {
  const topic = utf8.encode(header.topic);
  return concat(
    MAIL_MAGIC,
    new Uint8Array([MAIL_VERSION, topic.length]),
    topic,
    u64(header.sequenceNumber),
    u16(header.envelope.length),
    header.envelope,
  );
}

/** Parses the prefix: `undefined` when more bytes are needed, else the header and the prefix's length. */
function decodePrefix(input: Uint8Array): { header: MailHeader; length: number } | undefined {
  if (input.length < 3) return undefined;
  if (input[0] !== MAIL_MAGIC[0] || input[1] !== MAIL_MAGIC[1]) {
    throw new MailError("malformed", "not a mail: bad magic bytes");
  }
  if (input[2] !== MAIL_VERSION) {
    throw new MailError(
      "unsupported_version",
      `unsupported mail version ${input[2]} (this code reads version ${MAIL_VERSION})`,
    );
  }
  if (input.length < 4) return undefined;
  const topicLen = input[3]!;
  const fixedEnd = 4 + topicLen + 8 + 2;
  if (input.length < fixedEnd) return undefined;
  const topicBytes = input.subarray(4, 4 + topicLen);
  let topic: string;
  try {
    topic = strictUtf8.decode(topicBytes);
  } catch {
    throw new MailError("malformed", "not a mail: topic is not ASCII");
  }
  validateTopic(topic);
  const seqAt = 4 + topicLen;
  const sequenceNumber = readU64(input.subarray(seqAt, seqAt + 8));
  const envLen = readU16(input.subarray(seqAt + 8, seqAt + 10));
  const end = fixedEnd + envLen;
  if (input.length < end) return undefined;
  return { header: { topic, sequenceNumber, envelope: input.slice(fixedEnd, end) }, length: end };
}

/**
 * Reads the clear header of a complete mail without decrypting it. It is
 * not authenticated until the mail is decrypted.
 */
export function peekHeader(mail: Uint8Array): MailHeader {
  const parsed = decodePrefix(mail);
  if (!parsed) throw new MailError("truncated", "mail is truncated: the header is incomplete");
  return parsed.header;
}

/** The exact size of an encrypted mail. */
export function encryptedLen(header: MailHeader, paddedBodyLen: number): number {
  const prefix = encodePrefix(header).length;
  const full = Math.floor(paddedBodyLen / MAX_PACKET_PLAINTEXT);
  const rest = paddedBodyLen % MAX_PACKET_PLAINTEXT;
  let packets = full * (2 + MAX_PACKET_LEN);
  if (rest > 0) packets += 2 + rest + TAG_LEN;
  return prefix + 2 + HANDSHAKE_LEN + packets + 2 + TAG_LEN;
}

/** The X25519 public key of a 32-byte private key. */
export function publicKeyOf(secret: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secret);
}

/** A fresh X25519 private key (32 random bytes). */
export function generatePrivateKey(): Uint8Array {
  return randomBytes(32);
}

/**
 * Whether `key` is a low-order X25519 point (every Diffie-Hellman result with
 * it is zero, so anything encrypted to it is readable by anyone).
 */
export function isLowOrder(key: Uint8Array): boolean {
  try {
    // noble refuses exactly the points of small order (all encodings of them).
    x25519.getSharedSecret(new Uint8Array(32).fill(0x5a), key);
    return false;
  } catch {
    return true;
  }
}

/** Options of [[encryptMail]]. */
export interface EncryptOptions {
  /** Pad the body with zeros to at least this many bytes (default 0). */
  minSize?: number;
  /** The ephemeral private key; random unless given (known-answer tests only). */
  ephemeralSecretForTestingOnly?: Uint8Array;
}

/** Encrypts `body` from `senderSecret` to `recipient`, padding it to at least `minSize`. */
export function encryptMail(
  senderSecret: Uint8Array,
  recipient: Uint8Array,
  header: MailHeader,
  body: Uint8Array,
  options: EncryptOptions = {},
): Uint8Array {
  const prefix = encodePrefix(header);
  const ephemeral = options.ephemeralSecretForTestingOnly ?? randomBytes(32);
  const padded = Math.max(body.length, options.minSize ?? 0);
  const { message, transport } = writeHandshake(prefix, senderSecret, recipient, ephemeral, u64(body.length));
  const out = new Uint8Array(encryptedLen(header, padded));
  let at = 0;
  const put = (bytes: Uint8Array): void => {
    out.set(bytes, at);
    at += bytes.length;
  };
  put(prefix);
  put(u16(message.length));
  put(message);
  const packet = (plaintext: Uint8Array): void => {
    const ciphertext = transport.encrypt(new Uint8Array(0), plaintext);
    put(u16(ciphertext.length));
    put(ciphertext);
  };
  for (let offset = 0; offset < padded; offset += MAX_PACKET_PLAINTEXT) {
    const take = Math.min(padded - offset, MAX_PACKET_PLAINTEXT);
    if (offset + take <= body.length) {
      packet(body.subarray(offset, offset + take));
    } else {
      // The body's last part and the padding after it.
      const chunk = new Uint8Array(take);
      if (offset < body.length) chunk.set(body.subarray(offset));
      packet(chunk);
    }
  }
  packet(new Uint8Array(0));
  return out;
}

/** What a finished [[MailDecryptor]] proved about the mail. */
export interface OpenedMail {
  /** The authenticated header. */
  readonly header: MailHeader;
  /** The authenticated sender key (X25519). */
  readonly sender: Uint8Array;
  /** The body length, padding excluded. */
  readonly bodyLen: bigint;
}

/** A decrypted mail held in memory. */
export interface DecryptedMail extends OpenedMail {
  readonly body: Uint8Array;
}

type Stage =
  | { at: "prefix" }
  | { at: "handshake"; header: MailHeader }
  | { at: "packets"; opened: OpenedMail; transport: CipherState; index: number; delivered: bigint }
  | { at: "done"; opened: OpenedMail }
  | { at: "failed" };

/**
 * Streaming decryption: feed the mail's bytes in pieces of any size; each
 * call returns the body bytes authenticated so far. Bytes handed out before
 * [[MailDecryptor.finish]] succeeds are authenticated packet by packet, but
 * only `finish` proves the mail complete: act on nothing before it returns.
 */
export class MailDecryptor {
  private buffer: Uint8Array = new Uint8Array(0);
  private stage: Stage = { at: "prefix" };

  constructor(private readonly recipientSecret: Uint8Array) {}

  /** The header and sender, once the handshake has authenticated them. */
  opened(): OpenedMail | undefined {
    return this.stage.at === "packets" || this.stage.at === "done" ? this.stage.opened : undefined;
  }

  /** Feeds more bytes; returns the newly authenticated body bytes. After an error it is unusable. */
  update(input: Uint8Array): Uint8Array[] {
    const data = this.buffer.length === 0 ? input : concat(this.buffer, input);
    const body: Uint8Array[] = [];
    try {
      const consumed = this.advance(data, body);
      // Keep only the incomplete tail (copied: the caller may reuse its buffer).
      this.buffer = data.slice(consumed);
    } catch (e) {
      this.stage = { at: "failed" };
      this.buffer = new Uint8Array(0);
      throw e;
    }
    return body;
  }

  private advance(input: Uint8Array, body: Uint8Array[]): number {
    let consumed = 0;
    for (;;) {
      const rest = input.subarray(consumed);
      const stage = this.stage;
      switch (stage.at) {
        case "prefix": {
          const parsed = decodePrefix(rest);
          if (!parsed) return consumed;
          consumed += parsed.length;
          this.stage = { at: "handshake", header: parsed.header };
          break;
        }
        case "handshake": {
          const frame = lengthPrefixed(rest);
          if (!frame) return consumed;
          if (frame.length !== HANDSHAKE_LEN) {
            throw new MailError("malformed", "not a mail: handshake has the wrong length");
          }
          let opened;
          try {
            opened = readHandshake(encodePrefix(stage.header), this.recipientSecret, frame);
          } catch (e) {
            if (e instanceof NoiseDecryptError) {
              throw new MailError(
                "handshake_failed",
                "mail could not be decrypted: it is addressed to another key, or its header or handshake was altered",
              );
            }
            throw e;
          }
          if (opened.payload.length !== 8) {
            throw new MailError("malformed", "not a mail: handshake payload has the wrong length");
          }
          consumed += 2 + frame.length;
          this.stage = {
            at: "packets",
            opened: { header: stage.header, sender: opened.remoteStatic, bodyLen: readU64(opened.payload) },
            transport: opened.transport,
            index: 0,
            delivered: 0n,
          };
          break;
        }
        case "packets": {
          const frame = lengthPrefixed(rest);
          if (!frame) return consumed;
          if (frame.length < TAG_LEN) throw new MailError("malformed", "not a mail: packet shorter than its tag");
          let plaintext: Uint8Array;
          try {
            plaintext = stage.transport.decrypt(new Uint8Array(0), frame);
          } catch {
            throw new MailError(
              "packet_authentication",
              `body packet ${stage.index} failed authentication: the mail was altered in transit`,
              stage.index,
            );
          }
          consumed += 2 + frame.length;
          if (plaintext.length === 0) {
            // The terminator: every declared body byte must have arrived.
            if (stage.delivered < stage.opened.bodyLen) {
              throw new MailError(
                "body_length_mismatch",
                `body is ${stage.delivered} bytes but the sender declared ${stage.opened.bodyLen}`,
              );
            }
            this.stage = { at: "done", opened: stage.opened };
            break;
          }
          const left = stage.opened.bodyLen - stage.delivered;
          const wanted = left < BigInt(plaintext.length) ? Number(left) : plaintext.length;
          if (wanted > 0) body.push(plaintext.subarray(0, wanted));
          stage.index += 1;
          stage.delivered += BigInt(wanted);
          break;
        }
        case "done": {
          if (rest.length > 0) {
            throw new MailError("trailing_bytes", `${rest.length} unexpected bytes after the end of the mail`);
          }
          return consumed;
        }
        case "failed":
          throw new MailError("malformed", "not a mail: decryptor already failed");
      }
    }
  }

  /** Ends the mail: succeeds only if the terminator arrived and nothing followed. */
  finish(): OpenedMail {
    const truncated = (reason: string): MailError => new MailError("truncated", `mail is truncated: ${reason}`);
    switch (this.stage.at) {
      case "done":
        return this.stage.opened;
      case "prefix":
        throw truncated("the header is incomplete");
      case "handshake":
        throw truncated("the handshake is incomplete");
      case "packets":
        throw truncated(this.buffer.length > 0 ? "the last packet is cut short" : "the terminator packet is missing");
      case "failed":
        throw new MailError("malformed", "not a mail: decryptor already failed");
    }
  }
}

/** One u16-length-prefixed frame, or `undefined` when more bytes are needed. */
function lengthPrefixed(input: Uint8Array): Uint8Array | undefined {
  if (input.length < 2) return undefined;
  const len = readU16(input);
  if (input.length < 2 + len) return undefined;
  return input.subarray(2, 2 + len);
}

/** Decrypts a whole mail held in memory. */
export function decryptMail(recipientSecret: Uint8Array, mail: Uint8Array): DecryptedMail {
  const decryptor = new MailDecryptor(recipientSecret);
  const parts = decryptor.update(mail);
  const opened = decryptor.finish();
  return { ...opened, body: concat(...parts) };
}
