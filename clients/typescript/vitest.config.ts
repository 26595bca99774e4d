import { defineConfig } from "vitest/config";

// Unit tests, the shared vectors and the host integration tests (Node).
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/browser/**"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // The host tests start real hosts: one file at a time on a 2-core machine.
    fileParallelism: false,
    globalSetup: ["test/global-setup.ts"],
  },
});
