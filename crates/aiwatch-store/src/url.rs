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
    /// neither `verify-*` nor `sslrootcert`) and returns the rest of the URL with them. The
    /// query starts where the client's own parser starts it: at the first `?` after the
    /// credentials (which end at the first `@`), so a `?` in a password is no query; keys are
    /// compared percent-decoded, as the client reads them.
    fn take_from(raw: &str) -> Result<(String, TlsSettings)> {
        let mut settings = TlsSettings::default();
        let after_scheme = raw.find("://").map_or(0, |i| i + 3);
        let after_credentials = raw[after_scheme..]
            .find('@')
            .map_or(after_scheme, |at| after_scheme + at + 1);
        let Some(query_at) = raw[after_credentials..]
            .find('?')
            .map(|i| after_credentials + i)
        else {
            return Ok((raw.to_owned(), settings));
        };
        let (base, query) = (&raw[..query_at], &raw[query_at + 1..]);
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact(raw),
            reason,
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| invalid(format!("`{text}` is not UTF-8 once decoded")))
        };
        let mut kept = Vec::new();
        let mut system_roots = false;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match decode(key)?.as_str() {
                "sslmode" => {
                    let value = decode(value)?;
                    settings.mode = match value.as_str() {
                        // libpq's `allow` (plain first, TLS if the server insists) cannot be
                        // done here; `prefer` connects to every server `allow` does.
                        "allow" => SslMode::Prefer,
                        name => SslMode::NAMES
                            .iter()
                            .find(|(known, _)| *known == name)
                            .map(|(_, mode)| *mode)
                            .ok_or_else(|| {
                                invalid(format!(
                                    "sslmode `{value}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                                ))
                            })?,
                    };
                }
                "sslrootcert" => match decode(value)?.as_str() {
                    "" => {}
                    // PostgreSQL 16's spelling of "the system's authorities".
                    "system" => {
                        system_roots = true;
                        settings.root_cert = None;
                    }
                    path => settings.root_cert = Some(PathBuf::from(path)),
                },
                _ => kept.push(pair),
            }
        }
        match settings.mode {
            // As libpq: `sslrootcert=system` checks certificates fully.
            SslMode::Prefer | SslMode::Require | SslMode::VerifyCa if system_roots => {
                settings.mode = SslMode::VerifyFull;
            }
            // As libpq: `require` with a root certificate file checks the chain.
            SslMode::Require if settings.root_cert.is_some() => settings.mode = SslMode::VerifyCa,
            _ => {}
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
            reason: aiwatch_core::error_chain::with_causes(&e),
        })?;
        // The client ends a password at its first `@`: the rest of it would be taken for the
        // host, and shown as one.
        if config
            .get_hosts()
            .iter()
            .any(|host| matches!(host, postgres::config::Host::Tcp(name) if name.contains('@')))
        {
            return Err(Error::InvalidUrl {
                url: redact(raw),
                reason: "the password holds `@`: write it as %40".into(),
            });
        }
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
        let tls = crate::postgres::tls::connector(&self.tls, &self.target())?;
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

/// A URL as typed, with the password of `user:password@` and every `password=` parameter
/// replaced by `***`, for messages about a URL that could not be parsed. Errs on the side of
/// hiding: everything from the first `:` of the credentials to the last `@` goes.
pub fn redact(raw: &str) -> String {
    let after_scheme = raw.find("://").map_or(0, |i| i + 3);
    let mut out = raw[..after_scheme].to_owned();
    let mut rest = &raw[after_scheme..];
    if let Some(at) = rest.rfind('@') {
        let credentials = &rest[..at];
        match credentials.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(credentials),
        }
        rest = &rest[at..];
    }
    out.push_str(rest);
    hide_password_parameters(&out)
}

/// `text` with the value of every `password=` parameter (key compared percent-decoded and
/// case-blind) replaced by `***`, wherever a `?` or `&` starts one.
fn hide_password_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    let ends = text
        .char_indices()
        .filter(|(_, c)| matches!(c, '?' | '&'))
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()));
    for end in ends {
        let segment = &text[start..end];
        match segment.split_once('=') {
            Some((key, _))
                if percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .eq_ignore_ascii_case("password") =>
            {
                out.push_str(key);
                out.push_str("=***");
            }
            _ => out.push_str(segment),
        }
        if end < text.len() {
            out.push_str(&text[end..end + 1]);
        }
        start = end + 1;
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
    fn a_password_with_url_characters_neither_shows_nor_moves_the_query() {
        // `?` in a password: the client ends credentials at the first `@`, and so does the
        // TLS reading, so `sslmode` is still seen.
        let url = PostgresUrl::parse("postgres://u:ab?cd@h/d?sslmode=require").unwrap();
        assert_eq!(url.tls().mode, SslMode::Require);
        assert_eq!(url.config.get_password(), Some(&b"ab?cd"[..]));
        assert_eq!(url.to_string(), "postgres://u:***@h:5432/d?sslmode=require");
        // A percent-encoded key is the key it spells.
        let url = PostgresUrl::parse("postgres://h/d?ssl%6Dode=disable").unwrap();
        assert_eq!(url.tls().mode, SslMode::Disable);
        // `@` in a password would leave part of it in the host: refused, and not shown.
        let err = PostgresUrl::parse("postgres://u:p@ss@h/d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("%40"), "{err}");
        assert!(!err.contains("ss@h"), "{err}");
        for (raw, secret) in [
            ("postgres://u:ab?cd@h:badport/d", "ab?cd"),
            ("postgres://u:p@ss@h:badport/d", "p@ss"),
            ("postgres://h:badport/d?password=a&password=b", "=b"),
            ("postgres://h:badport/d?pass%77ord=c", "=c"),
            ("postgres://h:badport/d?PASSWORD=dd&options=x@y", "dd"),
        ] {
            // Refused or (an `@` in the query ends the credentials there) read: never shown.
            let shown = match Database::parse(raw) {
                Ok(db) => format!("{db} {db:?}"),
                Err(e) => e.to_string(),
            };
            assert!(!shown.contains(secret), "{raw}: {shown}");
        }
    }

    #[test]
    fn libpq_rules_for_allow_and_root_certificates_hold() {
        let mode = |query: &str| {
            PostgresUrl::parse(&format!("postgres://h/d?{query}"))
                .unwrap()
                .tls()
                .mode
        };
        assert_eq!(mode("sslmode=allow"), SslMode::Prefer);
        assert_eq!(
            mode("sslmode=require&sslrootcert=/r.pem"),
            SslMode::VerifyCa
        );
        assert_eq!(
            mode("sslrootcert=/r.pem&sslmode=require"),
            SslMode::VerifyCa
        );
        assert_eq!(
            mode("sslmode=require&sslrootcert=system"),
            SslMode::VerifyFull
        );
        assert_eq!(mode("sslrootcert=system"), SslMode::VerifyFull);
        assert_eq!(
            mode("sslmode=verify-ca&sslrootcert=/r.pem"),
            SslMode::VerifyCa
        );
        assert_eq!(mode("sslmode=disable&sslrootcert=/r.pem"), SslMode::Disable);
        assert_eq!(mode("sslrootcert="), SslMode::Prefer);
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
