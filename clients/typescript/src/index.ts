/**
 * Conclave client for browsers and Node 20: attest an enclave, check it
 * against a constraint, and exchange encrypted mail with it through an
 * untrusted host, with the reply-chain rules that detect rollback and forks.
 *
 * ```text
 *  EnclaveClient ── attestation() ──► HttpRelay ──► host     verify + EnclaveConstraint
 *        ├─ deliver(correlation id, mail) ──► host ──► enclave
 *        └◄ direct answer, or poll() + acknowledge() for queued replies
 * ```
 *
 * Everything below the client is pure (bytes in, bytes out): mail (Noise X),
 * frames, the EnclaveInstanceInfo, constraints and freshness rules, pinned
 * by the same known-answer vectors as the Rust client.
 */
export * from "./bytes.js";
export * from "./client.js";
export * from "./constraint.js";
export * from "./frame.js";
export * from "./freshness.js";
export * from "./hardware.js";
export * from "./http.js";
export * from "./info.js";
export * from "./mail.js";
export * from "./padding.js";
export * from "./state.js";
