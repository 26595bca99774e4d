// The host embeds page-dist/: it must be exactly what the sources build to.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { expect, it } from "vitest";

const HERE = fileURLToPath(new URL("..", import.meta.url));

it("the committed page bundle equals a fresh build (run `npm run build:page` and commit page-dist/)", () => {
  const out = mkdtempSync(join(tmpdir(), "conclave-page-"));
  try {
    execFileSync(join(HERE, "node_modules/.bin/vite"), ["build", "--config", "page/vite.config.ts"], {
      cwd: HERE,
      // vitest sets NODE_ENV=test, which would change what vite inlines.
      env: { ...process.env, NODE_ENV: "production", CONCLAVE_PAGE_OUT: out },
      stdio: "pipe",
    });
    const committed = join(HERE, "page-dist");
    expect(readdirSync(out).sort()).toEqual(readdirSync(committed).sort());
    for (const name of readdirSync(out)) {
      const fresh = readFileSync(join(out, name), "utf8");
      expect(fresh === readFileSync(join(committed, name), "utf8"), `page-dist/${name} is out of date`).toBe(true);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
