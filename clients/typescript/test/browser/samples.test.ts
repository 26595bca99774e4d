// The page works for every sample: auction, psi and reverse (mock mode, for speed).
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Host, removeDir } from "../host.js";
import { launch } from "./chromium.js";

const skip = process.env.CONCLAVE_SKIP_BROWSER === "1";

describe.skipIf(skip)("every sample on the party's page", () => {
  let browser: Browser;
  const hosts: Host[] = [];

  beforeAll(async () => {
    browser = await launch();
  });

  afterAll(async () => {
    await browser?.close();
    for (const h of hosts) {
      await h.stop();
      removeDir(h.dataDir);
    }
  });

  async function parties(example: string, count: number): Promise<Page[]> {
    const host = await Host.start({ example, mode: "mock" });
    hosts.push(host);
    const constraint = encodeURIComponent(await host.constraint());
    const pages: Page[] = [];
    for (let i = 0; i < count; i++) {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${host.url}/?constraint=${constraint}`);
      await page.getByText("The enclave satisfies your constraint").waitFor();
      // The host named its sample: the page shows that sample's form.
      expect(await page.locator(`#form-${example}`).isVisible()).toBe(true);
      expect(await page.locator("#insecure").textContent()).toMatch(/^INSECURE \(MOCK\)/);
      pages.push(page);
    }
    return pages;
  }

  it("auction: an auctioneer and two sealed bids", async () => {
    const [auctioneer, bob, carol] = await parties("auction", 3);
    await auctioneer!.click("#auction-open");
    await auctioneer!.getByText("You are the auctioneer.").waitFor();
    for (const [page, amount, name] of [[bob, "100", "bob"], [carol, "120", "carol"]] as const) {
      await page!.fill("#auction-amount", amount);
      await page!.fill("#auction-name", name);
      await page!.click("#auction-bid");
      await page!.getByText("Your bid was accepted.").waitFor();
    }
    await auctioneer!.click("#auction-close");
    await auctioneer!.getByText("Result: winner carol pays 100").waitFor();
    await carol!.click("#poll");
    await carol!.getByText("Result: winner carol pays 100 (you won)").waitFor();
    await bob!.click("#poll");
    await bob!.getByText("Result: winner carol pays 100", { exact: true }).waitFor();
  });

  it("psi: two sets and their intersection", async () => {
    const [a, b] = await parties("psi", 2);
    await a!.fill("#psi-items", "apple\nbanana\ncherry");
    await a!.click("#psi-submit");
    await a!.getByText("Your set is recorded; waiting for the other party.").waitFor();
    await b!.fill("#psi-items", "cherry\ndate\napple");
    await b!.click("#psi-submit");
    await b!.getByText("Intersection: apple, cherry").waitFor();
    await a!.click("#poll");
    await a!.getByText("Intersection: apple, cherry").waitFor();
  });

  it("reverse: the reply to one mail", async () => {
    const [page] = await parties("reverse", 1);
    await page!.fill("#reverse-text", "hello, enclave");
    await page!.click("#reverse-send");
    await page!.getByText("evalcne ,olleh").waitFor();
  });
});
