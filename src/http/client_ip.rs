//! The client address used by `allow_ips`.
//!
//! `X-Forwarded-For` is read only when the direct peer is a trusted proxy,
//! and then from the right: the first entry outside the trusted ranges is the
//! client, because every entry left of it could have been forged by the client.

use std::net::IpAddr;

use ipnet::IpNet;

/// Returns the client address, or `None` when a forwarded entry that must be
/// used is not an IP address.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let mut client = peer;
    for entry in header.rsplit(',') {
        let ip: IpAddr = entry.trim().parse().ok()?;
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// Checks whether `ip` may post to a source with these ranges. An empty list allows every address.
pub fn allowed(ip: Option<IpAddr>, allow: &[IpNet]) -> bool {
    if allow.is_empty() {
        return true;
    }
    ip.is_some_and(|ip| allow.iter().any(|net| net.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_header() {
        let got = client_ip(
            ip("203.0.113.9"),
            Some("198.51.100.1"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, Some(ip("203.0.113.9")));
    }

    #[test]
    fn trusted_peer_uses_rightmost_untrusted_entry() {
        let got = client_ip(
            ip("10.0.0.2"),
            Some("1.2.3.4, 198.51.100.7, 10.0.0.9"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn garbage_entry_gives_no_address() {
        let got = client_ip(ip("10.0.0.2"), Some("nonsense"), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, None);
        assert!(!allowed(got, &nets(&["0.0.0.0/0"])));
    }

    #[test]
    fn allow_list() {
        assert!(allowed(Some(ip("192.0.2.1")), &[]));
        assert!(allowed(Some(ip("192.0.2.1")), &nets(&["192.0.2.0/24"])));
        assert!(!allowed(Some(ip("192.0.3.1")), &nets(&["192.0.2.0/24"])));
    }
}
