//! Which IP addresses are not globally reachable: the IANA special-purpose address
//! registries for IPv4 and IPv6, and IPv4 addresses carried inside IPv6.
//!
//! The SOCKS5 exit must not let anonymous users reach the exit host's own services or its
//! network, so it refuses every destination this module marks as special. The tables list
//! the registries' entries whose "globally reachable" column is not `True` (a few
//! reachable sub-blocks are listed as exceptions), plus multicast. IPv6 outside
//! `2000::/3`, the only space allocated for global unicast, is refused as a whole.
//!
//! IPv4 inside IPv6 is judged by the IPv4 address it carries: IPv4-mapped
//! `::ffff:a.b.c.d`, the NAT64 well-known prefix `64:ff9b::/96`, 6to4 `2002:AABB:CCDD::/48`
//! and Teredo `2001:0:S:S:F:P:C:C` (whose client address is stored inverted). The
//! deprecated IPv4-compatible form `::a.b.c.d` and NAT64 local-use `64:ff9b:1::/48` carry
//! addresses no host should route to and are refused whatever they carry.
//!
//! Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries, RFC 6890, RFC 6052
//! (NAT64), RFC 3056 (6to4), RFC 4380 (Teredo), RFC 4291 (IPv6 addressing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A block of addresses that are not globally reachable.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    /// The block in CIDR notation.
    pub cidr: &'static str,
    /// What the registry calls it.
    pub name: &'static str,
}

struct V4 {
    net: Ipv4Addr,
    len: u8,
    block: Block,
}

struct V6 {
    net: Ipv6Addr,
    len: u8,
    block: Block,
}

const fn v4(net: Ipv4Addr, len: u8, cidr: &'static str, name: &'static str) -> V4 {
    V4 {
        net,
        len,
        block: Block { cidr, name },
    }
}

const fn v6(net: Ipv6Addr, len: u8, cidr: &'static str, name: &'static str) -> V6 {
    V6 {
        net,
        len,
        block: Block { cidr, name },
    }
}

/// IPv4 blocks that are not globally reachable; the first match names the reason.
const V4_SPECIAL: &[V4] = &[
    v4(Ipv4Addr::new(0, 0, 0, 0), 8, "0.0.0.0/8", "this network"),
    v4(Ipv4Addr::new(10, 0, 0, 0), 8, "10.0.0.0/8", "private use"),
    v4(
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "100.64.0.0/10",
        "shared address space",
    ),
    v4(Ipv4Addr::new(127, 0, 0, 0), 8, "127.0.0.0/8", "loopback"),
    v4(
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "169.254.0.0/16",
        "link local",
    ),
    v4(
        Ipv4Addr::new(172, 16, 0, 0),
        12,
        "172.16.0.0/12",
        "private use",
    ),
    v4(
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "192.0.0.0/24",
        "IETF protocol assignments",
    ),
    v4(
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "192.0.2.0/24",
        "documentation (TEST-NET-1)",
    ),
    v4(
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "192.88.99.0/24",
        "6to4 relay anycast (deprecated)",
    ),
    v4(
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        "192.168.0.0/16",
        "private use",
    ),
    v4(
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "198.18.0.0/15",
        "benchmarking",
    ),
    v4(
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "198.51.100.0/24",
        "documentation (TEST-NET-2)",
    ),
    v4(
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "203.0.113.0/24",
        "documentation (TEST-NET-3)",
    ),
    v4(Ipv4Addr::new(224, 0, 0, 0), 4, "224.0.0.0/4", "multicast"),
    // Includes 255.255.255.255/32, the limited broadcast address.
    v4(Ipv4Addr::new(240, 0, 0, 0), 4, "240.0.0.0/4", "reserved"),
];

/// Sub-blocks of [`V6_SPECIAL`] entries that the registry marks globally reachable.
const V6_GLOBAL_EXCEPTIONS: &[V6] = &[
    v6(
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1),
        128,
        "2001:1::1/128",
        "PCP anycast",
    ),
    v6(
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2),
        128,
        "2001:1::2/128",
        "TURN anycast",
    ),
    v6(
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3),
        128,
        "2001:1::3/128",
        "DNS-SD SRP anycast",
    ),
    v6(
        Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0),
        32,
        "2001:3::/32",
        "AMT",
    ),
    v6(
        Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0),
        48,
        "2001:4:112::/48",
        "AS112-v6",
    ),
    v6(
        Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        "2001:20::/28",
        "ORCHIDv2",
    ),
    v6(
        Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0),
        28,
        "2001:30::/28",
        "drone remote ID",
    ),
];

/// IPv6 blocks that are not globally reachable; the first match names the reason.
const V6_SPECIAL: &[V6] = &[
    v6(Ipv6Addr::UNSPECIFIED, 128, "::/128", "unspecified"),
    v6(Ipv6Addr::LOCALHOST, 128, "::1/128", "loopback"),
    v6(
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        "::/96",
        "IPv4-compatible (deprecated)",
    ),
    v6(
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "64:ff9b:1::/48",
        "IPv4/IPv6 translation, local use",
    ),
    v6(
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "100::/64",
        "discard only",
    ),
    v6(
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "100:0:0:1::/64",
        "dummy prefix",
    ),
    v6(
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "2001:2::/48",
        "benchmarking",
    ),
    v6(
        Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0),
        28,
        "2001:10::/28",
        "ORCHID (deprecated)",
    ),
    v6(
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "2001::/23",
        "IETF protocol assignments",
    ),
    v6(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "2001:db8::/32",
        "documentation",
    ),
    v6(
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "3fff::/20",
        "documentation",
    ),
    v6(
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "5f00::/16",
        "segment routing SIDs",
    ),
    v6(
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "fc00::/7",
        "unique local",
    ),
    v6(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "fe80::/10",
        "link local",
    ),
    v6(
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "fec0::/10",
        "site local (deprecated)",
    ),
    v6(
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "ff00::/8",
        "multicast",
    ),
];

/// Everything outside `2000::/3`.
const V6_NOT_GLOBAL_UNICAST: Block = Block {
    cidr: "outside 2000::/3",
    name: "not global unicast space",
};

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The block that makes `ip` not globally reachable, or `None` for a global address.
///
/// For IPv4 carried in IPv6, the block is the carried address's.
pub fn special_block(ip: IpAddr) -> Option<&'static Block> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static Block> {
    V4_SPECIAL
        .iter()
        .find(|e| in_v4(ip, e.net, e.len))
        .map(|e| &e.block)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static Block> {
    if let Some(carried) = carried_ipv4(ip) {
        return special_v4(carried);
    }
    if V6_GLOBAL_EXCEPTIONS.iter().any(|e| in_v6(ip, e.net, e.len)) {
        return None;
    }
    if let Some(e) = V6_SPECIAL.iter().find(|e| in_v6(ip, e.net, e.len)) {
        return Some(&e.block);
    }
    if ip.segments()[0] & 0xe000 != 0x2000 {
        return Some(&V6_NOT_GLOBAL_UNICAST);
    }
    None
}

/// The IPv4 address that an IPv4-mapped, NAT64 (`64:ff9b::/96`), 6to4 or Teredo address
/// leads to; `None` for any other address.
pub fn carried_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some(low32);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    if in_v6(ip, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        // Teredo keeps the client's public address with every bit inverted.
        return Some(Ipv4Addr::from(!(bits as u32)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ip: &str) -> Option<&'static str> {
        special_block(ip.parse().unwrap()).map(|b| b.cidr)
    }

    fn last_v4(net: Ipv4Addr, len: u8) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(net) | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0))
    }

    fn last_v6(net: Ipv6Addr, len: u8) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(net) | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0))
    }

    /// Every IPv4 entry: its first, a middle and its last address are refused under its name,
    /// and the addresses just outside it are not in it.
    #[test]
    fn every_ipv4_entry() {
        for e in V4_SPECIAL {
            let first = e.net;
            let last = last_v4(e.net, e.len);
            let middle = Ipv4Addr::from(u32::from(first) / 2 + u32::from(last) / 2);
            for ip in [first, middle, last] {
                assert_eq!(special_v4(ip), Some(&e.block), "{ip} in {}", e.block.cidr);
            }
            let before = u32::from(first).checked_sub(1).map(Ipv4Addr::from);
            let after = u32::from(last).checked_add(1).map(Ipv4Addr::from);
            for ip in [before, after].into_iter().flatten() {
                assert_ne!(
                    special_v4(ip),
                    Some(&e.block),
                    "{ip} outside {}",
                    e.block.cidr
                );
            }
        }
    }

    /// Every IPv6 entry: its last address is refused under its name, its first is refused
    /// (a narrower entry or a carried address may name it), the next address is not in it.
    #[test]
    fn every_ipv6_entry() {
        for e in V6_SPECIAL {
            let last = last_v6(e.net, e.len);
            assert_eq!(
                special_v6(last),
                Some(&e.block),
                "{last} in {}",
                e.block.cidr
            );
            assert!(special_v6(e.net).is_some(), "{} in {}", e.net, e.block.cidr);
            if let Some(after) = u128::from(last).checked_add(1).map(Ipv6Addr::from) {
                assert_ne!(
                    special_v6(after),
                    Some(&e.block),
                    "{after} outside {}",
                    e.block.cidr
                );
            }
        }
        assert_eq!(block("::"), Some("::/128"));
        assert_eq!(block("::1"), Some("::1/128"));
        assert_eq!(block("::2"), Some("::/96"));
        assert_eq!(block("::10.0.0.1"), Some("::/96"));
        assert_eq!(block("::8.8.8.8"), Some("::/96"));
        assert_eq!(block("64:ff9b:1::1"), Some("64:ff9b:1::/48"));
        assert_eq!(block("64:ff9b:1:ffff::8.8.8.8"), Some("64:ff9b:1::/48"));
        assert_eq!(block("100::1"), Some("100::/64"));
        assert_eq!(block("100:0:0:1::1"), Some("100:0:0:1::/64"));
        assert_eq!(block("2001:2::1"), Some("2001:2::/48"));
        assert_eq!(block("2001:10::1"), Some("2001:10::/28"));
        assert_eq!(block("2001:100::1"), Some("2001::/23"));
        assert_eq!(block("2001:1::4"), Some("2001::/23"));
        assert_eq!(block("2001:1ff:ffff::1"), Some("2001::/23"));
        assert_eq!(block("2001:db8::1"), Some("2001:db8::/32"));
        assert_eq!(block("2001:db8:ffff::1"), Some("2001:db8::/32"));
        assert_eq!(block("3fff::1"), Some("3fff::/20"));
        assert_eq!(block("3fff:fff::1"), Some("3fff::/20"));
        assert_eq!(block("5f00::1"), Some("5f00::/16"));
        assert_eq!(block("fc00::1"), Some("fc00::/7"));
        assert_eq!(block("fd12:3456::1"), Some("fc00::/7"));
        assert_eq!(block("fe80::1"), Some("fe80::/10"));
        assert_eq!(block("febf::1"), Some("fe80::/10"));
        assert_eq!(block("fec0::1"), Some("fec0::/10"));
        assert_eq!(block("feff::1"), Some("fec0::/10"));
        assert_eq!(block("ff02::1"), Some("ff00::/8"));
        assert_eq!(block("4000::1"), Some("outside 2000::/3"));
        assert_eq!(block("1000::1"), Some("outside 2000::/3"));
    }

    #[test]
    fn reachable_exceptions_inside_special_blocks() {
        for e in V6_GLOBAL_EXCEPTIONS {
            assert_eq!(special_v6(e.net), None, "{}", e.block.cidr);
            assert_eq!(special_v6(last_v6(e.net, e.len)), None, "{}", e.block.cidr);
        }
        for ip in [
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
            "2620:4f:8000::1",
        ] {
            assert_eq!(block(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_what_it_carries() {
        for (carrier, private, public) in [
            ("mapped", "::ffff:10.0.0.1", "::ffff:8.8.8.8"),
            ("mapped", "::ffff:127.0.0.1", "::ffff:1.1.1.1"),
            ("NAT64", "64:ff9b::a00:1", "64:ff9b::808:808"),
            ("NAT64", "64:ff9b::192.168.1.1", "64:ff9b::1.1.1.1"),
            ("NAT64", "64:ff9b::192.0.0.8", "64:ff9b::9.9.9.9"),
            ("6to4", "2002:a00:1::1", "2002:808:808::1"),
            ("6to4", "2002:7f00:1:ffff::1", "2002:101:101::"),
            ("6to4", "2002:c0a8:101::", "2002:909:909::"),
            // Teredo: the last 32 bits are the client's address inverted.
            (
                "Teredo",
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            ),
            (
                "Teredo",
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                "2001:0:4136:e378:8000:63bf:fefe:fefe",
            ),
        ] {
            assert!(block(private).is_some(), "{carrier} {private}");
            assert_eq!(block(public), None, "{carrier} {public}");
        }
        assert_eq!(
            carried_ipv4("2001:0:4136:e378:8000:63bf:f5ff:fffe".parse().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(
            carried_ipv4("2002:a00:1::1".parse().unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(carried_ipv4("2606:4700::1111".parse().unwrap()), None);
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "3ffe::1",
            "2001:200::1",
        ] {
            assert_eq!(block(ip), None, "{ip}");
        }
    }
}
