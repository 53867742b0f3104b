//! The trust anchor and the tree head signature: BLS over BLS12-381, the
//! IETF ciphersuite `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_`, public
//! keys in G1 (48 bytes compressed), signatures in G2 (96 bytes compressed),
//! all of it `blst`'s `min_pk`.

use blst::min_pk::{PublicKey, Signature};
use blst::BLST_ERROR;
use core::fmt;

/// The ciphersuite's domain separation tag.
const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";
/// The trust anchor's text prefix (`belfry1:<96 hex>`).
const ANCHOR_PREFIX: &str = "belfry1:";

/// Whether `key` is a compressed G1 point in the subgroup, as belfry reads
/// a receipt's key (`format`). The point at infinity reads (it fails
/// `signature`, as in belfry); the anchor itself may not be it.
pub(crate) fn is_public_key(key: &[u8]) -> bool {
    match PublicKey::from_bytes(key) {
        Ok(pk) => matches!(pk.validate(), Ok(()) | Err(BLST_ERROR::BLST_PK_IS_INFINITY)),
        Err(_) => false,
    }
}

/// A cluster's trust anchor: its group public key, checked once.
#[derive(Clone, Copy)]
pub struct TrustAnchor {
    bytes: [u8; 48],
    key: PublicKey,
}

/// A trust anchor that does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorError {
    /// Not `belfry1:` followed by 96 hex digits.
    Text,
    /// Not a G1 point in the subgroup, or the point at infinity.
    Key,
}

impl fmt::Display for AnchorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnchorError::Text => "a trust anchor is belfry1: followed by 96 hex digits",
            AnchorError::Key => "the trust anchor is not a valid BLS12-381 G1 public key",
        })
    }
}

impl TrustAnchor {
    /// The anchor of a 48-byte compressed group public key.
    pub fn from_bytes(bytes: [u8; 48]) -> Result<TrustAnchor, AnchorError> {
        let key = PublicKey::key_validate(&bytes).map_err(|_| AnchorError::Key)?;
        Ok(TrustAnchor { bytes, key })
    }

    /// Reads `belfry1:<96 hex>` (either case).
    pub fn parse(text: &str) -> Result<TrustAnchor, AnchorError> {
        let hex = text
            .strip_prefix(ANCHOR_PREFIX)
            .ok_or(AnchorError::Text)?
            .as_bytes();
        if hex.len() != 96 {
            return Err(AnchorError::Text);
        }
        let mut bytes = [0u8; 48];
        for (b, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *b = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Self::from_bytes(bytes)
    }

    /// The group public key.
    pub fn as_bytes(&self) -> &[u8; 48] {
        &self.bytes
    }

    /// Whether `signature` is a valid signature of `message` under the
    /// anchor: a G2 point in the subgroup, the pairing check done by blst.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 96]) -> bool {
        let Ok(sig) = Signature::from_bytes(signature) else {
            return false;
        };
        // The key was validated when the anchor was made.
        sig.verify(true, message, DST, &[], &self.key, false) == BLST_ERROR::BLST_SUCCESS
    }
}

impl fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ANCHOR_PREFIX)?;
        self.bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn nibble(c: u8) -> Result<u8, AnchorError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(AnchorError::Text),
    }
}
