//! The security summary of a verified enclave.
//!
//! (Temporarily defined here; it moves to `conclave-attestation`, which the
//! hardware verifiers share, once that crate lands.)

use core::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How much a verified enclave can be trusted, from worst to best.
///
/// Ordered `Insecure < Stale < Secure`, so a constraint's minimum is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SecuritySummary {
    /// Nothing protects the enclave from the host (mock, simulation, debug).
    Insecure,
    /// Genuine hardware whose TCB needs an update or a configuration change.
    Stale,
    /// Genuine hardware, up to date as far as the vendor says.
    Secure,
}

impl SecuritySummary {
    /// The uppercase name used in constraints, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insecure => "INSECURE",
            Self::Stale => "STALE",
            Self::Secure => "SECURE",
        }
    }
}

impl fmt::Display for SecuritySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecuritySummary {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "INSECURE" => Ok(Self::Insecure),
            "STALE" => Ok(Self::Stale),
            "SECURE" => Ok(Self::Secure),
            _ => Err(()),
        }
    }
}
