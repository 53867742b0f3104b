//! Verifying a token as any RFC 3161 client would: the CMS structure, the
//! signed attributes, the signature against the authority's certificate,
//! and what the `TSTInfo` says.

use super::*;

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
    let content = granted_token(bytes)?;
    if content.content_type != SIGNED_DATA {
        return Err(token_error("not a SignedData"));
    }
    let signed: SignedData = content
        .content
        .decode_as()
        .map_err(|e| token_error(e.to_string()))?;
    let (tst_der, tst) = tst_info(&signed, authority)?;
    let signer = authority_signer(&signed, authority)?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| TokenError::Attributes("none".into()))?;
    check_attributes(attrs, &tst_der, authority)?;
    let (x, y) = check_signature(attrs, signer, authority)?;
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
        .map_err(|r| token_error(r.text))?;
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
        return Err(token_error(
            "a field outside the signature is not as this authority writes it",
        ));
    }
    what_it_says(&tst)
}

/// A fault in the token's structure.
fn token_error(m: impl Into<String>) -> TokenError {
    TokenError::Token(m.into())
}

/// The token of a granted, canonical `TimeStampResp`, or the bare token.
fn granted_token(bytes: &[u8]) -> Result<ContentInfo, TokenError> {
    match TimeStampResp::from_der(bytes) {
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
                .ok_or_else(|| TokenError::Response("granted without a token".into()))
        }
        Err(_) => ContentInfo::from_der(bytes)
            .map_err(|e| TokenError::Response(format!("neither a TimeStampResp nor a token: {e}"))),
    }
}

/// The SignedData's canonical version 1 `TSTInfo` under the authority's
/// policy: its DER and its decoding.
fn tst_info(
    signed: &SignedData,
    authority: &Authority,
) -> Result<(OctetString, TstInfo), TokenError> {
    if signed.encap_content_info.econtent_type != CT_TST_INFO {
        return Err(token_error("content is not a TSTInfo"));
    }
    let econtent = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| token_error("no content"))?;
    let tst_der: OctetString = econtent
        .decode_as()
        .map_err(|e| token_error(e.to_string()))?;
    let tst =
        TstInfo::from_der(tst_der.as_bytes()).map_err(|e| token_error(format!("TSTInfo: {e}")))?;
    if tst_der.as_bytes()
        != tst
            .to_der()
            .map_err(|e| token_error(e.to_string()))?
            .as_slice()
    {
        return Err(token_error("TSTInfo is not canonical DER"));
    }
    if tst.version != 1 || tst.policy != authority.policy {
        return Err(token_error(
            "not a version 1 TSTInfo under this authority's policy",
        ));
    }
    Ok((tst_der, tst))
}

/// The one signer, which must be the authority's certificate.
fn authority_signer<'a>(
    signed: &'a SignedData,
    authority: &Authority,
) -> Result<&'a SignerInfo, TokenError> {
    let [signer] = signed.signer_infos.0.as_slice() else {
        return Err(token_error("not exactly one signer"));
    };
    let tbs = &authority.cert.tbs_certificate;
    let ours = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: tbs.issuer.clone(),
        serial_number: tbs.serial_number.clone(),
    });
    if signer.sid != ours {
        return Err(token_error(
            "the signer is not this authority's certificate",
        ));
    }
    Ok(signer)
}

/// The signed attributes bind this `TSTInfo` and the authority's
/// certificate.
fn check_attributes(
    attrs: &SetOfVec<Attribute>,
    tst_der: &OctetString,
    authority: &Authority,
) -> Result<(), TokenError> {
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
    Ok(())
}

/// The RSA signature over the DER SET OF attributes is the authority's:
/// the PKCS#1 message and the signature.
fn check_signature(
    attrs: &SetOfVec<Attribute>,
    signer: &SignerInfo,
    authority: &Authority,
) -> Result<(BigUint, BigUint), TokenError> {
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
    Ok((x, y))
}

/// What a verified `TSTInfo` says.
fn what_it_says(tst: &TstInfo) -> Result<VerifiedToken, TokenError> {
    let imprint = <[u8; 32]>::try_from(tst.message_imprint.hashed_message.as_bytes())
        .map_err(|_| token_error("imprint is not 32 bytes"))?;
    let serial = tst.serial_number.as_bytes();
    if serial.len() > 8 {
        return Err(token_error("serial number beyond a log index"));
    }
    Ok(VerifiedToken {
        serial: serial.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
        gen_time_us: tst.gen_time.0,
        imprint,
        message_imprint_der: tst
            .message_imprint
            .to_der()
            .map_err(|e| token_error(e.to_string()))?,
        accuracy_us: tst.accuracy.as_ref().map(|a| a.to_micros()).unwrap_or(0),
        policy: tst.policy.to_dotted().unwrap_or_default(),
        nonce: tst.nonce.as_ref().map(|n| n.as_bytes().to_vec()),
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
