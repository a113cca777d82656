//! The SSRF guard for webhook destinations: which addresses Truxe may
//! connect to on an organization's behalf.
//!
//! Refused unless explicitly allowed: loopback, private (RFC 1918, IPv6
//! unique local), link-local (including the 169.254.169.254 metadata
//! service), shared (CGNAT), unspecified, multicast, broadcast,
//! documentation and reserved ranges — also when hidden inside IPv6
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo). A name is resolved
//! once per connection by [`GuardedResolver`], every address it yields is
//! checked, and the connection goes to exactly those addresses, so a DNS
//! answer that changes between check and use (rebinding) gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// What may be reached besides public addresses.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Loopback allowed (development only).
    pub allow_loopback: bool,
    /// Networks allowed although they would be refused.
    pub allowed: Vec<IpNet>,
}

/// Why an IPv4 address is not public, if it is not.
fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [127, ..] => "loopback",
        [169, 254, 169, 254] => "cloud metadata",
        [169, 254, ..] => "link-local",
        [10, ..] | [192, 168, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [100, b, ..] if (64..128).contains(&b) => "shared address space",
        [0, ..] => "unspecified",
        [192, 0, 0, _] => "reserved (IETF)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [198, 18 | 19, ..] => "benchmarking",
        [255, 255, 255, 255] => "broadcast",
        [a, ..] if a >= 224 => "multicast or reserved",
        _ => return None,
    })
}

/// Why an IPv6 address is not public, if it is not; IPv4 inside IPv6 is
/// judged as the IPv4 address it carries.
fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // ::ffff:a.b.c.d (mapped) is the IPv4 address; ::a.b.c.d (compatible,
    // deprecated) is never needed.
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return v4_reason(embedded(s[6], s[7]));
    }
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible (deprecated)");
    }
    // NAT64 64:ff9b::/96 carries an IPv4 address in the last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(embedded(s[6], s[7]));
    }
    Some(match s[0] {
        0x2002 => return v4_reason(embedded(s[1], s[2])), // 6to4
        0x2001 if s[1] == 0 => "Teredo tunnel",
        0x2001 if s[1] == 0xdb8 => "documentation",
        x if x & 0xfe00 == 0xfc00 => "unique local (private)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local (deprecated)",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

impl Guard {
    /// Why connecting to `ip` is not allowed (`private`, `loopback`, …),
    /// if it is not.
    fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        let reason = match ip {
            IpAddr::V4(v4) => v4_reason(v4),
            IpAddr::V6(v6) => v6_reason(v6),
        };
        match reason {
            Some("loopback") if self.allow_loopback => None,
            other => other,
        }
    }

    /// `Err(reason)` if connecting to the address literal `ip` is not
    /// allowed (the tenant wrote it, so the message may repeat it).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        match self.refusal(ip) {
            None => Ok(()),
            Some(r) => Err(format!("{ip} is a {r} address")),
        }
    }

    /// Resolves `host:port` once and checks every address; all must pass.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        // What a name resolves to is this network's business: refusals say
        // what kind of address it was, never which one (no internal DNS
        // answers in a tenant's delivery log); the log keeps the detail.
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| {
                tracing::info!(host, error = %e, "webhook destination does not resolve");
                format!("cannot resolve {host}")
            })?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no addresses"));
        }
        for a in &addrs {
            if let Some(r) = self.refusal(a.ip()) {
                tracing::info!(host, addr = %a.ip(), reason = r, "webhook destination refused");
                return Err(format!(
                    "{host} resolves to a {r} address, which webhooks may not reach"
                ));
            }
        }
        Ok(addrs)
    }

    /// Checks a destination URL: http(s) only (https only when
    /// `https_only`), no credentials in it, and its host allowed — an
    /// address literal always, a name only with `resolve_names` (at
    /// delivery, [`GuardedResolver`] checks names as it connects).
    pub async fn check_url(
        &self,
        url: &str,
        https_only: bool,
        resolve_names: bool,
    ) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        match u.scheme() {
            "https" => {}
            "http" if !https_only => {}
            "http" => return Err("only https:// destinations are allowed".into()),
            other => return Err(format!("scheme {other}:// is not allowed")),
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        if u.fragment().is_some() {
            return Err("a URL fragment is not sent; remove it".into());
        }
        let port = u.port_or_known_default().ok_or("the URL has no port")?;
        match u.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) if resolve_names => {
                self.resolve(name, port).await?;
            }
            Some(url::Host::Domain(_)) => {}
            None => return Err("the URL has no host".into()),
        }
        Ok(u)
    }
}

/// The HTTP client's resolver: every name it connects to passes the guard.
pub struct GuardedResolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts in the URL's port.
            let addrs = guard
                .resolve(&host, 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(g: &Guard, ip: &str) -> bool {
        let ip: IpAddr = ip
            .parse()
            .unwrap_or_else(|e| panic!("`{ip}` in the test: {e}"));
        g.check_ip(ip).is_err()
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        let g = Guard::default();
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.10.10",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "2001:db8::1",
        ] {
            assert!(refused(&g, ip), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(&g, ip), "{ip} is public");
        }
    }

    #[test]
    fn explicit_allowances() {
        let g = Guard {
            allow_loopback: true,
            allowed: vec!["10.20.0.0/16".parse().unwrap_or_else(|_| IpNet::default())],
        };
        assert!(!refused(&g, "127.0.0.1"));
        assert!(!refused(&g, "::1"));
        assert!(!refused(&g, "10.20.1.1"));
        assert!(refused(&g, "10.21.1.1"));
        assert!(
            refused(&g, "169.254.169.254"),
            "loopback leave is not a metadata leave"
        );
    }

    #[tokio::test]
    async fn urls() {
        let g = Guard::default();
        for bad in [
            "ftp://example.com/",
            "http://user:pw@93.184.216.34/",
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/",
            "not a url",
            "https://93.184.216.34/#frag",
        ] {
            assert!(g.check_url(bad, false, true).await.is_err(), "{bad}");
        }
        assert!(
            g.check_url("http://93.184.216.34/hook", true, true)
                .await
                .is_err(),
            "https only"
        );
        assert!(g
            .check_url("https://93.184.216.34/hook", true, true)
            .await
            .is_ok());
        assert!(
            g.check_url("http://[::ffff:127.0.0.1]/", false, false)
                .await
                .is_err(),
            "literals are checked without resolving"
        );
    }
}
