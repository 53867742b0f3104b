//! Requests in, tokens out: every replica builds the same `TSTInfo` and the
//! same signed attributes from a request and a verified receipt, so their
//! signature shares combine; the token is a CMS `SignedData` (RFC 5652)
//! signed by issuer and serial number (openssl's PKCS#7 parser reads no
//! other signer id), with an explicitly tagged OCTET STRING eContent.

use std::sync::Arc;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{BitString, Int, OctetString, SetOfVec, Uint};
use der::oid::ObjectIdentifier;
use der::{Any, Decode, Encode};
use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::Certificate;

use crate::asn1::{
    Accuracy, EssCertIdV2, GenTime, IssuerSerial, MessageImprint, Oid, PkiStatusInfo,
    SigningCertificateV2, TimeStampReq, TimeStampResp, TstInfo,
};
use crate::cert::{self, CertError, RSA_ENCRYPTION};
use crate::threshold::PublicKey;

mod verify;
pub use verify::{check_imprint, verify, TokenError, VerifiedToken};

/// `id-sha256`.
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// `id-ct-TSTInfo`.
pub const CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// `id-signedData`.
pub const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// belfry's default TSA policy: a UUID arc (ITU-T X.667), registered by no one
/// and used by no one else.
pub const DEFAULT_POLICY: &str = "2.25.234978520565615809466944303343778313248";
/// Longest request read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// DER of SHA-256's `DigestInfo` up to the hash (RFC 8017 §9.2, note 1).
const DIGEST_INFO_SHA256: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The digest a request logs (docs/rfc3161.md §2):
/// `SHA-256("belfry-rfc3161-v2" ‖ 0x00 ‖ len u16 ‖ MessageImprint DER ‖
/// len u16 ‖ nonce)` with the nonce as its DER content octets (empty when
/// absent). One entry per distinct TSTInfo a request can ask for — the
/// imprint's every byte (algorithm parameters included) and the nonce — so a
/// serial number names one token (RFC 3161 §2.4.2) and a retried request
/// gets the same token back.
pub fn log_digest(message_imprint_der: &[u8], nonce: Option<&[u8]>) -> [u8; 32] {
    let nonce = nonce.unwrap_or_default();
    let mut h = Sha256::new();
    h.update(b"belfry-rfc3161-v2\x00");
    // Both are bounded by the 16 KiB request.
    h.update((message_imprint_der.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    h.update(message_imprint_der);
    h.update((nonce.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    h.update(nonce);
    h.finalize().into()
}

/// `EMSA-PKCS1-v1_5` of a SHA-256 hash for a `k`-byte modulus, as an integer.
pub fn pkcs1_sha256(hash: &[u8; 32], k: usize) -> BigUint {
    let mut em = vec![0x00, 0x01];
    em.resize(k.saturating_sub(DIGEST_INFO_SHA256.len() + 32 + 1), 0xff);
    em.push(0x00);
    em.extend_from_slice(&DIGEST_INFO_SHA256);
    em.extend_from_slice(hash);
    BigUint::from_bytes_be(&em)
}

/// RFC 3161's failure bits belfry answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An imprint that is not SHA-256.
    BadAlg = 0,
    /// A request belfry does not serve.
    BadRequest = 2,
    /// Not a DER `TimeStampReq`.
    BadDataFormat = 5,
    /// Another policy asked for.
    UnacceptedPolicy = 15,
    /// An extension asked for.
    UnacceptedExtension = 16,
    /// The cluster did not answer in time, or too few shares.
    SystemFailure = 25,
}

/// A request refused, with RFC 3161's reason and ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The failure bit.
    pub failure: Failure,
    /// A sentence for the status string.
    pub text: String,
}

impl Rejection {
    fn new(failure: Failure, text: impl Into<String>) -> Rejection {
        Rejection {
            failure,
            text: text.into(),
        }
    }

    /// The `TimeStampResp` with status `rejection`.
    pub fn response(&self) -> Vec<u8> {
        let bit = self.failure as usize;
        let mut bytes = vec![0u8; bit / 8 + 1];
        bytes[bit / 8] = 0x80 >> (bit % 8);
        let resp = TimeStampResp {
            status: PkiStatusInfo {
                status: 2,
                status_string: Some(vec![self.text.clone()]),
                fail_info: BitString::new((7 - bit % 8) as u8, bytes).ok(),
            },
            time_stamp_token: None,
        };
        resp.to_der().unwrap_or_default()
    }
}

impl Request {
    /// The digest this request logs ([`log_digest`]).
    pub fn log_digest(&self) -> [u8; 32] {
        log_digest(
            &self.message_imprint_der,
            self.nonce.as_ref().map(|n| n.as_bytes()),
        )
    }
}

/// A request belfry will stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The SHA-256 imprint.
    pub imprint: [u8; 32],
    /// The request's imprint structure, echoed.
    pub message_imprint: MessageImprint,
    /// Its DER.
    pub message_imprint_der: Vec<u8>,
    /// The nonce, echoed.
    pub nonce: Option<Int>,
    /// Whether to include the certificate.
    pub cert_req: bool,
}

/// What every replica signs for one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// DER of the `TSTInfo`.
    pub tst_info: Vec<u8>,
    /// The signed attributes.
    pub attributes: SetOfVec<Attribute>,
    /// The PKCS#1 message: `EMSA(SHA-256(DER of the SET OF attributes))`.
    pub message: BigUint,
}

/// The authority as every replica sees it: the threshold key, its
/// certificate, the policy and the stated accuracy.
#[derive(Clone, Debug)]
pub struct Authority {
    public: Arc<PublicKey>,
    cert_der: Vec<u8>,
    cert: Certificate,
    policy: Oid,
    accuracy_us: u64,
}

impl Authority {
    /// The authority of `public` with its certificate (checked: it must
    /// certify that key and be signed by it).
    pub fn new(
        public: Arc<PublicKey>,
        cert_der: Vec<u8>,
        policy: &str,
        accuracy_us: u64,
    ) -> Result<Authority, CertError> {
        let cert = cert::parse(&cert_der, &public)?;
        let policy = Oid::parse(policy)
            .ok_or_else(|| CertError::Malformed(format!("policy {policy:?} is not an OID")))?;
        Ok(Authority {
            public,
            cert_der,
            cert,
            policy,
            accuracy_us,
        })
    }

    /// The threshold key.
    pub fn public(&self) -> &Arc<PublicKey> {
        &self.public
    }

    /// The certificate's DER.
    pub fn certificate(&self) -> &[u8] {
        &self.cert_der
    }

    /// Reads a DER `TimeStampReq` and checks what belfry serves: v1, a
    /// SHA-256 imprint, our policy or none, no extensions.
    pub fn request(&self, der_bytes: &[u8]) -> Result<Request, Rejection> {
        if der_bytes.len() > MAX_REQUEST_BYTES {
            return Err(Rejection::new(
                Failure::BadDataFormat,
                "request larger than 16 KiB",
            ));
        }
        let req = TimeStampReq::from_der(der_bytes).map_err(|e| {
            Rejection::new(
                Failure::BadDataFormat,
                format!("not a DER TimeStampReq: {e}"),
            )
        })?;
        if req.version != 1 {
            return Err(Rejection::new(
                Failure::BadRequest,
                "only version 1 requests",
            ));
        }
        let imprint = &req.message_imprint;
        if imprint.hash_algorithm.oid != SHA256 {
            return Err(Rejection::new(
                Failure::BadAlg,
                format!(
                    "imprint hashed with {}; belfry stamps SHA-256 imprints",
                    imprint.hash_algorithm.oid
                ),
            ));
        }
        // openssl compares imprints' parameters as absent or NULL only.
        if imprint
            .hash_algorithm
            .parameters
            .as_ref()
            .is_some_and(|p| p != &Any::null())
        {
            return Err(Rejection::new(
                Failure::BadAlg,
                "SHA-256's parameters must be absent or NULL",
            ));
        }
        let Ok(digest) = <[u8; 32]>::try_from(imprint.hashed_message.as_bytes()) else {
            return Err(Rejection::new(
                Failure::BadDataFormat,
                "a SHA-256 imprint has 32 bytes",
            ));
        };
        if req.req_policy.as_ref().is_some_and(|p| p != &self.policy) {
            return Err(Rejection::new(
                Failure::UnacceptedPolicy,
                "belfry serves one policy",
            ));
        }
        if req.extensions.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(Rejection::new(
                Failure::UnacceptedExtension,
                "no extensions are served",
            ));
        }
        let message_imprint_der = req
            .message_imprint
            .to_der()
            .map_err(|e| Rejection::new(Failure::BadDataFormat, format!("imprint: {e}")))?;
        Ok(Request {
            imprint: digest,
            message_imprint_der,
            message_imprint: req.message_imprint,
            nonce: req.nonce,
            cert_req: req.cert_req,
        })
    }

    /// The `TSTInfo` and signed attributes of `request` logged at `serial`
    /// with witnessed time `gen_time_us`: the same bytes on every replica.
    pub fn prepare(
        &self,
        request: &Request,
        serial: u64,
        gen_time_us: u64,
    ) -> Result<Prepared, Rejection> {
        let failed =
            |e: der::Error| Rejection::new(Failure::SystemFailure, format!("encoding: {e}"));
        let tst = TstInfo {
            version: 1,
            policy: self.policy.clone(),
            message_imprint: request.message_imprint.clone(),
            serial_number: Uint::new(&serial.to_be_bytes()).map_err(failed)?,
            gen_time: GenTime(gen_time_us),
            accuracy: Accuracy::from_micros(self.accuracy_us),
            // genTime is the entry's witnessed time, which is not monotone in
            // log order; the serial number (the log index) orders tokens.
            ordering: false,
            nonce: request.nonce.clone(),
            tsa: Some(GeneralName::DirectoryName(
                self.cert.tbs_certificate.subject.clone(),
            )),
        };
        let tst_info = tst.to_der().map_err(failed)?;
        let attributes = self.attributes(&tst_info).map_err(failed)?;
        let signed = attributes.to_der().map_err(failed)?;
        let message = pkcs1_sha256(&Sha256::digest(&signed).into(), self.public.modulus_len());
        Ok(Prepared {
            tst_info,
            attributes,
            message,
        })
    }

    fn attributes(&self, tst_info: &[u8]) -> der::Result<SetOfVec<Attribute>> {
        let attr = |oid: ObjectIdentifier, value: Any| -> der::Result<Attribute> {
            Ok(Attribute {
                oid,
                values: SetOfVec::try_from(vec![value])?,
            })
        };
        let tbs = &self.cert.tbs_certificate;
        let ess = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                cert_hash: OctetString::new(Sha256::digest(&self.cert_der).to_vec())?,
                issuer_serial: Some(IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
                    serial_number: tbs.serial_number.clone(),
                }),
            }],
        };
        SetOfVec::try_from(vec![
            attr(CONTENT_TYPE, Any::encode_from(&CT_TST_INFO)?)?,
            attr(
                MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(Sha256::digest(tst_info).to_vec())?)?,
            )?,
            attr(SIGNING_CERTIFICATE_V2, Any::encode_from(&ess)?)?,
        ])
    }

    /// The granted `TimeStampResp` around `prepared` and its signature `y`.
    pub fn response(
        &self,
        prepared: &Prepared,
        y: &BigUint,
        cert_req: bool,
    ) -> Result<Vec<u8>, Rejection> {
        let failed =
            |e: der::Error| Rejection::new(Failure::SystemFailure, format!("encoding: {e}"));
        let k = self.public.modulus_len();
        let mut signature = vec![0u8; k];
        let bytes = y.to_bytes_be();
        signature[k.saturating_sub(bytes.len())..]
            .copy_from_slice(&bytes[bytes.len().saturating_sub(k)..]);
        let tbs = &self.cert.tbs_certificate;
        let sha256 = AlgorithmIdentifierOwned {
            oid: SHA256,
            parameters: None,
        };
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer.clone(),
                serial_number: tbs.serial_number.clone(),
            }),
            digest_alg: sha256.clone(),
            signed_attrs: Some(prepared.attributes.clone()),
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(Any::null()),
            },
            signature: OctetString::new(signature).map_err(failed)?,
            unsigned_attrs: None,
        };
        let certificates = if cert_req {
            Some(CertificateSet(
                SetOfVec::try_from(vec![CertificateChoices::Certificate(self.cert.clone())])
                    .map_err(failed)?,
            ))
        } else {
            None
        };
        let signed = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(failed)?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: CT_TST_INFO,
                econtent: Some(
                    Any::encode_from(&OctetString::new(prepared.tst_info.clone()).map_err(failed)?)
                        .map_err(failed)?,
                ),
            },
            certificates,
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(failed)?),
        };
        let resp = TimeStampResp {
            status: PkiStatusInfo {
                status: 0,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(ContentInfo {
                content_type: SIGNED_DATA,
                content: Any::encode_from(&signed).map_err(failed)?,
            }),
        };
        resp.to_der().map_err(failed)
    }
}
