/**
 * EnclaveInstanceInfo version 2 (docs/wire-format.md, section 2): decode,
 * and verify in the documented order: the evidence, the key binding
 * (report data = SHA-512(signing key ‖ encryption key)), the run signature,
 * and that the encryption key is not low-order.
 *
 * Mock and simulation evidence are verified here; Intel SGX DCAP and TDX
 * quotes in `hardware.ts`. AMD SEV-SNP and AWS Nitro evidence are refused by
 * name rather than accepted unchecked.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";

import { Reader, concat, equal, readU16, readU32, readU64, toHex, utf8 } from "./bytes.js";
import { type StateCheckpoint, checkpointBytes, checkpointFromBytes, formatCheckpoint } from "./freshness.js";
import { HardwareError, decodeHardware, verifyHardware } from "./hardware.js";
import { isLowOrder } from "./mail.js";

export const INFO_VERSION = 2;
const INFO_MAGIC = utf8.encode("CEII");
const SIMULATION_DOMAIN = utf8.encode("conclave-simulated-evidence-v1\0");
const RUN_DOMAIN = utf8.encode("conclave-run-start-v1\0");
const REPORT_LEN = 32 + 32 + 2 + 2 + 64 + 8;

export type InfoErrorKind =
  | "malformed"
  | "unsupported_version"
  | "key_binding"
  | "simulation_signature"
  | "signing_key"
  | "low_order_key"
  | "run_signature"
  | "hardware"
  | "hardware_unsupported";

/** Why an EnclaveInstanceInfo could not be decoded or verified; messages match the Rust client's. */
export class InfoError extends Error {
  override readonly name = "InfoError";
  constructor(
    readonly kind: InfoErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export type EnclaveMode = "MOCK" | "SIMULATION" | "DEBUG" | "RELEASE";
export type SecuritySummary = "INSECURE" | "STALE" | "SECURE";
export const SECURITY_ORDER: readonly SecuritySummary[] = ["INSECURE", "STALE", "SECURE"];

/** The 140-byte report of mock and simulation evidence. */
export interface EnclaveReport {
  readonly codeHash: Uint8Array;
  readonly codeSigningKeyHash: Uint8Array;
  readonly productId: number;
  readonly revocationLevel: number;
  readonly reportData: Uint8Array;
  readonly timestampUnix: bigint;
}

export type Evidence =
  | { kind: "mock"; report: EnclaveReport }
  | { kind: "simulation"; report: EnclaveReport; attestationKey: Uint8Array; signature: Uint8Array }
  | { kind: "hardware"; tee: string; bytes: Uint8Array };

/** A decoded, not yet verified EnclaveInstanceInfo. */
export interface EnclaveInstanceInfo {
  readonly dataSigningKey: Uint8Array;
  readonly encryptionKey: Uint8Array;
  readonly run: StateCheckpoint;
  readonly runSignature: Uint8Array;
  readonly evidence: Evidence;
}

/** The fields a constraint checks, from verified evidence. */
export interface AttestedIdentity {
  readonly codeHash: Uint8Array;
  readonly signer: Uint8Array | undefined;
  readonly productId: number | undefined;
  readonly revocationLevel: number | undefined;
  readonly security: SecuritySummary;
  readonly securityReason: string;
  /** When the evidence was made (unix seconds), where it says so. */
  readonly timestampUnix: bigint | undefined;
  /** The TEE's kind for hardware evidence ("sgx-dcap", ...), `undefined` for mock and simulation. */
  readonly tee: string | undefined;
  /** The simulated attestation key that signed simulation evidence. */
  readonly simulatedAttestationKey: Uint8Array | undefined;
}

/** An EnclaveInstanceInfo whose evidence, key binding and run signature verified. */
export interface VerifiedEnclaveInfo {
  readonly mode: EnclaveMode;
  readonly identity: AttestedIdentity;
  readonly dataSigningKey: Uint8Array;
  readonly encryptionKey: Uint8Array;
  readonly run: StateCheckpoint;
}

const malformed = (reason: string): InfoError =>
  new InfoError("malformed", `malformed enclave instance info: ${reason}`);

function need(r: Reader, n: number): Uint8Array {
  const out = r.take(n);
  if (!out) throw malformed("truncated");
  return out;
}

function decodeReport(bytes: Uint8Array): EnclaveReport {
  const r = new Reader(bytes);
  return {
    codeHash: need(r, 32).slice(),
    codeSigningKeyHash: need(r, 32).slice(),
    productId: readU16(need(r, 2)),
    revocationLevel: readU16(need(r, 2)),
    reportData: need(r, 64).slice(),
    timestampUnix: readU64(need(r, 8)),
  };
}

export function encodeReport(report: EnclaveReport): Uint8Array {
  const u16 = (n: number): Uint8Array => new Uint8Array([n >> 8, n & 0xff]);
  const ts = new Uint8Array(8);
  new DataView(ts.buffer).setBigUint64(0, report.timestampUnix);
  return concat(
    report.codeHash,
    report.codeSigningKeyHash,
    u16(report.productId),
    u16(report.revocationLevel),
    report.reportData,
    ts,
  );
}

/** Decodes the binary encoding. Verifies nothing. */
export function decodeInfo(bytes: Uint8Array): EnclaveInstanceInfo {
  const r = new Reader(bytes);
  if (!equal(need(r, 4), INFO_MAGIC)) throw malformed("bad magic bytes");
  const version = readU16(need(r, 2));
  if (version !== INFO_VERSION) {
    throw new InfoError(
      "unsupported_version",
      `unsupported enclave instance info version ${version} (this code reads version ${INFO_VERSION})`,
    );
  }
  const dataSigningKey = need(r, 32).slice();
  const encryptionKey = need(r, 32).slice();
  const run = checkpointFromBytes(need(r, 40));
  const runSignature = need(r, 64).slice();
  const tag = need(r, 1)[0]!;
  const len = readU32(need(r, 4));
  const body = need(r, len);
  if (r.rest().length > 0) throw malformed("trailing bytes after the evidence");
  let evidence: Evidence;
  if (tag === 1) {
    if (body.length !== REPORT_LEN) throw malformed("mock evidence has the wrong length");
    evidence = { kind: "mock", report: decodeReport(body) };
  } else if (tag === 2) {
    if (body.length !== REPORT_LEN + 32 + 64) throw malformed("simulated evidence has the wrong length");
    evidence = {
      kind: "simulation",
      report: decodeReport(body.subarray(0, REPORT_LEN)),
      attestationKey: body.slice(REPORT_LEN, REPORT_LEN + 32),
      signature: body.slice(REPORT_LEN + 32),
    };
  } else if (tag === 3) {
    const hardware = decodeHardware(body);
    if (!hardware) throw malformed("hardware evidence is malformed");
    evidence = { kind: "hardware", tee: hardware.tee, bytes: body.slice() };
  } else {
    throw malformed("unknown evidence kind");
  }
  return { dataSigningKey, encryptionKey, run, runSignature, evidence };
}

/** The binary encoding (for tests and tools). */
export function encodeInfo(info: EnclaveInstanceInfo): Uint8Array {
  let tag: number;
  let body: Uint8Array;
  const e = info.evidence;
  if (e.kind === "mock") [tag, body] = [1, encodeReport(e.report)];
  else if (e.kind === "simulation") [tag, body] = [2, concat(encodeReport(e.report), e.attestationKey, e.signature)];
  else [tag, body] = [3, e.bytes];
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, body.length);
  return concat(
    INFO_MAGIC,
    new Uint8Array([0, INFO_VERSION]),
    info.dataSigningKey,
    info.encryptionKey,
    checkpointBytes(info.run),
    info.runSignature,
    new Uint8Array([tag]),
    len,
    body,
  );
}

/** The report data an enclave with these keys must put in its evidence. */
export function keyBinding(dataSigningKey: Uint8Array, encryptionKey: Uint8Array): Uint8Array {
  return sha512(concat(dataSigningKey, encryptionKey));
}

/** The message the data-signing key signs to vouch for a run's checkpoint. */
export function runMessage(encryptionKey: Uint8Array, run: StateCheckpoint): Uint8Array {
  return concat(RUN_DOMAIN, encryptionKey, checkpointBytes(run));
}

/** The message the simulated attestation key signs. */
export function simulationMessage(report: EnclaveReport): Uint8Array {
  return concat(SIMULATION_DOMAIN, encodeReport(report));
}

/** Whether `key` decodes as an Ed25519 point. */
function validEd25519Key(key: Uint8Array): boolean {
  try {
    ed25519.Point.fromBytes(key);
    return true;
  } catch {
    return false;
  }
}

/** RFC 8032 verification without ZIP-215 leniency: canonical encodings only. */
function verifySignature(signature: Uint8Array, message: Uint8Array, key: Uint8Array): boolean {
  try {
    return ed25519.verify(signature, message, key, { zip215: false });
  } catch {
    return false;
  }
}

/** Like ed25519-dalek's `verify_strict`: also refuses a small-order key or R. */
function verifyStrict(signature: Uint8Array, message: Uint8Array, key: Uint8Array): boolean {
  try {
    const a = ed25519.Point.fromBytes(key);
    const r = ed25519.Point.fromBytes(signature.subarray(0, 32));
    if (a.isSmallOrder() || r.isSmallOrder()) return false;
  } catch {
    return false;
  }
  return verifySignature(signature, message, key);
}

const MOCK_REASON =
  "mock mode: the enclave runs inside the host's process and its evidence is unsigned; nothing is protected from the host";
const SIMULATION_REASON =
  "simulation mode: the evidence is signed by a simulated attestation key that the host's operator holds, and the host can read the enclave's memory";

function reportIdentity(report: EnclaveReport, reason: string, key: Uint8Array | undefined): AttestedIdentity {
  // Mock and simulated enclaves are never better than INSECURE.
  return {
    codeHash: report.codeHash,
    signer: report.codeSigningKeyHash,
    productId: report.productId,
    revocationLevel: report.revocationLevel,
    security: "INSECURE",
    securityReason: reason,
    timestampUnix: report.timestampUnix,
    tee: undefined,
    simulatedAttestationKey: key,
  };
}

/** Verifies `info` at `nowUnix` (hardware collateral must be valid then). */
export function verifyInfo(info: EnclaveInstanceInfo, nowUnix: bigint): VerifiedEnclaveInfo {
  if (!validEd25519Key(info.dataSigningKey)) {
    throw new InfoError("signing_key", "data-signing key is not a valid ed25519 public key");
  }
  const expected = keyBinding(info.dataSigningKey, info.encryptionKey);
  const e = info.evidence;
  let mode: EnclaveMode;
  let identity: AttestedIdentity;
  let reportData: Uint8Array;
  if (e.kind === "mock") {
    reportData = e.report.reportData;
    mode = "MOCK";
    identity = reportIdentity(e.report, MOCK_REASON, undefined);
  } else if (e.kind === "simulation") {
    if (!verifySignature(e.signature, simulationMessage(e.report), e.attestationKey)) {
      throw new InfoError("simulation_signature", "simulated evidence signature is invalid: the evidence was altered");
    }
    mode = "SIMULATION";
    reportData = e.report.reportData;
    identity = reportIdentity(e.report, SIMULATION_REASON, e.attestationKey);
  } else {
    let v;
    try {
      v = verifyHardware(e.bytes, nowUnix);
    } catch (err) {
      if (!(err instanceof HardwareError)) throw err;
      if (err.unsupported) throw new InfoError("hardware_unsupported", err.reason);
      throw new InfoError("hardware", `${e.tee} evidence failed verification: ${err.reason}`);
    }
    mode = v.debug ? "DEBUG" : "RELEASE";
    identity = {
      codeHash: v.measurement,
      signer: v.signer,
      productId: v.productId,
      revocationLevel: v.revocationLevel,
      security: v.security,
      securityReason: v.securityReason,
      // A DCAP quote carries no creation time: EXPIRE cannot be satisfied.
      timestampUnix: undefined,
      tee: v.tee,
      simulatedAttestationKey: undefined,
    };
    reportData = v.reportData;
  }
  if (!equal(reportData, expected)) {
    throw new InfoError(
      "key_binding",
      `key binding failed: report data ${toHex(reportData)} is not SHA-512 of the enclave's keys (${toHex(expected)})`,
    );
  }
  // The keys are the evidence's; the run checkpoint is the signing key's word.
  if (!verifyStrict(info.runSignature, runMessage(info.encryptionKey, info.run), info.dataSigningKey)) {
    throw new InfoError("run_signature", "run checkpoint signature is invalid: the attestation was altered");
  }
  if (isLowOrder(info.encryptionKey)) {
    throw new InfoError(
      "low_order_key",
      `encryption key ${toHex(info.encryptionKey)} is a low-order point: mail to it would be readable by anyone`,
    );
  }
  return { mode, identity, dataSigningKey: info.dataSigningKey, encryptionKey: info.encryptionKey, run: info.run };
}

/** The JSON view, as the Rust client and the host print it. */
export function infoToJson(v: VerifiedEnclaveInfo): Record<string, unknown> {
  const id = v.identity;
  return {
    mode: v.mode,
    code_hash: toHex(id.codeHash),
    code_signing_key_hash: id.signer ? toHex(id.signer) : null,
    product_id: id.productId ?? null,
    revocation_level: id.revocationLevel ?? null,
    security: {
      summary: id.security,
      reason: id.securityReason,
      timestamp: id.timestampUnix === undefined ? null : Number(id.timestampUnix),
    },
    simulated_attestation_key: id.simulatedAttestationKey ? toHex(id.simulatedAttestationKey) : null,
    data_signing_key: toHex(v.dataSigningKey),
    encryption_key: toHex(v.encryptionKey),
    run_checkpoint: formatCheckpoint(v.run),
  };
}
