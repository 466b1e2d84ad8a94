//! Which database a `database = "…"` setting names — `sqlite:PATH` or a `postgres://` URL — and
//! how such a URL is shown: never with its password.

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

/// A PostgreSQL connection URL. Its `Display` and `Debug` show user, hosts, ports and database
/// but never the password (`***` stands in for one).
#[derive(Clone)]
pub struct PostgresUrl {
    config: Box<postgres::Config>,
}

impl PostgresUrl {
    pub fn parse(raw: &str) -> Result<PostgresUrl> {
        let config = postgres::Config::from_str(raw).map_err(|e| Error::InvalidUrl {
            url: redact(raw),
            reason: e.to_string(),
        })?;
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidUrl {
                url: redact(raw),
                reason: "no host (write postgres://user@host:port/database)".into(),
            });
        }
        Ok(PostgresUrl {
            config: Box::new(config),
        })
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, name: &str) -> PostgresUrl {
        let mut config = self.config.clone();
        config.dbname(name);
        PostgresUrl { config }
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
        config.connect(postgres::NoTls).map_err(|e| Error::Connect {
            target: self.target(),
            reason: e.to_string(),
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
