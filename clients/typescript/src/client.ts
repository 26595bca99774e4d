/**
 * EnclaveClient: the client's rules (docs/wire-format.md, section 3) applied
 * to whatever a relay hands it. A port of the Rust client
 * (crates/client/src/client.rs), decision for decision.
 *
 * Nothing a relay says is trusted. A mail is kept (byte for byte, with its
 * body so it can be encrypted again for a restarted enclave) until an answer
 * from the enclave itself settles it. Every reply must link into the
 * client's reply chain in order; replies that arrive early wait, missing
 * ones are reported as withheld, and a reply that does not link up is a fork.
 */
import { fromBase64, fromHex, lossyUtf8, randomBytes, toBase64, toHex } from "./bytes.js";
import { ConstraintError, EnclaveConstraint } from "./constraint.js";
import { type ResponseFrame, type RejectionCode, type RejectionDetail, unwrapResponse, wrapRequest } from "./frame.js";
import { type StateCheckpoint, ReplyChainVerifier, formatCheckpoint, parseCheckpoint } from "./freshness.js";
import { RelayError, type MailRelay, type QueuedMail, UNREACHABLE } from "./http.js";
import { InfoError, type VerifiedEnclaveInfo, decodeInfo } from "./info.js";
import { MailError, decryptMail, encryptMail, mailHeader, publicKeyOf, validateTopic } from "./mail.js";
import { type PaddingPolicy, Padding, clonePadding, minSizeFor } from "./padding.js";
import {
  type ClientStateJson,
  MAX_ATTEMPTS_KEPT,
  type StateStorage,
  StateError,
  addRun,
  generateState,
  stateFromText,
  stateToText,
  unconfirmedRuns,
} from "./state.js";

export type ClientErrorKind =
  | "relay"
  | "attestation"
  | "constraint"
  | "mail"
  | "unsettled"
  | "rollback"
  | "fork"
  | "withheld"
  | "refused"
  | "rejected"
  | "already_processed"
  | "unexpected_answer"
  | "bad_reply"
  | "not_started"
  | "bad_state"
  | "storage";

/** Why a client operation failed; `message` is the Rust client's, `kind` and the fields say it for programs. */
export class ClientError extends Error {
  override readonly name = "ClientError";
  constructor(
    readonly kind: ClientErrorKind,
    message: string,
    readonly fields: {
      topic?: string;
      sequenceNumber?: bigint;
      code?: string;
      clientIndex?: bigint;
      enclaveIndex?: bigint;
      missing?: bigint;
      detail?: RejectionDetail;
      cause?: unknown;
    } = {},
  ) {
    super(message);
  }
}

function relayError(e: RelayError): ClientError {
  const message =
    e.code === UNREACHABLE
      ? `cannot reach the host (${e.detail}): is \`conclave host\` running at that address?`
      : `host refused: ${e.message}`;
  return new ClientError("relay", message, { code: e.code, cause: e });
}

function rejectionText(code: RejectionCode, d: RejectionDetail): string {
  switch (code) {
    case "SEQUENCE_GAP":
    case "SEQUENCE_REORDERED":
      return (
        `${code}: it expects sequence number ${d.expected} but this mail is ${d.received}; this client has no record ` +
        "of the mail in between (was its state file restored from a backup?)"
      );
    case "STATE_FULL":
      return "STATE_FULL: the enclave's state is full; try again later";
    case "BAD_REQUEST":
      return "BAD_REQUEST: the enclave could not read this client's request";
    default:
      return code;
  }
}

const unsettled = (topic: string, sequenceNumber: bigint, last: RelayError): ClientError =>
  new ClientError(
    "unsettled",
    `mail ${sequenceNumber} on topic ${JSON.stringify(topic)} is not answered yet (${last.message}); it is kept and will be sent again by the next send or poll`,
    { topic, sequenceNumber, code: last.code, cause: last },
  );

const rollback = (enclaveIndex: bigint, clientIndex: bigint): ClientError =>
  new ClientError(
    "rollback",
    `rollback detected: this client has verified ${clientIndex} replies from the enclave, but the enclave's state knows of only ${enclaveIndex}; the host restored an older state (or this client's state file was replaced by a newer one)`,
    { enclaveIndex, clientIndex },
  );

const fork = (what: string): ClientError =>
  new ClientError(
    "fork",
    `fork detected: ${what}; the host is running the enclave from another copy of its state. Compare checkpoints with the other parties before trusting any result`,
  );

const withheld = (missing: bigint): ClientError =>
  new ClientError(
    "withheld",
    `reply ${missing} from the enclave never arrived, although later ones did: the host withheld it (or delivered it under another correlation id)`,
    { missing },
  );

const badReply = (what: string): ClientError => new ClientError("bad_reply", `a reply from the enclave is invalid: ${what}`);
const badState = (what: string): ClientError => new ClientError("bad_state", `client state is invalid: ${what}`);

/** A decrypted, verified reply from the enclave. */
export interface EnclaveReply {
  /** The reply's topic. */
  readonly topic: string;
  /** Its position in this client's reply chain. */
  readonly sequenceNumber: bigint;
  /** The decrypted body. */
  readonly body: Uint8Array;
  /** The state that produced it. */
  readonly state: StateCheckpoint;
  /** The sequence number of the mail it answers on `topic`, if any. */
  readonly answers: bigint | undefined;
  /** A reply, or the application's refusal (its body is then the message). */
  readonly kind: "reply" | "refused";
}

/** How many times one call delivers a pending mail before it gives up (the mail stays pending). */
const DELIVERIES = 4;
/** How many polls one fetch makes at most. */
const FETCH_ROUNDS = 1000;

type Settlement =
  | { kind: "reply"; reply: EnclaveReply }
  | { kind: "receipt" }
  | { kind: "refused"; sequenceNumber: bigint; message: string };

/** What a client can be given besides its relay and constraint. */
export interface ClientOptions {
  /** Where the state is saved before every delivery and after every change (recommended). */
  storage?: StateStorage;
  /** How outgoing mail is padded on topics without a policy yet (default: largest seen). */
  padding?: PaddingPolicy;
  /** The current time in unix seconds (default: the system clock). */
  now?: () => bigint;
  /** Waits between deliveries (default: a timer). */
  sleep?: (ms: number) => Promise<void>;
}

const systemNow = (): bigint => BigInt(Math.floor(Date.now() / 1000));
const timerSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Talks to one enclave through an untrusted relay. */
export class EnclaveClient {
  private verified: VerifiedEnclaveInfo | undefined;
  private defaultPadding: PaddingPolicy;
  private readonly storage: StateStorage | undefined;
  private readonly now: () => bigint;
  private readonly sleep: (ms: number) => Promise<void>;
  private chain: ReplyChainVerifier;
  /** The topic whose pending mail the current operation waits for. */
  private target: string | undefined;
  private settled = new Map<string, Settlement>();
  /** The first error the last batch of replies raised. */
  private failure: ClientError | undefined;
  /** The most in-chain replies an authenticated rejection announced. */
  private announced = 0n;
  private dropped = 0;
  /** Serialises operations: one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly relay: MailRelay,
    readonly constraint: EnclaveConstraint,
    private state: ClientStateJson,
    options: ClientOptions,
  ) {
    this.storage = options.storage;
    this.defaultPadding = options.padding ?? Padding.largestSeen();
    this.now = options.now ?? systemNow;
    this.sleep = options.sleep ?? timerSleep;
    const c = state.chain;
    this.chain = new ReplyChainVerifier(
      { index: BigInt(c.head.index), digest: fromHex(c.head.digest)! },
      parseCheckpoint(c.state),
      c.recent.map((r) => ({ index: BigInt(r.index), digest: fromHex(r.digest)! })),
    );
  }

  /** A client with a fresh key that accepts enclaves satisfying `constraint`. */
  static async create(relay: MailRelay, constraint: EnclaveConstraint, options: ClientOptions = {}): Promise<EnclaveClient> {
    const client = new EnclaveClient(relay, constraint, generateState(constraint), options);
    await client.persist();
    return client;
  }

  /** A client continuing from saved state. */
  static fromState(relay: MailRelay, state: ClientStateJson, options: ClientOptions = {}): EnclaveClient {
    let checked: ClientStateJson;
    try {
      checked = stateFromText(stateToText(state));
    } catch (e) {
      throw badState((e as Error).message);
    }
    return new EnclaveClient(relay, EnclaveConstraint.parse(checked.constraint), checked, options);
  }

  /**
   * The client saved in `options.storage`, or a new one for `constraint` if
   * nothing is saved there yet. A saved state keeps its own constraint.
   */
  static async open(
    relay: MailRelay,
    constraint: EnclaveConstraint,
    options: ClientOptions & { storage: StateStorage },
  ): Promise<EnclaveClient> {
    let text: string | undefined;
    try {
      text = await options.storage.load();
    } catch (e) {
      throw new ClientError("storage", `cannot read client state: ${(e as Error).message}`, { cause: e });
    }
    if (text === undefined) return EnclaveClient.create(relay, constraint, options);
    let state: ClientStateJson;
    try {
      state = stateFromText(text);
    } catch (e) {
      throw badState((e as Error).message);
    }
    return new EnclaveClient(relay, EnclaveConstraint.parse(state.constraint), state, options);
  }

  /** The state to save (a copy). */
  save(): ClientStateJson {
    this.syncChain();
    return JSON.parse(stateToText(this.state)) as ClientStateJson;
  }

  /** The verified attestation, once started. */
  enclaveInfo(): VerifiedEnclaveInfo | undefined {
    return this.verified;
  }

  /** This client's X25519 public key: what the enclave sees as the sender. */
  publicKey(): Uint8Array {
    return publicKeyOf(this.privateKey());
  }

  /** The id the host files this client's replies under. */
  correlationId(): string {
    return this.state.correlation_id;
  }

  /** The latest enclave state this client verified, `counter:id`: parties compare theirs. */
  checkpoint(): string {
    return formatCheckpoint(this.chain.state);
  }

  /** The topics with a mail still waiting for an answer. */
  pendingTopics(): string[] {
    return Object.keys(this.state.pending).sort();
  }

  /** The body of the mail still waiting for an answer on `topic`, if any. */
  pendingBody(topic: string): Uint8Array | undefined {
    const pending = this.state.pending[topic];
    return pending ? fromBase64(pending.body) : undefined;
  }

  /** How many queued mails were dropped (undecryptable, or from no attested run). */
  droppedMail(): number {
    return this.dropped;
  }

  /** Sets how mail is padded on topics without a policy yet. */
  setPadding(policy: PaddingPolicy): void {
    this.state.padding = {};
    this.defaultPadding = policy;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Fetches the attestation and checks it against the constraint. A new run
   * of the enclave is remembered: its replies are accepted from now on, and
   * its start checkpoint is reported until an answer confirms it.
   */
  start(): Promise<VerifiedEnclaveInfo> {
    return this.serial(() => this.startInner());
  }

  private async startInner(): Promise<VerifiedEnclaveInfo> {
    const bytes = await this.call(() => this.relay.attestation());
    let info;
    try {
      info = decodeInfo(bytes);
    } catch (e) {
      if (e instanceof InfoError) {
        throw new ClientError("attestation", `attestation from the host is unreadable: ${e.message}`, { cause: e });
      }
      throw e;
    }
    let verified: VerifiedEnclaveInfo;
    try {
      verified = this.constraint.check(info, this.now());
    } catch (e) {
      if (e instanceof ConstraintError) throw new ClientError("constraint", e.message, { cause: e });
      throw e;
    }
    addRun(this.state, { key: toHex(verified.encryptionKey), checkpoint: formatCheckpoint(verified.run), confirmed: false });
    this.verified = verified;
    return verified;
  }

  /**
   * Encrypts `body` as the next mail on `topic`, delivers it, and returns the
   * enclave's reply to it (`undefined` if it processed it without replying).
   * A mail still pending on the topic is settled first. The mail is kept
   * until the enclave itself answers it; if it has no answer after a few
   * deliveries this throws an `unsettled` error and the next send or poll goes on.
   */
  sendMail(topic: string, body: Uint8Array): Promise<EnclaveReply | undefined> {
    return this.serial(async () => {
      try {
        validateTopic(topic);
      } catch (e) {
        throw new ClientError("mail", `mail error: ${(e as MailError).message}`, { cause: e });
      }
      this.enclaveKey();
      if (this.state.pending[topic]) {
        try {
          const reply = await this.settle(topic);
          if (reply) this.stash(reply);
        } catch (e) {
          if (!(e instanceof ClientError && e.kind === "refused")) throw e;
        }
      }
      const number = this.state.next_sequence_numbers[topic] ?? 0;
      this.state.next_sequence_numbers[topic] = number + 1;
      this.state.pending[topic] = { sequence_number: number, body: toBase64(body), attempts: [], processed: false };
      return this.settle(topic);
    });
  }

  /** Delivers again the mail pending on `topic` until it is answered. */
  resendPending(topic: string): Promise<EnclaveReply | undefined> {
    return this.serial(async () => (this.state.pending[topic] ? this.settle(topic) : undefined));
  }

  /**
   * Settles pending mail, fetches the whole queue, processes it, saves, then
   * acknowledges what was handled; returns the replies accepted and not yet
   * handed out (the inbox), oldest first.
   */
  pollMail(): Promise<EnclaveReply[]> {
    return this.serial(async () => {
      this.enclaveKey();
      for (const topic of this.pendingTopics()) {
        try {
          const reply = await this.settle(topic);
          if (reply) this.stash(reply);
        } catch (e) {
          // Keep polling: the rest of the queue may still be readable.
          if (!(e instanceof ClientError && (e.kind === "refused" || e.kind === "unsettled"))) throw e;
        }
      }
      await this.fetch();
      this.throwFailure();
      const replies = this.state.inbox.map(
        (r): EnclaveReply => ({
          topic: r.topic,
          sequenceNumber: BigInt(r.index),
          body: this.decode(r.body),
          state: parseCheckpoint(r.state),
          answers: r.answers === null ? undefined : BigInt(r.answers),
          kind: r.kind,
        }),
      );
      this.state.inbox = [];
      await this.persist();
      return replies;
    });
  }

  // ---- internals ----

  private privateKey(): Uint8Array {
    const key = fromHex(this.state.private_key);
    if (!key || key.length !== 32) throw badState("private_key must be 64 hex digits");
    return key;
  }

  private enclaveKey(): Uint8Array {
    if (!this.verified) throw new ClientError("not_started", "client is not started: call start first");
    return this.verified.encryptionKey;
  }

  private knowsKey(key: Uint8Array): boolean {
    const h = toHex(key);
    return this.state.runs.some((r) => r.key === h);
  }

  private decode(text: string): Uint8Array {
    const bytes = fromBase64(text);
    if (bytes === undefined) throw badState("a stored mail is not base64");
    return bytes;
  }

  /** Runs a relay call; its errors become client errors. */
  private async call<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      if (e instanceof RelayError) throw relayError(e);
      throw e;
    }
  }

  private syncChain(): void {
    this.state.chain = {
      head: { index: Number(this.chain.head.index), digest: toHex(this.chain.head.digest) },
      state: formatCheckpoint(this.chain.state),
      recent: this.chain.recent.map((c) => ({ index: Number(c.index), digest: toHex(c.digest) })),
    };
  }

  private async persist(): Promise<void> {
    if (!this.storage) return;
    this.syncChain();
    try {
      await this.storage.save(stateToText(this.state));
    } catch (e) {
      throw new ClientError("storage", `cannot save client state: ${(e as Error).message}`, { cause: e });
    }
  }

  private stash(reply: EnclaveReply): void {
    this.state.inbox.push({
      topic: reply.topic,
      index: Number(reply.sequenceNumber),
      body: toBase64(reply.body),
      state: formatCheckpoint(reply.state),
      answers: reply.answers === undefined ? null : Number(reply.answers),
      kind: reply.kind,
    });
  }

  private fail(error: ClientError): void {
    this.failure ??= error;
  }

  private throwFailure(): void {
    const failure = this.failure;
    this.failure = undefined;
    if (failure) throw failure;
  }

  /** Delivers the pending mail of `topic` until an authenticated answer settles it. */
  private async settle(topic: string): Promise<EnclaveReply | undefined> {
    this.target = topic;
    this.settled.clear();
    try {
      return await this.settleTarget(topic);
    } finally {
      this.target = undefined;
      this.settled.clear();
    }
  }

  private pendingNumber(topic: string): bigint {
    return BigInt(this.state.pending[topic]?.sequence_number ?? 0);
  }

  private async settleTarget(topic: string): Promise<EnclaveReply | undefined> {
    let last = new RelayError("NOT_SENT", "not delivered yet");
    for (let delivery = 0; delivery < DELIVERIES; delivery++) {
      if (delivery > 0) {
        await this.sleep(25 << delivery);
        // The host may have restarted the enclave: find out before encrypting again.
        try {
          await this.startInner();
        } catch (e) {
          if (!(e instanceof ClientError && e.kind === "relay")) throw e;
        }
        // The answer may be waiting in the queue already.
        await this.fetch();
        const done = this.takeSettlement(topic);
        if (done) return done.reply;
      }
      if (this.state.pending[topic]?.processed) {
        // The enclave said it processed the mail: its answer is in the chain.
        await this.fetch();
        const done = this.takeSettlement(topic);
        if (done) return done.reply;
        last = new RelayError("ANSWER_MISSING", "the enclave processed the mail; its answer is not queued");
        continue;
      }
      const mail = this.attemptBytes(topic);
      await this.persist();
      let direct: QueuedMail | undefined;
      try {
        direct = await this.relay.deliver(this.state.correlation_id, mail);
      } catch (e) {
        if (!(e instanceof RelayError)) throw e;
        if (e.code === UNREACHABLE) {
          await this.persist();
          throw unsettled(topic, this.pendingNumber(topic), e);
        }
        last = e;
        continue;
      }
      await this.process(direct ? [direct] : [], false);
      if (this.settled.has(topic) || this.failure) return this.takeSettlement(topic)?.reply;
      // The answer may sit behind replies still in the queue.
      await this.fetch();
      const done = this.takeSettlement(topic);
      if (done) return done.reply;
      last = new RelayError("NO_ANSWER", "the host returned no answer to the mail");
    }
    await this.persist();
    throw unsettled(topic, this.pendingNumber(topic), last);
  }

  /** The settlement of `topic`'s mail if it came (`{reply}`), or the error the batch raised. */
  private takeSettlement(topic: string): { reply: EnclaveReply | undefined } | undefined {
    this.throwFailure();
    const s = this.settled.get(topic);
    if (!s) return undefined;
    this.settled.delete(topic);
    if (s.kind === "reply") return { reply: s.reply };
    if (s.kind === "receipt") return { reply: undefined };
    throw new ClientError(
      "refused",
      `the enclave refused mail ${s.sequenceNumber} on topic ${JSON.stringify(topic)}: ${s.message}`,
      { topic, sequenceNumber: s.sequenceNumber },
    );
  }

  /**
   * The bytes to deliver for `topic`'s pending mail: the last attempt's if it
   * was encrypted to the run the client talks to now; else a new encryption
   * with the same number and body.
   */
  private attemptBytes(topic: string): Uint8Array {
    const enclaveKey = this.enclaveKey();
    const keyHex = toHex(enclaveKey);
    const pending = this.state.pending[topic];
    if (!pending) throw badState("no pending mail");
    const last = pending.attempts[pending.attempts.length - 1];
    if (last && last.key === keyHex && last.mail !== null) return this.decode(last.mail);
    const body = fromBase64(pending.body);
    if (body === undefined) throw badState("a pending mail's body is not base64");
    const requestId = randomBytes(16);
    const runs = unconfirmedRuns(this.state);
    const framed = wrapRequest({ requestId, chain: this.chain.head, runs }, body);
    const padding = (this.state.padding[topic] ??= clonePadding(this.defaultPadding));
    const minSize = minSizeFor(padding, framed.length);
    const header = mailHeader(topic, pending.sequence_number);
    const mail = encryptMail(this.privateKey(), enclaveKey, header, framed, { minSize });
    for (const attempt of pending.attempts) attempt.mail = null;
    pending.attempts.push({ key: keyHex, request_id: toHex(requestId), runs: runs.map(formatCheckpoint), mail: toBase64(mail) });
    if (pending.attempts.length > MAX_ATTEMPTS_KEPT) pending.attempts.splice(0, pending.attempts.length - MAX_ATTEMPTS_KEPT);
    return mail;
  }

  /** Fetches every queued reply (poll after poll while they come); then, a reply the chain still misses was withheld. */
  private async fetch(): Promise<void> {
    const id = this.state.correlation_id;
    for (let round = 0; round < FETCH_ROUNDS; round++) {
      let queued: QueuedMail[];
      try {
        queued = await this.relay.poll(id);
      } catch (e) {
        // Nothing was ever delivered under this id: nothing to fetch.
        if (e instanceof RelayError && e.code === "UNKNOWN_CORRELATION_ID") break;
        if (e instanceof RelayError) throw relayError(e);
        throw e;
      }
      if (queued.length === 0 || (await this.process(queued, true)) === 0) break;
    }
    if (this.announced > this.chain.head.index) this.fail(withheld(this.chain.head.index + 1n));
  }

  /**
   * Checks a batch of replies, accepts what links into the chain in order,
   * saves, then acknowledges what was handled; returns how many. Errors go
   * to `failure`; the batch is still processed. `wholeQueue`: the batch is
   * the head of the host's queue, so a reply missing before a later one was
   * never queued.
   */
  private async process(queued: QueuedMail[], wholeQueue: boolean): Promise<number> {
    const key = this.privateKey();
    const inChain: { id: number; frame: ResponseFrame; body: Uint8Array; topic: string }[] = [];
    const handled: number[] = [];
    let reattested = false;
    for (const mail of queued) {
      let opened;
      try {
        opened = decryptMail(key, mail.bytes);
      } catch {
        // Not for this client, or mangled by the host: drop it. A real reply
        // lost this way shows up as a gap in the chain.
        this.dropped += 1;
        handled.push(mail.id);
        continue;
      }
      if (!this.knowsKey(opened.sender) && !reattested) {
        // Perhaps a run this client has not attested yet.
        reattested = true;
        try {
          await this.startInner();
        } catch {
          // Still unknown: dropped below.
        }
      }
      if (!this.knowsKey(opened.sender)) {
        this.dropped += 1;
        handled.push(mail.id);
        continue;
      }
      let unwrapped;
      try {
        unwrapped = unwrapResponse(opened.body);
      } catch (e) {
        this.fail(badReply(`its response frame is malformed: ${(e as Error).message}`));
        handled.push(mail.id);
        continue;
      }
      const { frame, body } = unwrapped;
      if (frame.kind.kind === "rejected") {
        this.rejection(frame, frame.kind.code, frame.kind.detail);
        handled.push(mail.id);
      } else {
        inChain.push({ id: mail.id, frame, body, topic: opened.header.topic });
      }
    }
    inChain.sort((a, b) => {
      const x = a.frame.link?.index ?? 0n;
      const y = b.frame.link?.index ?? 0n;
      return x < y ? -1 : x > y ? 1 : 0;
    });
    let held: bigint | undefined;
    for (const { id, frame, body, topic } of inChain) {
      const link = frame.link;
      if (!link) continue;
      const v = this.chain.check(link, frame.state);
      switch (v.verdict) {
        case "next":
          this.chain.advance(link, frame.state);
          this.accept(topic, link.index, frame, body);
          handled.push(id);
          break;
        case "duplicate":
        case "stale":
          handled.push(id);
          break;
        case "held":
          held ??= v.missing;
          break;
        case "fork":
          this.fail(fork(`reply ${v.index} does not link to the replies this client verified before it`));
          break;
        case "regressed":
          this.fail(fork(`a reply comes from state ${v.received}, older than state ${v.previous} of the reply before it`));
          break;
      }
    }
    if (held !== undefined && wholeQueue && held <= this.chain.head.index + 1n) {
      // The queue is in commit order: a reply that sits before a later one and is not there was never queued.
      this.fail(withheld(held));
    }
    // Save what was accepted before the host may delete it.
    await this.persist();
    if (handled.length > 0) {
      try {
        await this.relay.acknowledge(this.state.correlation_id, handled);
      } catch {
        // A lost acknowledgement only means the replies come again, as duplicates.
      }
    }
    return handled.length;
  }

  /** Applies an in-chain reply that is next in the chain. */
  private accept(topic: string, index: bigint, frame: ResponseFrame, body: Uint8Array): void {
    let answers: bigint | undefined;
    const answer = frame.answers;
    if (answer) {
      if (answer.topic !== topic) {
        this.fail(badReply("it answers a mail on another topic than its own"));
        return;
      }
      const next = BigInt(this.state.next_sequence_numbers[topic] ?? 0);
      if (answer.sequenceNumber >= next) {
        this.fail(
          new ClientError(
            "unexpected_answer",
            `the enclave answered mail ${answer.sequenceNumber} on topic ${JSON.stringify(topic)}, which this client never sent; this client's state file is older than its conversation (restored from a backup?)`,
            { topic, sequenceNumber: answer.sequenceNumber },
          ),
        );
        return;
      }
      answers = answer.sequenceNumber;
      // The runs this attempt reported are in the enclave's history.
      const request = toHex(answer.requestId);
      const confirmed = this.state.pending[topic]?.attempts.find((a) => a.request_id === request)?.runs ?? [];
      for (const run of this.state.runs) if (confirmed.includes(run.checkpoint)) run.confirmed = true;
    }
    const pending = this.state.pending[topic];
    const settles = answer !== undefined && pending !== undefined && BigInt(pending.sequence_number) === answer.sequenceNumber;
    const kind = frame.kind.kind === "refused" ? "refused" : "reply";
    const reply: EnclaveReply = { topic, sequenceNumber: index, body, state: frame.state, answers, kind };
    if (settles) delete this.state.pending[topic];
    if (settles && this.target === topic) {
      const k = frame.kind.kind;
      this.settled.set(
        topic,
        k === "receipt"
          ? { kind: "receipt" }
          : k === "refused"
            ? { kind: "refused", sequenceNumber: answers ?? 0n, message: lossyUtf8.decode(body) }
            : { kind: "reply", reply },
      );
      return;
    }
    // A receipt for a mail already settled tells nothing new.
    if (frame.kind.kind === "reply" || frame.kind.kind === "refused") this.stash(reply);
  }

  /** Applies an authenticated rejection, if it is of a current attempt. */
  private rejection(frame: ResponseFrame, code: RejectionCode, detail: RejectionDetail): void {
    const answer = frame.answers;
    if (!answer) return;
    const request = toHex(answer.requestId);
    const pending = this.state.pending[answer.topic];
    if (!pending) return;
    if (BigInt(pending.sequence_number) !== answer.sequenceNumber || !pending.attempts.some((a) => a.request_id === request)) {
      // An old rejection, of an attempt this client no longer has.
      return;
    }
    const topic = answer.topic;
    const head = this.chain.head.index;
    switch (code) {
      case "SEQUENCE_REPLAYED":
        // Processed before: the answer is in the reply chain.
        pending.processed = true;
        if (detail.chainIndex > this.announced) this.announced = detail.chainIndex;
        if (detail.chainIndex <= head) {
          this.fail(
            new ClientError(
              "already_processed",
              `the enclave has already processed mail ${answer.sequenceNumber} on topic ${JSON.stringify(topic)}, but this client has no answer for it: this client's state file is out of date (restored from a backup?), or the host is showing it another copy of the enclave`,
              { topic, sequenceNumber: answer.sequenceNumber },
            ),
          );
        }
        break;
      case "STATE_ROLLBACK":
        this.fail(rollback(detail.chainIndex, head));
        break;
      case "STATE_FORK":
        this.fail(
          fork(
            `the enclave's history does not contain what this client was shown (reply ${head} of ${detail.chainIndex} it records, or a run this client attested)`,
          ),
        );
        break;
      default:
        this.fail(
          new ClientError(
            "rejected",
            `the enclave rejected mail ${answer.sequenceNumber} on topic ${JSON.stringify(topic)}: ${rejectionText(code, detail)}`,
            { topic, sequenceNumber: answer.sequenceNumber, code, detail },
          ),
        );
    }
  }
}
