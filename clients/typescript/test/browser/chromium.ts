// Debian's chromium, headless, with nothing that talks to the network by itself.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { type Browser, chromium } from "playwright-core";

export const CHROMIUM = process.env.CONCLAVE_CHROMIUM ?? "/usr/bin/chromium";

export const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Launches chromium. Playwright gives every launch a fresh temporary
 * --user-data-dir of its own (it refuses one in `args`); we name the
 * directory it is created under, so nothing of the user's profile is used.
 */
export async function launch(): Promise<Browser> {
  const profiles = mkdtempSync(join(tmpdir(), "conclave-chromium-"));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    env: { ...process.env, TMPDIR: profiles, HOME: profiles },
  });
  browser.on("disconnected", () => rmSync(profiles, { recursive: true, force: true }));
  return browser;
}
