// The TypeScript client against a real `conclave host`, over HTTP, like a user.
import { execFileSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import {
  EnclaveClient,
  EnclaveConstraint,
  HttpRelay,
  type MailRelay,
  RelayError,
  UNREACHABLE,
  equal,
  lossyUtf8,
  utf8,
} from "../src/index.js";
import { FileStorage } from "../src/node.js";
import { failure } from "./failure.js";
import { CONCLAVE, Host, copyDataDir, removeDir } from "./host.js";

const text = (b: Uint8Array): string => lossyUtf8.decode(b);
const reversed = (s: string): string => [...s].reverse().join("");
const dirs: string[] = [];
const hosts: Host[] = [];

afterAll(async () => {
  for (const h of hosts) await h.stop();
  for (const d of dirs) removeDir(d);
});

async function startHost(example: string, mode: "simulation" | "mock" = "simulation", dataDir?: string): Promise<Host> {
  const host = await Host.start({ example, mode, ...(dataDir ? { dataDir } : {}) });
  hosts.push(host);
  dirs.push(host.dataDir);
  return host;
}

function stateFile(): string {
  return join(tmpdir(), `conclave-ts-state-${Math.random().toString(16).slice(2)}.json`);
}

/** A relay whose next deliveries arrive at the host but whose answers are lost. */
class LossyRelay implements MailRelay {
  lose: string[] = [];
  constructor(readonly inner: HttpRelay) {}
  attestation(): Promise<Uint8Array> {
    return this.inner.attestation();
  }
  async deliver(id: string, mail: Uint8Array) {
    const answer = await this.inner.deliver(id, mail);
    const code = this.lose.shift();
    if (code) throw new RelayError(code, "the answer was lost on the way back");
    return answer;
  }
  poll(id: string) {
    return this.inner.poll(id);
  }
  acknowledge(id: string, ids: readonly number[]) {
    return this.inner.acknowledge(id, ids);
  }
}

describe("against conclave host --example reverse (simulation)", () => {
  it("attests, sends on two topics and a body over 1 MiB, and acknowledges every reply", async () => {
    const host = await startHost("reverse");
    const constraint = EnclaveConstraint.parse(await host.constraint());
    const path = stateFile();
    const relay = new HttpRelay(host.url);
    const client = await EnclaveClient.create(relay, constraint, { storage: new FileStorage(path) });
    const info = await client.start();
    expect(info.mode).toBe("SIMULATION");
    // The host serves the party's page, exactly the committed bundle.
    const page = await fetch(`${host.url}/`);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await page.text()).toContain("/page/app.js");
    const app = await (await fetch(`${host.url}/page/app.js`)).text();
    expect(app === readFileSync(new URL("../page-dist/app.js", import.meta.url), "utf8")).toBe(true);
    expect(await (await fetch(`${host.url}/v1/page`)).json()).toEqual({ sample: "reverse" });
    expect(info.identity.security).toBe("INSECURE");

    const a0 = await client.sendMail("alpha", utf8.encode("hello"));
    expect(text(a0!.body)).toBe("olleh");
    expect(a0!.answers).toBe(0n);
    const b0 = await client.sendMail("beta", utf8.encode("second topic"));
    expect(text(b0!.body)).toBe(reversed("second topic"));
    expect(b0!.answers).toBe(0n);
    const a1 = await client.sendMail("alpha", utf8.encode("again"));
    expect(a1!.answers).toBe(1n);
    expect(a1!.sequenceNumber).toBe(3n);

    const big = new Uint8Array(1024 * 1024 + 4321);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const bigReply = await client.sendMail("big", big);
    expect(bigReply!.body.length).toBe(big.length);
    expect(equal(bigReply!.body, big.slice().reverse())).toBe(true);

    // Every reply was acknowledged after it was saved: the queue is empty.
    expect(await relay.poll(client.correlationId())).toEqual([]);
    expect(await client.pollMail()).toEqual([]);
    expect(client.pendingTopics()).toEqual([]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // The state file has the Rust client's format: the CLI reads it.
    const printed = execFileSync(CONCLAVE, ["checkpoint", "--state", path], { encoding: "utf8" });
    expect(printed).toContain(client.checkpoint());

    // The saved state continues where it was.
    const again = await EnclaveClient.open(new HttpRelay(host.url), constraint, { storage: new FileStorage(path) });
    await again.start();
    expect(again.checkpoint()).toBe(client.checkpoint());
    const a2 = await again.sendMail("alpha", utf8.encode("restored"));
    expect(a2!.answers).toBe(2n);
    removeDir(path);
  });

  it("a lost answer is found in the queue; the mail is processed once", async () => {
    const host = await startHost("reverse", "mock");
    const constraint = EnclaveConstraint.parse(await host.constraint());
    const relay = new LossyRelay(new HttpRelay(host.url));
    const client = await EnclaveClient.create(relay, constraint, { sleep: async () => {} });
    await client.start();
    relay.lose.push("BUSY");
    const r0 = await client.sendMail("t", utf8.encode("abc"));
    expect(text(r0!.body)).toBe("cba");
    // Unreachable: the client stops at once and keeps the mail.
    relay.lose.push(UNREACHABLE);
    const e = await failure(client.sendMail("t", utf8.encode("kept")));
    expect(e.kind).toBe("unsettled");
    expect(e.message).toContain('mail 1 on topic "t" is not answered yet');
    expect(client.pendingTopics()).toEqual(["t"]);
    // The next poll settles it: the enclave says it was processed, and its answer is in the queue.
    const inbox = await client.pollMail();
    expect(inbox.map((r) => [text(r.body), r.answers])).toEqual([["tpek", 1n]]);
    expect(client.pendingTopics()).toEqual([]);
    const r2 = await client.sendMail("t", utf8.encode("next"));
    expect(r2!.answers).toBe(2n);
  });

  it("re-attests after a restart, and reports a rollback to an older copy of the state", async () => {
    let host = await startHost("reverse");
    const constraint = EnclaveConstraint.parse(await host.constraint());
    const client = await EnclaveClient.create(new HttpRelay(host.url), constraint);
    const first = await client.start();
    await client.sendMail("topic", utf8.encode("one"));

    // A restart: new keys, found by attesting again; the mail is encrypted again for them.
    await host.stop();
    host = await startHost("reverse", "simulation", host.dataDir);
    // The client still holds the first run's key: its first delivery fails
    // (the new run cannot read it), it attests again and encrypts the mail anew.
    const old = EnclaveClient.fromState(new HttpRelay(host.url), client.save(), { sleep: async () => {} });
    (old as unknown as { verified: unknown }).verified = first;
    const r = await old.sendMail("other", utf8.encode("after restart"));
    expect(text(r!.body)).toBe(reversed("after restart"));
    expect(old.save().runs.length).toBe(2);
    expect(old.save().runs.every((run) => run.confirmed)).toBe(true);
    expect(equal(old.enclaveInfo()!.encryptionKey, first.encryptionKey)).toBe(false);

    // Rollback: keep a copy of the state, let the client see more, then serve the copy.
    await host.stop();
    const copy = copyDataDir(host.dataDir);
    dirs.push(copy);
    host = await startHost("reverse", "simulation", host.dataDir);
    const fresh = EnclaveClient.fromState(new HttpRelay(host.url), old.save());
    await fresh.start();
    await fresh.sendMail("other", utf8.encode("seen by the client"));
    await fresh.sendMail("other", utf8.encode("and this"));
    await host.stop();
    host = await startHost("reverse", "simulation", copy);
    const rolledBack = EnclaveClient.fromState(new HttpRelay(host.url), fresh.save(), { sleep: async () => {} });
    await rolledBack.start();
    const e = await failure(rolledBack.sendMail("other", utf8.encode("after the rollback")));
    expect(e.kind).toBe("rollback");
    expect(e.message).toMatch(/^rollback detected: this client has verified \d+ replies from the enclave/);
  });
});

describe("against conclave host --example stats (mock)", () => {
  it("three parties submit; the result reaches the asker directly and the others by polling", async () => {
    const host = await startHost("stats", "mock");
    const constraint = EnclaveConstraint.parse(await host.constraint());
    const parties = await Promise.all(
      [0, 1, 2].map(async () => {
        const c = await EnclaveClient.create(new HttpRelay(host.url), constraint);
        await c.start();
        return c;
      }),
    );
    const values = [[1, 2], [3], [10, 20, 30]];
    for (const [i, party] of parties.entries()) {
      const ack = await party.sendMail("stats", utf8.encode(JSON.stringify({ v: 1, kind: "submit", values: values[i] })));
      expect(JSON.parse(text(ack!.body))).toEqual({ v: 1, kind: "submitted", count: values[i]!.length });
    }
    const result = await parties[2]!.sendMail("stats", utf8.encode(JSON.stringify({ v: 1, kind: "compute" })));
    const expected = { v: 1, kind: "result", parties: 3, count: 6, mean: 11, min: 1, max: 30 };
    expect(JSON.parse(text(result!.body))).toEqual(expected);
    for (const party of parties.slice(0, 2)) {
      const inbox = await party.pollMail();
      expect(inbox.map((r) => JSON.parse(text(r.body)))).toEqual([expected]);
      expect(inbox[0]!.answers).toBeUndefined();
      expect(await party.pollMail()).toEqual([]);
    }
  });
});
