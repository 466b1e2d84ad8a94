//! The files shipped for installs stay valid: the compose config passes `config check`, and
//! the systemd unit verifies and stays hardened.

mod common;

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_compose_config_passes_config_check() {
    let out = common::aiwatch()
        .args(["config", "check"])
        .arg(repo().join("dist/compose.aiwatch.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(repo().join("dist/aiwatch.service")).unwrap();
    for key in [
        "DynamicUser=yes",
        "StateDirectory=aiwatch",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("aiwatch");
    let path = dir.path().join("aiwatch.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/aiwatch", &binary.display().to_string()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(said.trim().is_empty() && verify.status.success(), "{said}");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success() && report.contains("Overall exposure level"),
        "{report}{}",
        String::from_utf8_lossy(&security.stderr)
    );
}
