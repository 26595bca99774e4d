// An enclave and its host in one object, scripted for the client's tests:
// honest by default (the rules of wire-format section 3.3), with hooks that
// let a test play a hostile host or a forked enclave.
import { ed25519 } from "@noble/curves/ed25519.js";

import {
  type Answer,
  CHAIN_START,
  GENESIS,
  type MailRelay,
  type QueuedMail,
  RelayError,
  type ReplyChain,
  type ResponseFrame,
  type ResponseKind,
  type StateCheckpoint,
  checkRequest,
  decryptMail,
  encodeInfo,
  encryptMail,
  extendChain,
  generatePrivateKey,
  keyBinding,
  mailHeader,
  nextCheckpoint,
  publicKeyOf,
  randomBytes,
  runMessage,
  toHex,
  unwrapRequest,
  wrapResponse,
} from "../src/index.js";

export const CODE_HASH = "c0".repeat(32);
export const CONSTRAINT = `C:${CODE_HASH} SEC:INSECURE`;

type Rejection = Extract<ResponseKind, { kind: "rejected" }>["code"];

export class FakeEnclave implements MailRelay {
  secret = generatePrivateKey();
  signing = randomBytes(32);
  run: StateCheckpoint = nextCheckpoint(GENESIS, randomBytes(16));
  state: StateCheckpoint = this.run;
  history: StateCheckpoint[] = [this.run];
  chains = new Map<string, ReplyChain>();
  expected = new Map<string, bigint>();
  queue: QueuedMail[] = [];
  private nextId = 1;
  /** Accepted mails, as (topic, number, body). */
  accepted: [string, bigint, string][] = [];
  /** The application: a reply body, `undefined` for a receipt, or `{ refuse }`. */
  app: (body: Uint8Array) => Uint8Array | undefined | { refuse: string } = (b) => b.slice().reverse();
  /** A hostile host: called before each delivery; a returned error is what the client gets instead. */
  beforeDeliver: (mail: Uint8Array) => RelayError | undefined = () => undefined;
  /** Called after the enclave answered, with the queued answer; returning false hides it from the client. */
  showDirect: (answer: QueuedMail) => boolean = () => true;
  /** Overrides the response to an accepted mail (a misbehaving enclave). */
  override: ((frame: ResponseFrame) => ResponseFrame) | undefined;

  async attestation(): Promise<Uint8Array> {
    const encryptionKey = publicKeyOf(this.secret);
    const dataSigningKey = ed25519.getPublicKey(this.signing);
    return encodeInfo({
      dataSigningKey,
      encryptionKey,
      run: this.run,
      runSignature: ed25519.sign(runMessage(encryptionKey, this.run), this.signing),
      evidence: {
        kind: "mock",
        report: {
          codeHash: Uint8Array.from(Buffer.from(CODE_HASH, "hex")),
          codeSigningKeyHash: new Uint8Array(32).fill(0x5e),
          productId: 1,
          revocationLevel: 0,
          reportData: keyBinding(dataSigningKey, encryptionKey),
          timestampUnix: BigInt(Math.floor(Date.now() / 1000)),
        },
      },
    });
  }

  /** A restart: new keys, a new run from the current state. */
  restart(): void {
    this.secret = generatePrivateKey();
    this.signing = randomBytes(32);
    this.seal();
    this.run = this.state;
    this.history.push(this.run);
  }

  private seal(): void {
    this.state = nextCheckpoint(this.state, randomBytes(16));
  }

  /** Queues enclave mail to `to` and returns it. */
  post(to: Uint8Array, topic: string, kind: ResponseKind, answers: Answer | undefined, body: Uint8Array): QueuedMail {
    const key = toHex(to);
    let link;
    let sequence = 0n;
    if (kind.kind !== "rejected") {
      const chain = this.chains.get(key) ?? CHAIN_START;
      link = { index: chain.index + 1n, previous: chain.digest };
      this.chains.set(key, extendChain(chain, this.state));
      sequence = link.index;
    }
    let frame: ResponseFrame = { kind, state: this.state, link, answers };
    if (this.override && kind.kind !== "rejected") frame = this.override(frame);
    const bytes = encryptMail(this.secret, to, mailHeader(topic, sequence), wrapResponse(frame, body));
    const mail = { id: this.nextId++, bytes };
    this.queue.push(mail);
    return mail;
  }

  /** Mail the enclave sends on its own (not an answer), in the recipient's chain. */
  broadcast(to: Uint8Array, topic: string, body: Uint8Array): QueuedMail {
    this.seal();
    return this.post(to, topic, { kind: "reply" }, undefined, body);
  }

  async deliver(_id: string, mail: Uint8Array): Promise<QueuedMail | undefined> {
    const refused = this.beforeDeliver(mail);
    if (refused) throw refused;
    let opened;
    try {
      opened = decryptMail(this.secret, mail);
    } catch {
      throw new RelayError("MAIL_INVALID", "the enclave could not decrypt the mail");
    }
    const sender = opened.sender;
    const topic = opened.header.topic;
    const n = opened.header.sequenceNumber;
    const { frame, body } = unwrapRequest(opened.body);
    const answers = { topic, sequenceNumber: n, requestId: frame.requestId };
    const recorded = this.chains.get(toHex(sender)) ?? CHAIN_START;
    const streamKey = `${toHex(sender)}/${topic}`;
    const expected = this.expected.get(streamKey) ?? 0n;
    const reject = (code: Rejection): QueuedMail =>
      this.post(sender, topic, { kind: "rejected", code, detail: { expected, received: n, chainIndex: recorded.index } }, answers, new Uint8Array(0));
    let answer: QueuedMail;
    const freshness = checkRequest(recorded, frame.chain, frame.runs, this.history);
    if (n < expected) answer = reject("SEQUENCE_REPLAYED");
    else if (freshness === "rollback") answer = reject("STATE_ROLLBACK");
    else if (freshness === "fork") answer = reject("STATE_FORK");
    else if (n > expected) answer = reject("SEQUENCE_GAP");
    else {
      this.expected.set(streamKey, n + 1n);
      this.accepted.push([topic, n, new TextDecoder().decode(body)]);
      this.seal();
      const out = this.app(body);
      if (out === undefined) answer = this.post(sender, topic, { kind: "receipt" }, answers, new Uint8Array(0));
      else if (out instanceof Uint8Array) answer = this.post(sender, topic, { kind: "reply" }, answers, out);
      else answer = this.post(sender, topic, { kind: "refused" }, answers, new TextEncoder().encode(out.refuse));
    }
    return this.showDirect(answer) ? answer : undefined;
  }

  async poll(): Promise<QueuedMail[]> {
    return [...this.queue];
  }

  async acknowledge(_id: string, ids: readonly number[]): Promise<void> {
    this.queue = this.queue.filter((m) => !ids.includes(m.id));
  }
}
