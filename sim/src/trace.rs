//! The run's trace: a rolling hash over every event and action, which
//! two runs of one seed must agree on.

use belfry_replica::coin::sha3;

/// The rolling trace over every event and action: two 64-bit multiply-rotate
/// lanes over every word (fast: it runs once per event over every frame),
/// reported as SHA3-256 of the lanes. It detects divergence between runs;
/// it is not meant to resist an adversary choosing inputs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Trace {
    a: u64,
    b: u64,
    n: u64,
}

impl Trace {
    fn word(&mut self, w: u64) {
        self.n = self.n.wrapping_add(1);
        self.a = (self.a ^ w)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        self.b = (self.b.rotate_left(17) ^ w ^ self.n).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    }

    pub(crate) fn absorb(&mut self, words: &[u64]) {
        for w in words {
            self.word(*w);
        }
    }

    pub(crate) fn absorb_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(w));
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        sha3(&[
            &self.a.to_be_bytes(),
            &self.b.to_be_bytes(),
            &self.n.to_be_bytes(),
        ])
    }
}
