import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

// The party's page, built to page-dist/ with fixed names so the host can
// embed it and the tests can compare the committed bundle with a fresh build.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/page/",
  logLevel: "warn",
  // The same bundle whatever NODE_ENV the build runs under (vitest sets "test").
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: process.env.CONCLAVE_PAGE_OUT ?? fileURLToPath(new URL("../page-dist", import.meta.url)),
    emptyOutDir: true,
    assetsDir: "",
    target: "es2022",
    modulePreload: false,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        entryFileNames: "app.js",
        // The page's one stylesheet is style.css, whatever rollup calls it.
        assetFileNames: (asset) => (asset.names.some((n) => n.endsWith(".css")) ? "style.css" : "[name][extname]"),
      },
    },
  },
});
