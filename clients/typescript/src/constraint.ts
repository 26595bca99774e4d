/**
 * The constraint language: the one-line policy a client checks an enclave
 * against. The grammar, the canonical form and every error message are the
 * Rust client's (crates/core/src/constraint.rs); constraints-v1.json and
 * constraint-checks-v1.json pin them.
 *
 * ```text
 * C:<hex>        acceptable code hash; repeatable
 * S:<hex>        acceptable code signer; repeatable; needs PROD
 * PROD:<n>       product id (0..=65535); only and always with S
 * REVOKE:<n>     minimum revocation level
 * SEC:<lvl>      minimum security: INSECURE, STALE (default) or SECURE
 * EXPIRE:<p>     maximum attestation age, an ISO 8601 duration (P30D, PT12H, P6M2W5D)
 * SIMKEY:<hex>   acceptable simulated attestation key (Ed25519); repeatable
 * ```
 */
import { ed25519 } from "@noble/curves/ed25519.js";

import { equal, fromHex, toHex } from "./bytes.js";
import {
  type AttestedIdentity,
  type EnclaveInstanceInfo,
  InfoError,
  SECURITY_ORDER,
  type SecuritySummary,
  type VerifiedEnclaveInfo,
  verifyInfo,
} from "./info.js";

const KEYS = "C, S, PROD, REVOKE, SEC, EXPIRE, SIMKEY";

export type ConstraintErrorKind = "invalid_token" | "no_identity" | "missing_product_id" | "attestation" | "not_satisfied";

/** Why a constraint could not be parsed, or why an enclave fails it. */
export class ConstraintError extends Error {
  override readonly name = "ConstraintError";
  constructor(
    readonly kind: ConstraintErrorKind,
    message: string,
    /** The offending token, for `invalid_token`. */
    readonly token?: string,
    /** The underlying error, for `attestation`. */
    override readonly cause?: InfoError,
  ) {
    super(message);
  }
}

/** Rust's `{:?}` of a string, for the characters a token can hold. */
function quoted(text: string): string {
  return JSON.stringify(text);
}

function invalid(token: string, reason: string): ConstraintError {
  return new ConstraintError("invalid_token", `invalid token ${quoted(token)}: ${reason}`, token);
}

function notSatisfied(reason: string): ConstraintError {
  return new ConstraintError("not_satisfied", `constraint not satisfied: ${reason}`);
}

function parseHash(token: string, value: string): Uint8Array {
  const bytes = fromHex(value);
  if (!bytes) throw invalid(token, "value is not hex");
  if (bytes.length !== 32 && bytes.length !== 48) {
    throw invalid(token, `hash is ${bytes.length} bytes; expected 32 or 48 (64 or 96 hex digits)`);
  }
  return bytes;
}

function parseU16(token: string, value: string): number {
  // Rust's u16 parse: an optional '+', then digits.
  if (!/^\+?[0-9]+$/.test(value) || BigInt(value.replace("+", "")) > 65535n) {
    throw invalid(token, "value must be a whole number from 0 to 65535");
  }
  return Number(value.replace("+", ""));
}

function parseSimulationKey(token: string, value: string): Uint8Array {
  const bytes = fromHex(value);
  if (!bytes) throw invalid(token, "value is not hex");
  if (bytes.length !== 32) {
    throw invalid(token, `key is ${bytes.length} bytes; expected a 32-byte ed25519 public key (64 hex digits)`);
  }
  try {
    ed25519.Point.fromBytes(bytes);
  } catch {
    throw invalid(token, "value is not an ed25519 public key");
  }
  return bytes;
}

/** The largest value of each unit in a span (the Temporal limits the Rust client's parser keeps). */
const LIMITS = {
  Y: 19_998n,
  M: 239_976n,
  W: 1_043_497n,
  D: 7_304_484n,
  H: 175_307_616n,
  TM: 10_518_456_960n,
  S: 631_107_417_600n,
};

/**
 * An ISO 8601 duration in whole seconds: `P[nY][nM][nW][nD][T[nH][nM][nS]]`,
 * uppercase, unsigned, at least one unit, a `T` followed by a time unit, and
 * a fraction (`.` or `,`, up to 9 digits) only on the last unit, which must
 * be a time unit. A year is 365 days, a month 30, a week 7.
 */
function parsePeriod(token: string, value: string): bigint {
  const bad = (): ConstraintError =>
    invalid(token, "value must be an ISO 8601 duration such as P30D, PT12H or P6M2W5D");
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)(?:[.,](\d{1,9}))?H)?(?:(\d+)(?:[.,](\d{1,9}))?M)?(?:(\d+)(?:[.,](\d{1,9}))?S)?)?$/.exec(
    value,
  );
  if (!m) throw bad();
  const [, y, mo, w, d, h, hf, mi, mif, s, sf] = m;
  if ([y, mo, w, d, h, mi, s].every((v) => v === undefined)) throw bad();
  if (value.includes("T") && [h, mi, s].every((v) => v === undefined)) throw bad();
  // A fraction ends the duration: nothing may follow it.
  if ((hf !== undefined && (mi !== undefined || s !== undefined)) || (mif !== undefined && s !== undefined)) {
    throw bad();
  }
  const units: [string | undefined, bigint, bigint][] = [
    [y, LIMITS.Y, 365n * 86_400n],
    [mo, LIMITS.M, 30n * 86_400n],
    [w, LIMITS.W, 7n * 86_400n],
    [d, LIMITS.D, 86_400n],
    [h, LIMITS.H, 3_600n],
    [mi, LIMITS.TM, 60n],
    [s, LIMITS.S, 1n],
  ];
  let seconds = 0n;
  for (const [count, limit, unit] of units) {
    if (count === undefined) continue;
    const n = BigInt(count);
    if (n > limit) throw bad();
    seconds += n * unit;
  }
  const fraction = hf ?? mif ?? sf;
  if (fraction !== undefined) {
    const unit = hf !== undefined ? 3_600n : mif !== undefined ? 60n : 1n;
    const nanos = BigInt(fraction.padEnd(9, "0"));
    // What is left below a second is dropped.
    seconds += (nanos * unit) / 1_000_000_000n;
  }
  if (seconds === 0n) throw invalid(token, "the period must be at least one second");
  return seconds;
}

function containsBytes(list: readonly Uint8Array[], item: Uint8Array): boolean {
  return list.some((x) => equal(x, item));
}

function securityHint(actual: SecuritySummary): string {
  return actual === "INSECURE"
    ? "; SEC defaults to STALE: to accept a mock or simulation enclave on purpose, add SEC:INSECURE"
    : "";
}

const show = (v: number | undefined): string => (v === undefined ? "(none)" : String(v));

/** A parsed constraint; `toString()` prints its canonical form. */
export class EnclaveConstraint {
  private constructor(
    readonly codeHashes: readonly Uint8Array[],
    readonly signers: readonly Uint8Array[],
    readonly productId: number | undefined,
    readonly minimumRevocationLevel: number | undefined,
    readonly minimumSecurity: SecuritySummary,
    readonly maxAge: { period: string; seconds: bigint } | undefined,
    readonly simulationKeys: readonly Uint8Array[],
  ) {}

  /** Parses a constraint; the error names the offending token. */
  static parse(text: string): EnclaveConstraint {
    const codeHashes: Uint8Array[] = [];
    const signers: Uint8Array[] = [];
    const simulationKeys: Uint8Array[] = [];
    let productId: number | undefined;
    let revocation: number | undefined;
    let security: SecuritySummary = "STALE";
    let seenSec = false;
    let maxAge: { period: string; seconds: bigint } | undefined;
    // Rust's split_whitespace: any Unicode white space separates tokens.
    for (const token of text.split(/\s+/u).filter((t) => t.length > 0)) {
      const colon = token.indexOf(":");
      if (colon < 0) throw invalid(token, "expected KEY:VALUE");
      const key = token.slice(0, colon);
      const value = token.slice(colon + 1);
      if (value.length === 0) throw invalid(token, "value is empty");
      const once = (present: boolean): void => {
        if (present) throw invalid(token, `${key} may appear only once`);
      };
      switch (key) {
        case "C": {
          const h = parseHash(token, value);
          if (!containsBytes(codeHashes, h)) codeHashes.push(h);
          break;
        }
        case "S": {
          const h = parseHash(token, value);
          if (!containsBytes(signers, h)) signers.push(h);
          break;
        }
        case "PROD":
          once(productId !== undefined);
          productId = parseU16(token, value);
          break;
        case "REVOKE":
          once(revocation !== undefined);
          revocation = parseU16(token, value);
          break;
        case "SEC":
          once(seenSec);
          seenSec = true;
          if (!(SECURITY_ORDER as readonly string[]).includes(value)) {
            throw invalid(token, "value must be INSECURE, STALE or SECURE");
          }
          security = value as SecuritySummary;
          break;
        case "EXPIRE":
          once(maxAge !== undefined);
          maxAge = { period: value, seconds: parsePeriod(token, value) };
          break;
        case "SIMKEY": {
          const k = parseSimulationKey(token, value);
          if (!containsBytes(simulationKeys, k)) simulationKeys.push(k);
          break;
        }
        default:
          throw invalid(token, `unknown key ${quoted(key)}; keys are ${KEYS}`);
      }
    }
    if (codeHashes.length === 0 && signers.length === 0) {
      throw new ConstraintError("no_identity", "constraint needs at least one C:<code hash> or S:<signer> token");
    }
    if (signers.length > 0 && productId === undefined) {
      throw new ConstraintError("missing_product_id", "S:<signer> needs a PROD:<product id> token too");
    }
    if (signers.length === 0 && productId !== undefined) {
      throw invalid(`PROD:${productId}`, "PROD is only allowed together with S");
    }
    return new EnclaveConstraint(codeHashes, signers, productId, revocation, security, maxAge, simulationKeys);
  }

  /** Verifies `info` at `nowUnix` and checks it against this constraint. */
  check(info: EnclaveInstanceInfo, nowUnix: bigint): VerifiedEnclaveInfo {
    let verified: VerifiedEnclaveInfo;
    try {
      verified = verifyInfo(info, nowUnix);
    } catch (e) {
      if (e instanceof InfoError) {
        throw new ConstraintError("attestation", `attestation is invalid: ${e.message}`, undefined, e);
      }
      throw e;
    }
    this.checkIdentity(verified.identity, nowUnix);
    return verified;
  }

  /** Checks an already verified identity. */
  checkIdentity(id: AttestedIdentity, nowUnix: bigint): void {
    // First: if an unpinned key vouches for the evidence, nothing else in it means anything.
    if (this.simulationKeys.length > 0 && id.tee === undefined) {
      const key = id.simulatedAttestationKey;
      if (!key || !containsBytes(this.simulationKeys, key)) {
        const actual = key ? `simulated attestation key ${toHex(key)}` : "no key (mock evidence is unsigned)";
        throw notSatisfied(
          `SIMKEY: the evidence is signed by ${actual}, not by one of the pinned simulated attestation keys (${this.simulationKeys.map(toHex).join(", ")})`,
        );
      }
    }
    const codeOk = containsBytes(this.codeHashes, id.codeHash);
    const signerOk = id.signer !== undefined && containsBytes(this.signers, id.signer);
    if (!codeOk && !signerOk) {
      throw notSatisfied(
        `C/S: code hash ${toHex(id.codeHash)} is not one of the ${this.codeHashes.length} accepted code hashes, ` +
          `and signer ${id.signer ? toHex(id.signer) : "(none)"} is not one of the ${this.signers.length} accepted signers`,
      );
    }
    if (this.productId !== undefined && id.productId !== this.productId) {
      throw notSatisfied(`PROD:${this.productId}: enclave has product id ${show(id.productId)}`);
    }
    const minimum = this.minimumRevocationLevel;
    if (minimum !== undefined && (id.revocationLevel === undefined || id.revocationLevel < minimum)) {
      throw notSatisfied(`REVOKE:${minimum}: enclave has revocation level ${show(id.revocationLevel)}`);
    }
    if (SECURITY_ORDER.indexOf(id.security) < SECURITY_ORDER.indexOf(this.minimumSecurity)) {
      throw notSatisfied(
        `SEC:${this.minimumSecurity}: enclave security is ${id.security} (${id.securityReason})${securityHint(id.security)}`,
      );
    }
    if (this.maxAge) {
      const { period, seconds } = this.maxAge;
      if (id.timestampUnix === undefined) {
        const evidence = id.tee ?? "this";
        throw notSatisfied(
          `EXPIRE:${period}: ${evidence} evidence carries no creation time, so its age cannot be checked; drop EXPIRE for ${evidence} enclaves`,
        );
      }
      const age = nowUnix > id.timestampUnix ? nowUnix - id.timestampUnix : 0n;
      if (age > seconds) {
        throw notSatisfied(`EXPIRE:${period}: attestation is ${age} s old, at most ${seconds} s allowed`);
      }
    }
  }

  /** The canonical form: C, S, PROD, REVOKE, SEC (always), EXPIRE, SIMKEY; hex in lowercase. */
  toString(): string {
    const parts: string[] = [];
    for (const h of this.codeHashes) parts.push(`C:${toHex(h)}`);
    for (const h of this.signers) parts.push(`S:${toHex(h)}`);
    if (this.productId !== undefined) parts.push(`PROD:${this.productId}`);
    if (this.minimumRevocationLevel !== undefined) parts.push(`REVOKE:${this.minimumRevocationLevel}`);
    parts.push(`SEC:${this.minimumSecurity}`);
    if (this.maxAge) parts.push(`EXPIRE:${this.maxAge.period}`);
    for (const k of this.simulationKeys) parts.push(`SIMKEY:${toHex(k)}`);
    return parts.join(" ");
  }
}
