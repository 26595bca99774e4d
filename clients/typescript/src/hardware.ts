/**
 * Hardware evidence: the `HardwareEvidence` encoding (docs/attestation.md),
 * and verification of Intel SGX DCAP and TDX quotes with @phala/dcap-qvl, a
 * maintained pure-JavaScript port of the `dcap-qvl` crate the Rust client
 * uses, with Intel's SGX root CA pinned. The identity it proves is mapped as
 * the Rust client maps it (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN − 1; the TDX
 * composite measurement; Intel's TCB status to the security summary).
 *
 * Not covered: AMD SEV-SNP and AWS Nitro evidence are refused by name.
 * Where this client is stricter than the Rust one: a debug enclave is
 * refused (dcap-qvl refuses it) instead of being reported as INSECURE.
 */
import { verify as verifyDcapQuote } from "@phala/dcap-qvl";
import { sha384 } from "@noble/hashes/sha2.js";

import { Reader, concat, lossyUtf8, readU32 } from "./bytes.js";

/** The TEE kinds of the encoding's tag byte. */
export const HARDWARE_KINDS: Record<number, string> = { 1: "sgx-dcap", 2: "tdx", 3: "sev-snp", 4: "nitro" };
const ENCODING_VERSION = 1;

export type SecurityLevel = "INSECURE" | "STALE" | "SECURE";

/** What verified hardware evidence proves. */
export interface VerifiedHardware {
  readonly tee: string;
  readonly measurement: Uint8Array;
  readonly signer: Uint8Array | undefined;
  readonly productId: number | undefined;
  readonly revocationLevel: number | undefined;
  readonly reportData: Uint8Array;
  readonly debug: boolean;
  readonly tcbStatus: string;
  readonly advisoryIds: readonly string[];
  readonly security: SecurityLevel;
  readonly securityReason: string;
}

/** Why hardware evidence was refused: `reason` says which check failed. */
export class HardwareError extends Error {
  override readonly name = "HardwareError";
  constructor(
    readonly tee: string,
    readonly reason: string,
    readonly unsupported = false,
  ) {
    super(reason);
  }
}

/** The fields of an encoded `HardwareEvidence`: its kind and its byte strings in order. */
export function decodeHardware(bytes: Uint8Array): { tee: string; fields: Uint8Array[] } | undefined {
  if (bytes.length < 2 || bytes[0] !== ENCODING_VERSION) return undefined;
  const tee = HARDWARE_KINDS[bytes[1]!];
  if (!tee) return undefined;
  const count = { "sgx-dcap": 2, tdx: 2, "sev-snp": 3, nitro: 1 }[tee]!;
  const r = new Reader(bytes.subarray(2));
  const fields: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const len = r.take(4);
    if (!len) return undefined;
    const field = r.take(readU32(len));
    if (!field) return undefined;
    fields.push(field);
  }
  return r.rest().length === 0 ? { tee, fields } : undefined;
}

const MEANINGS: Record<string, string> = {
  UpToDate: "platform is up to date",
  SWHardeningNeeded: "platform is up to date but software hardening is needed",
  ConfigurationNeeded: "platform is up to date but its configuration needs changing",
  ConfigurationAndSWHardeningNeeded: "platform needs configuration changes and software hardening",
  OutOfDate: "platform tcb is out of date",
  OutOfDateConfigurationNeeded: "platform tcb is out of date and its configuration needs changing",
  TDRelaunchAdvised: "td launched on an out-of-date tcb; a relaunch is advised",
  TDRelaunchAdvisedConfigurationNeeded: "td launched on an out-of-date tcb; a relaunch is advised",
};

/** Intel's TCB status as a summary and a reason, worded as the Rust client words them. */
export function summariseTcb(
  tee: "sgx-dcap" | "tdx",
  status: string,
  advisories: readonly string[],
  debug: boolean,
): { security: SecurityLevel; reason: string } {
  const listed = advisories.length === 0 ? "no advisories" : `advisories ${advisories.join(", ")}`;
  if (status === "Revoked") throw new HardwareError(tee, `the platform is revoked: intel tcb status Revoked, ${listed}`);
  const meaning = MEANINGS[status];
  if (!meaning) throw new HardwareError(tee, `unsupported: intel tcb status ${JSON.stringify(status)}`);
  if (debug) {
    const what = tee === "sgx-dcap" ? "sgx enclave has the DEBUG attribute" : "td has a TUD (debug) attribute set";
    return { security: "INSECURE", reason: `${what}: the host can read its memory (intel tcb status ${status})` };
  }
  return {
    security: status === "UpToDate" ? "SECURE" : "STALE",
    reason: `intel tcb status ${status}: ${meaning}; ${listed}`,
  };
}

interface SgxBody {
  attributes: Uint8Array;
  mrEnclave: Uint8Array;
  mrSigner: Uint8Array;
  isvProdId: number;
  isvSvn: number;
  reportData: Uint8Array;
}

interface TdBody {
  tdAttributes: Uint8Array;
  mrTd: Uint8Array;
  mrConfigId: Uint8Array;
  mrOwner: Uint8Array;
  mrOwnerConfig: Uint8Array;
  rtMr0: Uint8Array;
  rtMr1: Uint8Array;
  rtMr2: Uint8Array;
  rtMr3: Uint8Array;
  reportData: Uint8Array;
}

/**
 * The TDX code hash: SHA-384 of MRTD, RTMR0-3, MRCONFIGID, MROWNER and
 * MROWNERCONFIG, in that order, so a `C:` token pins the whole TD, not only its firmware.
 */
export function tdxCompositeMeasurement(td: TdBody): Uint8Array {
  return sha384(
    concat(td.mrTd, td.rtMr0, td.rtMr1, td.rtMr2, td.rtMr3, td.mrConfigId, td.mrOwner, td.mrOwnerConfig),
  );
}

/** Verifies encoded hardware evidence at `nowUnix`. */
export function verifyHardware(bytes: Uint8Array, nowUnix: bigint): VerifiedHardware {
  const decoded = decodeHardware(bytes);
  if (!decoded) throw new HardwareError("hardware", "hardware evidence is malformed");
  const { tee, fields } = decoded;
  if (tee !== "sgx-dcap" && tee !== "tdx") {
    throw new HardwareError(
      tee,
      `${tee} evidence is not supported by this client yet: verify it with the Rust client (\`conclave attest\`)`,
      true,
    );
  }
  const [quote, collateralJson] = fields as [Uint8Array, Uint8Array];
  let collateral: unknown;
  try {
    collateral = JSON.parse(lossyUtf8.decode(collateralJson));
  } catch (e) {
    throw new HardwareError(tee, `the dcap collateral json is malformed: ${(e as Error).message}`);
  }
  let verified;
  try {
    verified = verifyDcapQuote(quote, collateral as Parameters<typeof verifyDcapQuote>[1], Number(nowUnix));
  } catch (e) {
    throw new HardwareError(tee, (e as Error).message);
  }
  const report = verified.report;
  const status = String(verified.status);
  const advisories = verified.advisory_ids ?? [];
  if (tee === "sgx-dcap") {
    if (report.type !== "sgx") throw new HardwareError(tee, "the quote carries a td report, not an sgx enclave report");
    const r = report.data as unknown as SgxBody;
    // SGX ATTRIBUTES.FLAGS bit 1 is DEBUG.
    const debug = (r.attributes[0]! & 0x02) !== 0;
    const { security, reason } = summariseTcb(tee, status, advisories, debug);
    return {
      tee,
      measurement: Uint8Array.from(r.mrEnclave),
      signer: Uint8Array.from(r.mrSigner),
      productId: r.isvProdId,
      // R3 Conclave's revocation level is ISVSVN − 1, saturating at 0.
      revocationLevel: Math.max(0, r.isvSvn - 1),
      reportData: Uint8Array.from(r.reportData),
      debug,
      tcbStatus: status,
      advisoryIds: advisories,
      security,
      securityReason: reason,
    };
  }
  const td = (report.type === "sgx" ? undefined : (report.asTd10() as unknown as TdBody | null)) ?? undefined;
  if (!td) throw new HardwareError(tee, "the quote carries no td report");
  // TDATTRIBUTES bits 7:0 are the TUD ("TD under debug") group.
  const debug = td.tdAttributes[0] !== 0;
  const { security, reason } = summariseTcb(tee, status, advisories, debug);
  return {
    tee,
    measurement: tdxCompositeMeasurement(td),
    signer: undefined,
    productId: undefined,
    revocationLevel: undefined,
    reportData: Uint8Array.from(td.reportData),
    debug,
    tcbStatus: status,
    advisoryIds: advisories,
    security,
    securityReason: reason,
  };
}
