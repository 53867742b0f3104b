//! TLS for the mesh and the client endpoint: self-signed certificates
//! (rcgen), pinned by exact bytes (docs/design.md §3.1 "authenticated
//! point-to-point links"), rustls with the ring provider and TLS 1.3 only.
//!
//! There is no certificate authority: the cluster description lists every
//! replica's certificate, and a connection is accepted only if the other
//! side presents exactly one of them and proves it holds its key (the
//! TLS 1.3 handshake signature, checked with the certificate's public key).
//! Names and expiry dates in the certificates are not used — the pin is the
//! identity.

pub use belfry_client::tls::{
    cert_from_pem, client_config, provider, server_name, Pinned, TlsError,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A replica's TLS identity: its certificate and private key.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// The private key (PKCS#8 DER).
    pub key: Arc<PrivateKeyDer<'static>>,
}

/// A fresh self-signed certificate and key for replica `id`, in PEM:
/// `(certificate, private key)`.
pub fn generate_identity(id: u16) -> Result<(String, String), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![server_name(id)])
        .map_err(|e| TlsError::Config(format!("certificate generation: {e}")))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// The DNS names a PEM certificate's subject alternative names list (a
/// ceremony checks that a replica's names only its own slot: a copied
/// certificate names another, docs/keys.md §3).
pub fn certificate_names(pem: &str) -> Result<Vec<String>, TlsError> {
    use der::DecodePem as _;
    use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
    let bad = |detail: String| TlsError::Pem {
        what: "certificate".to_string(),
        kind: "certificate",
        detail,
    };
    let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let san = cert
        .tbs_certificate
        .get::<SubjectAltName>()
        .map_err(|e| bad(format!("subject alternative names: {e}")))?;
    Ok(san
        .map(|(_, san)| san.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DnsName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect())
}

impl Identity {
    /// An identity from a certificate and a PEM private key, checked: the
    /// key must match the certificate.
    pub fn new(cert: CertificateDer<'static>, key_pem: &str) -> Result<Self, TlsError> {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            what: "TLS key".to_string(),
            kind: "private key",
            detail: e.to_string(),
        })?;
        let certified =
            rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key.clone_key(), &provider())?;
        certified.keys_match()?;
        Ok(Identity {
            cert,
            key: Arc::new(key),
        })
    }

    /// The certificate and key, for a client configuration.
    pub fn pair(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (self.cert.clone(), self.key.clone_key())
    }
}

/// The replica's server side: its identity, both ALPNs, client certificates
/// checked against the pinned replica certificates when presented.
pub fn server_config(
    me: &Identity,
    replicas: Vec<CertificateDer<'static>>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Pinned::new(replicas))
        .with_single_cert(vec![me.cert.clone()], me.key.clone_key())?;
    tls.alpn_protocols = vec![
        belfry_wire::PEER_ALPN.to_vec(),
        belfry_wire::CLIENT_ALPN.to_vec(),
    ];
    quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))
}
