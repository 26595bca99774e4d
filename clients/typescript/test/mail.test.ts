// Mail encryption and streaming decryption: large bodies, any chunking, and
// every way the host can damage a mail.
import { describe, expect, it } from "vitest";

import {
  MAX_PACKET_PLAINTEXT,
  MailDecryptor,
  concat,
  decryptMail,
  encryptMail,
  encryptedLen,
  generatePrivateKey,
  isLowOrder,
  mailHeader,
  peekHeader,
  publicKeyOf,
  hex,
  equal,
  toHex,
} from "../src/index.js";

// vitest's deep equality walks typed arrays element by element: slow for MiBs.
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (!equal(actual, expected)) expect(toHex(actual.subarray(0, 64))).toBe(toHex(expected.subarray(0, 64)));
  expect(actual.length).toBe(expected.length);
}

const sender = generatePrivateKey();
const recipient = generatePrivateKey();
const header = mailHeader("big-topic", 3, new Uint8Array([1, 2]));

function body(len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 31 + 7) & 0xff;
  return out;
}

function errorOf(f: () => unknown): any {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe("mail", () => {
  it("a body over 1 MiB streams through a decryptor fed odd-sized chunks", () => {
    const big = body(1024 * 1024 + 12345);
    const mail = encryptMail(sender, publicKeyOf(recipient), header, big, { minSize: 1024 * 1024 + 20000 });
    expect(mail.length).toBe(encryptedLen(header, 1024 * 1024 + 20000));
    const decryptor = new MailDecryptor(recipient);
    const parts: Uint8Array[] = [];
    let firstBodyAt = -1;
    for (let at = 0; at < mail.length; at += 7777) {
      const out = decryptor.update(mail.subarray(at, at + 7777));
      if (out.length > 0 && firstBodyAt < 0) firstBodyAt = at;
      parts.push(...out);
    }
    const opened = decryptor.finish();
    expectBytes(concat(...parts), big);
    expect(opened.bodyLen).toBe(BigInt(big.length));
    expect(opened.sender).toEqual(publicKeyOf(sender));
    // Streaming: body bytes came out long before the mail was complete.
    expect(firstBodyAt).toBeLessThan(2 * MAX_PACKET_PLAINTEXT);
  });

  it("bodies of every boundary length round-trip, byte by byte too", () => {
    for (const len of [0, 1, MAX_PACKET_PLAINTEXT - 1, MAX_PACKET_PLAINTEXT, MAX_PACKET_PLAINTEXT + 1]) {
      const b = body(len);
      const mail = encryptMail(sender, publicKeyOf(recipient), header, b);
      expectBytes(decryptMail(recipient, mail).body, b);
    }
    const mail = encryptMail(sender, publicKeyOf(recipient), header, body(40), { minSize: 100 });
    const d = new MailDecryptor(recipient);
    const parts: Uint8Array[] = [];
    for (const byte of mail) parts.push(...d.update(new Uint8Array([byte])));
    d.finish();
    expectBytes(concat(...parts), body(40));
  });

  it("names every kind of damage", () => {
    const mail = encryptMail(sender, publicKeyOf(recipient), header, body(70000), { minSize: 10 });
    const tampered = (at: number): Uint8Array => {
      const m = mail.slice();
      m[at]! ^= 1;
      return m;
    };
    expect(errorOf(() => decryptMail(generatePrivateKey(), mail)).kind).toBe("handshake_failed");
    // A header byte (the sequence number) changes the prologue.
    expect(errorOf(() => decryptMail(recipient, tampered(14))).kind).toBe("handshake_failed");
    const prefix = 4 + 9 + 8 + 2 + 2;
    const firstPacket = prefix + 2 + 104 + 2;
    const e = errorOf(() => decryptMail(recipient, tampered(firstPacket + 5)));
    expect(e.kind).toBe("packet_authentication");
    expect(e.message).toBe("body packet 0 failed authentication: the mail was altered in transit");
    const secondPacket = firstPacket + 65535 + 2;
    expect(errorOf(() => decryptMail(recipient, tampered(secondPacket))).index).toBe(1);
    expect(errorOf(() => decryptMail(recipient, mail.subarray(0, mail.length - 18))).message).toBe(
      "mail is truncated: the terminator packet is missing",
    );
    expect(errorOf(() => decryptMail(recipient, mail.subarray(0, mail.length - 3))).message).toBe(
      "mail is truncated: the last packet is cut short",
    );
    expect(errorOf(() => decryptMail(recipient, mail.subarray(0, 20))).message).toBe(
      "mail is truncated: the header is incomplete",
    );
    expect(errorOf(() => decryptMail(recipient, concat(mail, new Uint8Array([0])))).message).toBe(
      "1 unexpected bytes after the end of the mail",
    );
    const bad = mail.slice();
    bad[0] = 0x41;
    expect(errorOf(() => decryptMail(recipient, bad)).message).toBe("not a mail: bad magic bytes");
  });

  it("a failed decryptor stays failed", () => {
    const mail = encryptMail(sender, publicKeyOf(recipient), header, body(10));
    const d = new MailDecryptor(generatePrivateKey());
    expect(() => d.update(mail)).toThrow("mail could not be decrypted");
    expect(() => d.update(new Uint8Array(1))).toThrow("decryptor already failed");
  });

  it("reads the clear header and checks topics", () => {
    const mail = encryptMail(sender, publicKeyOf(recipient), header, body(3));
    expect(peekHeader(mail).topic).toBe("big-topic");
    expect(peekHeader(mail).sequenceNumber).toBe(3n);
    expect(() => mailHeader("no spaces", 0)).toThrow(`invalid topic "no spaces"`);
    expect(() => mailHeader("", 0)).toThrow("invalid topic");
    expect(() => mailHeader("x".repeat(256), 0)).toThrow("invalid topic");
  });

  it("recognises low-order X25519 points (the Rust client's list)", () => {
    const low = [
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "0000000000000000000000000000000000000000000000000000000000000080",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    ];
    for (const k of low) expect(isLowOrder(hex(k))).toBe(true);
    for (let i = 0; i < 8; i++) expect(isLowOrder(publicKeyOf(generatePrivateKey()))).toBe(false);
  });
});
