//! The cluster's PKI: a CA, a server certificate for the loopback names, and a client
//! certificate for the kubeconfig user. Generated once into the data dir, reused after.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid PEM file: {detail} (delete the pki directory to regenerate)")]
    Pem { path: PathBuf, detail: String },
    #[error("TLS configuration error: {0}")]
    Rustls(String),
}

/// PEM text of every credential, as written to the kubeconfig.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

const FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];

impl Pki {
    /// Loads the PKI from `dir`, generating it first when missing.
    pub fn load_or_generate(dir: &Path) -> Result<Self, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        if !FILES.iter().all(|f| dir.join(f).exists()) {
            fs::create_dir_all(dir).map_err(io(dir))?;
            let files = generate()?;
            for (name, text) in FILES.iter().zip(files) {
                let p = dir.join(name);
                write_private(&p, &text).map_err(io(&p))?;
            }
        }
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read_to_string(&p).map_err(io(&p))
        };
        Ok(Self {
            ca_cert: read("ca.crt")?,
            server_cert: read("server.crt")?,
            server_key: read("server.key")?,
            client_cert: read("client.crt")?,
            client_key: read("client.key")?,
        })
    }

    /// A rustls server config: ring provider, HTTP/1.1 only, client certs verified
    /// against our CA when presented (absent certs are answered with 401 by the server).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pem_err = |what: &str, e: rustls::pki_types::pem::Error| TlsError::Pem {
            path: PathBuf::from(what),
            detail: e.to_string(),
        };
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca_cert.as_bytes())
            .map_err(|e| pem_err("ca.crt", e))?;
        roots.add(ca).map_err(|e| TlsError::Rustls(e.to_string()))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let chain = vec![
            CertificateDer::from_pem_slice(self.server_cert.as_bytes())
                .map_err(|e| pem_err("server.crt", e))?,
        ];
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes())
            .map_err(|e| pem_err("server.key", e))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// CA, server and client certificates as PEM, in [`FILES`] order.
fn generate() -> Result<Vec<String>, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hoist-cluster-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut sp = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    sp.distinguished_name
        .push(DnType::CommonName, "hoist-apiserver");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_cert = sp.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut cp = CertificateParams::new(Vec::<String>::new())?;
    cp.distinguished_name
        .push(DnType::CommonName, "hoist-admin");
    cp.distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    cp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let client_cert = cp.signed_by(&client_key, &issuer)?;

    Ok(vec![
        ca_cert.pem(),
        ca_key.serialize_pem(),
        server_cert.pem(),
        server_key.serialize_pem(),
        client_cert.pem(),
        client_key.serialize_pem(),
    ])
}
