//! TLS for the registry client, with the system's root certificates (and a CA file's)
//! loaded at the first TLS handshake rather than when a client is made: reading and
//! parsing /etc/ssl/certs was ~3 ms at the start of every hoist command, and loopback
//! registries, the common case in development, speak plain HTTP.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

use crate::error::{Error, Result};

/// The certificates of a PEM bundle, each checked as a trust anchor now (not at the first
/// handshake, where a bad one would read as the server's fault); errors name the file.
pub(crate) fn pem_certificates(pem: &[u8], file: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{file}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{file}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        )));
    }
    let mut anchors = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        anchors.add(cert.clone()).map_err(|e| {
            Error::Tls(format!(
                "{file}: certificate {} is not usable as a CA: {e}",
                i + 1
            ))
        })?;
    }
    Ok(certs)
}

/// A rustls client configuration that verifies servers against the platform's roots
/// plus `extra_roots`, loading them on first use. ALPN as reqwest sets it (h2, http/1.1).
pub(crate) fn client_config(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = LazyPlatformVerifier {
        provider: provider.clone(),
        extra_roots,
        verifier: OnceLock::new(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// [`rustls_platform_verifier::Verifier`], made at the first certificate to verify.
#[derive(Debug)]
struct LazyPlatformVerifier {
    provider: Arc<CryptoProvider>,
    extra_roots: Vec<CertificateDer<'static>>,
    verifier: OnceLock<std::result::Result<Verifier, rustls::Error>>,
}

impl LazyPlatformVerifier {
    fn get(&self) -> std::result::Result<&Verifier, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                if self.extra_roots.is_empty() {
                    Verifier::new(self.provider.clone())
                } else {
                    Verifier::new_with_extra_roots(
                        self.extra_roots.iter().cloned(),
                        self.provider.clone(),
                    )
                }
                .map_err(|e| rustls::Error::General(format!("loading the root certificates: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // What the platform verifier answers, without loading any roots.
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_offers_h2_and_http1() {
        crate::client::install_crypto_provider();
        let config = client_config(vec![]).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn verifier_answers_its_schemes_without_loading_roots() {
        crate::client::install_crypto_provider();
        let v = LazyPlatformVerifier {
            provider: CryptoProvider::get_default().unwrap().clone(),
            extra_roots: vec![],
            verifier: OnceLock::new(),
        };
        assert!(!v.supported_verify_schemes().is_empty());
        assert!(v.verifier.get().is_none(), "schemes need no roots");
    }

    #[test]
    fn bad_ca_files_are_errors_naming_the_file() {
        let e = pem_certificates(b"not a certificate\n", "ca.pem").unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        // Well-formed PEM whose DER is no certificate: refused now, not at a handshake.
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = pem_certificates(junk, "ca.pem").unwrap_err();
        assert!(e.to_string().contains("ca.pem: certificate 1"), "{e}");
    }
}
