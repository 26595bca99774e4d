// Three parties on the stats sample, each in its own browser context, use
// the page the host serves; a tampered attestation is refused on the page.
import { mkdirSync } from "node:fs";
import { type IncomingMessage, type Server, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Host, removeDir } from "../host.js";
import { vector } from "../vectors.js";
import { launch } from "./chromium.js";

const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
const skip = process.env.CONCLAVE_SKIP_BROWSER === "1";

/** A proxy in front of the host that records what it carries and can flip a byte of the attestation. */
class Proxy {
  readonly bodies: Buffer[] = [];
  /** How many answers to POST /v1/mail to cut off (the connection is dropped after the host handled the mail). */
  cut = 0;
  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string, tamper: boolean, attestation?: Buffer): Promise<Proxy> {
    const to = new URL(target);
    let proxy: Proxy | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        proxy!.bodies.push(body);
        const upstream = request(
          { host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers },
          (up: IncomingMessage) => {
            const parts: Buffer[] = [];
            up.on("data", (c: Buffer) => parts.push(c));
            up.on("end", () => {
              if (req.url === "/v1/mail" && proxy!.cut > 0) {
                proxy!.cut -= 1;
                res.socket?.destroy();
                return;
              }
              let answer: Buffer = Buffer.concat(parts);
              const binary = up.headers["content-type"] === "application/octet-stream";
              if (tamper && req.url === "/v1/attestation" && binary) answer[answer.length - 1]! ^= 1;
              if (attestation && req.url === "/v1/attestation" && binary) answer = attestation;
              const headers = { ...up.headers, "content-length": String(answer.length) };
              delete headers["transfer-encoding"];
              res.writeHead(up.statusCode ?? 502, headers);
              res.end(answer);
            });
          },
        );
        upstream.on("error", () => {
          res.writeHead(502);
          res.end();
        });
        upstream.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    proxy = new Proxy(server, `http://127.0.0.1:${port}`);
    return proxy;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe.skipIf(skip)("the party's page in chromium", () => {
  let host: Host;
  let browser: Browser;
  let constraint: string;
  const proxies: Proxy[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    host = await Host.start({ example: "stats", mode: "simulation" });
    constraint = await host.constraint();
    browser = await launch();
  });

  afterAll(async () => {
    await browser?.close();
    for (const p of proxies) await p.stop();
    await host?.stop();
    if (host) removeDir(host.dataDir);
  });

  async function party(base: string, withConstraint = constraint): Promise<Page> {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(e.message));
    page.on("console", (m) => {
      // Failed loads are judged by the response listener below; anything else (a CSP violation) counts.
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
    });
    page.on("response", (r) => {
      // A poll before this party's first delivery is a 404 the client expects.
      if (r.status() >= 400 && !/\/v1\/mail\/[0-9a-f]+$/.test(r.url())) problems.push(`${r.status()} ${r.url()}`);
    });
    (page as unknown as { problems: string[] }).problems = problems;
    await page.goto(`${base}/?constraint=${encodeURIComponent(withConstraint)}`);
    return page;
  }

  it("three parties attest, submit, and each sees the joint result", async () => {
    // Party 1 goes through a recording proxy: the host's side sees only ciphertext.
    const recorder = await Proxy.start(host.url, false);
    proxies.push(recorder);
    const pages = [await party(recorder.url), await party(host.url), await party(host.url)];
    const values = ["1, 2", "3", "10 20 30"];
    for (const [i, page] of pages.entries()) {
      await page.getByText("The enclave satisfies your constraint").waitFor();
      const insecure = page.locator("#insecure");
      expect(await insecure.isVisible()).toBe(true);
      expect(await insecure.textContent()).toMatch(/^INSECURE \(SIMULATION\): simulation mode/);
      expect(await page.locator("#checked").textContent()).toContain("SIMULATION");
      await page.fill("#stats-values", values[i]!);
      await page.click("#stats-submit");
      await page.getByText(`Submitted: ${values[i]!.split(/[ ,]+/).length} numbers recorded.`).waitFor();
    }
    await pages[2]!.click("#stats-compute");
    const result = "Result: 3 parties, 6 values, mean 11, min 1, max 30";
    await pages[2]!.getByText(result).waitFor();
    for (const page of pages.slice(0, 2)) {
      await page.click("#poll");
      await page.getByText(result).waitFor();
    }
    // The result came from one state: every party's checkpoint is the same.
    const checkpoints = await Promise.all(pages.map((p) => p.locator("#checkpoint").textContent()));
    expect(new Set(checkpoints).size).toBe(1);
    expect(checkpoints[0]).toMatch(/^\d+:[0-9a-f]{64}$/);
    await pages[0]!.screenshot({ path: `${ARTIFACTS}page-result.png`, fullPage: true });
    // Party 1's numbers never crossed the proxy in clear.
    const carried = Buffer.concat(recorder.bodies).toString("latin1");
    expect(recorder.bodies.length).toBeGreaterThan(0);
    expect(carried).not.toContain("values");
    expect(carried).not.toContain("submit");
    for (const page of pages) expect((page as unknown as { problems: string[] }).problems).toEqual([]);
  });

  it("a lost answer: the page keeps the mail, and sending the same input again is a retry", async () => {
    const cutting = await Proxy.start(host.url, false);
    proxies.push(cutting);
    const page = await party(cutting.url);
    await page.getByText("The enclave satisfies your constraint").waitFor();
    await page.fill("#stats-values", "7");
    // Chromium may resend a request whose connection dropped: cut every answer until the page gives up.
    cutting.cut = 1000;
    await page.click("#stats-submit");
    await page.getByText("is not answered yet").waitFor();
    cutting.cut = 0;
    expect(await page.locator("#error").textContent()).toContain("it is kept and will be sent again");
    await page.click("#stats-submit");
    await page.getByText("answers your mail 0").waitFor();
    expect(await page.locator("#replies li").count()).toBe(1);
  });

  it("refuses a tampered attestation and shows why", async () => {
    const tampering = await Proxy.start(host.url, true);
    proxies.push(tampering);
    const page = await party(tampering.url);
    await page.getByText("Nothing will be sent: the attestation is refused").waitFor();
    expect(await page.locator("#verdict").textContent()).toContain(
      "simulated evidence signature is invalid: the evidence was altered",
    );
    expect(await page.locator("#stats-submit").isDisabled()).toBe(true);
    expect(await page.locator("#locked").isVisible()).toBe(true);
    await page.screenshot({ path: `${ARTIFACTS}page-tampered.png`, fullPage: true });
  });

  it("verifies SGX DCAP evidence in the browser (dcap-qvl) before it checks the key binding", async () => {
    const sgx = vector("hardware-v1.json").cases.find((c: { kind: string }) => c.kind === "sgx-dcap");
    const serving = await Proxy.start(host.url, false, Buffer.from(sgx.encoded, "hex"));
    proxies.push(serving);
    const context = await browser.newContext();
    const page = await context.newPage();
    // Inside the collateral's validity window.
    await page.clock.setFixedTime(new Date(sgx.within * 1000));
    await page.goto(`${serving.url}/?constraint=${encodeURIComponent(`C:${sgx.identity.code_hash} SEC:STALE`)}`);
    await page.getByText("Nothing will be sent: the attestation is refused").waitFor();
    expect(await page.locator("#verdict").textContent()).toContain(sgx.verdict_within.error);
  });

  it("refuses an enclave that fails the constraint and names the token", async () => {
    const wrong = constraint.replace(/PROD:\d+/, "PROD:4");
    const page = await party(host.url, wrong);
    await page.getByText("Nothing will be sent").waitFor();
    expect(await page.locator("#verdict").textContent()).toContain("PROD:4: enclave has product id 3");
    expect(await page.locator("#stats-compute").isDisabled()).toBe(true);
  });
});
