//! The crate's one error type: everything a store call can fail with.

use std::path::PathBuf;

/// What went wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused or failed an operation (I/O, locking, constraint, corruption).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The database was written by a newer aiwatch whose schema this build does not know.
    #[error(
        "database {path} has schema version {found}, but this aiwatch knows versions up to \
         {supported}; upgrade aiwatch or point it at another database"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// The database could not be put in WAL mode (e.g. it sits on a network filesystem).
    #[error("could not switch {path} to WAL mode (the journal mode stays `{mode}`)")]
    NoWal { path: PathBuf, mode: String },

    /// An operation gave up after waiting out the busy timeout.
    #[error("{0} failed: the database stayed busy")]
    Busy(&'static str),

    /// The background checkpoint thread could not be started.
    #[error("could not start the checkpoint thread: {0}")]
    Thread(#[source] std::io::Error),

    /// `PRAGMA quick_check` found damage: writes would fail one after the other.
    #[error("{path} is damaged ({findings}); restore it from a backup, or move it aside to start a new one")]
    Corrupt { path: PathBuf, findings: String },

    /// The file is an SQLite database, but not one of aiwatch's.
    #[error("{path} is not an aiwatch database ({reason}); refusing to modify it")]
    Foreign { path: PathBuf, reason: String },

    /// A schema migration failed; the database was left at the version before it.
    #[error("migrating the database to schema version {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },

    /// A stored row could not be turned back into a value (JSON of another shape, bad name).
    #[error("stored {what} could not be decoded: {reason}")]
    Decode { what: &'static str, reason: String },

    /// A value could not be encoded for storage.
    #[error("encoding {what} failed: {reason}")]
    Encode { what: &'static str, reason: String },

    /// PostgreSQL refused or failed an operation.
    #[error("PostgreSQL error: {}", describe(.0))]
    Postgres(#[from] postgres::Error),

    /// No connection to PostgreSQL could be opened (`target` is the address, never a password).
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },

    /// A PostgreSQL schema migration failed; the database was left at the version before it.
    #[error(
        "migrating the PostgreSQL database to schema version {version} failed: {}",
        describe(source)
    )]
    PostgresMigration {
        version: i64,
        #[source]
        source: postgres::Error,
    },

    /// The PostgreSQL database was written by a newer aiwatch.
    #[error(
        "PostgreSQL database {target} has schema version {found}, but this aiwatch knows versions \
         up to {supported}; upgrade aiwatch or point it at another database"
    )]
    PostgresTooNew {
        target: String,
        found: i64,
        supported: i64,
    },

    /// A `database` setting that is neither `sqlite:PATH` nor a usable `postgres://` URL.
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The caller asked for something that makes no sense (`from` after `to`, a quantile
    /// outside 0..=1).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

/// A PostgreSQL error with what the server said (its message, SQLSTATE, detail and hint),
/// which the client's own `Display` leaves out.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        for extra in [db.detail(), db.hint()].into_iter().flatten() {
            text.push_str("; ");
            text.push_str(extra);
        }
        return text;
    }
    aiwatch_core::error_chain::with_causes(e)
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
