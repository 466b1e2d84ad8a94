//! A throwaway PostgreSQL for tests and benchmarks: Debian's `postgresql` package (installed
//! when missing), a cluster made by `initdb` in a temp folder, started by `pg_ctl` as the
//! `postgres` user (when run as root) on a free port of 127.0.0.1 with its socket in that folder,
//! with TLS on (a certificate for 127.0.0.1 from a throwaway authority, whose root is
//! [`Cluster::ca_file`]), and stopped and removed when dropped — also when the tests fail or the
//! task panics.
//!
//! `cargo xtask e2e postgres` runs every PostgreSQL test against it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A running throwaway cluster.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    ca_file: PathBuf,
    /// Declared last: removed after the server stopped.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Installs PostgreSQL if needed, then creates and starts a cluster.
    pub fn start() -> Result<Cluster> {
        crate::e2e::install(&["postgresql"])?;
        let bin = server_bin()?;
        let as_postgres = is_root()?;
        let dir = tempfile::Builder::new().prefix("aiwatch-pg.").tempdir()?;
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()))?;
        }
        let data = dir.path().join("data");
        let mut initdb = command(as_postgres, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run_quiet(&mut initdb).context("initdb")?;
        let (ca_file, tls_options) = server_certificate(dir.path(), as_postgres)?;
        // A free port can be taken between looking and binding: try a few.
        let mut last = None;
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=200 {tls_options}",
                dir.path().display()
            );
            let mut start = command(as_postgres, &bin.join("pg_ctl"));
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("server.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]);
            match run_quiet(&mut start) {
                Ok(()) => {
                    println!(
                        "postgres: cluster on 127.0.0.1:{port} in {}",
                        dir.path().display()
                    );
                    return Ok(Cluster {
                        bin,
                        data,
                        port,
                        as_postgres,
                        ca_file,
                        dir,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("pg_ctl start failed"))
            .context(format!("the server's log:\n{log}")))
    }

    /// The superuser's URL (trust authentication: loopback only, throwaway cluster).
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The superuser's URL for another database of the cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root certificate (PEM) that signed the server's: what `sslrootcert` names for
    /// `sslmode=verify-full`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

/// A certificate for 127.0.0.1 from a new throwaway authority, written into `dir` as the
/// server wants it (key readable by its owner only, owned by `postgres` when the server runs
/// as that user); returns the authority's root file and the server options that turn TLS on.
fn server_certificate(dir: &Path, as_postgres: bool) -> Result<(PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let ca = aiwatch_testkit::ca::TestCa::new("aiwatch e2e PostgreSQL root", "aiwatch test");
    let identity = ca.issue(&["127.0.0.1"]);
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&cert, &identity.chain_pem)?;
    std::fs::write(&key, &identity.key_pem)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    if as_postgres {
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(&cert)
            .arg(&key))?;
    }
    let ca_file = ca.write_pem(dir, "root.pem");
    let options = format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        cert.display(),
        key.display()
    );
    Ok((ca_file, options))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = command(self.as_postgres, &self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        if let Err(e) = run_quiet(&mut stop) {
            eprintln!("postgres: stopping the cluster failed: {e:#}");
        }
    }
}

/// `/usr/lib/postgresql/<newest>/bin`.
fn server_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql (is Debian's postgresql installed?)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no /usr/lib/postgresql/*/bin/initdb"),
    }
}

fn is_root() -> Result<bool> {
    let out = Command::new("id").arg("-u").output().context("id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program`, run as the `postgres` user when we are root (the server refuses to run as root).
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(c: &mut Command) -> Result<()> {
    let status = c.status().with_context(|| format!("{c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed: {status}");
    }
    Ok(())
}

/// Runs `c`, showing its output only when it fails.
fn run_quiet(c: &mut Command) -> Result<()> {
    let out = c.output().with_context(|| format!("{c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The variable the PostgreSQL tests read.
pub const TEST_URL_ENV: &str = "AIWATCH_TEST_POSTGRES_URL";
/// The root certificate of the test server's TLS certificate, for the TLS tests.
pub const TEST_CA_ENV: &str = "AIWATCH_TEST_POSTGRES_CA";

/// `cargo xtask e2e postgres`: every PostgreSQL test against a throwaway cluster.
/// The store's whole suite (both engines) and `serve` on PostgreSQL.
pub fn e2e(extra: &[&str]) -> Result<()> {
    let cluster = Cluster::start()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in [
        &["test", "-p", "aiwatch-store"][..],
        &["test", "-p", "aiwatch", "--test", "serve_postgres"][..],
    ] {
        let status = Command::new(&cargo)
            .args(args)
            .args(extra)
            .env(TEST_URL_ENV, cluster.url())
            .env(TEST_CA_ENV, cluster.ca_file())
            .status()
            .context("cargo test")?;
        if !status.success() {
            bail!("{} failed on PostgreSQL", args.join(" "));
        }
    }
    println!(
        "e2e postgres: the store suite passed on SQLite and PostgreSQL (over TLS, verified too), and serve on PostgreSQL"
    );
    Ok(())
}
