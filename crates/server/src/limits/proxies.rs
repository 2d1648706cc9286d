//! Trusted proxies: the networks whose peers may say, in `X-Forwarded-For`, whom they forward
//! (`http_trusted_proxies`). Everyone else is taken to be the client they appear to be.

use std::net::IpAddr;

/// Networks whose peers may say, in `X-Forwarded-For`, whom they forward.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Network>);

/// An address and how many leading bits of it name the network.
#[derive(Debug, Clone, Copy)]
struct Network {
    address: IpAddr,
    bits: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.bits)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.bits)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: &[u8], ip: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if net[..whole] != ip[..whole] {
        return false;
    }
    rest == 0 || (net[whole] ^ ip[whole]) >> (8 - rest) == 0
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and networks (`10.0.0.0/8`, `::1`); empty
    /// trusts no one.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (address, bits) = item.split_once('/').unwrap_or((item, ""));
                let address: IpAddr = canonical(address.parse().map_err(|_| {
                    anyhow::anyhow!("{item:?} is not an IP address or network (a.b.c.d/n)")
                })?);
                let max = if address.is_ipv4() { 32 } else { 128 };
                let bits = match bits {
                    "" => max,
                    bits => bits
                        .parse::<u8>()
                        .ok()
                        .filter(|b| *b <= max)
                        .ok_or_else(|| anyhow::anyhow!("{item:?}: a prefix of 0 to {max} bits"))?,
                };
                Ok(Network { address, bits })
            })
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// Whom a request from `peer` carrying the `X-Forwarded-For` values `forwarded` comes from:
    /// walking the chain from the right (the hop nearest this server), the first address that
    /// is not a trusted proxy; the peer itself unless it is trusted.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let chain: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
        let mut client = peer;
        for hop in chain.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_forwarded_address_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, fd00::/8").unwrap();
        let from = |peer: &str, header: &[&str]| proxies.client(ip(peer), header.iter().copied());
        assert_eq!(from("203.0.113.9", &["1.2.3.4"]), ip("203.0.113.9"));
        assert_eq!(from("10.1.2.3", &["1.2.3.4"]), ip("1.2.3.4"));
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6, 1.2.3.4, 10.9.9.9"]),
            ip("1.2.3.4"),
            "a client's own entries to the left are not believed"
        );
        assert_eq!(from("192.168.1.7", &["6.6.6.6", "1.2.3.4"]), ip("1.2.3.4"));
        assert_eq!(from("192.168.1.8", &["1.2.3.4"]), ip("192.168.1.8"));
        assert_eq!(from("10.1.2.3", &[]), ip("10.1.2.3"));
        assert_eq!(from("10.1.2.3", &["garbage"]), ip("10.1.2.3"));
        assert_eq!(from("::ffff:10.0.0.1", &["1.2.3.4"]), ip("1.2.3.4"));
        assert_eq!(from("fd12::1", &["2001:db8::1"]), ip("2001:db8::1"));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert_eq!(
            TrustedProxies::parse("")
                .unwrap()
                .client(ip("10.0.0.1"), ["1.2.3.4"].into_iter()),
            ip("10.0.0.1"),
            "no proxy is trusted by default"
        );
    }
}
