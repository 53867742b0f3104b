//! `belfry keygen`: deals a new cluster's threshold keys and TLS
//! certificates (a trusted dealer, docs/design.md §3.1; for tests and demos —
//! `belfry ceremony` makes the same files without one, docs/keys.md) and writes `cluster.toml`
//! (public) and one `replica-<i>.toml` (secret, mode 0600) per replica.

use crate::common::{ExitCode, EXIT_OK};
use anyhow::{bail, Context};
use belfry_node::{generate_cluster, ClusterFile, GenerateOptions};
use belfry_replica::clock::{ClockSource, SystemClock};
use belfry_replica::coin::{max_faulty, Policy};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Most replicas a cluster may have here: every replica talks to every
/// other (n − 1 QUIC connections each) and signs every tree head, so far
/// larger clusters are not what belfry is built for.
pub const MAX_REPLICAS: usize = 256;
/// The first port when none is given.
pub const DEFAULT_BASE_PORT: u16 = 7100;
/// The clock policy's bucket width when none is given.
pub const DEFAULT_GRANULARITY_US: u64 = 1_000;

/// Arguments of `belfry keygen`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry keygen --replicas 4 --out cluster
      four replicas on this machine, 127.0.0.1:7100-7103
  belfry keygen --replicas 4 --out cluster --hosts 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4
      one replica per machine, each on UDP port 7100
  belfry keygen --replicas 7 --out cluster --hosts a.example:9000,b.example,... --policy clock

Copy cluster.toml to every replica and every client; copy replica-<i>.toml to
replica i's machine only (it holds that replica's secret key share).")]
pub struct KeygenArgs {
    /// Replicas in the cluster (n >= 4; f = ⌊(n−1)/3⌋ of them may be Byzantine;
    /// or 1: a single trusted sequencer with no fault tolerance, the benchmark baseline).
    #[arg(long)]
    pub replicas: usize,
    /// Directory to write the files to (created; existing cluster files are never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// UDP port of a replica whose host entry has none; replicas sharing a host get the next ports.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// Each replica's host, in id order: an IPv4 address, [IPv6] or DNS name, with an optional :PORT (default: 127.0.0.1 for all).
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Sequencing policy: lamport (first seen by the honest replicas' rounds) or clock (by their clocks).
    #[arg(long, default_value = "lamport")]
    pub policy: String,
    /// The clock policy's bucket width in µs (default 1000; lamport takes none).
    #[arg(long)]
    pub granularity_us: Option<u64>,
    /// Also deal an RFC 3161 authority's threshold RSA key of this many bits (2048 or 3072; safe primes take seconds to a minute) and serve RFC 3161 on every replica (docs/rfc3161.md).
    #[arg(long, value_parser = ["2048", "3072"])]
    pub tsa_bits: Option<String>,
    /// Each replica's RFC 3161 HTTP host[:port], in id order (default: the replica's host).
    #[arg(long, value_delimiter = ',', requires = "tsa_bits")]
    pub tsa_hosts: Vec<String>,
    /// HTTP port of a replica whose RFC 3161 host has none; replicas sharing a host get the next ports.
    #[arg(long, default_value_t = DEFAULT_TSA_BASE_PORT)]
    pub tsa_base_port: u16,
}

/// The first RFC 3161 HTTP port when none is given.
pub const DEFAULT_TSA_BASE_PORT: u16 = 8100;

/// The RFC 3161 endpoints: `--tsa-hosts`, or each replica's host.
fn tsa_addresses(args: &KeygenArgs, n: usize) -> anyhow::Result<Vec<String>> {
    let hosts: Vec<String> = if !args.tsa_hosts.is_empty() {
        args.tsa_hosts.clone()
    } else {
        args.hosts
            .iter()
            .map(|h| {
                let (host, _) = belfry_node::config::check_address(h.trim())
                    .or_else(|_| belfry_node::config::check_address(&format!("{}:1", h.trim())))
                    .map_err(|e| anyhow::anyhow!("--hosts {h}: {e}"))?;
                Ok(host)
            })
            .collect::<anyhow::Result<_>>()?
    };
    addresses(n, &hosts, args.tsa_base_port).context("--tsa-hosts")
}

/// Each replica's `host:port`: a host without a port gets `base_port`
/// plus the number of earlier replicas on the same host.
pub fn addresses(n: usize, hosts: &[String], base_port: u16) -> anyhow::Result<Vec<String>> {
    let hosts: Vec<String> = if hosts.is_empty() {
        vec!["127.0.0.1".to_string(); n]
    } else if hosts.len() == n {
        hosts.iter().map(|h| h.trim().to_string()).collect()
    } else {
        bail!(
            "--hosts lists {} hosts for --replicas {n}: give one per replica",
            hosts.len()
        );
    };
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    for (i, h) in hosts.iter().enumerate() {
        if h.is_empty() {
            bail!("--hosts: replica {i}'s host is empty");
        }
        // A bare IPv6 address must be bracketed, so a colon outside
        // brackets means a port is given.
        let given = match h.strip_prefix('[') {
            Some(rest) => rest.contains("]:"),
            None => h.contains(':'),
        };
        let address = if given {
            h.clone()
        } else {
            let earlier = hosts[..i].iter().filter(|e| *e == h).count();
            let port = u16::try_from(usize::from(base_port) + earlier)
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| {
                    format!("--base-port {base_port}: replica {i} would need a port above 65535")
                })?;
            format!("{h}:{port}")
        };
        belfry_node::config::check_address(&address)
            .map_err(|e| anyhow::anyhow!("--hosts: replica {i}: {e}"))?;
        if !used.insert(address.clone()) {
            bail!("--hosts: replica {i} has the address {address} of an earlier replica");
        }
        out.push(address);
    }
    Ok(out)
}

/// Runs `belfry keygen`.
pub fn run(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let n = args.replicas;
    if n != 1 && !(4..=MAX_REPLICAS).contains(&n) {
        bail!(
            "--replicas {n}: a cluster needs at least 4 replicas (n >= 3f + 1 with f >= 1) and at most {MAX_REPLICAS}, or exactly 1 (a single trusted sequencer, f = 0: the benchmark baseline)"
        );
    }
    if args.base_port == 0 {
        bail!("--base-port 0: give a port from 1 to 65535");
    }
    let granularity = match (args.policy.as_str(), args.granularity_us) {
        ("clock", g) => g.unwrap_or(DEFAULT_GRANULARITY_US),
        (_, None) => 0,
        ("lamport", Some(g)) => {
            bail!("--granularity-us {g}: only the clock policy has a granularity")
        }
        (_, Some(_)) => 0,
    };
    let policy = Policy::from_name(&args.policy, granularity)
        .map_err(|e| anyhow::anyhow!("--policy {}: {e}", args.policy))?;
    let addresses = addresses(n, &args.hosts, args.base_port)?;
    let mut existing = vec![args.out.join("cluster.toml")];
    existing.extend((0..n).map(|i| args.out.join(format!("replica-{i}.toml"))));
    if let Some(e) = existing.iter().find(|p| p.exists()) {
        bail!(
            "{} exists: keygen never overwrites a cluster's keys; choose a new --out directory",
            e.display()
        );
    }
    // The genesis time binds the cluster id: it is now, read once.
    let genesis_time = SystemClock.now();
    let generated = generate_cluster(
        &args.out,
        &GenerateOptions {
            addresses: addresses.clone(),
            policy,
            genesis_time,
            seed: None,
            tsa: match &args.tsa_bits {
                Some(bits) => Some(belfry_node::generate::TsaOptions {
                    bits: bits.parse().context("--tsa-bits")?,
                    addresses: tsa_addresses(args, n)?,
                    progress: Some(|step| eprintln!("belfry keygen: RFC 3161 key: {step}")),
                }),
                None => None,
            },
        },
    )?;
    // Read back (without resolving names: keygen may run offline).
    let (params, _) = ClusterFile::read(&generated.cluster)?.params(&generated.cluster)?;
    let anchor = belfry_replica::coin::TrustAnchor(params.group_public_key);
    let f = max_faulty(n);
    println!(
        "belfry keygen: {n} replicas, f = {f} (up to {f} may be Byzantine; any {} shares sign), policy {}{}",
        f + 1,
        policy.name(),
        if granularity > 0 {
            format!(", granularity {granularity} µs")
        } else {
            String::new()
        }
    );
    println!("trust anchor: {anchor}");
    println!("cluster id:   {}", hex::encode(params.cluster_id().0));
    println!(
        "wrote {}  public: copy to every replica and every client",
        generated.cluster.display()
    );
    for (i, (path, address)) in generated.replicas.iter().zip(&addresses).enumerate() {
        println!(
            "wrote {}  SECRET (mode 0600): replica {i} only, listens on {address} (UDP)",
            path.display()
        );
    }
    if let Some(tsa) = ClusterFile::read(&generated.cluster)?.tsa {
        println!(
            "RFC 3161 authority: {}-bit threshold RSA key (any {} replicas sign), policy {}, \
             endpoints {}",
            tsa.modulus.len() * 4,
            f + 1,
            tsa.policy,
            tsa.addresses.join(", ")
        );
    }
    println!(
        "This process was the dealer: it knew the group secret key, which can sign anything as \
         this cluster (any {} replica files together hold it again). Run keygen on an offline \
         machine, move each replica-<i>.toml to its replica, and keep no other copy online. \
         A cluster run by several parties makes its keys with `belfry ceremony` instead: \
         nobody holds the group secret (docs/keys.md).",
        f + 1
    );
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hosts_without_ports_share_the_base_port_unless_they_repeat() {
        assert_eq!(
            addresses(4, &[], 7100).unwrap(),
            s(&[
                "127.0.0.1:7100",
                "127.0.0.1:7101",
                "127.0.0.1:7102",
                "127.0.0.1:7103"
            ])
        );
        assert_eq!(
            addresses(
                4,
                &s(&["10.0.0.1", "b.example", "[::1]:9000", "10.0.0.1"]),
                7100
            )
            .unwrap(),
            s(&[
                "10.0.0.1:7100",
                "b.example:7100",
                "[::1]:9000",
                "10.0.0.1:7101"
            ])
        );
        assert!(addresses(4, &s(&["a", "b", "c"]), 7100).is_err());
        assert!(addresses(4, &s(&["a", "b", "c", "d_e"]), 7100).is_err());
        assert!(addresses(4, &s(&["a:1", "a:1", "c", "d"]), 7100).is_err());
        assert!(addresses(4, &[], 65534).is_err());
        assert!(addresses(4, &s(&["a", "b", "c", "999.0.0.1"]), 7100).is_err());
    }
}
