//! A full disk stops the replica with an error that names the file, and
//! loses nothing it acknowledged: on a 4 MiB tmpfs the journal fills, the
//! host refuses the turn (nothing of it is released), and after the disk is
//! made larger the replica restarts with every entry it had released.
//!
//! Mounting needs root (CI runs as root). Elsewhere the test says why it
//! did not run — unless `BELFRY_REQUIRE_TMPFS=1`, which makes that a
//! failure (CI sets it, so a machine that cannot mount fails loudly).

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::Entry;
use belfry_replica::wire::ClientRequest;
use belfry_world::LocalCluster;
use common::{digests, GENESIS};
use std::path::Path;
use std::process::Command;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_stops_the_replica_naming_the_file_and_loses_nothing_it_released() {
    let disk = match Tmpfs::mount("4m") {
        Ok(d) => d,
        Err(why) if std::env::var("BELFRY_REQUIRE_TMPFS").as_deref() != Ok("1") => {
            eprintln!("not run: cannot mount a tmpfs here ({why}); CI runs it as root");
            return;
        }
        Err(why) => panic!("cannot mount a tmpfs: {why}"),
    };
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 29).unwrap();
    c.host_config_mut().log_sync_entries = 256;
    c.move_to_files(3, disk.path()).unwrap();
    let mut sent = 0u64;
    while c.stopped[3].is_none() && sent < 200_000 {
        let ds = digests("full disk", sent, 2_000);
        sent += 2_000;
        c.request_all(1, &ClientRequest::Submit(ds));
        c.run_until(c.now().saturating_add(Micros::from_millis(300)), |c| {
            c.stopped[3].is_some()
        });
    }
    let why = c.stopped[3].clone().expect("the disk filled up");
    assert!(
        why.contains(&disk.path().display().to_string()),
        "the error names the file: {why}"
    );
    assert!(
        why.to_lowercase().contains("space"),
        "the error says the disk is full: {why}"
    );
    // What it released (acknowledged) before it stopped.
    let released: Vec<Entry> = {
        let mut entries = Vec::new();
        for w in &c.released_entries[3] {
            entries.push(*w);
        }
        entries
    };
    assert!(!released.is_empty());
    // The others went on without it.
    let live = c.core(0).unwrap().log_len();
    assert!(live > released.len() as u64 / 2);
    // More room; the replica restarts with everything it had released.
    disk.grow("64m");
    c.restart(3).unwrap();
    let core = c.core(3).unwrap();
    assert!(core.log_len() >= released.len() as u64);
    assert_eq!(core.log()[..released.len()], released[..]);
    c.run_until(c.now().saturating_add(Micros::from_secs(10)), |c| {
        c.core(3).is_some_and(|r| r.log_len() >= live)
    });
    c.check_agreement().unwrap();
}
