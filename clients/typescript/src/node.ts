/**
 * Node-only parts: a state file written atomically (a temporary file created
 * exclusively with mode 0600, synced, renamed over the old one, and the
 * directory synced), like the Rust client's.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

import type { StateStorage } from "./state.js";

/** Keeps the client's state in one file. */
export class FileStorage implements StateStorage {
  constructor(readonly path: string) {}

  async load(): Promise<string | undefined> {
    try {
      return await readFile(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }

  async save(text: string): Promise<void> {
    const tmp = `${this.path}.tmp`;
    // A leftover from a crash mid-save goes; removing a link never touches its target.
    await rm(tmp, { force: true });
    // "wx": refuses anything that already exists, links included.
    const file = await open(tmp, "wx", 0o600);
    try {
      await file.writeFile(text, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, this.path);
    try {
      const dir = await open(dirname(this.path), "r");
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch {
      // Syncing a directory is not possible everywhere; the rename itself happened.
    }
  }
}
