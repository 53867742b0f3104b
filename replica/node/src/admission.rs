//! Who may connect, and how many at once (issue #29, item 3).
//!
//! Peers and clients arrive at the same QUIC endpoint and are told apart
//! only once the TLS handshake is done (the ALPN and, for peers, a pinned
//! certificate). So admission has two steps:
//!
//! - *before the handshake* an [`Incoming`](quinn::Incoming) costs a
//!   *handshake slot*, held until the handshake ends or times out: at most
//!   [`NodeOptions::max_handshakes`](crate::NodeOptions) at once, at most
//!   `max_clients_per_address` of them from one IP address. A dial from a
//!   peer's own configured address (source address proven by a QUIC retry)
//!   takes that peer's *reserved* handshake slot instead, one per peer, so
//!   that a flood of unauthenticated handshakes cannot keep a peer out;
//! - *after the handshake* a peer needs no further slot: the mesh holds at
//!   most one live connection per peer and one handed over (see
//!   [`crate::mesh`]), however many clients are connected. A client takes a
//!   *client slot* for as long as it stays connected: at most
//!   `max_clients` at once, at most `max_clients_per_address` from one IP
//!   address. A refused client is closed with [`belfry_wire::close::BUSY`]
//!   and a reason text.
//!
//! Every refusal is counted in `belfry_refused_total` by reason:
//! `handshakes` and `per_address_handshakes` before the handshake, `busy`
//! and `per_address` after it.
//!
//! Against whom: a client (or many, from one address) that opens and holds
//! as many connections as it is let, or that starts handshakes and never
//! finishes them. Peers keep their links either way. What this does not
//! stop: many addresses flooding handshakes delay *clients* (each refused
//! `Incoming` costs the replica one datagram), and a peer that dials from
//! an address other than its configured one (NAT, a wildcard `listen`)
//! shares the general handshake slots.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits admission enforces.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Handshakes in progress at once (peers' reserved ones aside).
    pub max_handshakes: usize,
    /// Client connections at once.
    pub max_clients: usize,
    /// Client connections, and handshakes in progress, from one IP address.
    pub max_clients_per_address: usize,
}

/// Connections counted by source IP address.
#[derive(Debug, Default)]
struct PerAddress {
    counts: Mutex<BTreeMap<IpAddr, usize>>,
}

/// One connection counted against its address; uncounted when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn try_take(table: &Arc<PerAddress>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut counts = table.counts.lock().ok()?;
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.table.counts.lock() {
            if let Some(count) = counts.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// A handshake in progress (released when dropped).
#[derive(Debug)]
pub struct HandshakeSlot {
    _permit: OwnedSemaphorePermit,
    /// General slots count against the source address; reserved ones not.
    address: Option<AddressSlot>,
}

impl HandshakeSlot {
    /// Whether this is a peer's reserved slot.
    pub fn reserved(&self) -> bool {
        self.address.is_none()
    }
}

/// A connected client (released when dropped).
#[derive(Debug)]
pub struct ClientSlot {
    _global: OwnedSemaphorePermit,
    _address: AddressSlot,
}

/// What to do with an incoming connection before its handshake.
#[derive(Debug)]
pub enum BeforeHandshake {
    /// Go ahead, holding this slot until the handshake ends.
    Admit(HandshakeSlot),
    /// Ask the dialer to prove its source address (a QUIC retry): it
    /// claims to be a peer's.
    Retry,
    /// Refuse, counting this reason.
    Refuse(&'static str),
}

/// The node's admission state.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    /// Each peer's configured address (`None` for this replica).
    peer_addresses: Vec<Option<SocketAddr>>,
    /// One reserved handshake slot per peer.
    peer_handshakes: Vec<Arc<Semaphore>>,
    handshakes: Arc<Semaphore>,
    handshakes_by_address: Arc<PerAddress>,
    clients: Arc<Semaphore>,
    clients_by_address: Arc<PerAddress>,
}

/// An address with IPv4-mapped IPv6 addresses written as IPv4 (a dual-stack
/// socket reports IPv4 dialers that way).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Admission {
    /// Admission for a replica whose peers are configured at
    /// `peer_addresses` (`None` for the replica itself).
    pub fn new(limits: AdmissionLimits, peer_addresses: Vec<Option<SocketAddr>>) -> Self {
        let peer_handshakes = peer_addresses
            .iter()
            .map(|_| Arc::new(Semaphore::new(1)))
            .collect();
        Admission {
            limits,
            peer_addresses: peer_addresses
                .into_iter()
                .map(|a| a.map(canonical))
                .collect(),
            peer_handshakes,
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            handshakes_by_address: Arc::default(),
            clients: Arc::new(Semaphore::new(limits.max_clients)),
            clients_by_address: Arc::default(),
        }
    }

    /// Decides on a connection from `remote` before its handshake;
    /// `validated`: its source address is proven, `may_retry`: a retry can
    /// still prove it.
    pub fn before_handshake(
        &self,
        remote: SocketAddr,
        validated: bool,
        may_retry: bool,
    ) -> BeforeHandshake {
        let remote = canonical(remote);
        let peer = self.peer_addresses.iter().position(|a| *a == Some(remote));
        if let Some(p) = peer {
            if !validated && may_retry {
                return BeforeHandshake::Retry;
            }
            if validated {
                if let Ok(permit) = self.peer_handshakes[p].clone().try_acquire_owned() {
                    return BeforeHandshake::Admit(HandshakeSlot {
                        _permit: permit,
                        address: None,
                    });
                }
            }
        }
        let Some(address) = PerAddress::try_take(
            &self.handshakes_by_address,
            remote.ip(),
            self.limits.max_clients_per_address,
        ) else {
            return BeforeHandshake::Refuse("per_address_handshakes");
        };
        match self.handshakes.clone().try_acquire_owned() {
            Ok(permit) => BeforeHandshake::Admit(HandshakeSlot {
                _permit: permit,
                address: Some(address),
            }),
            Err(_) => BeforeHandshake::Refuse("handshakes"),
        }
    }

    /// A slot for a client connected from `remote`, or the reason it is
    /// refused (`per_address` or `busy`).
    pub fn client(&self, remote: SocketAddr) -> Result<ClientSlot, &'static str> {
        let address = PerAddress::try_take(
            &self.clients_by_address,
            canonical(remote).ip(),
            self.limits.max_clients_per_address,
        )
        .ok_or("per_address")?;
        let global = self
            .clients
            .clone()
            .try_acquire_owned()
            .map_err(|_| "busy")?;
        Ok(ClientSlot {
            _global: global,
            _address: address,
        })
    }

    /// The limits.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_handshakes: 3,
            max_clients: 3,
            max_clients_per_address: 2,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn clients_are_limited_per_address_and_in_all() {
        let a = Admission::new(limits(), vec![None]);
        let one = a.client(addr("10.0.0.1:1000")).unwrap();
        let _two = a.client(addr("10.0.0.1:1001")).unwrap();
        assert_eq!(a.client(addr("10.0.0.1:1002")).err(), Some("per_address"));
        let _three = a.client(addr("10.0.0.2:1000")).unwrap();
        assert_eq!(a.client(addr("10.0.0.3:1000")).err(), Some("busy"));
        drop(one);
        assert!(a.client(addr("10.0.0.1:1003")).is_ok());
    }

    #[test]
    fn a_peer_address_has_its_own_handshake_slot_once_proven() {
        let peer = addr("10.0.0.9:7100");
        let a = Admission::new(limits(), vec![None, Some(peer)]);
        let held: Vec<_> = (0..3)
            .map(|i| a.before_handshake(addr(&format!("10.0.0.{i}:5000")), true, false))
            .collect();
        assert!(held
            .iter()
            .all(|h| matches!(h, BeforeHandshake::Admit(s) if !s.reserved())));
        assert!(matches!(
            a.before_handshake(addr("10.0.0.5:5000"), true, false),
            BeforeHandshake::Refuse("handshakes")
        ));
        assert!(matches!(
            a.before_handshake(peer, false, true),
            BeforeHandshake::Retry
        ));
        let mapped = addr("[::ffff:10.0.0.9]:7100");
        assert!(matches!(
            a.before_handshake(mapped, true, false),
            BeforeHandshake::Admit(s) if s.reserved()
        ));
    }

    #[test]
    fn handshakes_are_limited_per_address() {
        let a = Admission::new(limits(), vec![None]);
        let _one = a.before_handshake(addr("10.0.0.1:1"), true, false);
        let _two = a.before_handshake(addr("10.0.0.1:2"), true, false);
        assert!(matches!(
            a.before_handshake(addr("10.0.0.1:3"), true, false),
            BeforeHandshake::Refuse("per_address_handshakes")
        ));
    }
}
