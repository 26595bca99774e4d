// Reads the shared known-answer vectors that the Rust core generates.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../../../", import.meta.url));

export function vector<T = any>(name: string): T {
  return JSON.parse(readFileSync(`${REPO}crates/core/tests/vectors/${name}`, "utf8")) as T;
}
