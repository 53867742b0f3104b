//! Replica addresses as `cluster.toml` writes them (`host:port`: an IPv4
//! address, a bracketed IPv6 address or a DNS name), checked without
//! resolving, and resolved when a node or client loads the file.

use std::net::SocketAddr;

/// Checks a replica address written `host:port` without resolving it:
/// `host` is an IPv4 address, a bracketed IPv6 address (`[::1]:7100`) or a
/// DNS name, and `port` is 1–65535. Returns the host and the port.
pub fn check_address(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?}: port {port:?} is not a number from 1 to 65535"))?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{s:?}: {v6:?} is not an IPv6 address"))?;
        return Ok((host.to_string(), port));
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok((host.to_string(), port));
    }
    if host.contains(':') {
        return Err(format!(
            "{s:?}: write an IPv6 address in brackets, [::1]:{port}"
        ));
    }
    if !is_dns_name(host) {
        return Err(format!(
            "{s:?}: {host:?} is neither an IPv4 address nor a DNS name"
        ));
    }
    Ok((host.to_string(), port))
}

/// A DNS name: dot-separated labels of 1–63 letters, digits and hyphens,
/// not starting or ending with a hyphen, 253 characters at most, and not
/// all digits (that would be a mistyped IPv4 address).
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && !host.chars().all(|c| c.is_ascii_digit() || c == '.')
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Resolves a replica address (`ip:port`, `[ipv6]:port` or `name:port`,
/// see [`check_address`]); a name resolves through the system resolver and
/// its first address is used.
pub fn resolve_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    check_address(s)?;
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?}: cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?}: the name resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ip_or_dns_name_and_a_port() {
        for good in [
            "127.0.0.1:7100",
            "[::1]:7100",
            "replica-0.example.org:7100",
            "localhost:1",
            "a.example.:65535",
        ] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:x",
            "::1:7100",
            "[::g]:7100",
            "999.1.1.1:7100",
            "-a.example:7100",
            "a..example:7100",
            "a_b:7100",
            ":7100",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert_eq!(
            resolve_address("127.0.0.1:7100").unwrap(),
            "127.0.0.1:7100".parse().unwrap()
        );
        assert!(resolve_address("localhost:7100")
            .unwrap()
            .ip()
            .is_loopback());
    }
}
