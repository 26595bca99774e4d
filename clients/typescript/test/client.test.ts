// The client's rules against a scripted enclave and a hostile host.
import { describe, expect, it } from "vitest";

import {
  EnclaveClient,
  EnclaveConstraint,
  MemoryStorage,
  RelayError,
  encryptMail,
  generatePrivateKey,
  lossyUtf8,
  mailHeader,
  publicKeyOf,
  utf8,
  wrapResponse,
} from "../src/index.js";
import { CONSTRAINT, FakeEnclave } from "./fake-enclave.js";
import { failure } from "./failure.js";

const text = (b: Uint8Array | undefined): string => lossyUtf8.decode(b);
const noWait = { sleep: async () => {} };

async function started(enclave = new FakeEnclave(), storage?: MemoryStorage): Promise<[EnclaveClient, FakeEnclave]> {
  const client = await EnclaveClient.create(enclave, EnclaveConstraint.parse(CONSTRAINT), { ...noWait, ...(storage ? { storage } : {}) });
  await client.start();
  return [client, enclave];
}

describe("the client", () => {
  it("numbers mail per topic; receipts and the application's refusals settle a mail", async () => {
    const [client, enclave] = await started();
    expect(text((await client.sendMail("a", utf8.encode("abc")))!.body)).toBe("cba");
    expect(text((await client.sendMail("b", utf8.encode("xyz")))!.body)).toBe("zyx");
    enclave.app = () => undefined;
    expect(await client.sendMail("a", utf8.encode("no answer"))).toBeUndefined();
    enclave.app = () => ({ refuse: "bid too low" });
    const refused = await failure(client.sendMail("a", utf8.encode("1")));
    expect(refused.kind).toBe("refused");
    expect(refused.message).toBe('the enclave refused mail 2 on topic "a": bid too low');
    enclave.app = (b) => b;
    // The refused mail's number is used up.
    await client.sendMail("a", utf8.encode("next"));
    expect(enclave.accepted.map(([t, n]) => `${t}${n}`)).toEqual(["a0", "b0", "a1", "a2", "a3"]);
    expect(client.pendingTopics()).toEqual([]);
    await expect(client.sendMail("bad topic", utf8.encode(""))).rejects.toThrow('mail error: invalid topic "bad topic"');
  });

  it("saves state before every delivery and continues from it", async () => {
    const storage = new MemoryStorage();
    const [client, enclave] = await started(new FakeEnclave(), storage);
    await client.sendMail("a", utf8.encode("one"));
    enclave.beforeDeliver = () => new RelayError(UNREACHABLE_CODE, "connection refused");
    const e = await failure(client.sendMail("a", utf8.encode("two")));
    expect(e.kind).toBe("unsettled");
    // The saved state holds the pending mail; a new client sends it (the same bytes) and gets its answer.
    const saved = JSON.parse(storage.text!);
    expect(Object.keys(saved.pending)).toEqual(["a"]);
    expect(text(client.pendingBody("a"))).toBe("two");
    enclave.beforeDeliver = () => undefined;
    const again = await EnclaveClient.open(enclave, EnclaveConstraint.parse(CONSTRAINT), { storage, ...noWait });
    await again.start();
    const inbox = await again.pollMail();
    expect(inbox.map((r) => [text(r.body), r.answers])).toEqual([["owt", 1n]]);
    expect(enclave.accepted.length).toBe(2);
  });

  it("never gives up a mail because of an unauthenticated error", async () => {
    const [client, enclave] = await started();
    let refusals = 2;
    enclave.beforeDeliver = () =>
      refusals-- > 0 ? new RelayError("SEQUENCE_REPLAYED", "the host claims the mail was replayed") : undefined;
    expect(text((await client.sendMail("a", utf8.encode("abc")))!.body)).toBe("cba");
    expect(enclave.accepted.length).toBe(1);
  });

  it("encrypts the same mail again for a restarted enclave, and reports its new run until confirmed", async () => {
    const [client, enclave] = await started();
    await client.sendMail("a", utf8.encode("before"));
    enclave.restart();
    expect(text((await client.sendMail("a", utf8.encode("after")))!.body)).toBe("retfa");
    const runs = client.save().runs;
    expect(runs.length).toBe(2);
    expect(runs.every((r) => r.confirmed)).toBe(true);
  });

  it("drops and counts queued mail it cannot read or that no attested run sent", async () => {
    const [client, enclave] = await started();
    enclave.queue.push({ id: 900, bytes: new Uint8Array([1, 2, 3]) });
    const stranger = generatePrivateKey();
    const forged = wrapResponse(
      { kind: { kind: "reply" }, state: enclave.state, link: { index: 1n, previous: new Uint8Array(32) }, answers: undefined },
      utf8.encode("you won"),
    );
    enclave.queue.push({ id: 901, bytes: encryptMail(stranger, client.publicKey(), mailHeader("a", 1), forged) });
    expect(text((await client.sendMail("a", utf8.encode("real")))!.body)).toBe("laer");
    expect(await client.pollMail()).toEqual([]);
    expect(client.droppedMail()).toBe(2);
    // Dropped mail is acknowledged too: the queue is empty.
    expect(enclave.queue).toEqual([]);
  });

  it("reports replies the host withheld", async () => {
    const [client, enclave] = await started();
    const hidden = enclave.broadcast(client.publicKey(), "a", utf8.encode("for you"));
    enclave.queue = enclave.queue.filter((m) => m.id !== hidden.id);
    const e = await failure(client.sendMail("a", utf8.encode("x")));
    expect(e.kind).toBe("withheld");
    expect(e.message).toMatch(/^reply 1 from the enclave never arrived, although later ones did/);
  });

  it("reports a fork when the enclave's record of this client differs", async () => {
    const [client, enclave] = await started();
    await client.sendMail("a", utf8.encode("x"));
    // A copy of the enclave that sent this client another reply 1.
    const key = [...enclave.chains.keys()][0]!;
    enclave.chains.set(key, { index: 1n, digest: new Uint8Array(32).fill(9) });
    const e = await failure(client.sendMail("a", utf8.encode("y")));
    expect(e.kind).toBe("fork");
    expect(e.message).toMatch(/^fork detected: the enclave's history does not contain what this client was shown/);
  });

  it("reports a fork when a reply does not link to the replies before it", async () => {
    const [client, enclave] = await started();
    await client.sendMail("a", utf8.encode("x"));
    enclave.override = (f) => ({ ...f, link: { index: 2n, previous: new Uint8Array(32).fill(1) } });
    const e = await failure(client.sendMail("a", utf8.encode("y")));
    expect(e.kind).toBe("fork");
    expect(e.message).toContain("reply 2 does not link to the replies this client verified before it");
  });

  it("reports a rollback when the enclave knows fewer replies than the client verified", async () => {
    const [client, enclave] = await started();
    await client.sendMail("a", utf8.encode("x"));
    await client.sendMail("a", utf8.encode("y"));
    const key = [...enclave.chains.keys()][0]!;
    enclave.chains.delete(key);
    const e = await failure(client.sendMail("b", utf8.encode("z")));
    expect(e.kind).toBe("rollback");
    expect(e.message).toBe(
      "rollback detected: this client has verified 2 replies from the enclave, but the enclave's state knows of only 0; the host restored an older state (or this client's state file was replaced by a newer one)",
    );
    expect(client.pendingTopics()).toEqual(["b"]);
  });

  it("refuses an answer to a mail it never sent", async () => {
    const [client, enclave] = await started();
    enclave.override = (f) => ({ ...f, answers: { ...f.answers!, sequenceNumber: 5n } });
    const e = await failure(client.sendMail("a", utf8.encode("x")));
    expect(e.kind).toBe("unexpected_answer");
    expect(e.message).toMatch(/^the enclave answered mail 5 on topic "a", which this client never sent/);
  });

  it("a replayed mail whose answer the enclave says it never sent: out-of-date state", async () => {
    const [client, enclave] = await started();
    await client.sendMail("a", utf8.encode("x"));
    // The enclave already has mail 1 of this stream, yet records no more replies than the client verified.
    const key = [...enclave.expected.keys()][0]!;
    enclave.expected.set(key, 2n);
    const e = await failure(client.sendMail("a", utf8.encode("y")));
    expect(e.kind).toBe("already_processed");
    expect(e.message).toMatch(/^the enclave has already processed mail 1 on topic "a", but this client has no answer/);
  });

  it("refuses an enclave that fails its constraint before sending anything", async () => {
    const enclave = new FakeEnclave();
    const client = await EnclaveClient.create(enclave, EnclaveConstraint.parse(`C:${"ab".repeat(32)} SEC:INSECURE`));
    const e = await failure(client.start());
    expect(e.kind).toBe("constraint");
    expect(e.message).toMatch(/^constraint not satisfied: C\/S: code hash c0c0/);
    expect((await failure(client.sendMail("a", utf8.encode("x")))).kind).toBe("not_started");
  });

  it("the state file refuses another version by name", async () => {
    const [client] = await started();
    const state = { ...client.save(), version: 1 };
    expect(() => EnclaveClient.fromState(new FakeEnclave(), state)).toThrow(
      "client state is invalid: state version 1 is not supported (this client reads version 2)",
    );
    expect(publicKeyOf(generatePrivateKey()).length).toBe(32);
  });
});

const UNREACHABLE_CODE = "UNREACHABLE";
