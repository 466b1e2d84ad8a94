//! Reads the proxy settings users already have (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and opens
//! CONNECT tunnels through them.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Error;

/// One proxy: where it is and, if given, its credentials (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    credentials: Option<String>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.display_url())
    }
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]`; a bare `host:port` is taken as http.
    pub fn parse(var: &'static str, raw: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::ProxyConfig { var, reason };
        let rest = match raw.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(err(format!(
                    "scheme `{scheme}` is not supported; use an http:// proxy URL"
                )))
            }
            None => raw,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((creds, hp)) => (Some(creds.to_owned()), hp),
            None => (None, authority),
        };
        let (host, port) = if let Some(stripped) = host_port.strip_prefix('[') {
            let (h, after) = stripped
                .split_once(']')
                .ok_or_else(|| err("unclosed [ in the host".into()))?;
            let port = after.strip_prefix(':').map(str::parse).transpose();
            (h.to_owned(), port)
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse()).transpose()),
                None => (host_port.to_owned(), Ok(None)),
            }
        };
        let port = port
            .map_err(|_| err("the port is not a number".into()))?
            .unwrap_or(80);
        if host.is_empty() {
            return Err(err("no host".into()));
        }
        Ok(Self {
            host,
            port,
            credentials,
        })
    }

    /// The proxy's URL without credentials, for reports.
    pub fn display_url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    fn auth_header(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        })
    }

    /// The `Proxy-Authorization` value for a forwarded plain-HTTP request.
    pub fn authorization(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        })
    }
}

/// The proxy settings of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    pub https: Option<Proxy>,
    pub http: Option<Proxy>,
    no_proxy: Vec<String>,
}

impl ProxySettings {
    /// No proxy at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Builds settings from the values of HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either case).
    pub fn from_values(
        https: Option<&str>,
        http: Option<&str>,
        no_proxy: Option<&str>,
    ) -> Result<Self, Error> {
        let parse = |var, v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| Proxy::parse(var, v))
                .transpose()
        };
        Ok(Self {
            https: parse("HTTPS_PROXY", https)?,
            http: parse("HTTP_PROXY", http)?,
            no_proxy: no_proxy
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().trim_start_matches('*').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }

    /// Reads the environment, upper case first, as curl does.
    pub fn from_env() -> Result<Self, Error> {
        let var = |upper: &str, lower: &str| {
            std::env::var(upper)
                .ok()
                .or_else(|| std::env::var(lower).ok())
        };
        Self::from_values(
            var("HTTPS_PROXY", "https_proxy").as_deref(),
            var("HTTP_PROXY", "http_proxy").as_deref(),
            var("NO_PROXY", "no_proxy").as_deref(),
        )
    }

    /// The proxy for a request to `host` over `scheme`, honouring NO_PROXY.
    pub fn for_target(&self, scheme: &str, host: &str) -> Option<&Proxy> {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let excluded = self.no_proxy.iter().any(|entry| {
            entry == "*"
                || host == entry.trim_start_matches('.')
                || (entry.starts_with('.') && host.ends_with(entry.as_str()))
                || host.ends_with(&format!(".{entry}"))
        });
        if excluded {
            return None;
        }
        match scheme {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }
    }
}

/// Why a tunnel could not be opened.
#[derive(Debug)]
pub enum TunnelError {
    Timeout,
    Rejected(u16),
    Broken(String),
}

/// Sends CONNECT for `host:port` over an open connection to the proxy and reads its answer.
pub async fn open_tunnel(
    proxy: &Proxy,
    mut stream: TcpStream,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, TunnelError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{}User-Agent: aiwatch\r\n\r\n",
        proxy.auth_header().unwrap_or_default()
    );
    let exchange = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| TunnelError::Broken(e.to_string()))?;
        // The proxy's answer is a status line and headers; 8 KiB is far more than any sends.
        let mut head = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= 8192 {
                return Err(TunnelError::Broken("the proxy's answer is too long".into()));
            }
            let n = stream
                .read(&mut byte)
                .await
                .map_err(|e| TunnelError::Broken(e.to_string()))?;
            if n == 0 {
                return Err(TunnelError::Broken(
                    "the proxy closed the connection".into(),
                ));
            }
            head.push(byte[0]);
        }
        let status = String::from_utf8_lossy(&head)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| TunnelError::Broken("the proxy did not answer HTTP".into()))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(TunnelError::Rejected(status))
        }
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Err(TunnelError::Timeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_hide_credentials() {
        let p = Proxy::parse("HTTPS_PROXY", "http://user:secret@proxy.corp:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        assert_eq!(p.display_url(), "http://proxy.corp:3128");
        assert!(!format!("{p:?}").contains("secret"));
        let p = Proxy::parse("HTTPS_PROXY", "127.0.0.1:8888").unwrap();
        assert_eq!(p.port, 8888);
        assert!(Proxy::parse("HTTPS_PROXY", "socks5://x:1").is_err());
        assert!(Proxy::parse("HTTPS_PROXY", "http://x:abc").is_err());
    }

    #[test]
    fn no_proxy_excludes_hosts_and_domains() {
        let s = ProxySettings::from_values(
            Some("http://p:3128"),
            None,
            Some("localhost, .internal.example,example.org"),
        )
        .unwrap();
        assert!(s.for_target("https", "api.openai.com").is_some());
        assert!(s.for_target("https", "localhost").is_none());
        assert!(s.for_target("https", "llm.internal.example").is_none());
        assert!(s.for_target("https", "api.example.org").is_none());
        assert!(s.for_target("http", "api.openai.com").is_none());
    }
}
