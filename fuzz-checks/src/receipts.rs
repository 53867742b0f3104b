//! Receipts, binary and JSON, direct (version 1, docs/design.md §3.7) and
//! aggregated (version 2, docs/gateway.md).
//!
//! - The binary form round-trips byte for byte: bytes that parse re-encode
//!   to exactly those bytes (every field is fixed-width or counted, so there
//!   is one encoding per receipt).
//! - The JSON form round-trips by value (whitespace and key order are free):
//!   text that parses re-encodes, to JSON and to binary, to the same
//!   receipt.
//! - Nothing verifies under the test vectors' trust anchor but what the
//!   vectors prove: a receipt that verifies proves a (digest, entry, index,
//!   tree size, time) that one of the vectors' valid receipts proves.
//! - A changed direct receipt never verifies; a changed aggregated receipt
//!   verifies only if it still proves exactly what the original proves (a
//!   gateway step's tree size is not bound, docs/gateway.md: the vectors
//!   show it).

use belfry_timestamp::coin::TrustAnchor;
use belfry_timestamp::{AnyReceipt, Verified};
use std::sync::OnceLock;

const RECEIPT_VECTORS: &str = include_str!("../../testdata/vectors/receipt.json");
const AGGREGATED_VECTORS: &str = include_str!("../../testdata/vectors/aggregated.json");

/// The valid receipts of the test vectors, with what each proves.
pub struct Known {
    /// The trust anchor they verify under.
    pub anchor: TrustAnchor,
    /// Binary form, parsed receipt, and what it proves.
    pub receipts: Vec<(Vec<u8>, AnyReceipt, Proves)>,
    /// The JSON forms (text).
    pub json: Vec<String>,
}

/// What a verified receipt proves: the client's digest (none for a Tick)
/// and what the cluster's receipt proves.
pub type Proves = (Option<[u8; 32]>, Verified);

fn hex_field(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string in the vectors")).expect("hex in the vectors")
}

/// The vectors' valid receipts (parsed once).
pub fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let direct: serde_json::Value =
            serde_json::from_str(RECEIPT_VECTORS).expect("receipt.json");
        let aggregated: serde_json::Value =
            serde_json::from_str(AGGREGATED_VECTORS).expect("aggregated.json");
        let anchor: TrustAnchor = direct["trust_anchor"]
            .as_str()
            .expect("trust_anchor")
            .parse()
            .expect("a trust anchor");
        let mut binaries = vec![hex_field(&direct["binary_hex"])];
        let mut json = vec![direct["json"].to_string()];
        for p in aggregated["positive"].as_array().expect("positive cases") {
            binaries.push(hex_field(&p["binary_hex"]));
            json.push(p["json"].to_string());
        }
        let receipts = binaries
            .into_iter()
            .map(|b| {
                let r = AnyReceipt::from_binary(&b).expect("a vector receipt parses");
                let v = r.verify(&anchor).expect("a vector receipt verifies");
                let proves = (r.digest(), v);
                (b, r, proves)
            })
            .collect();
        Known {
            anchor,
            receipts,
            json,
        }
    })
}

/// A receipt that verifies under the vectors' anchor proves what a vector
/// proves.
fn verifies_only_as_known(r: &AnyReceipt) {
    let k = known();
    if let Ok(v) = r.verify(&k.anchor) {
        let proves = (r.digest(), v);
        assert!(
            k.receipts.iter().any(|(_, _, p)| *p == proves),
            "a receipt the vectors do not hold verifies: {proves:?}"
        );
    }
}

/// The binary form, either version.
pub fn receipt_binary(data: &[u8]) {
    let Ok(r) = AnyReceipt::from_binary(data) else {
        return;
    };
    assert_eq!(r.to_binary(), data, "binary receipt does not round-trip");
    if let AnyReceipt::Direct(d) = &r {
        assert_eq!(belfry_timestamp::Receipt::from_binary(data).as_ref(), Ok(d));
    }
    let text = r.to_json_value().to_string();
    assert_eq!(
        AnyReceipt::from_json_str(&text).as_ref(),
        Ok(&r),
        "binary → JSON → receipt changed it"
    );
    verifies_only_as_known(&r);
}

/// The JSON form, either version.
pub fn receipt_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = AnyReceipt::from_json_str(text) else {
        return;
    };
    let again = r.to_json_value().to_string();
    assert_eq!(
        AnyReceipt::from_json_str(&again).as_ref(),
        Ok(&r),
        "JSON receipt does not round-trip"
    );
    assert_eq!(
        AnyReceipt::from_binary(&r.to_binary()).as_ref(),
        Ok(&r),
        "JSON → binary → receipt changed it"
    );
    verifies_only_as_known(&r);
}

/// Changes one of the vectors' valid receipts and requires that the change
/// is refused. Input: `which u8`, then `(offset u16, xor u8)` triples applied
/// to that receipt's binary form (`which` even) or JSON text (`which` odd).
pub fn receipt_tamper(data: &[u8]) {
    let k = known();
    let Some((&which, flips)) = data.split_first() else {
        return;
    };
    let i = usize::from(which / 2) % k.receipts.len();
    let (binary, original, proves) = &k.receipts[i];
    let mut bytes = if which % 2 == 0 {
        binary.clone()
    } else {
        k.json[i].clone().into_bytes()
    };
    for flip in flips.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([flip[0], flip[1]])) % bytes.len();
        bytes[at] ^= flip[2];
    }
    let parsed = if which % 2 == 0 {
        AnyReceipt::from_binary(&bytes)
    } else {
        match std::str::from_utf8(&bytes) {
            Ok(text) => AnyReceipt::from_json_str(text),
            Err(_) => return,
        }
    };
    let Ok(r) = parsed else { return };
    if r == *original {
        // Flips that cancel out, or JSON whitespace: the same receipt.
        assert!(
            r.verify(&k.anchor).is_ok(),
            "a vector receipt stopped verifying"
        );
        return;
    }
    let Ok(v) = r.verify(&k.anchor) else { return };
    match r {
        AnyReceipt::Direct(_) => panic!("a changed direct receipt verifies: {r:?}"),
        AnyReceipt::Aggregated(_) => assert_eq!(
            (r.digest(), v),
            *proves,
            "a changed aggregated receipt verifies and proves something else"
        ),
    }
}
