/**
 * Freshness (docs/wire-format.md, section 3): state checkpoints, the reply
 * chain, and the client's verdict on each in-chain reply. Pure rules, no IO.
 *
 * ```text
 *  enclave: state s_k ── reply k (link: k, digest_(k-1); state s_k) ──► client
 *  client:  check(link, state) → next | held | duplicate | stale | fork | regressed
 * ```
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, equal, fromHex, readU64, toHex, u64, utf8 } from "./bytes.js";

const STATE_ID_DOMAIN = utf8.encode("conclave-state-id-v1\0");
const REPLY_CHAIN_DOMAIN = utf8.encode("conclave-reply-chain-v1\0");

/** How many recent chain positions a client remembers. */
export const RECENT_LINKS = 32;

/** One sealed state of the enclave: its position and its id. */
export interface StateCheckpoint {
  readonly counter: bigint;
  readonly id: Uint8Array;
}

export const GENESIS: StateCheckpoint = { counter: 0n, id: new Uint8Array(32) };

/** `counter:id`, the printable checkpoint parties compare. */
export function formatCheckpoint(c: StateCheckpoint): string {
  return `${c.counter}:${toHex(c.id)}`;
}

/** Parses `counter:id`; throws with the reason. */
export function parseCheckpoint(text: string): StateCheckpoint {
  const colon = text.indexOf(":");
  if (colon < 0) throw new Error("a checkpoint is written counter:id");
  const counterText = text.slice(0, colon);
  if (!/^[0-9]+$/.test(counterText) || BigInt(counterText) >= 1n << 64n) {
    throw new Error("the counter of a checkpoint is a whole number");
  }
  const id = fromHex(text.slice(colon + 1));
  if (!id || id.length !== 32) throw new Error("the id of a checkpoint is 64 hex digits");
  return { counter: BigInt(counterText), id };
}

export function checkpointBytes(c: StateCheckpoint): Uint8Array {
  return concat(u64(c.counter), c.id);
}

export function checkpointFromBytes(bytes: Uint8Array): StateCheckpoint {
  return { counter: readU64(bytes.subarray(0, 8)), id: bytes.slice(8, 40) };
}

export function sameCheckpoint(a: StateCheckpoint, b: StateCheckpoint): boolean {
  return a.counter === b.counter && equal(a.id, b.id);
}

/** The id of the state at `counter` whose parent has id `previous`. */
export function stateId(previous: Uint8Array, counter: bigint, nonce: Uint8Array): Uint8Array {
  return sha256(concat(STATE_ID_DOMAIN, previous, u64(counter), nonce));
}

/** The checkpoint sealed after `c` with `nonce`. */
export function nextCheckpoint(c: StateCheckpoint, nonce: Uint8Array): StateCheckpoint {
  const counter = c.counter + 1n;
  return { counter, id: stateId(c.id, counter, nonce) };
}

/** The head of one client's reply chain. */
export interface ReplyChain {
  readonly index: bigint;
  readonly digest: Uint8Array;
}

export const CHAIN_START: ReplyChain = { index: 0n, digest: new Uint8Array(32) };

/** `SHA-256("conclave-reply-chain-v1\0" ‖ previous ‖ index ‖ state counter ‖ state id)`. */
export function chainDigest(previous: Uint8Array, index: bigint, state: StateCheckpoint): Uint8Array {
  return sha256(concat(REPLY_CHAIN_DOMAIN, previous, u64(index), u64(state.counter), state.id));
}

/** The chain after one more reply from `state`. */
export function extendChain(chain: ReplyChain, state: StateCheckpoint): ReplyChain {
  const index = chain.index + 1n;
  return { index, digest: chainDigest(chain.digest, index, state) };
}

/** Where an in-chain reply sits: its index and the digest before it. */
export interface ChainLink {
  readonly index: bigint;
  readonly previous: Uint8Array;
}

/** What a client does with an in-chain reply. */
export type ChainVerdict =
  | { verdict: "next" }
  | { verdict: "held"; missing: bigint }
  | { verdict: "duplicate" }
  | { verdict: "stale" }
  | { verdict: "fork"; index: bigint }
  | { verdict: "regressed"; previous: bigint; received: bigint };

/** A client's view of its reply chain: what it has verified, in order. */
export class ReplyChainVerifier {
  constructor(
    /** The verified head. */
    public head: ReplyChain = CHAIN_START,
    /** The state of the last verified reply. */
    public state: StateCheckpoint = GENESIS,
    /** The last [[RECENT_LINKS]] positions before the head, oldest first. */
    public recent: ReplyChain[] = [],
  ) {}

  /** The verdict on a reply at `link` that came from `state`. */
  check(link: ChainLink, state: StateCheckpoint): ChainVerdict {
    const next = this.head.index + 1n;
    if (link.index > next) return { verdict: "held", missing: next };
    const digest = chainDigest(link.previous, link.index, state);
    if (link.index === next) {
      if (!equal(link.previous, this.head.digest)) return { verdict: "fork", index: link.index };
      if (state.counter < this.state.counter) {
        return { verdict: "regressed", previous: this.state.counter, received: state.counter };
      }
      return { verdict: "next" };
    }
    // At or below the head: a copy of an accepted reply, or another branch.
    const known = link.index === this.head.index ? this.head : this.recent.find((c) => c.index === link.index);
    if (!known) return { verdict: "stale" };
    return equal(known.digest, digest) ? { verdict: "duplicate" } : { verdict: "fork", index: link.index };
  }

  /** Accepts a reply that [[check]] called next. */
  advance(link: ChainLink, state: StateCheckpoint): void {
    const head = { index: link.index, digest: chainDigest(link.previous, link.index, state) };
    if (this.head.index > 0n) {
      this.recent.push(this.head);
      if (this.recent.length > RECENT_LINKS) this.recent.splice(0, this.recent.length - RECENT_LINKS);
    }
    this.head = head;
    this.state = state;
  }
}

/** Why the enclave refuses a request on freshness grounds (the enclave's rule, for tests and tools). */
export type FreshnessRefusal = "rollback" | "fork";

/** The enclave's check of a request frame (wire-format section 3.3, step 4). */
export function checkRequest(
  recorded: ReplyChain,
  claimed: ReplyChain,
  runs: readonly StateCheckpoint[],
  history: readonly StateCheckpoint[],
): FreshnessRefusal | undefined {
  if (claimed.index > recorded.index) return "rollback";
  if (claimed.index === recorded.index && !equal(claimed.digest, recorded.digest)) return "fork";
  if (runs.some((run) => !history.some((h) => sameCheckpoint(h, run)))) return "fork";
  return undefined;
}
