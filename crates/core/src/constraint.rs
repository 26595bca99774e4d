//! EnclaveConstraint: the one-line policy a client checks an enclave against.
//!
//! ```text
//! C:<hex>        acceptable code hash (launch measurement); repeatable
//! S:<hex>        acceptable code-signer; repeatable; needs PROD
//! PROD:<n>       product id (0..=65535); only and always with S
//! REVOKE:<n>     minimum revocation level
//! SEC:<lvl>      minimum security: INSECURE, STALE (default) or SECURE
//! EXPIRE:<p>     maximum attestation age, an ISO 8601 duration (P30D, PT12H, P6M2W5D)
//! SIMKEY:<hex>   acceptable simulated attestation key (64 hex digits, Ed25519); repeatable
//! ```
//!
//! An enclave satisfies the constraint when its code hash is one of the `C`
//! values or its signer is one of the `S` values, and every other given key
//! holds. At least one `C` or `S` is required.
//!
//! `EXPIRE` durations: `P`, then any of years `Y`, months `M`, weeks `W`, days `D`
//! in that order, then optionally `T` and hours `H`, minutes `M`, seconds `S`; weeks
//! combine with the other units. Designators are uppercase, there is no sign, at
//! least one unit is given, a `T` is followed by a time unit, and the whole value is
//! the duration. The last unit may have a fraction (`PT1.5H`); what is left below a
//! second is dropped. A year counts 365 days, a month 30 days, a week 7 days: an age
//! limit needs no calendar. A duration of zero is refused. Evidence that carries no
//! creation time (SGX, TDX, SEV-SNP) cannot satisfy `EXPIRE`: its age is unknown.
//!
//! `SIMKEY` pins the host's simulated attestation key: when given, simulation
//! evidence must be signed by one of the listed keys and mock evidence (unsigned) is
//! refused; hardware evidence is not affected. Without it, any key is accepted, and
//! anyone on the network can sign simulation evidence with a key of their own.

use core::fmt;

use jiff::fmt::temporal::SpanParser;

use crate::{
    info::{AttestedIdentity, EnclaveInstanceInfo, InfoError, VerifiedEnclaveInfo},
    security::SecuritySummary,
};

/// Every key, as the unknown-key error lists them.
const KEYS: &str = "C, S, PROD, REVOKE, SEC, EXPIRE, SIMKEY";

/// Why a constraint could not be parsed, or why an enclave does not satisfy it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConstraintError {
    /// One token is wrong.
    #[error("invalid token {token:?}: {reason}")]
    InvalidToken {
        /// The token as written.
        token: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The constraint names no code hash and no signer.
    #[error("constraint needs at least one C:<code hash> or S:<signer> token")]
    NoIdentity,
    /// `S` was given without `PROD`.
    #[error("S:<signer> needs a PROD:<product id> token too")]
    MissingProductId,
    /// The enclave's evidence or key binding did not verify.
    #[error("attestation is invalid: {0}")]
    Attestation(#[from] InfoError),
    /// The enclave fails the constraint.
    #[error("constraint not satisfied: {0}")]
    NotSatisfied(Unsatisfied),
}

/// Which part of a constraint an enclave fails, with both values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unsatisfied {
    /// Neither the code hash nor the signer is accepted.
    #[error(
        "C/S: code hash {code_hash} is not one of the {accepted_code_hashes} accepted code hashes, \
         and signer {signer} is not one of the {accepted_signers} accepted signers"
    )]
    Identity {
        /// Hex of the enclave's code hash.
        code_hash: String,
        /// How many code hashes the constraint accepts.
        accepted_code_hashes: usize,
        /// Hex of the enclave's signer, or "(none)".
        signer: String,
        /// How many signers the constraint accepts.
        accepted_signers: usize,
    },
    /// The product id differs.
    #[error("PROD:{expected}: enclave has product id {actual}")]
    ProductId {
        /// The required product id.
        expected: u16,
        /// The enclave's product id, or "(none)".
        actual: String,
    },
    /// The revocation level is too low.
    #[error("REVOKE:{minimum}: enclave has revocation level {actual}")]
    RevocationLevel {
        /// The minimum accepted.
        minimum: u16,
        /// The enclave's level, or "(none)".
        actual: String,
    },
    /// The security summary is too low.
    #[error("SEC:{minimum}: enclave security is {actual} ({reason}){}", security_hint(*actual))]
    Security {
        /// The minimum accepted.
        minimum: SecuritySummary,
        /// The enclave's summary.
        actual: SecuritySummary,
        /// Why the enclave has that summary.
        reason: String,
    },
    /// The attestation is older than allowed.
    #[error("EXPIRE:{period}: attestation is {age_seconds} s old, at most {max_age_seconds} s allowed")]
    Expired {
        /// The period as written.
        period: String,
        /// The maximum age in seconds.
        max_age_seconds: u64,
        /// The attestation's age in seconds.
        age_seconds: u64,
    },
    /// `EXPIRE` was given but the evidence carries no creation time (SGX, TDX,
    /// SEV-SNP), so its age cannot be checked.
    #[error(
        "EXPIRE:{period}: {evidence} evidence carries no creation time, so its age cannot be checked; \
         drop EXPIRE for {evidence} enclaves"
    )]
    NoTimestamp {
        /// The period as written.
        period: String,
        /// The kind of evidence, e.g. "sgx-dcap".
        evidence: String,
    },
    /// `SIMKEY` was given and the evidence is not signed by one of those keys.
    #[error(
        "SIMKEY: the evidence is signed by {actual}, not by one of the pinned simulated attestation keys ({})",
        accepted.join(", ")
    )]
    SimulationKey {
        /// Which key signed it: `"simulated attestation key <hex>"`, or for mock
        /// evidence "no key (mock evidence is unsigned)".
        actual: String,
        /// Hex of every pinned key.
        accepted: Vec<String>,
    },
}

/// A parsed constraint. [`fmt::Display`] prints its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveConstraint {
    code_hashes: Vec<Vec<u8>>,
    signers: Vec<Vec<u8>>,
    product_id: Option<u16>,
    minimum_revocation_level: Option<u16>,
    minimum_security: SecuritySummary,
    max_age: Option<(String, u64)>,
    simulation_keys: Vec<[u8; 32]>,
}

fn invalid(token: &str, reason: impl Into<String>) -> ConstraintError {
    ConstraintError::InvalidToken { token: token.to_owned(), reason: reason.into() }
}

/// Measurements and signer identities are 32 bytes (SHA-256, SGX) or 48 bytes (SHA-384: TDX, SEV-SNP, Nitro).
fn parse_hash(token: &str, value: &str) -> Result<Vec<u8>, ConstraintError> {
    let bytes = hex::decode(value).map_err(|_| invalid(token, "value is not hex"))?;
    if bytes.len() != 32 && bytes.len() != 48 {
        return Err(invalid(token, format!("hash is {} bytes; expected 32 or 48 (64 or 96 hex digits)", bytes.len())));
    }
    Ok(bytes)
}

fn parse_u16(token: &str, value: &str) -> Result<u16, ConstraintError> {
    value.parse::<u16>().map_err(|_| invalid(token, "value must be a whole number from 0 to 65535"))
}

/// An Ed25519 public key, 32 bytes as 64 hex digits.
fn parse_simulation_key(token: &str, value: &str) -> Result<[u8; 32], ConstraintError> {
    let bytes = hex::decode(value).map_err(|_| invalid(token, "value is not hex"))?;
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        invalid(token, format!("key is {} bytes; expected a 32-byte ed25519 public key (64 hex digits)", bytes.len()))
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| invalid(token, "value is not an ed25519 public key"))?;
    Ok(key)
}

/// Converts an ISO 8601 duration to seconds (grammar in the module docs). Years
/// count 365 days, months 30 days and weeks 7 days: an age limit needs no calendar.
fn parse_period(token: &str, value: &str) -> Result<u64, ConstraintError> {
    let bad = || invalid(token, "value must be an ISO 8601 duration such as P30D, PT12H or P6M2W5D");
    // jiff follows Temporal, which also allows lowercase designators and a sign;
    // the constraint language keeps to the uppercase, unsigned form.
    if !value.starts_with('P') || !value.bytes().all(|b| b.is_ascii_digit() || b"PYMWDTHS.,".contains(&b)) {
        return Err(bad());
    }
    // `parse_span` refuses trailing text, a `T` without a time unit, units out of
    // order or repeated, and values beyond jiff's span limits.
    let span = SpanParser::new().parse_span(value).map_err(|_| bad())?;
    let units = [
        (i64::from(span.get_years()), 365 * 86_400),
        (i64::from(span.get_months()), 30 * 86_400),
        (i64::from(span.get_weeks()), 7 * 86_400),
        (i64::from(span.get_days()), 86_400),
        (i64::from(span.get_hours()), 3_600),
        (span.get_minutes(), 60),
        (span.get_seconds(), 1),
    ];
    let mut seconds: u64 = 0;
    for (count, unit) in units {
        // No sign was allowed, so every unit is non-negative; jiff's limits keep the
        // sum far below u64::MAX, but a checked sum costs nothing.
        let count = u64::try_from(count).map_err(|_| bad())?;
        seconds = count.checked_mul(unit).and_then(|s| seconds.checked_add(s)).ok_or_else(bad)?;
    }
    if seconds == 0 {
        return Err(invalid(token, "the period must be at least one second"));
    }
    Ok(seconds)
}

impl EnclaveConstraint {
    /// Parses a constraint. The error names the offending token.
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let mut c = Self {
            code_hashes: Vec::new(),
            signers: Vec::new(),
            product_id: None,
            minimum_revocation_level: None,
            minimum_security: SecuritySummary::Stale,
            max_age: None,
            simulation_keys: Vec::new(),
        };
        let mut seen_sec = false;
        for token in text.split_whitespace() {
            let Some((key, value)) = token.split_once(':') else {
                return Err(invalid(token, "expected KEY:VALUE"));
            };
            if value.is_empty() {
                return Err(invalid(token, "value is empty"));
            }
            let once = |present: bool| {
                if present { Err(invalid(token, format!("{key} may appear only once"))) } else { Ok(()) }
            };
            match key {
                "C" => {
                    let hash = parse_hash(token, value)?;
                    if !c.code_hashes.contains(&hash) {
                        c.code_hashes.push(hash);
                    }
                }
                "S" => {
                    let hash = parse_hash(token, value)?;
                    if !c.signers.contains(&hash) {
                        c.signers.push(hash);
                    }
                }
                "PROD" => {
                    once(c.product_id.is_some())?;
                    c.product_id = Some(parse_u16(token, value)?);
                }
                "REVOKE" => {
                    once(c.minimum_revocation_level.is_some())?;
                    c.minimum_revocation_level = Some(parse_u16(token, value)?);
                }
                "SEC" => {
                    once(seen_sec)?;
                    seen_sec = true;
                    c.minimum_security =
                        value.parse().map_err(|_| invalid(token, "value must be INSECURE, STALE or SECURE"))?;
                }
                "EXPIRE" => {
                    once(c.max_age.is_some())?;
                    c.max_age = Some((value.to_owned(), parse_period(token, value)?));
                }
                "SIMKEY" => {
                    let key = parse_simulation_key(token, value)?;
                    if !c.simulation_keys.contains(&key) {
                        c.simulation_keys.push(key);
                    }
                }
                _ => return Err(invalid(token, format!("unknown key {key:?}; keys are {KEYS}"))),
            }
        }
        if c.code_hashes.is_empty() && c.signers.is_empty() {
            return Err(ConstraintError::NoIdentity);
        }
        match (c.signers.is_empty(), c.product_id) {
            (false, None) => return Err(ConstraintError::MissingProductId),
            (true, Some(id)) => return Err(invalid(&format!("PROD:{id}"), "PROD is only allowed together with S")),
            _ => {}
        }
        Ok(c)
    }

    /// The minimum security this constraint accepts.
    pub fn minimum_security(&self) -> SecuritySummary {
        self.minimum_security
    }

    /// Verifies `info` at `now_unix` and checks it against this constraint.
    pub fn check(&self, info: &EnclaveInstanceInfo, now_unix: u64) -> Result<VerifiedEnclaveInfo, ConstraintError> {
        let verified = info.verify(now_unix)?;
        self.check_identity(&verified.identity, now_unix)?;
        Ok(verified)
    }

    /// Checks an already verified identity against this constraint.
    pub fn check_identity(&self, id: &AttestedIdentity, now_unix: u64) -> Result<(), ConstraintError> {
        let fail = |u| Err(ConstraintError::NotSatisfied(u));
        // Checked first: if an unpinned key vouches for the evidence, nothing else in
        // it means anything. Only mock and simulation identities lack TEE details.
        if !self.simulation_keys.is_empty() && id.tee_details.is_none() {
            let signed_by_pinned = id.simulated_attestation_key.is_some_and(|key| self.simulation_keys.contains(&key));
            if !signed_by_pinned {
                return fail(Unsatisfied::SimulationKey {
                    actual: id.simulated_attestation_key.map_or_else(
                        || "no key (mock evidence is unsigned)".to_owned(),
                        |key| format!("simulated attestation key {}", hex::encode(key)),
                    ),
                    accepted: self.simulation_keys.iter().map(hex::encode).collect(),
                });
            }
        }
        let code_ok = self.code_hashes.contains(&id.code_hash);
        let signer_ok = id.signer.as_ref().is_some_and(|s| self.signers.contains(s));
        if !code_ok && !signer_ok {
            return fail(Unsatisfied::Identity {
                code_hash: hex::encode(&id.code_hash),
                accepted_code_hashes: self.code_hashes.len(),
                signer: id.signer.as_ref().map_or_else(|| "(none)".to_owned(), hex::encode),
                accepted_signers: self.signers.len(),
            });
        }
        if let Some(expected) = self.product_id
            && id.product_id != Some(expected)
        {
            return fail(Unsatisfied::ProductId { expected, actual: show(id.product_id) });
        }
        if let Some(minimum) = self.minimum_revocation_level
            && id.revocation_level.is_none_or(|level| level < minimum)
        {
            return fail(Unsatisfied::RevocationLevel { minimum, actual: show(id.revocation_level) });
        }
        if id.security < self.minimum_security {
            return fail(Unsatisfied::Security {
                minimum: self.minimum_security,
                actual: id.security,
                reason: id.security_reason.clone(),
            });
        }
        if let Some((period, max_age_seconds)) = &self.max_age {
            let Some(timestamp) = id.timestamp_unix else {
                return fail(Unsatisfied::NoTimestamp {
                    period: period.clone(),
                    evidence: id.tee_details.as_ref().map_or("this", |d| d.kind().as_str()).to_owned(),
                });
            };
            let age_seconds = now_unix.saturating_sub(timestamp);
            if age_seconds > *max_age_seconds {
                return fail(Unsatisfied::Expired {
                    period: period.clone(),
                    max_age_seconds: *max_age_seconds,
                    age_seconds,
                });
            }
        }
        Ok(())
    }
}

/// What to do about an INSECURE enclave, for the person reading the error.
fn security_hint(actual: SecuritySummary) -> &'static str {
    if actual == SecuritySummary::Insecure {
        "; SEC defaults to STALE: to accept a mock or simulation enclave on purpose, add SEC:INSECURE"
    } else {
        ""
    }
}

fn show(v: Option<u16>) -> String {
    v.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
}

impl fmt::Display for EnclaveConstraint {
    /// The canonical form: C tokens, S tokens, PROD, REVOKE, SEC (always), EXPIRE,
    /// SIMKEY tokens; repeatable tokens deduplicated in order of first appearance;
    /// hex in lowercase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        parts.extend(self.code_hashes.iter().map(|h| format!("C:{}", hex::encode(h))));
        parts.extend(self.signers.iter().map(|h| format!("S:{}", hex::encode(h))));
        if let Some(p) = self.product_id {
            parts.push(format!("PROD:{p}"));
        }
        if let Some(r) = self.minimum_revocation_level {
            parts.push(format!("REVOKE:{r}"));
        }
        parts.push(format!("SEC:{}", self.minimum_security));
        if let Some((period, _)) = &self.max_age {
            parts.push(format!("EXPIRE:{period}"));
        }
        parts.extend(self.simulation_keys.iter().map(|k| format!("SIMKEY:{}", hex::encode(k))));
        f.write_str(&parts.join(" "))
    }
}

impl core::str::FromStr for EnclaveConstraint {
    type Err = ConstraintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
