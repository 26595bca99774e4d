/**
 * The frames that lead every mail body, inside the encryption
 * (docs/wire-format.md, section 1.6): a request frame on client mail, a
 * response frame on enclave mail.
 */
import { Reader, concat, readU64, strictUtf8, u64, utf8 } from "./bytes.js";
import {
  type ChainLink,
  type ReplyChain,
  type StateCheckpoint,
  checkpointBytes,
  checkpointFromBytes,
} from "./freshness.js";
import { MAX_TOPIC_LEN } from "./mail.js";

export const FRAME_VERSION = 1;
/** The most run checkpoints one request may report. */
export const MAX_REPORTED_RUNS = 64;

/** Why a frame could not be read; `message` matches the Rust client's. */
export class FrameError extends Error {
  override readonly name = "FrameError";
  constructor(
    readonly kind: "truncated" | "unsupported_version" | "malformed",
    message: string,
  ) {
    super(message);
  }
}

const truncated = (what: string): FrameError => new FrameError("truncated", `frame is truncated: ${what}`);
const malformed = (what: string): FrameError => new FrameError("malformed", `malformed frame: ${what}`);

class FrameReader {
  private readonly r: Reader;
  constructor(bytes: Uint8Array) {
    this.r = new Reader(bytes);
  }
  take(n: number, what: string): Uint8Array {
    const out = this.r.take(n);
    if (!out) throw truncated(what);
    return out;
  }
  u8(what: string): number {
    return this.take(1, what)[0]!;
  }
  u64(what: string): bigint {
    return readU64(this.take(8, what));
  }
  checkpoint(what: string): StateCheckpoint {
    return checkpointFromBytes(this.take(40, what));
  }
  rest(): Uint8Array {
    return this.r.rest();
  }
  version(): void {
    const found = this.u8("version");
    if (found !== FRAME_VERSION) {
      throw new FrameError(
        "unsupported_version",
        `unsupported frame version ${found} (this code reads version ${FRAME_VERSION})`,
      );
    }
  }
}

/** What leads every client mail. */
export interface RequestFrame {
  /** Random for every encryption of a mail. */
  readonly requestId: Uint8Array;
  /** The head of the reply chain the client has verified. */
  readonly chain: ReplyChain;
  /** Run checkpoints attested and not confirmed yet, oldest first. */
  readonly runs: readonly StateCheckpoint[];
}

/** Prepends the request frame to `body` (at most the newest 64 runs). */
export function wrapRequest(frame: RequestFrame, body: Uint8Array): Uint8Array {
  const runs = frame.runs.slice(Math.max(0, frame.runs.length - MAX_REPORTED_RUNS));
  return concat(
    new Uint8Array([FRAME_VERSION]),
    frame.requestId,
    u64(frame.chain.index),
    frame.chain.digest,
    new Uint8Array([runs.length]),
    ...runs.map(checkpointBytes),
    body,
  );
}

/** Splits a decrypted client mail into its frame and body. */
export function unwrapRequest(bytes: Uint8Array): { frame: RequestFrame; body: Uint8Array } {
  const r = new FrameReader(bytes);
  r.version();
  const requestId = r.take(16, "request id").slice();
  const index = r.u64("chain index");
  const digest = r.take(32, "chain digest").slice();
  if (index === 0n && digest.some((b) => b !== 0)) throw malformed("an empty reply chain has an all-zero digest");
  const count = r.u8("run count");
  if (count > MAX_REPORTED_RUNS) throw malformed("more than 64 runs");
  const runs: StateCheckpoint[] = [];
  for (let i = 0; i < count; i++) runs.push(r.checkpoint("run checkpoint"));
  return { frame: { requestId, chain: { index, digest }, runs }, body: r.rest() };
}

/** The client mail an enclave mail answers. */
export interface Answer {
  readonly topic: string;
  readonly sequenceNumber: bigint;
  readonly requestId: Uint8Array;
}

/** The codes of rejections, by their kind byte. */
export const REJECTIONS = {
  0x10: "SEQUENCE_REPLAYED",
  0x11: "SEQUENCE_GAP",
  0x12: "SEQUENCE_REORDERED",
  0x13: "STATE_ROLLBACK",
  0x14: "STATE_FORK",
  0x15: "STATE_FULL",
  0x16: "BAD_REQUEST",
} as const;

export type RejectionCode = (typeof REJECTIONS)[keyof typeof REJECTIONS];

/** The numbers a rejection reports. */
export interface RejectionDetail {
  readonly expected: bigint;
  readonly received: bigint;
  readonly chainIndex: bigint;
}

export type ResponseKind =
  | { kind: "reply" }
  | { kind: "receipt" }
  | { kind: "refused" }
  | { kind: "rejected"; code: RejectionCode; detail: RejectionDetail };

/** What leads every enclave mail. */
export interface ResponseFrame {
  readonly kind: ResponseKind;
  readonly state: StateCheckpoint;
  /** Present exactly for in-chain kinds. */
  readonly link: ChainLink | undefined;
  readonly answers: Answer | undefined;
}

const KIND_BYTES = { reply: 1, receipt: 2, refused: 3 } as const;

/** Prepends a response frame to `body` (the enclave's side; for tests and tools). */
export function wrapResponse(frame: ResponseFrame, body: Uint8Array): Uint8Array {
  const k = frame.kind;
  const tag =
    k.kind === "rejected"
      ? Number(Object.entries(REJECTIONS).find(([, code]) => code === k.code)![0])
      : KIND_BYTES[k.kind];
  const parts: Uint8Array[] = [new Uint8Array([FRAME_VERSION, tag]), checkpointBytes(frame.state)];
  if (frame.link) parts.push(u64(frame.link.index), frame.link.previous);
  if (frame.answers) {
    const topic = utf8.encode(frame.answers.topic);
    parts.push(new Uint8Array([1, topic.length]), topic, u64(frame.answers.sequenceNumber), frame.answers.requestId);
  } else {
    parts.push(new Uint8Array([0]));
  }
  if (k.kind === "rejected") parts.push(u64(k.detail.expected), u64(k.detail.received), u64(k.detail.chainIndex));
  parts.push(body);
  return concat(...parts);
}

const TOPIC = /^[A-Za-z0-9-]{1,255}$/;

/** Splits a decrypted enclave mail into its frame and body. */
export function unwrapResponse(bytes: Uint8Array): { frame: ResponseFrame; body: Uint8Array } {
  const r = new FrameReader(bytes);
  r.version();
  const tag = r.u8("kind");
  const inChain = tag >= 1 && tag <= 3;
  const code = (REJECTIONS as Record<number, RejectionCode | undefined>)[tag];
  if (!inChain && !code) throw malformed("unknown kind");
  const state = r.checkpoint("state");
  let link: ChainLink | undefined;
  if (inChain) {
    const index = r.u64("chain index");
    if (index === 0n) throw malformed("chain index 0");
    link = { index, previous: r.take(32, "previous digest").slice() };
  }
  let answers: Answer | undefined;
  const flag = r.u8("answer flag");
  if (flag === 1) {
    const len = r.u8("topic length");
    const topicBytes = r.take(len, "topic");
    let topic: string;
    try {
      topic = strictUtf8.decode(topicBytes);
    } catch {
      throw malformed("topic is not ASCII");
    }
    if (len > MAX_TOPIC_LEN || !TOPIC.test(topic)) throw malformed("topic is not allowed");
    answers = { topic, sequenceNumber: r.u64("sequence number"), requestId: r.take(16, "request id").slice() };
  } else if (flag !== 0) {
    throw malformed("answer flag is neither 0 nor 1");
  }
  let kind: ResponseKind;
  if (tag === 1) kind = { kind: "reply" };
  else if (tag === 2) kind = { kind: "receipt" };
  else if (tag === 3) kind = { kind: "refused" };
  else {
    kind = {
      kind: "rejected",
      code: code!,
      detail: { expected: r.u64("expected"), received: r.u64("received"), chainIndex: r.u64("chain index") },
    };
  }
  if (!answers && kind.kind !== "reply") {
    throw malformed("receipts, refusals and rejections name the mail they answer");
  }
  return { frame: { kind, state, link, answers }, body: r.rest() };
}
