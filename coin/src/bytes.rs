//! Serde for fixed-size byte arrays longer than serde's built-in 32: hex in
//! human-readable formats (JSON, TOML), raw bytes in binary ones (postcard).
//!
//! Use as `#[serde(with = "belfry_coin::bytes")]` on a `[u8; N]` field.

use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Serializes `[u8; N]`.
pub fn serialize<const N: usize, S: Serializer>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(v))
    } else {
        s.serialize_bytes(v)
    }
}

struct ArrayVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes (or {} hex digits)", 2 * N)
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<[u8; N], E> {
        let bytes = hex::decode(v).map_err(E::custom)?;
        self.visit_bytes(&bytes)
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; N], E> {
        <[u8; N]>::try_from(v).map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
        let mut out = [0u8; N];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(A::Error::invalid_length(N + 1, &self));
        }
        Ok(out)
    }
}

/// Deserializes `[u8; N]`, rejecting any other length.
pub fn deserialize<'de, const N: usize, D: Deserializer<'de>>(d: D) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        d.deserialize_str(ArrayVisitor::<N>)
    } else {
        d.deserialize_bytes(ArrayVisitor::<N>)
    }
}
