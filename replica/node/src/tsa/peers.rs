//! Who may ask this replica for a signature share: the other replicas only.
//! A share request is signed with the asking replica's TLS key and checked
//! against its certificate in `cluster.toml` (the keys the QUIC mesh already
//! pins), so nobody outside the cluster can make a replica spend a share's
//! CPU; and each replica has a bounded number of requests in flight here, so
//! a Byzantine one cannot take every signing slot.

use belfry_client::ReplicaEndpoint;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING, ED25519,
};
use rustls::pki_types::PrivateKeyDer;
use std::sync::Mutex;

use crate::tls::Identity;

/// What a share request's signature covers, before the request's bytes.
const DOMAIN: &[u8] = b"belfry-tsa-share-request-v1\x00";
/// Requests one replica may have in flight here (waiting or signing).
pub const PER_PEER_IN_FLIGHT: usize = 16;

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// This replica's signing key and every replica's verifying key.
pub struct PeerAuth {
    signer: Signer,
    rng: SystemRandom,
    keys: Vec<Option<(&'static dyn VerificationAlgorithm, Vec<u8>)>>,
    in_flight: Mutex<Vec<usize>>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerAuth({} replicas)", self.keys.len())
    }
}

/// A slot of a peer's in-flight requests, given back on drop.
pub struct Slot<'a> {
    auth: &'a PeerAuth,
    peer: usize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .auth
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(self.peer) {
            *c = c.saturating_sub(1);
        }
    }
}

const EC_PUBLIC_KEY: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ID_ED25519: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.101.112");

impl PeerAuth {
    /// From this replica's TLS identity and the cluster's certificates
    /// (ECDSA P-256 or Ed25519 keys, as `belfry keygen` and the ceremony
    /// make them).
    pub fn new(
        identity: &Identity,
        replicas: &[Option<ReplicaEndpoint>],
    ) -> Result<PeerAuth, String> {
        let PrivateKeyDer::Pkcs8(pkcs8) = identity.key.as_ref() else {
            return Err("the TLS key is not PKCS#8".into());
        };
        let rng = SystemRandom::new();
        let signer = match EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        ) {
            Ok(k) => Signer::Ecdsa(k),
            Err(_) => Signer::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
                    .map_err(|_| "the TLS key is neither ECDSA P-256 nor Ed25519")?,
            ),
        };
        let keys = replicas
            .iter()
            .map(|r| {
                use der::Decode as _;
                // An absent replica (docs/keys.md) asks for nothing.
                let r = r.as_ref()?;
                let cert = x509_cert::Certificate::from_der(r.certificate.as_ref()).ok()?;
                let spki = cert.tbs_certificate.subject_public_key_info;
                let alg: &'static dyn VerificationAlgorithm = if spki.algorithm.oid == EC_PUBLIC_KEY
                {
                    &ECDSA_P256_SHA256_ASN1
                } else if spki.algorithm.oid == ID_ED25519 {
                    &ED25519
                } else {
                    return None;
                };
                Some((alg, spki.subject_public_key.raw_bytes().to_vec()))
            })
            .collect::<Vec<_>>();
        let auth = PeerAuth {
            signer,
            rng,
            in_flight: Mutex::new(vec![0; keys.len()]),
            keys,
        };
        Ok(auth)
    }

    /// Signs a share request's bytes.
    pub fn sign(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let msg = [DOMAIN, body].concat();
        match &self.signer {
            Signer::Ecdsa(k) => k
                .sign(&self.rng, &msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing a share request failed".into()),
            Signer::Ed25519(k) => Ok(k.sign(&msg).as_ref().to_vec()),
        }
    }

    /// Whether `sig` is replica `peer`'s signature on `body`.
    pub fn verify(&self, peer: usize, body: &[u8], sig: &[u8]) -> bool {
        let Some(Some((alg, key))) = self.keys.get(peer) else {
            return false;
        };
        let msg = [DOMAIN, body].concat();
        UnparsedPublicKey::new(*alg, key).verify(&msg, sig).is_ok()
    }

    /// One of `peer`'s in-flight slots, or `None` when it has them all.
    pub fn slot(&self, peer: usize) -> Option<Slot<'_>> {
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let c = counts.get_mut(peer)?;
        if *c >= PER_PEER_IN_FLIGHT {
            return None;
        }
        *c += 1;
        Some(Slot { auth: self, peer })
    }
}
