//! Completions and man pages come from the same definitions as `--help`.

mod common;

#[test]
fn completions_are_printed_for_every_shell_and_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = common::aiwatch()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in ["check", "serve", "gateway", "report"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bad = common::aiwatch()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn man_pages_are_written_for_the_command_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::aiwatch()
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for page in [
        "aiwatch.1",
        "aiwatch-check.1",
        "aiwatch-serve.1",
        "aiwatch-report.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let check = std::fs::read_to_string(dir.path().join("aiwatch-check.1")).unwrap();
    assert!(
        check.contains("Exit codes"),
        "the exit codes are in the page"
    );
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in [
        vec!["check"],
        vec!["status"],
        vec!["serve"],
        vec!["gateway"],
        vec!["drill"],
        vec!["services"],
        vec!["config", "check"],
        vec!["alert", "test"],
        vec!["report"],
        vec!["completions"],
    ] {
        let out = common::aiwatch().args(&sub).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example"),
            "`aiwatch {} --help` has no example",
            sub.join(" ")
        );
    }
}

#[test]
fn verbose_and_quiet_are_accepted_only_where_they_change_something() {
    for sub in ["serve", "gateway", "services", "drill"] {
        let out = common::aiwatch().args([sub, "-v"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "`aiwatch {sub} -v` is a usage error"
        );
    }
    for sub in ["check", "status"] {
        let out = common::aiwatch()
            .args([sub, "-q", "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "`aiwatch {sub} -q` is accepted");
    }
}
