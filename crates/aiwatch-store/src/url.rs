//! Which database a `database = "…"` setting names — `sqlite:PATH` or a `postgres://` URL, with
//! libpq's TLS parameters (`sslmode`, `sslrootcert`) — and how such a URL is shown: never with
//! its password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A parsed `database` setting.
#[derive(Clone, Debug)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(PostgresUrl),
}

impl Database {
    /// Reads `sqlite:PATH` (also `sqlite://PATH`), `postgres://…` or `postgresql://…`.
    pub fn parse(raw: &str) -> Result<Database> {
        if let Some(path) = raw.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Error::InvalidUrl {
                    url: raw.into(),
                    reason: "no file after `sqlite:`".into(),
                });
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return PostgresUrl::parse(raw).map(Database::Postgres);
        }
        Err(Error::InvalidUrl {
            url: redact(raw),
            reason: "neither \"sqlite:PATH\" nor \"postgres://…\"".into(),
        })
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => url.fmt(f),
        }
    }
}

/// A PostgreSQL connection URL. Its `Display` and `Debug` show user, hosts, ports, database and
/// a TLS mode other than the default, but never the password (`***` stands in for one).
#[derive(Clone)]
pub struct PostgresUrl {
    config: Box<postgres::Config>,
    tls: TlsSettings,
}

/// How a connection uses TLS: libpq's `sslmode`, with its meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked (libpq's
    /// default).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with a certificate from a trusted authority, for any host name.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

impl SslMode {
    const NAMES: [(&'static str, SslMode); 5] = [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, mode)| *mode == self)
            .map_or("prefer", |(name, _)| name)
    }
}

/// The TLS part of a URL: the mode, and the file of certificate authorities to trust
/// (`sslrootcert`) instead of the system's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// Takes `sslmode` and `sslrootcert` out of a URL's query (the PostgreSQL client reads
    /// neither `verify-*` nor `sslrootcert`) and returns the rest of the URL with them.
    fn take_from(raw: &str) -> Result<(String, TlsSettings)> {
        let mut settings = TlsSettings::default();
        let Some((base, query)) = raw.split_once('?') else {
            return Ok((raw.to_owned(), settings));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| Error::InvalidUrl {
                    url: redact(raw),
                    reason: format!("`{key}` is not UTF-8 once decoded"),
                })?;
            match key {
                "sslmode" => {
                    settings.mode = SslMode::NAMES
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|(_, mode)| *mode)
                        .ok_or_else(|| Error::InvalidUrl {
                            url: redact(raw),
                            reason: format!(
                                "sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full"
                            ),
                        })?;
                }
                "sslrootcert" if !value.is_empty() => {
                    settings.root_cert = Some(PathBuf::from(value.as_ref()));
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((rest, settings))
    }
}

impl PostgresUrl {
    pub fn parse(raw: &str) -> Result<PostgresUrl> {
        let (rest, tls) = TlsSettings::take_from(raw)?;
        let mut config = postgres::Config::from_str(&rest).map_err(|e| Error::InvalidUrl {
            url: redact(raw),
            reason: e.to_string(),
        })?;
        // As libpq: TLS does not apply to a local socket, whatever sslmode says.
        let only_sockets = config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, postgres::config::Host::Unix(_)));
        config.ssl_mode(match tls.mode {
            _ if only_sockets => postgres::config::SslMode::Disable,
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidUrl {
                url: redact(raw),
                reason: "no host (write postgres://user@host:port/database)".into(),
            });
        }
        Ok(PostgresUrl {
            config: Box::new(config),
            tls,
        })
    }

    /// The same server, credentials and TLS, another database.
    pub fn with_database(&self, name: &str) -> PostgresUrl {
        let mut config = self.config.clone();
        config.dbname(name);
        PostgresUrl {
            config,
            tls: self.tls.clone(),
        }
    }

    /// How connections use TLS.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The database name, if the URL gives one.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// A plain client for administrative statements (tests and the harness create and drop
    /// databases with it); `connect_timeout` bounds the connect.
    pub fn connect_admin(&self, connect_timeout: std::time::Duration) -> Result<postgres::Client> {
        let mut config = self.config.clone();
        config.connect_timeout(connect_timeout);
        let tls = crate::postgres::tls::connector(&self.tls)?;
        config.connect(tls).map_err(|e| Error::Connect {
            target: self.target(),
            reason: crate::postgres::tls::describe_connect_error(&e),
        })
    }

    /// The connection settings, password included: for connecting only.
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// Where it connects: `host:port` (or the socket folder), comma-separated when several.
    pub fn target(&self) -> String {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    postgres::config::Host::Tcp(name) if name.contains(':') => {
                        format!("[{name}]:{port}")
                    }
                    postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    postgres::config::Host::Unix(dir) => {
                        format!("{} (port {port})", dir.display())
                    }
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("postgres://")?;
        if let Some(user) = self.config.get_user() {
            f.write_str(user)?;
            if self.config.get_password().is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.target())?;
        if let Some(db) = self.config.get_dbname() {
            write!(f, "/{db}")?;
        }
        if self.tls.mode != SslMode::Prefer {
            write!(f, "?sslmode={}", self.tls.mode.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// A URL as typed, with the password of `user:password@` and of a `password=` parameter
/// replaced by `***`, for messages about a URL that could not be parsed.
pub fn redact(raw: &str) -> String {
    let mut out = raw.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    let lower = out.to_ascii_lowercase();
    if let Some(i) = lower.find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_display_debug_or_errors() {
        let url = PostgresUrl::parse("postgres://aiwatch:s3cret@db.example:6543/watch").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://aiwatch:***@db.example:6543/watch"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let db = Database::parse("postgresql://u:s3cret@h/d?password=s3cret").unwrap();
        assert!(!format!("{db} {db:?}").contains("s3cret"));
        let err = Database::parse("postgres://u:s3cret@h:notaport/d").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert_eq!(
            redact("postgres://u:p@h/d?sslmode=disable&password=p2"),
            "postgres://u:***@h/d?sslmode=disable&password=***"
        );
    }

    #[test]
    fn libpq_tls_parameters_are_read_and_the_rest_of_the_query_kept() {
        let url = PostgresUrl::parse(
            "postgres://u@db.example/watch?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem",
        )
        .unwrap();
        assert_eq!(url.tls().mode, SslMode::VerifyFull);
        assert_eq!(
            url.tls().root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca dir/root.pem"))
        );
        assert_eq!(url.config.get_application_name(), Some("x"));
        assert_eq!(
            url.config.get_ssl_mode(),
            postgres::config::SslMode::Require
        );
        assert_eq!(
            url.to_string(),
            "postgres://u@db.example:5432/watch?sslmode=verify-full"
        );
        for (given, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
        ] {
            let url = PostgresUrl::parse(&format!("postgres://h/d?sslmode={given}")).unwrap();
            assert_eq!(url.tls().mode, mode);
            assert_eq!(url.with_database("other").tls().mode, mode);
        }
        assert_eq!(
            PostgresUrl::parse("postgres://h/d").unwrap().tls(),
            &TlsSettings::default()
        );
        let socket =
            PostgresUrl::parse("postgres://aiwatch@%2Frun%2Fpostgresql/aiwatch?sslmode=require")
                .unwrap();
        assert_eq!(
            socket.config.get_ssl_mode(),
            postgres::config::SslMode::Disable,
            "TLS does not apply to a local socket, as in libpq"
        );
        let err = PostgresUrl::parse("postgres://u:s3cret@h/d?sslmode=verify_full").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("verify-full") && text.contains("verify_full"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn sqlite_and_postgres_settings_are_told_apart() {
        assert!(matches!(
            Database::parse("sqlite:/var/lib/aiwatch/a.db").unwrap(),
            Database::Sqlite(p) if p == std::path::Path::new("/var/lib/aiwatch/a.db")
        ));
        assert!(matches!(
            Database::parse("sqlite://a.db").unwrap(),
            Database::Sqlite(p) if p == std::path::Path::new("a.db")
        ));
        let pg = Database::parse("postgres://aiwatch@127.0.0.1:5433/aiwatch").unwrap();
        assert_eq!(pg.to_string(), "postgres://aiwatch@127.0.0.1:5433/aiwatch");
        assert!(Database::parse("mysql://x").is_err());
        assert!(Database::parse("sqlite:").is_err());
    }
}
