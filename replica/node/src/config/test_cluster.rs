//! The four-replica cluster the config tests generate (fixed seed and
//! addresses 127.0.0.1:7100–7103).

use super::*;

pub(super) fn generated(dir: &Path) -> crate::generate::Generated {
    let addresses = (0..4).map(|i| format!("127.0.0.1:{}", 7100 + i)).collect();
    crate::generate::generate_cluster(
        dir,
        &crate::generate::GenerateOptions {
            addresses,
            policy: Policy::Lamport,
            genesis_time: Micros(1_763_700_000_000_000),
            seed: Some(7),
            tsa: None,
        },
    )
    .unwrap()
}
