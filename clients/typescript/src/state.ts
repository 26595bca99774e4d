/**
 * What a client keeps across its own restarts, and where it keeps it.
 *
 * The state is a JSON document in the same shape as the Rust client's state
 * file (version 2; see README.md): the client's private key, the runs it
 * attested, how far it verified its reply chain, the mail it sent without an
 * authenticated answer (kept byte for byte, and its body, to be sent again),
 * the replies it accepted but has not handed out, and padding histories.
 * It holds the private key: store it like a key.
 */
import { fromBase64, fromHex, randomBytes, toHex } from "./bytes.js";
import { EnclaveConstraint } from "./constraint.js";
import { GENESIS, type StateCheckpoint, formatCheckpoint, parseCheckpoint } from "./freshness.js";
import { type PaddingPolicy, isPaddingPolicy } from "./padding.js";

/** The state format version this code writes and reads (the Rust client's too). */
export const STATE_VERSION = 2;
/** The most runs a client remembers; confirmed ones are forgotten first. */
export const MAX_RUNS = 64;
/** The most attempts of one mail a client remembers. */
export const MAX_ATTEMPTS_KEPT = 16;

export interface KnownRunJson {
  /** The run's encryption key (hex). */
  key: string;
  /** The run's start checkpoint, `counter:id`. */
  checkpoint: string;
  /** Whether an answer confirmed the enclave's history holds it. */
  confirmed: boolean;
}

export interface AttemptJson {
  key: string;
  request_id: string;
  runs: string[];
  /** The encrypted mail (base64), kept for the newest attempt only. */
  mail: string | null;
}

export interface PendingMailJson {
  sequence_number: number;
  /** The body (base64). */
  body: string;
  attempts: AttemptJson[];
  processed: boolean;
}

export interface StoredReplyJson {
  topic: string;
  index: number;
  body: string;
  state: string;
  answers: number | null;
  kind: "reply" | "refused";
}

export interface ChainJson {
  index: number;
  digest: string;
}

/** The saved state, exactly as it is written. */
export interface ClientStateJson {
  version: number;
  private_key: string;
  constraint: string;
  correlation_id: string;
  host: string | null;
  runs: KnownRunJson[];
  chain: { head: ChainJson; state: string; recent: ChainJson[] };
  next_sequence_numbers: Record<string, number>;
  pending: Record<string, PendingMailJson>;
  inbox: StoredReplyJson[];
  padding: Record<string, PaddingPolicy>;
}

/** Where a client's state lives: a file in Node, localStorage in a browser, memory in tests. */
export interface StateStorage {
  /** The saved text, or `undefined` when nothing was saved yet. */
  load(): Promise<string | undefined>;
  /** Replaces the saved text, atomically. */
  save(text: string): Promise<void>;
}

/** Keeps the state in memory (tests, or a page that must not keep anything). */
export class MemoryStorage implements StateStorage {
  constructor(public text: string | undefined = undefined) {}
  async load(): Promise<string | undefined> {
    return this.text;
  }
  async save(text: string): Promise<void> {
    this.text = text;
  }
}

/** Keeps the state under one key of a browser's `localStorage` (one write is atomic there). */
export class LocalStorageStorage implements StateStorage {
  constructor(
    readonly key: string,
    private readonly storage: Storage = globalThis.localStorage,
  ) {}
  async load(): Promise<string | undefined> {
    return this.storage.getItem(this.key) ?? undefined;
  }
  async save(text: string): Promise<void> {
    this.storage.setItem(this.key, text);
  }
}

/** Thrown for state that cannot be read; the message says what is wrong. */
export class StateError extends Error {
  override readonly name = "StateError";
}

/** A reply chain with nothing verified yet. */
function startChain(): ClientStateJson["chain"] {
  return { head: { index: 0, digest: "00".repeat(32) }, state: formatCheckpoint(GENESIS), recent: [] };
}

/** A new identity: fresh key, fresh correlation id. */
export function generateState(constraint: EnclaveConstraint): ClientStateJson {
  return {
    version: STATE_VERSION,
    private_key: toHex(randomBytes(32)),
    constraint: constraint.toString(),
    correlation_id: toHex(randomBytes(16)),
    host: null,
    runs: [],
    chain: startChain(),
    next_sequence_numbers: {},
    pending: {},
    inbox: [],
    padding: {},
  };
}

/** Serialises the state (pretty JSON, like the Rust client). */
export function stateToText(state: ClientStateJson): string {
  return JSON.stringify(state, null, 2);
}

const whole = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

function check(ok: boolean, what: string): void {
  if (!ok) throw new StateError(`not a client state file: ${what}`);
}

function checkCheckpoint(text: unknown, what: string): void {
  check(typeof text === "string", what);
  try {
    parseCheckpoint(text as string);
  } catch (e) {
    throw new StateError(`not a client state file: ${what}: ${(e as Error).message}`);
  }
}

function checkChain(c: unknown, what: string): void {
  const chain = c as ChainJson | null;
  check(!!chain && whole(chain.index) && fromHex(String(chain.digest))?.length === 32, what);
}

/** Parses and checks saved state. */
export function stateFromText(text: string): ClientStateJson {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new StateError(`not a client state file: ${(e as Error).message}`);
  }
  check(typeof raw === "object" && raw !== null, "expected a JSON object");
  const s = raw as Partial<ClientStateJson>;
  check(whole(s.version), "missing field `version`");
  if (s.version !== STATE_VERSION) {
    throw new StateError(
      `state version ${s.version} is not supported (this client reads version ${STATE_VERSION}); a state file of an older conclave cannot be continued: start a new one`,
    );
  }
  const state: ClientStateJson = {
    version: s.version,
    private_key: String(s.private_key ?? ""),
    constraint: String(s.constraint ?? ""),
    correlation_id: String(s.correlation_id ?? ""),
    host: typeof s.host === "string" ? s.host : null,
    runs: s.runs ?? [],
    chain: s.chain ?? startChain(),
    next_sequence_numbers: s.next_sequence_numbers ?? {},
    pending: s.pending ?? {},
    inbox: s.inbox ?? [],
    padding: s.padding ?? {},
  };
  if (fromHex(state.private_key)?.length !== 32) throw new StateError("private_key must be 64 hex digits");
  check(/^[A-Za-z0-9._-]{1,256}$/.test(state.correlation_id), "correlation_id is not a valid correlation id");
  check(Array.isArray(state.runs), "runs must be a list");
  for (const run of state.runs) {
    if (fromHex(String(run?.key))?.length !== 32) throw new StateError("a run key must be 64 hex digits");
    checkCheckpoint(run.checkpoint, "a run checkpoint");
    check(typeof run.confirmed === "boolean", "a run's confirmed flag");
  }
  checkChain(state.chain.head, "chain head");
  checkCheckpoint(state.chain.state, "chain state");
  state.chain.recent ??= [];
  check(Array.isArray(state.chain.recent), "chain recent links");
  state.chain.recent.forEach((c) => checkChain(c, "a recent chain link"));
  for (const [topic, n] of Object.entries(state.next_sequence_numbers)) check(whole(n), `next number of ${topic}`);
  for (const [topic, p] of Object.entries(state.pending)) {
    check(whole(p?.sequence_number), `pending mail of ${topic}`);
    if (fromBase64(String(p.body)) === undefined) throw new StateError("a pending mail's body is not base64");
    check(Array.isArray(p.attempts), `attempts of ${topic}`);
    p.processed ??= false;
    for (const a of p.attempts) {
      a.mail ??= null;
      check(typeof a.key === "string" && typeof a.request_id === "string" && Array.isArray(a.runs), `an attempt of ${topic}`);
      a.runs.forEach((r) => checkCheckpoint(r, `a run of an attempt of ${topic}`));
    }
  }
  check(Array.isArray(state.inbox), "inbox must be a list");
  for (const r of state.inbox) {
    check(typeof r.topic === "string" && whole(r.index) && (r.kind === "reply" || r.kind === "refused"), "an inbox reply");
    checkCheckpoint(r.state, "an inbox reply's state");
    r.answers ??= null;
  }
  for (const [topic, p] of Object.entries(state.padding)) check(isPaddingPolicy(p), `padding of ${topic}`);
  try {
    EnclaveConstraint.parse(state.constraint);
  } catch (e) {
    throw new StateError(`constraint: ${(e as Error).message}`);
  }
  return state;
}

/** The run checkpoints no answer has confirmed yet, oldest first. */
export function unconfirmedRuns(state: ClientStateJson): StateCheckpoint[] {
  return state.runs.filter((r) => !r.confirmed).map((r) => parseCheckpoint(r.checkpoint));
}

/** Remembers a run, forgetting the oldest confirmed ones beyond [[MAX_RUNS]]. */
export function addRun(state: ClientStateJson, run: KnownRunJson): void {
  if (state.runs.some((r) => r.key === run.key && r.checkpoint === run.checkpoint)) return;
  state.runs.push(run);
  while (state.runs.length > MAX_RUNS) {
    const oldest = state.runs.findIndex((r) => r.confirmed);
    state.runs.splice(oldest < 0 ? 0 : oldest, 1);
  }
}
