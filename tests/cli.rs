//! The command line end to end, as a user types it: real processes, real
//! files, real QUIC on loopback.

mod common;

use common::cli::{json, p2psip, run_err, run_ok, NodeProcess};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn identity_new_show_and_verify() {
    let t = tempfile::tempdir().unwrap();
    let dir = p(t.path(), "node");
    let id = run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let key_mode = std::fs::metadata(t.path().join("node/identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let shown = json(&run_ok(&["identity", "show", "--dir", &dir, "--json"]));
    assert_eq!(shown["id"], id);
    assert_eq!(shown["kind"], "node");
    assert_eq!(shown["public_key"].as_str().unwrap().len(), 64);
    assert!(shown["difficulty"].as_u64().unwrap() >= 4);

    let cert = p(t.path(), "node/identity.pem");
    let v = json(&run_ok(&[
        "identity",
        "verify",
        &cert,
        "--difficulty",
        "4",
        "--expect-id",
        id,
        "--json",
    ]));
    assert_eq!(v["id"], id);
    assert_eq!(v["valid"], true);
    let other = "00".repeat(32);
    let err = run_err(&[
        "identity",
        "verify",
        &cert,
        "--difficulty",
        "4",
        "--expect-id",
        &other,
    ]);
    assert!(err.contains("not the expected"), "{err}");

    // Never overwrites an identity.
    let err = run_err(&["identity", "new", "--dir", &dir, "--difficulty", "0"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn key_file_readable_by_others_is_refused_naming_the_path() {
    let t = tempfile::tempdir().unwrap();
    let dir = p(t.path(), "n");
    run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "0"]);
    let key = t.path().join("n/identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = run_err(&["identity", "show", "--dir", &dir]);
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn openssl_made_ed25519_certificate_verifies_at_difficulty_zero() {
    let t = tempfile::tempdir().unwrap();
    let key = p(t.path(), "k.pem");
    let cert = p(t.path(), "c.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", &key, "-out", &cert,
        ])
        .args(["-days", "30", "-subj", "/CN=made-by-openssl"])
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(status.success());
    let v = json(&run_ok(&[
        "identity",
        "verify",
        &cert,
        "--difficulty",
        "0",
        "--json",
    ]));
    assert_eq!(v["kind"], "node");
    // The id is SHA-256("p2psip-node-id-v1" || key), key read by openssl.
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-in", &key, "-pubout", "-outform", "DER"])
        .output()
        .unwrap()
        .stdout;
    let raw: [u8; 32] = der[der.len() - 32..].try_into().unwrap();
    let pk = p2psip::identity::PublicKey::from_bytes(&raw).unwrap();
    assert_eq!(v["id"], pk.node_id().to_string());

    // An ECDSA certificate from openssl is refused with the reason.
    let ec = p(t.path(), "ec.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            &p(t.path(), "eck.pem"),
            "-out",
            &ec,
            "-days",
            "30",
            "-subj",
            "/CN=ec",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let err = run_err(&["identity", "verify", &ec, "--difficulty", "0"]);
    assert!(err.contains("Ed25519"), "{err}");
}

#[test]
fn user_binds_a_device_and_anyone_verifies_it() {
    let t = tempfile::tempdir().unwrap();
    let (u, n) = (p(t.path(), "user"), p(t.path(), "node"));
    let user_id = run_ok(&["identity", "new", "--dir", &u, "--user"]);
    let node_id = run_ok(&["identity", "new", "--dir", &n, "--difficulty", "0"]);
    let shown = json(&run_ok(&["identity", "show", "--dir", &u, "--json"]));
    assert_eq!(shown["kind"], "user");
    let file = p(t.path(), "binding.pem");
    run_ok(&[
        "identity",
        "bind",
        "--user-dir",
        &u,
        "--node-dir",
        &n,
        "--days",
        "2",
        "--out",
        &file,
    ]);
    let v = json(&run_ok(&["identity", "verify-binding", &file, "--json"]));
    assert_eq!(v["user_id"], user_id.trim());
    assert_eq!(v["node_id"], node_id.trim());
    // A tampered binding is refused.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut der = pem::parse(&text).unwrap().into_contents();
    let last = der.len() - 1;
    der[last] ^= 1;
    std::fs::write(&file, pem::encode(&pem::Pem::new("P2PSIP BINDING", der))).unwrap();
    let err = run_err(&["identity", "verify-binding", &file]);
    assert!(err.contains("signature"), "{err}");
    // Binding the wrong way round is refused.
    let err = run_err(&[
        "identity",
        "bind",
        "--user-dir",
        &n,
        "--node-dir",
        &u,
        "--out",
        &file,
    ]);
    assert!(err.contains("user identity is needed"), "{err}");
}

#[test]
fn ca_issues_node_and_user_certificates_from_public_certificates_only() {
    let t = tempfile::tempdir().unwrap();
    let (ca, other) = (p(t.path(), "ca"), p(t.path(), "other-ca"));
    run_ok(&["ca", "init", "--dir", &ca, "--name", "Example Overlay"]);
    run_ok(&["ca", "init", "--dir", &other, "--name", "Other Overlay"]);
    let (n, u) = (p(t.path(), "node"), p(t.path(), "alice"));
    let node_id = run_ok(&["identity", "new", "--dir", &n, "--difficulty", "0"]);
    run_ok(&["identity", "new", "--dir", &u, "--user"]);
    // Issuing never needs the subject's secret key.
    std::fs::remove_file(t.path().join("node/identity.key")).unwrap();
    let node_cert = p(t.path(), "node/enrolled.pem");
    run_ok(&[
        "ca",
        "issue",
        "--ca",
        &ca,
        "--node-dir",
        &n,
        "--out",
        &node_cert,
    ]);
    let user_cert = p(t.path(), "alice.pem");
    run_ok(&[
        "ca",
        "issue",
        "--ca",
        &ca,
        "--user-dir",
        &u,
        "--name",
        "sip:alice@example.org",
        "--out",
        &user_cert,
    ]);
    let anchor = p(t.path(), "ca/ca.pem");
    let v = json(&run_ok(&[
        "identity",
        "verify",
        &node_cert,
        "--difficulty",
        "0",
        "--ca",
        &anchor,
        "--json",
    ]));
    assert_eq!(v["id"], node_id.trim());
    assert_eq!(v["enrolled"], true);
    let v = json(&run_ok(&[
        "identity", "verify", &user_cert, "--ca", &anchor, "--json",
    ]));
    assert_eq!(v["kind"], "user");
    assert_eq!(v["sip_names"][0], "sip:alice@example.org");
    let other_anchor = p(t.path(), "other-ca/ca.pem");
    let err = run_err(&[
        "identity",
        "verify",
        &node_cert,
        "--difficulty",
        "0",
        "--ca",
        &other_anchor,
    ]);
    assert!(err.contains("trust anchor"), "{err}");
    let err = run_err(&[
        "ca",
        "issue",
        "--ca",
        &ca,
        "--user-dir",
        &u,
        "--name",
        "alice",
        "--out",
        &user_cert,
    ]);
    assert!(err.contains("SIP URI"), "{err}");
    let mode = std::fs::metadata(t.path().join("ca/ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn node_run_answers_ping_and_stops_on_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let (n, c) = (p(t.path(), "node"), p(t.path(), "client"));
    let node_id = run_ok(&["identity", "new", "--dir", &n, "--difficulty", "2"]);
    run_ok(&["identity", "new", "--dir", &c, "--difficulty", "2"]);
    let node = NodeProcess::start(&["--dir", &n, "--listen", "127.0.0.1:0", "--difficulty", "2"]);
    assert_eq!(node.id, node_id.trim());

    let v = json(&run_ok(&[
        "ping",
        &node.addr,
        "--dir",
        &c,
        "--difficulty",
        "2",
        "--count",
        "3",
        "--interval-ms",
        "10",
        "--expect-id",
        &node.id,
        "--json",
    ]));
    assert_eq!(v["peer_id"], node.id);
    assert_eq!(v["received"], 3);
    assert_eq!(v["rtt_ms"].as_array().unwrap().len(), 3);
    assert!(v["observed_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    // Without --dir: the client key kept in the user's state directory,
    // created once (0600, in a 0700 directory), then reused.
    let state = t.path().join("state");
    let ping = |difficulty: &str| {
        let out = p2psip()
            .env("XDG_STATE_HOME", &state)
            .args(["ping", &node.addr, "--difficulty", difficulty])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = ping("2");
    assert!(text.contains(&node.id), "{text}");
    let key_file = state.join("p2psip/ping-client.key");
    let first = std::fs::read(&key_file).expect("the client key is kept");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&state.join("p2psip")), 0o700);
    ping("2");
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        first,
        "one identity, reused"
    );
    assert_eq!(std::fs::read_dir(state.join("p2psip")).unwrap().count(), 1);
    // With --json a failed connection still prints the JSON object.
    let out = p2psip()
        .env("XDG_STATE_HOME", &state)
        .args(["ping", &node.addr, "--difficulty", "2", "--json"])
        .args(["--expect-id", &"cd".repeat(32)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["received"], 0);
    assert!(
        v["error"].as_str().unwrap().contains("not the expected"),
        "{v}"
    );

    // Expecting another id fails, naming the problem.
    let out = p2psip()
        .env("XDG_STATE_HOME", &state)
        .args(["ping", &node.addr, "--difficulty", "2"])
        .args(["--expect-id", &"ab".repeat(32)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the expected"), "{err}");

    let status = node.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[test]
fn ping_reports_failure_when_the_node_refuses_the_client() {
    let t = tempfile::tempdir().unwrap();
    let n = p(t.path(), "node");
    run_ok(&["identity", "new", "--dir", &n, "--difficulty", "6"]);
    let node = NodeProcess::start(&["--dir", &n, "--listen", "127.0.0.1:0", "--difficulty", "6"]);
    // The client's identity solves 0 bits; the node requires 6. TLS 1.3
    // lets the client finish its handshake first: ping must still fail.
    // Each run with a state directory of its own: a new identity each.
    let mut failures = 0;
    for i in 0..4 {
        let out = p2psip()
            .env("XDG_STATE_HOME", t.path().join(format!("state{i}")))
            .args(["ping", &node.addr, "--difficulty", "0", "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            failures += 1;
        }
    }
    // A random id solves 6 bits with probability 1/64; allow one lucky run.
    assert!(
        failures >= 3,
        "only {failures} of 4 weak clients were refused"
    );
}

#[test]
fn enrolled_node_accepts_enrolled_clients_only() {
    let t = tempfile::tempdir().unwrap();
    let ca = p(t.path(), "ca");
    run_ok(&["ca", "init", "--dir", &ca, "--name", "Closed Overlay"]);
    let anchor = p(t.path(), "ca/ca.pem");
    let (n, c, x) = (
        p(t.path(), "node"),
        p(t.path(), "client"),
        p(t.path(), "stranger"),
    );
    for d in [&n, &c, &x] {
        run_ok(&["identity", "new", "--dir", d, "--difficulty", "0"]);
    }
    for d in [&n, &c] {
        run_ok(&[
            "ca",
            "issue",
            "--ca",
            &ca,
            "--node-dir",
            d,
            "--out",
            &format!("{d}/enrolled.pem"),
        ]);
    }
    let node = NodeProcess::start(&[
        "--dir",
        &n,
        "--listen",
        "127.0.0.1:0",
        "--difficulty",
        "0",
        "--ca",
        &anchor,
    ]);
    let v = json(&run_ok(&[
        "ping",
        &node.addr,
        "--dir",
        &c,
        "--difficulty",
        "0",
        "--ca",
        &anchor,
        "--json",
    ]));
    assert_eq!(v["received"], 1);
    // Without an enrolled certificate the client cannot even start.
    let err = run_err(&[
        "ping",
        &node.addr,
        "--dir",
        &x,
        "--difficulty",
        "0",
        "--ca",
        &anchor,
    ]);
    assert!(err.contains("enrolled.pem"), "{err}");
    // Presenting its self-signed certificate, it is refused by the node.
    let err = run_err(&["ping", &node.addr, "--dir", &x, "--difficulty", "0"]);
    assert!(
        err.contains("no pong") || err.contains("connection"),
        "{err}"
    );
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["identity", "new", "--help"],
        vec!["identity", "show", "--help"],
        vec!["identity", "verify", "--help"],
        vec!["identity", "bind", "--help"],
        vec!["identity", "verify-binding", "--help"],
        vec!["ca", "init", "--help"],
        vec!["ca", "issue", "--help"],
        vec!["node", "run", "--help"],
        vec!["ping", "--help"],
        vec!["sim", "--help"],
        vec!["status", "--help"],
        vec!["config", "check", "--help"],
        vec!["sip", "add-user", "--help"],
    ] {
        let out = run_ok(&cmd);
        assert!(out.contains("Usage:"), "{cmd:?}: {out}");
    }
}

#[test]
fn sim_prints_the_same_json_for_the_same_seed() {
    let args = [
        "sim",
        "--nodes",
        "60",
        "--lookups",
        "50",
        "--store-fetch",
        "5",
        "--churn",
        "0.02",
        "--seed",
        "3",
        "--json",
    ];
    let first = run_ok(&args);
    assert_eq!(first, run_ok(&args), "same seed, same bytes");
    let v = json(&first);
    for field in [
        "nodes",
        "lookups",
        "success_rate",
        "hops_p50",
        "hops_p95",
        "latency_ms_p50",
        "latency_ms_p99",
        "messages_per_lookup",
        "store_fetch_success_rate",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["nodes"], 60);
    let rate = v["success_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate));
    let err = run_err(&["sim", "--nodes", "10", "--churn", "2"]);
    assert!(err.contains("fraction"), "{err}");
}
