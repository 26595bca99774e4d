//! The vendor trust roots, pinned into the binary.

/// The root certificates verification chains must end in.
///
/// [`TrustRoots::pinned`] holds the production roots compiled into this crate (see
/// `roots/README.md` for their provenance). Tests build other values to check that a
/// chain to a different root is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// Intel SGX Root CA, DER. Root of both SGX and TDX DCAP quotes.
    pub intel_sgx_root: Vec<u8>,
    /// AMD root keys (ARK) accepted for SEV-SNP, PEM or DER, one per product line.
    pub amd_arks: Vec<Vec<u8>>,
    /// AWS Nitro Enclaves Root-G1, PEM or DER.
    pub aws_nitro_root: Vec<u8>,
}

const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("../roots/intel_sgx_root_ca.der");
const AMD_ARK_MILAN: &[u8] = include_bytes!("../roots/amd_ark_milan.pem");
const AMD_ARK_GENOA: &[u8] = include_bytes!("../roots/amd_ark_genoa.pem");
const AMD_ARK_TURIN: &[u8] = include_bytes!("../roots/amd_ark_turin.pem");
const AWS_NITRO_ROOT_G1: &[u8] = include_bytes!("../roots/aws_nitro_enclaves_root_g1.pem");

impl TrustRoots {
    /// The production roots of Intel, AMD (Milan, Genoa, Turin) and AWS.
    pub fn pinned() -> Self {
        TrustRoots {
            intel_sgx_root: INTEL_SGX_ROOT_CA.to_vec(),
            amd_arks: vec![AMD_ARK_MILAN.to_vec(), AMD_ARK_GENOA.to_vec(), AMD_ARK_TURIN.to_vec()],
            aws_nitro_root: AWS_NITRO_ROOT_G1.to_vec(),
        }
    }
}

impl Default for TrustRoots {
    fn default() -> Self {
        TrustRoots::pinned()
    }
}
