// Starts real `conclave host` processes for the integration tests.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { REPO } from "./vectors.js";

/** The `conclave` binary: CONCLAVE_BIN, or the workspace's debug build. */
export const CONCLAVE = process.env.CONCLAVE_BIN ?? join(REPO, "target/debug/conclave");

/** Builds the binary (a no-op when it is up to date) unless CONCLAVE_BIN names one. */
export function buildConclave(): void {
  if (process.env.CONCLAVE_BIN) return;
  execFileSync("cargo", ["build", "-p", "conclave-cli", "--locked"], { cwd: REPO, stdio: "inherit" });
}

export interface HostOptions {
  example: string;
  mode?: "simulation" | "mock";
  dataDir?: string;
  /** Extra flags for `conclave host`. */
  args?: string[];
}

/** A running host; `url` is where it listens. */
export class Host {
  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    readonly dataDir: string,
    readonly options: HostOptions,
    private readonly log: string[],
  ) {}

  static async start(options: HostOptions): Promise<Host> {
    const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "conclave-ts-"));
    const args = ["host", "--example", options.example, "--mode", options.mode ?? "simulation"];
    args.push("--listen", "127.0.0.1:0", "--data-dir", dataDir, ...(options.args ?? []));
    const child = spawn(CONCLAVE, args, { stdio: ["ignore", "pipe", "pipe"] });
    const log: string[] = [];
    child.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on("exit", (code) => reject(new Error(`conclave host exited with ${code}: ${log.join("")}`)));
      child.on("error", reject);
    });
    return new Host(child, url, dataDir, options, log);
  }

  /** Stops the host (SIGTERM) and waits until it has exited. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGTERM");
    await exited;
  }

  /** Starts the same enclave again from the same data directory. */
  restart(): Promise<Host> {
    return Host.start({ ...this.options, dataDir: this.dataDir });
  }

  /** The host's JSON view of its attestation (what a party would be told out of band, in these tests). */
  async attestationJson(): Promise<any> {
    const response = await fetch(`${this.url}/v1/attestation`, { headers: { Accept: "application/json" } });
    return response.json();
  }

  /** The constraint a party would be given for this sample: its signer, product, and the host's SIMKEY. */
  async constraint(): Promise<string> {
    const info = await this.attestationJson();
    if (info.mode === "MOCK") return `C:${info.code_hash} SEC:INSECURE`;
    return `S:${info.code_signing_key_hash} PROD:${info.product_id} SEC:INSECURE SIMKEY:${info.simulated_attestation_key}`;
  }

  stderr(): string {
    return this.log.join("");
  }
}

/** Copies a (stopped) host's data directory. */
export function copyDataDir(from: string): string {
  const to = mkdtempSync(join(tmpdir(), "conclave-ts-copy-"));
  cpSync(from, to, { recursive: true });
  return to;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
