import { defineConfig } from "vitest/config";

// The party's page in Debian's chromium, driven by playwright-core.
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    globalSetup: ["test/browser/setup.ts"],
  },
});
