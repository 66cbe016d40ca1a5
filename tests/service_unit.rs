//! `contrib/p2psip.service` as systemd reads it: `systemd-analyze verify`
//! accepts it, and `systemd-analyze security` rates its sandbox (the
//! score docs/operations.md records). Needs systemd-analyze (Debian:
//! `systemd`; `.ci/run` installs it). No systemd runs the unit here: a
//! container has no service manager to start it.

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/p2psip.service");

/// The unit with its ExecStart pointing at the binary under test (verify
/// checks that the command exists).
fn unit_under_test(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        args[1..],
        ["node", "run", "--config", "/etc/p2psip/node.toml"],
        "the unit runs the node from its configuration file"
    );
    let binary = assert_cmd::cargo::cargo_bin("p2psip");
    let path = dir.join("p2psip.service");
    std::fs::write(&path, text.replace(args[0], binary.to_str().unwrap())).unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze runs (Debian: apt install systemd; .ci/run installs it)")
}

#[test]
fn the_service_unit_verifies_and_its_sandbox_scores_ok() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let unit = unit.to_str().unwrap();
    let out = systemd_analyze(&["verify", unit]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "verify: {err}"
    );

    let out = systemd_analyze(&["security", "--offline=true", "--no-pager", unit]);
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    // systemd's scale: 0 (locked down) to 10 (unprotected); below 2 is "OK".
    assert!(score <= 2.0, "exposure {score}:\n{text}");
    for setting in [
        "NoNewPrivileges=",
        "ProtectSystem=",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "SystemCallFilter=~@privileged",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(setting))
            .unwrap_or_else(|| panic!("{setting} not rated:\n{text}"));
        assert!(line.trim_start().starts_with('✓'), "{line}");
    }
}
