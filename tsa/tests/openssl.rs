//! Tokens that `openssl ts -verify` accepts, signed by combining threshold
//! shares — and each change openssl must refuse, with its reason.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use belfry_tsa::{cert, token, Authority, KeyShare};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Fixture {
    shares: Vec<KeyShare>,
    authority: Authority,
}

/// An authority of 4 replicas (threshold 2) dealt from `seed`, its
/// certificate self-signed with the shares.
fn authority(seed: u64, bits: u32, accuracy_us: u64) -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let dealt = belfry_tsa::deal(&mut rng, bits, 4, 2, |_| {}).expect("deal");
    assert_eq!(dealt.public.n.bits(), u64::from(bits));
    let (public, shares) = dealt.key_shares().expect("shares");
    let der = cert::self_signed(&shares, "belfry TSA test", [7; 16], 1_700_000_000, &mut rng)
        .expect("certificate");
    let authority =
        Authority::new(public, der, token::DEFAULT_POLICY, accuracy_us).expect("authority");
    Fixture { shares, authority }
}

fn fixture() -> &'static Fixture {
    static KEY: OnceLock<Fixture> = OnceLock::new();
    KEY.get_or_init(|| authority(3161, 2048, 1_500))
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("Verification: OK"),
        text,
    )
}

/// openssl makes the request; shares from replicas `signers` answer it.
fn stamp(dir: &Path, data: &[u8], signers: &[usize], serial: u64, time_us: u64) -> Vec<u8> {
    let f = fixture();
    std::fs::write(dir.join("data"), data).expect("write data");
    std::fs::write(dir.join("tsa.pem"), cert::pem(f.authority.certificate())).expect("pem");
    let (_, text) = openssl(
        dir,
        &[
            "ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let req_der =
        std::fs::read(dir.join("req.tsq")).unwrap_or_else(|_| panic!("openssl ts -query: {text}"));
    let request = f.authority.request(&req_der).expect("request accepted");
    assert!(request.nonce.is_some() && request.cert_req);
    let prepared = f
        .authority
        .prepare(&request, serial, time_us)
        .expect("prepare");
    let mut rng = ChaCha20Rng::seed_from_u64(serial);
    let signers: Vec<&KeyShare> = signers.iter().map(|&i| &f.shares[i]).collect();
    let y = belfry_tsa::sign_with(&signers, &prepared.message, &mut rng).expect("valid shares");
    f.authority
        .response(&prepared, &y, request.cert_req)
        .expect("response")
}

fn verify(dir: &Path, resp: &[u8]) -> (bool, String) {
    std::fs::write(dir.join("resp.tsr"), resp).expect("write response");
    openssl(
        dir,
        &[
            "ts",
            "-verify",
            "-in",
            "resp.tsr",
            "-queryfile",
            "req.tsq",
            "-CAfile",
            "tsa.pem",
        ],
    )
}

#[test]
fn openssl_verifies_a_token_combined_from_any_two_of_four_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (signers, serial) in [([0, 1], 17u64), ([3, 1], 18), ([2, 0], 1 << 40)] {
        let resp = stamp(
            dir.path(),
            b"hello belfry\n",
            &signers,
            serial,
            1_765_000_000_123_400,
        );
        let (ok, text) = verify(dir.path(), &resp);
        assert!(ok, "shares {signers:?}: {text}");
        let v = token::verify(&resp, &fixture().authority).expect("belfry verifies it too");
        assert_eq!(v.serial, serial);
        assert_eq!(v.gen_time_us, 1_765_000_000_123_400);
        assert_eq!(v.accuracy_us, 1_500);
        let (_, text) = openssl(dir.path(), &["ts", "-reply", "-in", "resp.tsr", "-text"]);
        assert!(
            text.contains("Time stamp: Dec  6 05:46:40.1234 2025 GMT"),
            "{text}"
        );
        let printed = text
            .lines()
            .find_map(|l| l.strip_prefix("Serial number: 0x"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
        assert_eq!(printed, Some(serial), "{text}");
        assert!(
            text.contains("Accuracy: unspecified seconds, 0x01 millis, 0x01F4 micros"),
            "{text}"
        );
    }
}

#[test]
fn openssl_refuses_changed_data_time_signature_and_a_foreign_nonce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let resp = stamp(p, b"the original\n", &[0, 3], 5, 1_765_000_000_500_000);
    assert!(verify(p, &resp).0);

    // The data: openssl compares the imprint with the query file's.
    let good_req = std::fs::read(p.join("req.tsq")).expect("req");
    std::fs::write(p.join("data2"), b"the 0riginal\n").expect("write");
    let (ok, text) = openssl(
        p,
        &[
            "ts", "-verify", "-in", "resp.tsr", "-data", "data2", "-CAfile", "tsa.pem",
        ],
    );
    assert!(!ok && text.contains("message imprint mismatch"), "{text}");

    // genTime: one digit of the time changed inside the signed TSTInfo.
    let mut changed = resp.clone();
    let at = find(&changed, b"20251206054640.5Z").expect("genTime in the token");
    changed[at + 13] = b'1';
    let (ok, text) = verify(p, &changed);
    assert!(
        !ok && text.contains("message digest mismatch") || text.contains("signature failure"),
        "{text}"
    );
    assert!(token::verify(&changed, &fixture().authority).is_err());

    // The signature: its last byte.
    let mut changed = resp.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let (ok, text) = verify(p, &changed);
    assert!(!ok && text.contains("signature failure"), "{text}");
    assert_eq!(
        token::verify(&changed, &fixture().authority),
        Err(token::TokenError::Signature)
    );

    // A foreign nonce: another query (openssl draws a fresh nonce) against
    // this response.
    std::fs::write(p.join("req.tsq.good"), &good_req).expect("keep");
    let (_, text) = openssl(
        p,
        &[
            "ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    assert!(p.join("req.tsq").exists(), "{text}");
    let (ok, text) = verify(p, &resp);
    assert!(!ok && text.contains("nonce mismatch"), "{text}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn requests_belfry_does_not_serve_get_a_rejection_openssl_can_read() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("data"), b"x").expect("write");
    openssl(
        p,
        &[
            "ts",
            "-query",
            "-data",
            "data",
            "-sha512",
            "-out",
            "sha512.tsq",
        ],
    );
    let req = std::fs::read(p.join("sha512.tsq")).expect("query");
    let rejection = f.authority.request(&req).expect_err("sha512 refused");
    assert_eq!(rejection.failure, token::Failure::BadAlg);
    openssl(
        p,
        &[
            "ts",
            "-query",
            "-data",
            "data",
            "-sha256",
            "-tspolicy",
            "1.2.3.4",
            "-out",
            "policy.tsq",
        ],
    );
    let req = std::fs::read(p.join("policy.tsq")).expect("query");
    let rejection = f.authority.request(&req).expect_err("other policy refused");
    assert_eq!(rejection.failure, token::Failure::UnacceptedPolicy);
    assert_eq!(
        f.authority
            .request(b"\x30\x03\x02\x01\x01")
            .expect_err("garbage")
            .failure,
        token::Failure::BadDataFormat
    );
    std::fs::write(p.join("rej.tsr"), rejection.response()).expect("write");
    let (_, text) = openssl(p, &["ts", "-reply", "-in", "rej.tsr", "-text"]);
    assert!(
        text.contains("Status: Rejected") && text.contains("requested TSA policy is not supported"),
        "{text}"
    );
}

#[test]
fn a_3072_bit_authority_makes_tokens_openssl_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    // A fixed seed: dealing is a function of it (and this one finds its
    // safe primes quickly).
    let Fixture { shares, authority } = authority(3072, 3072, 1_000_000);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    std::fs::write(p.join("data"), b"three thousand and seventy-two bits\n").expect("write");
    std::fs::write(p.join("tsa.pem"), cert::pem(authority.certificate())).expect("pem");
    openssl(
        p,
        &[
            "ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let request = authority
        .request(&std::fs::read(p.join("req.tsq")).expect("req"))
        .expect("request");
    let prepared = authority
        .prepare(&request, 3072, 1_765_000_000_000_001)
        .expect("prepare");
    let y = belfry_tsa::sign_with(&[&shares[2], &shares[3]], &prepared.message, &mut rng)
        .expect("valid shares");
    let resp = authority.response(&prepared, &y, true).expect("response");
    let (ok, text) = verify(p, &resp);
    assert!(ok, "{text}");
    let (_, text) = openssl(p, &["ts", "-reply", "-in", "resp.tsr", "-text"]);
    assert!(
        text.contains("Time stamp: Dec  6 05:46:40.000001 2025 GMT"),
        "{text}"
    );
}

/// A request built here: SHA-256 of `data`, with these algorithm
/// parameters and nonce.
fn request_with(params: Option<der::Any>, nonce: u8) -> Vec<u8> {
    use belfry_tsa::asn1::{MessageImprint, TimeStampReq};
    use der::Encode;
    use sha2::Digest;
    TimeStampReq {
        version: 1,
        message_imprint: MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifierOwned {
                oid: token::SHA256,
                parameters: params,
            },
            hashed_message: der::asn1::OctetString::new(sha2::Sha256::digest(b"data").to_vec())
                .expect("octets"),
        },
        req_policy: None,
        nonce: Some(der::asn1::Int::new(&[nonce]).expect("nonce")),
        cert_req: false,
        extensions: None,
    }
    .to_der()
    .expect("der")
}

#[test]
fn every_byte_of_the_imprint_is_bound_to_one_log_entry() {
    let f = fixture();
    // Parameters other than absent or NULL are refused (openssl compares
    // no others), so no request can carry arbitrary bytes into a TSTInfo.
    let octets = der::Any::new(der::Tag::OctetString, vec![1, 2, 3]).expect("any");
    assert_eq!(
        f.authority
            .request(&request_with(Some(octets), 1))
            .expect_err("refused")
            .failure,
        token::Failure::BadAlg
    );
    // Absent and NULL parameters make different TSTInfos: different log
    // digests, so different entries and serial numbers.
    let absent = f.authority.request(&request_with(None, 1)).expect("absent");
    let null = f
        .authority
        .request(&request_with(Some(der::Any::null()), 1))
        .expect("NULL");
    assert_ne!(absent.log_digest(), null.log_digest());
    // The same request again is the same entry (a retry gets its token).
    let again = f.authority.request(&request_with(None, 1)).expect("again");
    assert_eq!(absent.log_digest(), again.log_digest());
    // Another nonce is another entry.
    let other = f
        .authority
        .request(&request_with(None, 2))
        .expect("other nonce");
    assert_ne!(absent.log_digest(), other.log_digest());
}

#[test]
fn a_token_changed_outside_its_signature_is_refused_too() {
    let f = fixture();
    let request = f
        .authority
        .request(&request_with(None, 9))
        .expect("request");
    let prepared = f
        .authority
        .prepare(&request, 77, 1_765_000_000_000_000)
        .expect("prepare");
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let y = belfry_tsa::sign_with(&[&f.shares[0], &f.shares[1]], &prepared.message, &mut rng)
        .expect("valid shares");
    let token_bytes = f.authority.response(&prepared, &y, true).expect("token");
    token::verify(&token_bytes, &f.authority).expect("the token verifies");
    // A byte of the embedded certificate (its body, past the header): not
    // signed by the token, yet not what the authority wrote.
    let cert = f.authority.certificate();
    let at = token_bytes
        .windows(cert.len())
        .position(|w| w == cert)
        .expect("the certificate is in the token");
    let mut changed = token_bytes.clone();
    changed[at + cert.len() / 2] ^= 0x01;
    assert!(matches!(
        token::verify(&changed, &f.authority),
        Err(token::TokenError::Token(_))
    ));
    // The status granted (0) made grantedWithMods (1).
    let mut changed = token_bytes.clone();
    let status = changed
        .windows(5)
        .position(|w| w == [0x30, 0x03, 0x02, 0x01, 0x00])
        .expect("status");
    changed[status + 4] = 0x01;
    assert!(token::verify(&changed, &f.authority).is_err());
}
