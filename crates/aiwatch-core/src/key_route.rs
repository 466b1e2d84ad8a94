//! Where API keys may travel. A key goes only to its own provider: never over plain HTTP except
//! to this machine (or, opted in per service, to a private network), and a built-in key
//! variable (`OPENAI_API_KEY`, …) pointed at another host than its provider's is named here so
//! the binary can refuse it (a config found implicitly) or say so (a config the user chose).

use std::net::IpAddr;

use crate::catalog::Catalog;
use crate::network::{is_public_name, url_host};
use crate::service::ServiceName;

/// Who can read what travels to a URL in clear text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// https: nobody on the way.
    Encrypted,
    /// Plain HTTP to this machine.
    Loopback,
    /// Plain HTTP to a private network (RFC 1918, link-local, ULA, CGNAT, or a name that is not
    /// public such as `gpu-box` or `llm.lan`).
    PrivateNetwork,
    /// Plain HTTP across the internet.
    Public,
}

/// How far a key sent to `url` could be read on the way.
pub fn reach(url: &str) -> Reach {
    if !url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Reach::Encrypted;
    }
    let Some(host) = url_host(url) else {
        return Reach::Public;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return Reach::Loopback;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Reach::Loopback,
        Ok(ip) if is_private_ip(ip) => Reach::PrivateNetwork,
        Ok(_) => Reach::Public,
        Err(_) if !is_public_name(&host) => Reach::PrivateNetwork,
        Err(_) => Reach::Public,
    }
}

fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Why a key may not go to `url` in clear text, if it may not. `opted_in` is the service's
/// `allow_plain_http`, which admits private networks only.
pub fn plain_http_refusal(url: &str, var: &str, opted_in: bool) -> Option<String> {
    match reach(url) {
        Reach::Encrypted | Reach::Loopback => None,
        Reach::PrivateNetwork if opted_in => None,
        Reach::PrivateNetwork => Some(format!(
            "would send {var} over plain HTTP to {}; use https://, or set `allow_plain_http = true` on this service if that private network is yours",
            url_host(url).unwrap_or(url)
        )),
        Reach::Public => Some(format!(
            "would send {var} over plain HTTP across the internet to {}; use https:// (`allow_plain_http` admits private networks only)",
            url_host(url).unwrap_or(url)
        )),
    }
}

/// A built-in key variable sent somewhere else than its provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedKey {
    pub service: ServiceName,
    pub var: String,
    /// Where it goes now.
    pub host: String,
    /// Where the built-in catalog sends it.
    pub home: String,
}

/// Every service of `catalog` that sends a built-in key variable to another host than the
/// built-in service that owns that variable.
pub fn moved_keys(catalog: &Catalog) -> Vec<MovedKey> {
    let builtin = Catalog::builtin();
    let homes: Vec<(&str, &str)> = builtin
        .iter()
        .filter_map(|s| {
            let var = s.api_key_env.as_deref()?;
            let host = url_host(s.api_base.as_deref()?)?;
            Some((var, host))
        })
        .collect();
    catalog
        .iter()
        .filter_map(|s| {
            let var = s.api_key_env.as_deref()?;
            let host = url_host(s.api_base.as_deref()?)?;
            let mut owners = homes.iter().filter(|(v, _)| *v == var).peekable();
            owners.peek()?;
            if owners.clone().any(|(_, h)| h.eq_ignore_ascii_case(host)) {
                return None;
            }
            let home = owners.map(|(_, h)| *h).collect::<Vec<_>>().join(", ");
            Some(MovedKey {
                service: s.name.clone(),
                var: var.to_owned(),
                host: host.to_owned(),
                home,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn clear_text_reach_is_told_by_the_host() {
        assert_eq!(reach("https://api.openai.com/v1"), Reach::Encrypted);
        assert_eq!(reach("http://127.0.0.1:11434"), Reach::Loopback);
        assert_eq!(reach("http://[::1]:8080/v1"), Reach::Loopback);
        assert_eq!(reach("http://localhost:1234/v1"), Reach::Loopback);
        assert_eq!(reach("http://192.168.1.20:11434"), Reach::PrivateNetwork);
        assert_eq!(reach("http://100.100.1.1/v1"), Reach::PrivateNetwork);
        assert_eq!(reach("http://[fd00::1]/v1"), Reach::PrivateNetwork);
        assert_eq!(reach("http://gpu-box:8000/v1"), Reach::PrivateNetwork);
        assert_eq!(reach("http://llm.example.com/v1"), Reach::Public);
        assert_eq!(reach("http://8.8.8.8/v1"), Reach::Public);
        assert_eq!(reach("HTTP://llm.example.com/v1"), Reach::Public);
    }

    #[test]
    fn the_opt_in_admits_private_networks_and_never_the_internet() {
        let var = "TEAM_KEY";
        assert!(plain_http_refusal("http://10.0.0.5/v1", var, false).is_some());
        assert!(plain_http_refusal("http://10.0.0.5/v1", var, true).is_none());
        assert!(plain_http_refusal("http://llm.example.com/v1", var, true).is_some());
        assert!(plain_http_refusal("http://127.0.0.1:9/v1", var, false).is_none());
    }

    #[test]
    fn a_built_in_key_sent_elsewhere_is_named_with_its_home() {
        let config = Config::parse(
            "[[service]]\nname = \"openai-api\"\napi_base = \"https://llm.example.com/v1\"\n\n[[service]]\nname = \"mine\"\napi_base = \"https://other.example.com/v1\"\napi_key_env = \"ANTHROPIC_API_KEY\"\n\n[[service]]\nname = \"team\"\napi_base = \"https://team.example.com/v1\"\napi_key_env = \"TEAM_KEY\"\n",
        )
        .unwrap();
        let moved = moved_keys(&Catalog::with_config(&config));
        let names: Vec<_> = moved
            .iter()
            .map(|m| (m.service.as_str(), m.var.as_str(), m.host.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("openai-api", "OPENAI_API_KEY", "llm.example.com"),
                ("mine", "ANTHROPIC_API_KEY", "other.example.com"),
            ]
        );
        assert_eq!(moved[0].home, "api.openai.com");
        assert!(moved_keys(&Catalog::builtin()).is_empty());
    }
}
