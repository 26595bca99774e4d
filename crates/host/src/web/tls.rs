//! TLS for the web host: a certificate chain and key in PEM, served with
//! rustls (ring provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
//!
//! Without TLS anyone on the network path can read what clients send and
//! answer in the host's place. Mail stays end-to-end encrypted to the
//! enclave either way, but attestation, polling and acknowledgements are
//! only as trustworthy as the transport: a forged host can drop or withhold
//! replies, and for a simulation host it can serve a simulated attestation of
//! its own. Clients check the certificate against the usual web roots or a
//! CA they are given (`conclave … --tls-ca FILE`).

use std::{fmt, path::Path, sync::Arc};

use tokio_rustls::rustls::{
    self, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use super::WebError;

/// A server certificate and key, ready to serve.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    /// The key never appears in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1) from files.
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<Self, WebError> {
        let read = |path: &Path, what| {
            std::fs::read(path).map_err(|e| WebError::Tls { what, path: path.to_owned(), reason: e.to_string() })
        };
        let chain = read(cert_chain, "cannot read the certificate file")?;
        let key_pem = read(key, "cannot read the key file")?;
        Self::from_pem_parts(&chain, cert_chain, &key_pem, key)
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text in memory.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, WebError> {
        Self::from_pem_parts(cert_chain, Path::new("(in memory)"), key, Path::new("(in memory)"))
    }

    fn from_pem_parts(chain: &[u8], chain_path: &Path, key: &[u8], key_path: &Path) -> Result<Self, WebError> {
        let bad = |what, path: &Path, reason: String| WebError::Tls { what, path: path.to_owned(), reason };
        let certs = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("cannot parse the certificate file", chain_path, e.to_string()))?;
        if certs.is_empty() {
            return Err(bad(
                "no certificate in",
                chain_path,
                "expected PEM blocks \"BEGIN CERTIFICATE\", leaf first".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
            bad("no usable private key in", key_path, format!("{e}; expected a PEM PKCS#8, PKCS#1 or SEC1 key"))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("unsupported protocol versions for", chain_path, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("the key does not fit the certificate in", chain_path, e.to_string()))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { server: Arc::new(server) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let error = TlsConfig::from_pem(b"not pem", b"not pem").unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
        let missing = TlsConfig::from_pem_files(Path::new("/nonexistent/cert.pem"), Path::new("/nonexistent/key.pem"))
            .unwrap_err();
        assert!(missing.to_string().contains("cannot read the certificate file"), "{missing}");
    }
}
