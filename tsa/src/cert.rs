//! The authority's certificate: X.509 v3, self-signed by the threshold key,
//! for time stamping only (`extendedKeyUsage` critical with `timeStamping`
//! alone, `keyUsage` critical with `digitalSignature` alone — what RFC 3161
//! §2.3 and openssl's `timestampsign` purpose require).

use std::str::FromStr;

use der::asn1::{BitString, GeneralizedTime, OctetString, Uint};
use der::oid::ObjectIdentifier;
use der::{Any, Decode, Encode, Sequence};
use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use crate::threshold::PublicKey;

/// `rsaEncryption`.
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `sha256WithRSAEncryption`.
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// `id-kp-timeStamping`.
pub const KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// Why a certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not DER, or not a certificate.
    #[error("TSA certificate: {0}")]
    Malformed(String),
    /// Its key is not the cluster's threshold key.
    #[error("TSA certificate: its public key is not the cluster's threshold RSA key")]
    OtherKey,
}

#[derive(Sequence)]
struct RsaPublicKey {
    modulus: Uint,
    public_exponent: Uint,
}

fn null_params(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: Some(Any::null()),
    }
}

/// The `SubjectPublicKeyInfo` of the threshold key.
pub fn public_key_info(public: &PublicKey) -> Result<SubjectPublicKeyInfoOwned, CertError> {
    let key = RsaPublicKey {
        modulus: uint(&public.n)?,
        public_exponent: uint(&BigUint::from(public.e))?,
    };
    let der = key
        .to_der()
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: null_params(RSA_ENCRYPTION),
        subject_public_key: BitString::from_bytes(&der)
            .map_err(|e| CertError::Malformed(e.to_string()))?,
    })
}

fn uint(x: &BigUint) -> Result<Uint, CertError> {
    Uint::new(&x.to_bytes_be()).map_err(|e| CertError::Malformed(e.to_string()))
}

/// The certificate to be signed: subject = issuer = `CN=<common_name>,
/// O=belfry`, valid from `not_before` (Unix seconds) with no expiry
/// (`99991231235959Z`, RFC 5280 §4.1.2.5), serial `serial`.
pub fn to_be_signed(
    public: &PublicKey,
    common_name: &str,
    serial: [u8; 16],
    not_before: u64,
) -> Result<TbsCertificate, CertError> {
    let bad = |e: der::Error| CertError::Malformed(e.to_string());
    let clean: String = common_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || " -_:".contains(*c))
        .take(64)
        .collect();
    let name = Name::from_str(&format!("CN={clean},O=belfry")).map_err(bad)?;
    let spki = public_key_info(public)?;
    let ski = Sha256::digest(spki.subject_public_key.raw_bytes());
    let ext =
        |oid: ObjectIdentifier, critical: bool, value: Vec<u8>| -> Result<Extension, CertError> {
            Ok(Extension {
                extn_id: oid,
                critical,
                extn_value: OctetString::new(value).map_err(bad)?,
            })
        };
    let extensions = vec![
        ext(
            der::oid::db::rfc5280::ID_CE_KEY_USAGE,
            true,
            KeyUsage(KeyUsages::DigitalSignature.into())
                .to_der()
                .map_err(bad)?,
        )?,
        ext(
            der::oid::db::rfc5280::ID_CE_EXT_KEY_USAGE,
            true,
            ExtendedKeyUsage(vec![KP_TIME_STAMPING])
                .to_der()
                .map_err(bad)?,
        )?,
        ext(
            der::oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
            false,
            SubjectKeyIdentifier(OctetString::new(&ski[..20]).map_err(bad)?)
                .to_der()
                .map_err(bad)?,
        )?,
    ];
    // serial: positive, 16 bytes with the top bit cleared.
    let mut serial = serial;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    // RFC 5280 §4.1.2.5: UTCTime through 2049.
    let not_before = Time::UtcTime(
        der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(not_before))
            .map_err(bad)?,
    );
    let forever =
        GeneralizedTime::from_date_time(der::DateTime::new(9999, 12, 31, 23, 59, 59).map_err(bad)?);
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(bad)?,
        signature: null_params(SHA256_WITH_RSA),
        issuer: name.clone(),
        validity: Validity {
            not_before,
            not_after: Time::GeneralTime(forever),
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    })
}

/// The certificate from its body and the RSA signature on the body's DER.
pub fn assemble(tbs: TbsCertificate, signature: &[u8]) -> Result<Vec<u8>, CertError> {
    let bad = |e: der::Error| CertError::Malformed(e.to_string());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: null_params(SHA256_WITH_RSA),
        signature: BitString::from_bytes(signature).map_err(bad)?,
    }
    .to_der()
    .map_err(bad)
}

/// Reads a certificate and checks that it certifies `public` and carries
/// a valid signature by it.
pub fn parse(der_bytes: &[u8], public: &PublicKey) -> Result<Certificate, CertError> {
    let cert = Certificate::from_der(der_bytes).map_err(|e| CertError::Malformed(e.to_string()))?;
    let expected = public_key_info(public)?;
    if cert.tbs_certificate.subject_public_key_info != expected {
        return Err(CertError::OtherKey);
    }
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    let y = BigUint::from_bytes_be(cert.signature.raw_bytes());
    let x = crate::token::pkcs1_sha256(&Sha256::digest(&tbs).into(), public.modulus_len());
    if cert.signature_algorithm.oid != SHA256_WITH_RSA || !public.verify(&x, &y) {
        return Err(CertError::Malformed(
            "its signature is not the threshold key's".into(),
        ));
    }
    Ok(cert)
}

/// Issues the authority's self-signed certificate with the shares the
/// dealer holds (`belfry keygen`): the body is signed the way every token
/// is — shares combined into one RSA signature.
pub fn self_signed(
    shares: &[crate::threshold::KeyShare],
    common_name: &str,
    serial: [u8; 16],
    not_before: u64,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<Vec<u8>, CertError> {
    let public = shares
        .first()
        .map(|s| s.public().clone())
        .ok_or_else(|| CertError::Malformed("no shares to sign with".into()))?;
    let tbs = to_be_signed(&public, common_name, serial, not_before)?;
    let body = tbs
        .to_der()
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    let x = crate::token::pkcs1_sha256(&Sha256::digest(&body).into(), public.modulus_len());
    let signers: Vec<_> = shares.iter().take(public.threshold).collect();
    let y = crate::threshold::sign_with(&signers, &x, rng)
        .map_err(|e| CertError::Malformed(format!("the dealer's shares: {e}")))?;
    let mut sig = vec![0u8; public.modulus_len()];
    let bytes = y.to_bytes_be();
    sig[public.modulus_len() - bytes.len()..].copy_from_slice(&bytes);
    assemble(tbs, &sig)
}

/// PEM of a DER certificate (for `openssl -CAfile`).
pub fn pem(der_bytes: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
