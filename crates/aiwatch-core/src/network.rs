//! Pure rules about addresses and hosts: which DNS answers are sinkholes, which hosts are local,
//! which hosts are the same site.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an answer looks like a DNS filter's rather than the real host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkholeKind {
    /// 0.0.0.0 or ::, the "null" answer of Pi-hole, AdGuard and blocklists.
    Null,
    /// 127.0.0.0/8 or ::1 for a public name.
    Loopback,
    /// RFC 1918, link-local, CGNAT or unique-local for a public name.
    Private,
    /// A Cisco Umbrella / OpenDNS block-page address (146.112.61.104–110).
    BlockPage,
}

impl SinkholeKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Null => "a null address (0.0.0.0 or ::), the usual answer of Pi-hole, AdGuard and DNS blocklists",
            Self::Loopback => "a loopback address for a public name",
            Self::Private => "a private-network address for a public name",
            Self::BlockPage => "a Cisco Umbrella/OpenDNS block-page address",
        }
    }
}

/// Names under these suffixes are private by definition (RFC 6761, RFC 8375, common practice),
/// so loopback or private answers for them are expected, not filtering.
const PRIVATE_SUFFIXES: &[&str] = &[
    ".localhost",
    ".local",
    ".internal",
    ".lan",
    ".home.arpa",
    ".test",
    ".corp",
    ".intranet",
];

/// Whether `host` is a name that should resolve to public addresses.
pub fn is_public_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.parse::<IpAddr>().is_ok() || !host.contains('.') {
        return false;
    }
    !PRIVATE_SUFFIXES.iter().any(|s| host.ends_with(s))
}

/// Classifies one DNS answer for `host`; `None` means it looks like a real address.
pub fn sinkhole_kind(host: &str, addr: IpAddr) -> Option<SinkholeKind> {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    if addr.is_unspecified() {
        return Some(SinkholeKind::Null);
    }
    if !is_public_name(host) {
        return None;
    }
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            if v4.is_loopback() {
                Some(SinkholeKind::Loopback)
            } else if (a, b, c) == (146, 112, 61) && (104..=110).contains(&d) {
                Some(SinkholeKind::BlockPage)
            } else if v4.is_private() || v4.is_link_local() || is_cgnat(v4) {
                Some(SinkholeKind::Private)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(SinkholeKind::Loopback)
            } else if is_unique_local(v6) || is_unicast_link_local(v6) {
                Some(SinkholeKind::Private)
            } else {
                None
            }
        }
    }
}

fn is_cgnat(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 100 && (64..128).contains(&b)
}

fn is_unique_local(v6: Ipv6Addr) -> bool {
    (v6.segments()[0] & 0xfe00) == 0xfc00
}

fn is_unicast_link_local(v6: Ipv6Addr) -> bool {
    (v6.segments()[0] & 0xffc0) == 0xfe80
}

/// The host part of an http(s) URL, without brackets, port, path or credentials.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// The port of a URL: the explicit one, else the scheme's default (80 for http, 443 for https).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let after_host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.1,
        None => host_port.split_once(':').map_or("", |(_, p)| p),
    };
    match after_host.trim_start_matches(':') {
        "" if scheme.eq_ignore_ascii_case("https") => Some(443),
        "" if scheme.eq_ignore_ascii_case("http") => Some(80),
        "" => None,
        port => port.parse().ok(),
    }
}

/// Whether two hosts are the same site: equal, or one a subdomain of the other once a leading
/// `www.` is set aside (`example.com`, `www.example.com`, `chat.example.com` are one site).
/// Siblings (`a.example.com`, `b.example.com`) are not: without the public-suffix list their
/// shared parent could be a registry (`co.uk`). IP addresses only match themselves.
pub fn hosts_related(a: &str, b: &str) -> bool {
    let norm = |h: &str| {
        h.trim_matches(['[', ']'])
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    let (a, b) = (norm(a), norm(b));
    if a == b {
        return true;
    }
    if a.parse::<IpAddr>().is_ok() || b.parse::<IpAddr>().is_ok() {
        return false;
    }
    let strip = |h: &str| {
        h.strip_prefix("www.")
            .map(str::to_owned)
            .unwrap_or_else(|| h.to_owned())
    };
    let (a, b) = (strip(&a), strip(&b));
    let under = |child: &str, parent: &str| {
        child
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
    };
    a == b || under(&a, &b) || under(&b, &a)
}

/// Whether a URL points at this machine (a local model server, a loopback fake).
pub fn url_is_loopback(url: &str) -> bool {
    url_host(url).is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_url_or_its_scheme() {
        assert_eq!(url_port("http://127.0.0.1:11434/v1"), Some(11434));
        assert_eq!(url_port("https://api.openai.com/v1"), Some(443));
        assert_eq!(url_port("http://[::1]/x"), Some(80));
        assert_eq!(url_port("http://[::1]:1234/x"), Some(1234));
        assert_eq!(url_port("http://h:nope/"), None);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn null_answers_are_sinkholes_for_every_name() {
        assert_eq!(
            sinkhole_kind("api.openai.com", ip("0.0.0.0")),
            Some(SinkholeKind::Null)
        );
        assert_eq!(
            sinkhole_kind("api.openai.test", ip("::")),
            Some(SinkholeKind::Null)
        );
    }

    #[test]
    fn private_answers_are_sinkholes_only_for_public_names() {
        assert_eq!(
            sinkhole_kind("api.openai.com", ip("127.0.0.1")),
            Some(SinkholeKind::Loopback)
        );
        assert_eq!(
            sinkhole_kind("api.openai.com", ip("10.1.2.3")),
            Some(SinkholeKind::Private)
        );
        assert_eq!(
            sinkhole_kind("api.openai.com", ip("146.112.61.106")),
            Some(SinkholeKind::BlockPage)
        );
        assert_eq!(
            sinkhole_kind("api.openai.com", ip("::ffff:146.112.61.104")),
            Some(SinkholeKind::BlockPage)
        );
        assert_eq!(
            sinkhole_kind("api.openai.com", ip("fd00::1")),
            Some(SinkholeKind::Private)
        );
        assert_eq!(sinkhole_kind("llm.corp", ip("10.1.2.3")), None);
        assert_eq!(sinkhole_kind("api.openai.test", ip("127.0.0.1")), None);
        assert_eq!(sinkhole_kind("api.openai.com", ip("162.159.140.245")), None);
    }

    #[test]
    fn related_hosts_are_one_site_and_portals_are_not() {
        assert!(hosts_related("chat.intranet.test", "chat.intranet.test"));
        assert!(hosts_related("example.com", "WWW.Example.com."));
        assert!(hosts_related("www.example.com", "login.example.com"));
        assert!(hosts_related("chat.example.com", "example.com"));
        assert!(hosts_related("::1", "[::1]"));
        assert!(!hosts_related(
            "chat.intranet.test",
            "login.hotel-wifi.test"
        ));
        assert!(!hosts_related("a.example.com", "b.example.com"));
        assert!(!hosts_related("example.com", "badexample.com"));
        assert!(!hosts_related("127.0.0.1", "27.0.0.1"));
    }

    #[test]
    fn url_host_handles_ports_brackets_and_credentials() {
        assert_eq!(
            url_host("https://api.openai.com/v1"),
            Some("api.openai.com")
        );
        assert_eq!(url_host("http://127.0.0.1:11434"), Some("127.0.0.1"));
        assert_eq!(url_host("http://[::1]:8080/x"), Some("::1"));
        assert_eq!(url_host("http://u:p@h.example:1/"), Some("h.example"));
        assert!(url_is_loopback("http://localhost:1234/v1"));
        assert!(!url_is_loopback("https://api.openai.com/v1"));
    }
}
