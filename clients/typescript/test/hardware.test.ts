// Intel SGX DCAP and TDX evidence through @phala/dcap-qvl, against the Rust
// client's verdicts on the same recorded quotes (hardware-v1.json).
import { describe, expect, it } from "vitest";

import {
  type AttestedIdentity,
  EnclaveConstraint,
  decodeInfo,
  hex,
  summariseTcb,
  toHex,
  verifyHardware,
  verifyInfo,
} from "../src/index.js";
import { vector } from "./vectors.js";

const v = vector("hardware-v1.json");

function hardwareBytes(encoded: string): Uint8Array {
  const info = decodeInfo(hex(encoded));
  if (info.evidence.kind !== "hardware") throw new Error("not hardware evidence");
  return info.evidence.bytes;
}

function verdict(encoded: string, now: number): unknown {
  try {
    verifyInfo(decodeInfo(hex(encoded)), BigInt(now));
    return "ok";
  } catch (e) {
    return { kind: (e as { kind: string }).kind, message: (e as Error).message };
  }
}

describe.each(v.cases.map((c: any) => [c.kind, c]) as [string, any][])("%s", (kind, c: any) => {
  it("proves the identity the Rust client reads from it", () => {
    const h = verifyHardware(hardwareBytes(c.encoded), BigInt(c.within));
    const id = c.identity;
    expect(h.tee).toBe(kind);
    expect(toHex(h.measurement)).toBe(id.code_hash);
    expect(h.signer ? toHex(h.signer) : null).toBe(id.signer);
    expect(h.productId ?? null).toBe(id.product_id);
    expect(h.revocationLevel ?? null).toBe(id.revocation_level);
    expect(h.security).toBe(id.security);
    expect(h.securityReason).toBe(id.security_reason);
    expect(toHex(h.reportData)).toBe(c.report_data);
    expect(h.tcbStatus).toBe(c.tcb_status);
    expect(h.debug).toBe(c.debug);
  });

  it("an info with it fails the key binding, with the Rust client's message", () => {
    expect(verdict(c.encoded, c.within)).toEqual({ kind: "key_binding", message: c.verdict_within.error });
  });

  it("expired collateral and a tampered quote are refused", () => {
    const after = verdict(c.encoded, c.after) as { kind: string; message: string };
    expect(after.kind).toBe("hardware");
    expect(after.message).toMatch(new RegExp(`^${kind} evidence failed verification: `));
    expect(c.verdict_after.error).toMatch(new RegExp(`^${kind} evidence failed verification: `));
    const tampered = verdict(c.tampered_encoded, c.within) as { kind: string; message: string };
    expect(tampered.kind).toBe("hardware");
    expect(tampered.message).toContain("signature is invalid");
  });

  it("constraints judge it as the Rust client does", () => {
    const h = verifyHardware(hardwareBytes(c.encoded), BigInt(c.within));
    const identity: AttestedIdentity = {
      codeHash: h.measurement,
      signer: h.signer,
      productId: h.productId,
      revocationLevel: h.revocationLevel,
      security: h.security,
      securityReason: h.securityReason,
      timestampUnix: undefined,
      tee: h.tee,
      simulatedAttestationKey: undefined,
    };
    const check = (text: string): string => {
      try {
        EnclaveConstraint.parse(text).checkIdentity(identity, BigInt(c.within));
        return "ok";
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(check(`C:${c.identity.code_hash} SEC:${c.identity.security}`)).toBe("ok");
    expect(check(`C:${c.identity.code_hash} SEC:STALE EXPIRE:P1D`)).toBe(
      `constraint not satisfied: EXPIRE:P1D: ${kind} evidence carries no creation time, so its age cannot be checked; drop EXPIRE for ${kind} enclaves`,
    );
    // SIMKEY does not apply to hardware evidence.
    expect(check(`C:${c.identity.code_hash} SEC:STALE SIMKEY:${"34b4d9043156cb6dcf0beb0a2949b7559c940d2bcb6dbe8c53a9b30278e3a746"}`)).toBe("ok");
    if (kind === "sgx-dcap") {
      expect(check(`S:${c.identity.signer} PROD:0 SEC:STALE`)).toBe("ok");
      expect(check(`S:${c.identity.signer} PROD:0 SEC:SECURE`)).toMatch(
        /^constraint not satisfied: SEC:SECURE: enclave security is STALE \(intel tcb status ConfigurationAndSWHardeningNeeded/,
      );
    } else {
      expect(check(`C:${c.identity.code_hash} REVOKE:0`)).toBe(
        "constraint not satisfied: REVOKE:0: enclave has revocation level (none)",
      );
    }
  });
});

it("maps every Intel TCB status as the Rust client does", () => {
  expect(summariseTcb("sgx-dcap", "UpToDate", [], false).security).toBe("SECURE");
  for (const s of ["SWHardeningNeeded", "ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded", "TDRelaunchAdvised"]) {
    expect(summariseTcb("tdx", s, ["INTEL-SA-1"], false).security).toBe("STALE");
  }
  expect(summariseTcb("tdx", "UpToDate", [], true)).toEqual({
    security: "INSECURE",
    reason: "td has a TUD (debug) attribute set: the host can read its memory (intel tcb status UpToDate)",
  });
  expect(() => summariseTcb("sgx-dcap", "Revoked", [], false)).toThrow("revoked");
  expect(() => summariseTcb("sgx-dcap", "Whatever", [], false)).toThrow('unsupported: intel tcb status "Whatever"');
});

it("refuses SEV-SNP and Nitro evidence by name", () => {
  // HardwareEvidence::SevSnp { report: [0xAA], vcek: [], chain: [1, 2] } from docs/attestation.md.
  expect(() => verifyHardware(hex("0103000000" + "01aa" + "00000000" + "000000020102"), 0n)).toThrow(
    "sev-snp evidence is not supported by this client yet",
  );
  expect(() => verifyHardware(hex("010400000001ff"), 0n)).toThrow("nitro evidence is not supported by this client yet");
  expect(() => verifyHardware(hex("0109"), 0n)).toThrow("hardware evidence is malformed");
});
