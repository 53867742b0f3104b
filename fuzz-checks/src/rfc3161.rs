//! The RFC 3161 authority's decoders (docs/rfc3161.md):
//!
//! - `rfc3161_request`: any bytes as a `TimeStampReq` — refused with a
//!   failure bit, or accepted as a request whose canonical DER is accepted as
//!   the same request (same log digest), and whose TSTInfo is built.
//! - `rfc3161_token`: a real token with bytes flipped (as `receipt_tamper`
//!   does) — `token::verify` never accepts a changed token.
//! - `tsa_share`: any bytes as a peer's share answer — what decodes
//!   re-encodes to the same value, and a share whose proof passes carries
//!   the replica's true share value.
//!
//! The authority is a 2048-bit key dealt from a fixed seed, once.

use belfry_node::tsa::share;
use belfry_tsa::asn1::TimeStampReq;
use belfry_tsa::{token, Authority, KeyShare};
use der::{Decode, Encode};
use rand::SeedableRng;
use std::sync::OnceLock;

/// The fixed authority, a request it accepted, and the token it made.
pub struct Fixture {
    /// The authority (2048 bits, 4 replicas, threshold 2).
    pub authority: Authority,
    /// Its replicas' shares.
    pub shares: Vec<KeyShare>,
    /// A granted `TimeStampResp`.
    pub token: Vec<u8>,
    /// The message the token's signature is over.
    pub message: num_bigint::BigUint,
}

/// Dealt once.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3161);
        let dealt = belfry_tsa::deal(&mut rng, 2048, 4, 2, |_| {}).expect("deal");
        let (public, shares) = dealt.key_shares().expect("shares");
        let cert = belfry_tsa::cert::self_signed(&shares, "fuzz", [5; 16], 1_700_000_000, &mut rng)
            .expect("certificate");
        let authority =
            Authority::new(public, cert, token::DEFAULT_POLICY, 1_000_000).expect("authority");
        let request = authority
            .request(&seed_request())
            .expect("the seed request");
        let prepared = authority
            .prepare(&request, 42, 1_765_000_000_123_456)
            .expect("prepare");
        let y = belfry_tsa::sign_with(&[&shares[0], &shares[1]], &prepared.message, &mut rng)
            .expect("valid shares");
        let token = authority.response(&prepared, &y, true).expect("token");
        Fixture {
            authority,
            shares,
            token,
            message: prepared.message,
        }
    })
}

/// A request as `openssl ts -query -sha256 -cert` makes one (the seed of
/// the `rfc3161_request` corpus).
pub fn seed_request() -> Vec<u8> {
    // SEQUENCE { 1, MessageImprint { sha256 NULL, 32 bytes }, nonce, TRUE }
    let mut imprint = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    imprint.extend([0x5a; 32]);
    let mut body = vec![0x02, 0x01, 0x01];
    body.extend(imprint);
    body.extend([0x02, 0x08, 0x1c, 0x2b, 0x3a, 0x49, 0x58, 0x67, 0x76, 0x85]);
    body.extend([0x01, 0x01, 0xff]);
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// `rfc3161_request`.
pub fn rfc3161_request(data: &[u8]) {
    let f = fixture();
    let Ok(request) = f.authority.request(data) else {
        return;
    };
    // Accepted (DER, or BER the decoder tolerates, as an explicit DEFAULT
    // certReq FALSE): its canonical re-encoding is accepted as the same
    // request — same imprint, nonce, certReq and log digest.
    let decoded = TimeStampReq::from_der(data).expect("an accepted request decodes");
    let canonical = decoded.to_der().expect("re-encodes");
    assert_eq!(
        f.authority
            .request(&canonical)
            .expect("its DER is accepted"),
        request,
        "the re-encoded request means something else"
    );
    assert_eq!(
        request.log_digest(),
        f.authority.request(data).expect("again").log_digest()
    );
    let prepared = f
        .authority
        .prepare(&request, u64::MAX, 1_765_000_000_000_001)
        .expect("prepare");
    assert!(!prepared.tst_info.is_empty());
}

/// `rfc3161_token`.
pub fn rfc3161_token(data: &[u8]) {
    let f = fixture();
    let mut bytes = f.token.clone();
    for flip in data.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([flip[0], flip[1]])) % bytes.len();
        bytes[at] ^= flip[2];
    }
    let verdict = token::verify(&bytes, &f.authority);
    if bytes == f.token {
        assert!(verdict.is_ok(), "the fixture's token stopped verifying");
    } else {
        assert!(verdict.is_err(), "a changed token verifies");
    }
}

/// `tsa_share`.
pub fn tsa_share(data: &[u8]) {
    let Ok(s) = share::decode(data) else {
        return;
    };
    let again = share::encode(&s);
    // Leading zero bytes of the numbers are not kept: compare decoded values.
    assert_eq!(share::decode(&again).expect("re-decodes"), s);
    let f = fixture();
    if f.authority.public().verify_share(&f.message, &s) {
        // A proof that passes is of the replica's one true share value
        // (the value is a function of the key; only the proof is random).
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
        let honest = f.shares[s.replica]
            .sign(&f.message, &mut rng)
            .expect("sign");
        assert_eq!(
            s.value, honest.value,
            "a wrong share value passed its proof"
        );
    }
}
