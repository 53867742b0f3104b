//! The threshold common coin of docs/design.md §3.4.

use crate::cluster::ClusterId;
use crate::collector::{ShareFault, SignatureCollector};
use crate::crypto::{CryptoError, GroupSignature, SignatureShare, ThresholdCrypto};
use crate::message::{CoinMessage, SignedMessage, Wave};
use crate::{sha3, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `coin_w = SHA3-256(σ_w)`: 32 bytes nobody could predict before `f + 1`
/// replicas released their shares for wave `w`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CoinValue(pub [u8; 32]);

impl fmt::Debug for CoinValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoinValue({})", hex::encode(self.0))
    }
}

impl CoinValue {
    /// The coin of a group signature.
    pub fn of(signature: &GroupSignature) -> CoinValue {
        CoinValue(sha3(&[&signature.0]))
    }

    /// The wave leader: `u64::from_be_bytes(coin[0..8]) mod n` (`n >= 1`).
    pub fn leader(&self, n: usize) -> ReplicaId {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        let n = n.max(1) as u64;
        // n <= u16::MAX, so the remainder fits.
        ReplicaId((u64::from_be_bytes(head) % n) as u16)
    }

    /// The tie-break of `digest` under this coin (docs/design.md §3.5):
    /// `SHA3-256("belfry-tie-v1" || coin || digest)`.
    pub fn tie(&self, digest: &[u8; 32]) -> [u8; 32] {
        sha3(&[b"belfry-tie-v1", &self.0, digest])
    }
}

/// A revealed coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coin {
    /// Its wave.
    pub wave: Wave,
    /// `σ_w`, the group signature on the wave's coin message (carried in the
    /// wave's Tick so anyone can audit the coin).
    pub signature: GroupSignature,
    /// `SHA3-256(σ_w)`.
    pub value: CoinValue,
}

impl Coin {
    /// Checks a claimed `σ_w` (from a Tick or a catching-up peer) and builds
    /// the coin from it.
    pub fn from_signature(
        crypto: &dyn ThresholdCrypto,
        cluster_id: ClusterId,
        wave: Wave,
        signature: GroupSignature,
    ) -> Option<Coin> {
        let message = CoinMessage { cluster_id, wave }.signing_bytes();
        crypto
            .for_wave(wave)
            .verify_group(&message, &signature)
            .then(|| Coin {
                wave,
                signature,
                value: CoinValue::of(&signature),
            })
    }
}

/// The result of handling a coin share: the coin it revealed, if it did
/// (the output), and the faulty shares found. The coin sends nothing.
pub type CoinStep = belfry_step::Step<Coin, belfry_step::Never, ShareFault>;

/// The common coin of one replica: a share collector per wave and the revealed
/// coins. Which waves it accepts shares for is the caller's policy (the DAG
/// accepts only waves within `round_window / 4` of its own, docs/design.md §3.9); the
/// coin only forgets waves it is told to prune.
#[derive(Clone, Debug)]
pub struct CommonCoin {
    cluster_id: ClusterId,
    n: usize,
    f: usize,
    collectors: BTreeMap<Wave, SignatureCollector>,
    coins: BTreeMap<Wave, Coin>,
}

impl CommonCoin {
    /// A coin for the given cluster.
    pub fn new(cluster_id: ClusterId, n: usize, f: usize) -> Self {
        CommonCoin {
            cluster_id,
            n,
            f,
            collectors: BTreeMap::new(),
            coins: BTreeMap::new(),
        }
    }

    /// The coin message of `wave`.
    pub fn message(&self, wave: Wave) -> CoinMessage {
        CoinMessage {
            cluster_id: self.cluster_id,
            wave,
        }
    }

    /// This replica's share for `wave`.
    pub fn own_share(
        &self,
        crypto: &dyn ThresholdCrypto,
        wave: Wave,
    ) -> Result<SignatureShare, CryptoError> {
        crypto
            .for_wave(wave)
            .sign_share(&self.message(wave).signing_bytes())
    }

    /// Handles `from`'s share for `wave`.
    pub fn handle_share(
        &mut self,
        crypto: &dyn ThresholdCrypto,
        from: ReplicaId,
        wave: Wave,
        share: SignatureShare,
    ) -> CoinStep {
        if self.coins.contains_key(&wave) {
            return CoinStep::default();
        }
        let message = self.message(wave);
        let (n, f) = (self.n, self.f);
        let collector = self
            .collectors
            .entry(wave)
            .or_insert_with(|| SignatureCollector::new(&message, n, f));
        let step = collector.add(crypto.for_wave(wave), from, share).map(
            |signature| Coin {
                wave,
                signature,
                value: CoinValue::of(&signature),
            },
            belfry_step::never,
            |f| f,
        );
        if let Some(c) = step.output.first() {
            self.collectors.remove(&wave);
            self.coins.insert(wave, *c);
        }
        step
    }

    /// Installs a coin verified elsewhere (e.g. from a signed Tick).
    pub fn insert(&mut self, coin: Coin) {
        self.collectors.remove(&coin.wave);
        self.coins.insert(coin.wave, coin);
    }

    /// The revealed coin of `wave`, if any.
    pub fn coin(&self, wave: Wave) -> Option<&Coin> {
        self.coins.get(&wave)
    }

    /// The revealed coins held, by wave.
    pub fn coins(&self) -> impl Iterator<Item = &Coin> {
        self.coins.values()
    }

    /// Forgets collectors and coins of waves below `wave`.
    pub fn prune_below(&mut self, wave: Wave) {
        self.collectors = self.collectors.split_off(&wave);
        self.coins = self.coins.split_off(&wave);
    }

    /// Number of waves with an open collector (for memory accounting).
    pub fn open_waves(&self) -> usize {
        self.collectors.len()
    }
}
