//! The RFC 3161 structures belfry reads and writes, declared here on `der`'s
//! derive (RFC 3161 §2.4, module `PKIXTSP`, implicit tags). Two types are our
//! own because the library ones cannot carry what RFC 3161 allows: an object
//! identifier with arcs above 2³² (`Oid`, for the `2.25.<uuid>` policy), and a
//! GeneralizedTime with fractional seconds (`GenTime`).

use cms::content_info::ContentInfo;
use der::asn1::{BitString, Int, OctetString, Uint};
use der::{DecodeValue, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag, Writer};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;

/// An OBJECT IDENTIFIER kept as its content octets (any arc size).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Oid(pub Vec<u8>);

impl Oid {
    /// Parses dotted decimal (`2.25.2349…`), arcs up to 128 bits.
    pub fn parse(dotted: &str) -> Option<Oid> {
        let arcs: Vec<u128> = dotted
            .split('.')
            .map(|a| a.parse().ok())
            .collect::<Option<Vec<u128>>>()?;
        let (&first, rest) = arcs.split_first()?;
        let (&second, rest) = rest.split_first()?;
        if first > 2 || (first < 2 && second > 39) {
            return None;
        }
        let mut out = Vec::new();
        let head = first.checked_mul(40)?.checked_add(second)?;
        for arc in std::iter::once(head).chain(rest.iter().copied()) {
            let mut groups = vec![(arc & 0x7f) as u8];
            let mut v = arc >> 7;
            while v > 0 {
                groups.push((v & 0x7f) as u8 | 0x80);
                v >>= 7;
            }
            out.extend(groups.iter().rev());
        }
        Some(Oid(out))
    }

    /// Dotted decimal, or `None` for octets that are not a canonical OID.
    pub fn to_dotted(&self) -> Option<String> {
        let mut arcs: Vec<u128> = Vec::new();
        let mut v: u128 = 0;
        let mut fresh = true;
        for &b in &self.0 {
            if fresh && b == 0x80 {
                return None; // non-minimal
            }
            if v.leading_zeros() < 7 {
                return None; // beyond 128 bits
            }
            v = (v << 7) | u128::from(b & 0x7f);
            fresh = b & 0x80 == 0;
            if fresh {
                arcs.push(v);
                v = 0;
            }
        }
        if !fresh || arcs.is_empty() {
            return None;
        }
        let first = arcs[0];
        let (a, b) = if first < 80 {
            (first / 40, first % 40)
        } else {
            (2, first - 80)
        };
        let mut s = format!("{a}.{b}");
        for arc in &arcs[1..] {
            s.push_str(&format!(".{arc}"));
        }
        Some(s)
    }
}

impl FixedTag for Oid {
    const TAG: Tag = Tag::ObjectIdentifier;
}

impl EncodeValue for Oid {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(&self.0)
    }
}

impl<'a> DecodeValue<'a> for Oid {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_vec(header.length)?;
        let oid = Oid(bytes);
        if oid.to_dotted().is_none() {
            return Err(Tag::ObjectIdentifier.value_error());
        }
        Ok(oid)
    }
}

/// A GeneralizedTime in microseconds since the Unix epoch, written
/// `YYYYMMDDhhmmss[.f…]Z` with the fraction's trailing zeros dropped (and no
/// point when it is zero), as DER requires (X.690 §11.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GenTime(pub u64);

impl GenTime {
    /// RFC 3339 in UTC with the fraction as written in the token
    /// (`2026-12-07T05:24:34.971002Z`).
    pub fn rfc3339(&self) -> String {
        match self.text() {
            Ok(t) => format!(
                "{}-{}-{}T{}:{}:{}{}",
                &t[0..4],
                &t[4..6],
                &t[6..8],
                &t[8..10],
                &t[10..12],
                &t[12..14],
                &t[14..]
            ),
            Err(_) => format!("{} µs after the epoch", self.0),
        }
    }

    fn text(&self) -> der::Result<String> {
        let secs = self.0 / 1_000_000;
        let micros = self.0 % 1_000_000;
        let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))?;
        let mut s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minutes(),
            dt.seconds()
        );
        if micros != 0 {
            let frac = format!("{micros:06}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        Ok(s)
    }

    fn parse(text: &[u8]) -> Option<GenTime> {
        let text = std::str::from_utf8(text).ok()?;
        let body = text.strip_suffix('Z')?;
        let (whole, frac) = match body.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (body, None),
        };
        if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let num = |r: std::ops::Range<usize>| whole.get(r)?.parse::<u16>().ok();
        let dt = der::DateTime::new(
            num(0..4)?,
            num(4..6)? as u8,
            num(6..8)? as u8,
            num(8..10)? as u8,
            num(10..12)? as u8,
            num(12..14)? as u8,
        )
        .ok()?;
        let mut micros = 0u64;
        if let Some(f) = frac {
            // DER: at least one digit, no trailing zero; belfry writes at
            // most six.
            if f.is_empty()
                || f.len() > 6
                || f.ends_with('0')
                || !f.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            micros = format!("{f:0<6}").parse().ok()?;
        }
        dt.unix_duration()
            .as_secs()
            .checked_mul(1_000_000)?
            .checked_add(micros)
            .map(GenTime)
    }
}

impl FixedTag for GenTime {
    const TAG: Tag = Tag::GeneralizedTime;
}

impl EncodeValue for GenTime {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.text()?.len())
    }
    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.text()?.as_bytes())
    }
}

impl<'a> DecodeValue<'a> for GenTime {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_vec(header.length)?;
        GenTime::parse(&bytes).ok_or_else(|| Tag::GeneralizedTime.value_error())
    }
}

/// `MessageImprint ::= SEQUENCE { hashAlgorithm, hashedMessage }`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct MessageImprint {
    /// The hash algorithm.
    pub hash_algorithm: AlgorithmIdentifierOwned,
    /// The hash of the data.
    pub hashed_message: OctetString,
}

/// `TimeStampReq` (RFC 3161 §2.4.1).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TimeStampReq {
    /// `v1(1)`.
    pub version: u8,
    /// What to stamp.
    pub message_imprint: MessageImprint,
    /// The policy the client asks for.
    #[asn1(optional = "true")]
    pub req_policy: Option<Oid>,
    /// Echoed in the token.
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    /// Whether the token should carry the TSA certificate.
    #[asn1(default = "Default::default")]
    pub cert_req: bool,
    /// Extensions (belfry accepts none).
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<x509_cert::ext::Extensions>,
}

/// `Accuracy` (RFC 3161 §2.4.2).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct Accuracy {
    /// Whole seconds.
    #[asn1(optional = "true")]
    pub seconds: Option<u64>,
    /// Milliseconds, 1..=999.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub millis: Option<u16>,
    /// Microseconds, 1..=999.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub micros: Option<u16>,
}

impl Accuracy {
    /// The accuracy of `us` microseconds, each part present only when not
    /// zero (`None` for zero).
    pub fn from_micros(us: u64) -> Option<Accuracy> {
        let nz = |v: u64| (v != 0).then_some(v);
        (us != 0).then(|| Accuracy {
            seconds: nz(us / 1_000_000),
            millis: nz(us / 1_000 % 1_000).map(|v| v as u16),
            micros: nz(us % 1_000).map(|v| v as u16),
        })
    }

    /// Back to microseconds.
    pub fn to_micros(&self) -> u64 {
        self.seconds
            .unwrap_or(0)
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(self.millis.unwrap_or(0)) * 1_000)
            .saturating_add(u64::from(self.micros.unwrap_or(0)))
    }
}

/// `TSTInfo` (RFC 3161 §2.4.2), with a fractional `genTime`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TstInfo {
    /// `v1(1)`.
    pub version: u8,
    /// The TSA's policy.
    pub policy: Oid,
    /// The request's imprint, unchanged.
    pub message_imprint: MessageImprint,
    /// The entry's log index.
    pub serial_number: Uint,
    /// The entry's witnessed time.
    pub gen_time: GenTime,
    /// How far `gen_time` may be from the true time.
    #[asn1(optional = "true")]
    pub accuracy: Option<Accuracy>,
    /// Whether tokens are ordered by `gen_time` alone.
    #[asn1(default = "Default::default")]
    pub ordering: bool,
    /// The request's nonce, unchanged.
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    /// The TSA's name (the certificate's subject).
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub tsa: Option<GeneralName>,
}

/// `PKIStatusInfo` (RFC 3161 §2.4.2, from RFC 4210).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct PkiStatusInfo {
    /// 0 granted, 2 rejection, 3 waiting, …
    pub status: u8,
    /// Free text, one UTF-8 string here.
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<String>>,
    /// Named failure bits.
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// `TimeStampResp` (RFC 3161 §2.4.2).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TimeStampResp {
    /// Granted or why not.
    pub status: PkiStatusInfo,
    /// The token when granted.
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<ContentInfo>,
}

/// `ESSCertIDv2` (RFC 5035) with the default hash (SHA-256) left out.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct EssCertIdV2 {
    /// SHA-256 of the whole DER certificate.
    pub cert_hash: OctetString,
    /// The certificate's issuer and serial.
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `IssuerSerial` (RFC 5035).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct IssuerSerial {
    /// The issuer as general names.
    pub issuer: Vec<GeneralName>,
    /// The serial number.
    pub serial_number: x509_cert::serial_number::SerialNumber,
}

/// `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2 }`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SigningCertificateV2 {
    /// The signer's certificate first.
    pub certs: Vec<EssCertIdV2>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip_and_huge_arcs_are_refused_not_wrapped() {
        let p = crate::token::DEFAULT_POLICY;
        assert_eq!(
            Oid::parse(p).and_then(|o| o.to_dotted()).as_deref(),
            Some(p)
        );
        assert_eq!(
            Oid::parse("1.2.840.113549.1.9.16.1.4").map(|o| o.0.len()),
            Some(11)
        );
        assert_eq!(
            Oid::parse("1.340282366920938463463374607431768211455"),
            None
        );
        assert_eq!(
            Oid::parse("2.340282366920938463463374607431768211455"),
            None
        );
        assert_eq!(Oid::parse("3.1"), None);
        assert_eq!(Oid::parse("1"), None);
        assert_eq!(Oid(vec![0x80, 0x01]).to_dotted(), None);
    }

    #[test]
    fn gen_time_writes_the_fraction_without_trailing_zeros() {
        let t = GenTime(1_765_000_000_123_400);
        assert_eq!(t.text().as_deref().ok(), Some("20251206054640.1234Z"));
        assert_eq!(GenTime::parse(b"20251206054640.1234Z"), Some(t));
        assert_eq!(
            GenTime(1_765_000_000_000_000).text().as_deref().ok(),
            Some("20251206054640Z")
        );
        assert_eq!(
            GenTime::parse(b"20251206054640.1230Z"),
            None,
            "trailing zero"
        );
        assert_eq!(GenTime::parse(b"20251206054640.Z"), None);
        assert_eq!(t.rfc3339(), "2025-12-06T05:46:40.1234Z");
    }
}
