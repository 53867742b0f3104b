//! `check_log_on_start` in replica-<i>.toml: on unless set to false.

use super::test_cluster::generated;
use super::*;

fn load_with(line: &str) -> Result<NodeConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let g = generated(dir.path());
    let mut text = std::fs::read_to_string(&g.replicas[0]).unwrap();
    text.push_str(line);
    std::fs::write(&g.replicas[0], text).unwrap();
    ReplicaFile::load(&g.replicas[0])
}

#[test]
fn the_log_is_checked_on_start_unless_the_file_says_false() {
    assert!(load_with("").unwrap().check_log_on_start);
    assert!(
        load_with("\ncheck_log_on_start = true\n")
            .unwrap()
            .check_log_on_start
    );
    assert!(
        !load_with("\ncheck_log_on_start = false\n")
            .unwrap()
            .check_log_on_start
    );
    let e = load_with("\ncheck_log_on_start = \"no\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("check_log_on_start"), "{e}");
}
