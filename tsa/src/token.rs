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

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The serial number: the log index of the entry holding
    /// [`log_digest`] of the imprint and nonce.
    pub serial: u64,
    /// genTime in microseconds since the epoch.
    pub gen_time_us: u64,
    /// The stamped SHA-256 imprint.
    pub imprint: [u8; 32],
    /// The `MessageImprint`'s DER (what the log digest binds).
    pub message_imprint_der: Vec<u8>,
    /// The stated accuracy in microseconds (0: none stated).
    pub accuracy_us: u64,
    /// The policy, dotted.
    pub policy: String,
    /// The nonce's DER content octets, if any.
    pub nonce: Option<Vec<u8>>,
}

/// Why a token does not verify; each names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a response, or not granted.
    #[error("response: {0}")]
    Response(String),
    /// The token's structure.
    #[error("token: {0}")]
    Token(String),
    /// The signed attributes do not bind this TSTInfo or certificate.
    #[error("signed attributes: {0}")]
    Attributes(String),
    /// The RSA signature.
    #[error("signature: not the cluster's threshold RSA key's")]
    Signature,
    /// Not the imprint asked about.
    #[error("imprint: the token stamps {0}, not the data given")]
    Imprint(String),
}

/// Verifies a `TimeStampResp` (or a bare token, `ContentInfo`) against the
/// cluster's threshold key and certificate: granted, a SignedData of a
/// TSTInfo, messageDigest and the ESS certificate hash bound, the RSA
/// signature over the DER SET OF attributes.
pub fn verify(bytes: &[u8], authority: &Authority) -> Result<VerifiedToken, TokenError> {
    let bare = TimeStampResp::from_der(bytes).is_err();
    let content = match TimeStampResp::from_der(bytes) {
        Ok(resp) => {
            // DER is one encoding: what does not re-encode to the same bytes
            // (an unsorted SET OF, say) is refused, so the signature is
            // checked over exactly the bytes received.
            if resp.to_der().ok().as_deref() != Some(bytes) {
                return Err(TokenError::Response("not canonical DER".into()));
            }
            if resp.status.status > 1 {
                return Err(TokenError::Response(format!(
                    "status {} ({})",
                    resp.status.status,
                    resp.status.status_string.unwrap_or_default().join("; ")
                )));
            }
            resp.time_stamp_token
                .ok_or_else(|| TokenError::Response("granted without a token".into()))?
        }
        Err(_) => ContentInfo::from_der(bytes).map_err(|e| {
            TokenError::Response(format!("neither a TimeStampResp nor a token: {e}"))
        })?,
    };
    let token = |m: String| TokenError::Token(m);
    if content.content_type != SIGNED_DATA {
        return Err(token("not a SignedData".into()));
    }
    let signed: SignedData = content
        .content
        .decode_as()
        .map_err(|e| token(e.to_string()))?;
    if signed.encap_content_info.econtent_type != CT_TST_INFO {
        return Err(token("content is not a TSTInfo".into()));
    }
    let econtent = signed
        .encap_content_info
        .econtent
        .ok_or_else(|| token("no content".into()))?;
    let tst_der: OctetString = econtent.decode_as().map_err(|e| token(e.to_string()))?;
    let tst = TstInfo::from_der(tst_der.as_bytes()).map_err(|e| token(format!("TSTInfo: {e}")))?;
    if tst_der.as_bytes() != tst.to_der().map_err(|e| token(e.to_string()))?.as_slice() {
        return Err(token("TSTInfo is not canonical DER".into()));
    }
    if tst.version != 1 || tst.policy != authority.policy {
        return Err(token(
            "not a version 1 TSTInfo under this authority's policy".into(),
        ));
    }
    let [signer] = signed.signer_infos.0.as_slice() else {
        return Err(token("not exactly one signer".into()));
    };
    let tbs = &authority.cert.tbs_certificate;
    let ours = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: tbs.issuer.clone(),
        serial_number: tbs.serial_number.clone(),
    });
    if signer.sid != ours {
        return Err(token(
            "the signer is not this authority's certificate".into(),
        ));
    }
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| TokenError::Attributes("none".into()))?;
    let find = |oid: ObjectIdentifier| -> Result<&Any, TokenError> {
        let a = attrs
            .iter()
            .find(|a| a.oid == oid)
            .ok_or_else(|| TokenError::Attributes(format!("no {oid}")))?;
        match a.values.as_slice() {
            [v] => Ok(v),
            _ => Err(TokenError::Attributes(format!("{oid} not single-valued"))),
        }
    };
    let content_type: ObjectIdentifier = find(CONTENT_TYPE)?
        .decode_as()
        .map_err(|e| TokenError::Attributes(e.to_string()))?;
    if content_type != CT_TST_INFO {
        return Err(TokenError::Attributes(
            "contentType is not id-ct-TSTInfo".into(),
        ));
    }
    let digest: OctetString = find(MESSAGE_DIGEST)?
        .decode_as()
        .map_err(|e| TokenError::Attributes(e.to_string()))?;
    if digest.as_bytes() != Sha256::digest(tst_der.as_bytes()).as_slice() {
        return Err(TokenError::Attributes(
            "messageDigest is not the TSTInfo's".into(),
        ));
    }
    let ess: SigningCertificateV2 = find(SIGNING_CERTIFICATE_V2)?
        .decode_as()
        .map_err(|e| TokenError::Attributes(e.to_string()))?;
    if ess.certs.first().map(|c| c.cert_hash.as_bytes())
        != Some(Sha256::digest(&authority.cert_der).as_slice())
    {
        return Err(TokenError::Attributes(
            "signingCertificateV2 names another certificate".into(),
        ));
    }
    let signed_der = attrs
        .to_der()
        .map_err(|e| TokenError::Attributes(e.to_string()))?;
    let x = pkcs1_sha256(
        &Sha256::digest(&signed_der).into(),
        authority.public.modulus_len(),
    );
    let y = BigUint::from_bytes_be(signer.signature.as_bytes());
    if !authority.public.verify(&x, &y) {
        return Err(TokenError::Signature);
    }
    // Every byte outside the signature — the status, the algorithm
    // identifiers, the certificate carried, unsigned attributes — must be
    // what this authority writes: the token is rebuilt from what was signed
    // and compared whole.
    let prepared = Prepared {
        tst_info: tst_der.as_bytes().to_vec(),
        attributes: attrs.clone(),
        message: x,
    };
    let rebuilt = authority
        .response(&prepared, &y, signed.certificates.is_some())
        .map_err(|r| token(r.text))?;
    let expected = if bare {
        TimeStampResp::from_der(&rebuilt)
            .ok()
            .and_then(|r| r.time_stamp_token)
            .and_then(|t| t.to_der().ok())
            .unwrap_or_default()
    } else {
        rebuilt
    };
    if expected != bytes {
        return Err(token(
            "a field outside the signature is not as this authority writes it".into(),
        ));
    }
    let imprint = <[u8; 32]>::try_from(tst.message_imprint.hashed_message.as_bytes())
        .map_err(|_| token("imprint is not 32 bytes".into()))?;
    let serial = tst.serial_number.as_bytes();
    if serial.len() > 8 {
        return Err(token("serial number beyond a log index".into()));
    }
    Ok(VerifiedToken {
        serial: serial.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
        gen_time_us: tst.gen_time.0,
        imprint,
        message_imprint_der: tst
            .message_imprint
            .to_der()
            .map_err(|e| token(e.to_string()))?,
        accuracy_us: tst.accuracy.map(|a| a.to_micros()).unwrap_or(0),
        policy: tst.policy.to_dotted().unwrap_or_default(),
        nonce: tst.nonce.map(|n| n.as_bytes().to_vec()),
    })
}

impl VerifiedToken {
    /// The digest its entry holds ([`log_digest`]).
    pub fn log_digest(&self) -> [u8; 32] {
        log_digest(&self.message_imprint_der, self.nonce.as_deref())
    }
}

/// Checks a verified token's imprint against the data's SHA-256.
pub fn check_imprint(token: &VerifiedToken, data_sha256: &[u8; 32]) -> Result<(), TokenError> {
    if &token.imprint != data_sha256 {
        return Err(TokenError::Imprint(hex::encode(token.imprint)));
    }
    Ok(())
}
