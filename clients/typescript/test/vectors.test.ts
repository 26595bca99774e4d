// Every shared vector file, byte for byte and verdict for verdict.
import { readdirSync } from "node:fs";

import { describe, expect, it } from "vitest";

import {
  CHAIN_START,
  EnclaveConstraint,
  ReplyChainVerifier,
  chainDigest,
  checkRequest,
  decodeInfo,
  decryptMail,
  encodeInfo,
  encodePrefix,
  encryptMail,
  extendChain,
  hex,
  infoToJson,
  keyBinding,
  mailHeader,
  parseCheckpoint,
  publicKeyOf,
  runMessage,
  stateId,
  toHex,
  unwrapRequest,
  unwrapResponse,
  verifyInfo,
  wrapRequest,
  wrapResponse,
  type ChainVerdict,
  type ResponseFrame,
  type StateCheckpoint,
} from "../src/index.js";
import { REPO, vector } from "./vectors.js";

const cp = (c: { counter: number; id: string }): StateCheckpoint => ({ counter: BigInt(c.counter), id: hex(c.id) });
const chainOf = (c: { index: number; digest: string }) => ({ index: BigInt(c.index), digest: hex(c.digest) });

describe("mail-v2.json", () => {
  const v = vector("mail-v2.json");
  const header = mailHeader(v.topic, v.sequence_number, hex(v.envelope));

  it("encrypts to the same bytes with the same ephemeral key", () => {
    expect(toHex(publicKeyOf(hex(v.recipient_private_key)))).toBe(v.recipient_public_key);
    expect(toHex(encodePrefix(header))).toBe(v.prologue);
    const mail = encryptMail(hex(v.sender_private_key), hex(v.recipient_public_key), header, hex(v.body), {
      minSize: v.min_size,
      ephemeralSecretForTestingOnly: hex(v.ephemeral_private_key),
    });
    expect(toHex(mail)).toBe(v.mail);
  });

  it("decrypts the stored mail and names the sender", () => {
    const opened = decryptMail(hex(v.recipient_private_key), hex(v.mail));
    expect(toHex(opened.body)).toBe(v.body);
    expect(toHex(opened.sender)).toBe(v.sender_public_key);
    expect(opened.header.topic).toBe("greetings");
    expect(opened.header.sequenceNumber).toBe(5n);
  });

  it("refuses a version 1 mail by name", () => {
    const mail = hex(v.mail);
    mail[2] = 1;
    expect(() => decryptMail(hex(v.recipient_private_key), mail)).toThrow(
      "unsupported mail version 1 (this code reads version 2)",
    );
  });
});

describe("exchange-v2.json", () => {
  const v = vector("exchange-v2.json");

  it("the client's mail is byte for byte the Rust client's", () => {
    const run = cp(v.run);
    const framed = wrapRequest({ requestId: hex(v.request_id), chain: CHAIN_START, runs: [run] }, hex(v.body));
    const mail = encryptMail(hex(v.client_private_key), hex(v.enclave_public_key), mailHeader("bids", 0), framed, {
      minSize: 64,
      ephemeralSecretForTestingOnly: hex(v.mail_ephemeral_private_key),
    });
    expect(toHex(mail)).toBe(v.mail);
    // And the enclave reads it back.
    const opened = decryptMail(hex(v.enclave_private_key), mail);
    expect(toHex(opened.sender)).toBe(v.client_public_key);
    const { frame, body } = unwrapRequest(opened.body);
    expect(toHex(body)).toBe(v.body);
    expect(frame.runs.map((r) => r.counter)).toEqual([run.counter]);
  });

  it("the client accepts the enclave's reply as the answer to its mail 0", () => {
    const opened = decryptMail(hex(v.client_private_key), hex(v.reply));
    expect(toHex(opened.sender)).toBe(v.enclave_public_key);
    const { frame, body } = unwrapResponse(opened.body);
    expect(toHex(body)).toBe(v.reply_body);
    expect(frame.kind.kind).toBe("reply");
    expect(frame.answers?.sequenceNumber).toBe(0n);
    expect(toHex(frame.answers!.requestId)).toBe(v.request_id);
    const verifier = new ReplyChainVerifier();
    expect(verifier.check(frame.link!, frame.state)).toEqual({ verdict: "next" });
    verifier.advance(frame.link!, frame.state);
    expect(verifier.head.index).toBe(BigInt(v.chain_after.index));
    expect(toHex(verifier.head.digest)).toBe(v.chain_after.digest);
    expect(toHex(frame.state.id)).toBe(v.reply_state.id);
  });
});

describe("frames-v1.json", () => {
  const v = vector("frames-v1.json");

  it.each(v.requests.map((r: any) => [r.name, r]) as [string, any][])("request: %s", (_name, r: any) => {
    const frame = { requestId: hex(r.request_id), chain: chainOf(r.chain), runs: r.runs.map(cp) };
    expect(toHex(wrapRequest(frame, hex(r.body)))).toBe(r.encoded);
    const back = unwrapRequest(hex(r.encoded));
    expect(toHex(back.body)).toBe(r.body);
    expect(back.frame.chain.index).toBe(BigInt(r.chain.index));
    expect(back.frame.runs.length).toBe(r.runs.length);
  });

  it.each(v.responses.map((r: any) => [r.name, r]) as [string, any][])("response: %s", (_name, r: any) => {
    const kind =
      r.kind === "rejected"
        ? {
            kind: "rejected" as const,
            code: r.rejection.code,
            detail: {
              expected: BigInt(r.rejection.expected),
              received: BigInt(r.rejection.received),
              chainIndex: BigInt(r.rejection.chain_index),
            },
          }
        : { kind: r.kind };
    const frame: ResponseFrame = {
      kind,
      state: cp(r.state),
      link: r.link ? { index: BigInt(r.link.index), previous: hex(r.link.previous) } : undefined,
      answers: r.answers
        ? { topic: r.answers.topic, sequenceNumber: BigInt(r.answers.sequence_number), requestId: hex(r.answers.request_id) }
        : undefined,
    };
    expect(toHex(wrapResponse(frame, hex(r.body)))).toBe(r.encoded);
    const back = unwrapResponse(hex(r.encoded));
    expect(back.frame).toEqual(frame);
    expect(toHex(back.body)).toBe(r.body);
  });

  it.each(v.invalid.map((r: any) => [r.name, r]) as [string, any][])("invalid: %s", (_name, r: any) => {
    const read = r.frame === "request" ? unwrapRequest : unwrapResponse;
    let error: any;
    try {
      read(hex(r.encoded));
    } catch (e) {
      error = e;
    }
    expect(error?.kind).toBe(r.error);
    expect(error?.message).toBe(r.message);
  });
});

function verdictJson(v: ChainVerdict): unknown {
  switch (v.verdict) {
    case "next":
    case "duplicate":
    case "stale":
      return v.verdict;
    case "held":
      return { held: { missing: Number(v.missing) } };
    case "fork":
      return { fork: { index: Number(v.index) } };
    case "regressed":
      return { regressed: { previous: Number(v.previous), received: Number(v.received) } };
  }
}

describe("freshness-v1.json", () => {
  const v = vector("freshness-v1.json");

  it("state ids and chain digests", () => {
    for (const s of v.state_ids) expect(toHex(stateId(hex(s.previous), BigInt(s.counter), hex(s.nonce)))).toBe(s.id);
    for (const c of v.chain_digests) {
      expect(toHex(chainDigest(hex(c.previous), BigInt(c.index), cp(c.state)))).toBe(c.digest);
    }
    const c1 = extendChain(CHAIN_START, cp(v.chain_digests[0].state));
    expect(toHex(c1.digest)).toBe(v.chain_digests[0].digest);
    expect(v.recent_links).toBe(32);
  });

  it.each(v.client_scenarios.map((s: any) => [s.name, s]) as [string, any][])("client: %s", (_name, s: any) => {
    const verifier = new ReplyChainVerifier();
    for (const step of s.steps) {
      const link = { index: BigInt(step.link.index), previous: hex(step.link.previous) };
      const state = cp(step.state);
      const verdict = verifier.check(link, state);
      expect(verdictJson(verdict)).toEqual(step.verdict);
      if (verdict.verdict === "next") verifier.advance(link, state);
    }
    expect(Number(verifier.head.index)).toBe(s.head.index);
    expect(toHex(verifier.head.digest)).toBe(s.head.digest);
  });

  it.each(v.enclave_checks.map((c: any) => [c.name, c]) as [string, any][])("enclave: %s", (_name, c: any) => {
    const verdict = checkRequest(chainOf(c.recorded), chainOf(c.claimed), c.runs.map(cp), c.history.map(cp));
    expect(verdict ?? "accept").toBe(c.verdict);
  });
});

describe("info-v2.json", () => {
  const v = vector("info-v2.json");

  it("decodes, re-encodes and verifies the mock and simulated infos", () => {
    for (const encoded of [v.encoded, v.simulated_encoded]) {
      const info = decodeInfo(hex(encoded));
      expect(toHex(encodeInfo(info))).toBe(encoded);
      expect(toHex(info.dataSigningKey)).toBe(v.data_signing_key);
      expect(toHex(info.encryptionKey)).toBe(v.encryption_key);
      expect(toHex(keyBinding(info.dataSigningKey, info.encryptionKey))).toBe(v.report_data);
      expect(toHex(runMessage(info.encryptionKey, info.run))).toBe(v.run_message);
      expect(verifyInfo(info, 1_800_000_000n).run).toEqual(cp(v.run));
    }
    const sim = decodeInfo(hex(v.simulated_encoded));
    expect(sim.evidence.kind === "simulation" && toHex(sim.evidence.attestationKey)).toBe(v.simulated_attestation_key);
  });

  it("refuses another version by name", () => {
    const bytes = hex(v.encoded);
    bytes[5] = 1;
    expect(() => decodeInfo(bytes)).toThrow("unsupported enclave instance info version 1 (this code reads version 2)");
  });

  it("refuses a truncated or extended info", () => {
    const bytes = hex(v.encoded);
    expect(() => decodeInfo(bytes.subarray(0, bytes.length - 1))).toThrow("malformed enclave instance info: truncated");
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(() => decodeInfo(longer)).toThrow("malformed enclave instance info: trailing bytes after the evidence");
  });
});

describe("attestations-v2.json", () => {
  const v = vector("attestations-v2.json");

  it.each(v.cases.map((c: any) => [c.name, c]) as [string, any][])("%s", (_name, c: any) => {
    const info = decodeInfo(hex(c.encoded));
    if (c.verdict.ok) {
      expect(infoToJson(verifyInfo(info, BigInt(v.verified_at)))).toEqual(c.verdict.ok);
    } else {
      let error: any;
      try {
        verifyInfo(info, BigInt(v.verified_at));
      } catch (e) {
        error = e;
      }
      expect(error?.kind).toBe(c.expected);
      expect(error?.message).toBe(c.verdict.error);
    }
  });
});

describe("constraints-v1.json", () => {
  const v = vector("constraints-v1.json");

  it.each(v.valid.map((c: any) => [c.input, c]) as [string, any][])("valid %j", (_input, c: any) => {
    expect(EnclaveConstraint.parse(c.input).toString()).toBe(c.canonical);
    // The canonical form parses to itself.
    expect(EnclaveConstraint.parse(c.canonical).toString()).toBe(c.canonical);
  });

  it.each(v.invalid.map((c: any) => [c.input, c]) as [string, any][])("invalid %j", (_input, c: any) => {
    let error: any;
    try {
      EnclaveConstraint.parse(c.input);
    } catch (e) {
      error = e;
    }
    expect(error?.message).toBe(c.message);
    expect(error?.token ?? null).toBe(c.token);
  });
});

it("checkpoints print and parse as counter:id", () => {
  const c = parseCheckpoint(`7:${"ab".repeat(32)}`);
  expect(c.counter).toBe(7n);
  expect(() => parseCheckpoint("7")).toThrow("a checkpoint is written counter:id");
});

describe("constraint-checks-v1.json", () => {
  const v = vector("constraint-checks-v1.json");
  const sim = v.cases.find((c: any) => c.name === "simulation by signer and product").encoded;

  it.each(v.cases.map((c: any) => [c.name, c]) as [string, any][])("%s", (_name, c: any) => {
    const constraint = EnclaveConstraint.parse(c.constraint);
    let result: unknown = "ok";
    try {
      constraint.check(decodeInfo(hex(c.encoded)), BigInt(c.now));
    } catch (e) {
      result = { error: (e as Error).message };
    }
    expect(result).toEqual(c.result);
  });

  it.each(v.periods.map((p: any) => [p.period, p]) as [string, any][])("EXPIRE:%s", (period, p: any) => {
    const text = `C:${"c0".repeat(32)} SEC:INSECURE EXPIRE:${period}`;
    let result: unknown = "ok";
    try {
      EnclaveConstraint.parse(text).check(decodeInfo(hex(sim)), 1_800_000_000n + 1_000_000_000_000n);
    } catch (e) {
      const error = e as { kind: string; message: string };
      result = error.kind === "invalid_token" ? { error: error.message } : { expired: error.message };
    }
    expect(result).toEqual(p.result);
  });
});

it("every shared vector file is checked by this suite", () => {
  const checked = [
    "attestations-v2.json",
    "constraint-checks-v1.json",
    "constraints-v1.json",
    "exchange-v2.json",
    "frames-v1.json",
    "freshness-v1.json",
    "hardware-v1.json", // test/hardware.test.ts
    "info-v2.json",
    "mail-v2.json",
  ];
  expect(readdirSync(`${REPO}crates/core/tests/vectors`).filter((f) => f.endsWith(".json")).sort()).toEqual(checked);
});
