// Before the browser tests: the `conclave` binary, and Debian's chromium
// (installed with apt when missing and this is root; no browser downloads).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

import { buildConclave } from "../host.js";
import { CHROMIUM } from "./chromium.js";

export default function setup(): void {
  if (process.env.CONCLAVE_SKIP_BROWSER === "1") return;
  if (!existsSync(CHROMIUM)) {
    if (process.getuid?.() === 0) {
      const apt = { stdio: "inherit" as const, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } };
      execFileSync("apt-get", ["update"], apt);
      execFileSync("apt-get", ["install", "-y", "chromium"], apt);
    }
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `the browser tests need chromium at ${CHROMIUM} and it is missing: install it (apt-get install chromium, as ` +
          "root), point CONCLAVE_CHROMIUM at one, or set CONCLAVE_SKIP_BROWSER=1 to skip these tests",
      );
    }
  }
  buildConclave();
}
