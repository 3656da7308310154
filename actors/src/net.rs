//! Which addresses are public: the address check behind every fetch Atelier makes
//! (`crate::outbound`). It follows the IANA special-purpose address registries for IPv4 and
//! IPv6: every block there that is not globally reachable is not public, nor is anything
//! outside IPv6 global unicast (`2000::/3`), and an IPv4 address embedded in an IPv6 one
//! (mapped, compatible, NAT64, 6to4, Teredo) is judged as the IPv4 address it reaches.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 blocks that are not globally reachable, as (network, prefix length).
const NOT_PUBLIC_V4: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 carrier-grade NAT
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local (cloud metadata)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation
    (0xc058_6300, 24), // 192.88.99.0/24 deprecated 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
];

/// Globally reachable blocks inside `2001::/23`, which is otherwise not.
const PUBLIC_IN_2001_23: &[(u128, u32)] = &[
    (0x2001_0001_0000_0000_0000_0000_0000_0001, 128), // port control anycast
    (0x2001_0001_0000_0000_0000_0000_0000_0002, 128), // TURN anycast
    (0x2001_0001_0000_0000_0000_0000_0000_0003, 128), // DNS-SD SRP anycast
    (0x2001_0003_0000_0000_0000_0000_0000_0000, 32),  // AMT
    (0x2001_0004_0112_0000_0000_0000_0000_0000, 48),  // AS112-v6
    (0x2001_0020_0000_0000_0000_0000_0000_0000, 28),  // ORCHIDv2
    (0x2001_0030_0000_0000_0000_0000_0000_0000, 28),  // drone remote ID
];

/// IPv6 blocks inside `2000::/3` that are not globally reachable (besides `2001::/23`).
const NOT_PUBLIC_V6: &[(u128, u32)] = &[
    (0x2001_0db8 << 96, 32), // documentation
    (0x3fff << 112, 20),     // documentation
];

fn within_v4(address: u32, (network, length): (u32, u32)) -> bool {
    address >> (32 - length) == network >> (32 - length)
}

fn within_v6(address: u128, (network, length): (u128, u32)) -> bool {
    address >> (128 - length) == network >> (128 - length)
}

/// Whether fetching from `address` could reach only the public internet.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let address = u32::from(address);
    !NOT_PUBLIC_V4.iter().any(|&block| within_v4(address, block))
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let bits = u128::from(address);
    let v4 = |bits: u128| Ipv4Addr::from(bits as u32);
    // IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96, deprecated): the IPv4 address.
    if bits >> 32 == 0xffff || bits >> 32 == 0 {
        return is_public_v4(v4(bits));
    }
    // NAT64 (64:ff9b::/96) translates to the IPv4 address it embeds.
    if within_v6(bits, (0x0064_ff9b << 96, 96)) {
        return is_public_v4(v4(bits));
    }
    // 6to4 (2002::/16): the IPv4 address follows the prefix.
    if within_v6(bits, (0x2002 << 112, 16)) {
        return is_public_v4(v4(bits >> 80));
    }
    // Teredo (2001::/32): the server's IPv4 address, then the client's, inverted.
    if within_v6(bits, (0x2001_0000 << 96, 32)) {
        return is_public_v4(v4(bits >> 64)) && is_public_v4(v4(!bits));
    }
    // Everything else outside global unicast: loopback, unspecified, unique and site local,
    // link-local, multicast, discard-only, local-use NAT64 (64:ff9b:1::/48)...
    if !within_v6(bits, (0x2 << 124, 3)) {
        return false;
    }
    if within_v6(bits, (0x2001 << 112, 23)) {
        return PUBLIC_IN_2001_23
            .iter()
            .any(|&block| within_v6(bits, block));
    }
    !NOT_PUBLIC_V6.iter().any(|&block| within_v6(bits, block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(address: &str) -> bool {
        is_public(address.parse().unwrap())
    }

    #[test]
    fn public_addresses_are_public() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:3::1",
            "2620:4f:8000::1",
        ] {
            assert!(public(address), "{address} judged not public");
        }
    }

    #[test]
    fn every_special_purpose_ipv4_block_is_not_public() {
        for address in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(address), "{address} judged public");
        }
    }

    #[test]
    fn every_special_purpose_ipv6_block_is_not_public() {
        for address in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "febf::1",
            "ff02::1",
            "ff05::2",
            "100::1",
            "64:ff9b:1::a00:1",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "4000::1",
        ] {
            assert!(!public(address), "{address} judged public");
        }
    }

    #[test]
    fn private_ipv4_inside_ipv6_is_not_public() {
        for address in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::7f00:1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b::127.0.0.1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
            // Teredo: server 65.54.227.120 (public) with client 10.0.0.1 (inverted), and a
            // private server.
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "2001:0:a00:1::1",
        ] {
            assert!(!public(address), "{address} judged public");
        }
        // Teredo between public addresses: server 65.54.227.120, client 8.8.8.8 (inverted).
        assert!(public("2001:0:4136:e378:8000:63bf:f7f7:f7f7"));
    }
}
