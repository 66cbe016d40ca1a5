//! Interoperability with an independent implementation: a Python client
//! (`tests/interop/ping_client.py`, aioquic + cbor2), written from
//! `docs/protocol.md` alone, handshakes with a real `p2psip node run`
//! process on loopback and exchanges Ping/Pong and error replies.
//!
//! The Python packages are pinned in `tests/interop/requirements.txt`; a
//! machine without them fails these tests with the command to run.

mod common;

use common::cli::{json, run_ok, NodeProcess};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Creates an identity at difficulty 0 in a fresh directory under `root`
/// and runs a node with it on 127.0.0.1, on a port the system picks.
fn start_node(root: &Path) -> NodeProcess {
    let dir = root.join("node").display().to_string();
    let made_id = run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "0"]);
    let node = NodeProcess::start(&[
        "--dir",
        &dir,
        "--listen",
        "127.0.0.1:0",
        "--difficulty",
        "0",
    ]);
    assert_eq!(node.id, made_id.trim(), "node runs the identity just made");
    node
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ping_client.py")
}

/// The Python that runs the client: the virtualenv that
/// `contrib/test-deps.sh` makes where the system Python refuses packages
/// (PEP 668), else `python3` on the PATH.
fn python() -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python3");
    Command::new(if venv.exists() {
        venv.into_os_string()
    } else {
        "python3".into()
    })
}

/// Fails (never skips) when python3 or the client's packages are missing.
fn require_python_packages() {
    const HINT: &str = "the interop tests need python3 with aioquic and cbor2: \
        run `bash contrib/test-deps.sh` (or \
        `python3 -m pip install -r tests/interop/requirements.txt`)";
    let out = python()
        .args(["-c", "import aioquic, cbor2, cryptography"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {HINT}"));
    assert!(
        out.status.success(),
        "{HINT}\npython3 said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the Python client against `addr` with `args`.
fn python_client(addr: &str, args: &[&str]) -> Output {
    require_python_packages();
    python()
        .arg(client_script())
        .arg(addr)
        .args(args)
        .output()
        .expect("python3 runs")
}

/// Runs the Python client; it must succeed and print one JSON line.
fn python_client_ok(addr: &str, args: &[&str]) -> serde_json::Value {
    let out = python_client(addr, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ping_client.py {addr} {args:?} failed ({}): stderr: {} stdout: {stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "one JSON line: {stdout}"
    );
    json(&stdout)
}

#[test]
fn python_client_pings_a_node_over_mutual_tls() {
    let t = tempfile::tempdir().expect("temporary directory");
    let node = start_node(t.path());
    let v = python_client_ok(&node.addr, &["--expect-id", &node.id, "--difficulty", "0"]);
    assert_eq!(v["peer_id"], node.id.as_str(), "{v}");
    assert_eq!(v["nonce_ok"], true, "{v}");
    let observed = v["observed"].as_str().expect("observed is a string");
    assert!(observed.starts_with("127.0.0.1:"), "{v}");
    let port: u16 = observed["127.0.0.1:".len()..]
        .parse()
        .unwrap_or_else(|e| panic!("observed port ({e}): {v}"));
    assert_ne!(port, 0, "{v}");
}

#[test]
fn non_canonical_ping_gets_malformed_error_and_disconnect() {
    let t = tempfile::tempdir().expect("temporary directory");
    let node = start_node(t.path());
    // §4.4: `82 01 18 05` (nonce 5 not in shortest form), framed.
    let v = python_client_ok(&node.addr, &["--raw-hex", "0000000482011805"]);
    assert_eq!(v["peer_id"], node.id.as_str(), "{v}");
    let answer = v["answer"].as_array().expect("answer is an array");
    assert_eq!(answer.len(), 3, "{v}");
    assert_eq!(answer[0], 3, "an Error: {v}");
    assert_eq!(answer[1], 2, "MALFORMED_MESSAGE: {v}");
    assert!(answer[2].is_string(), "{v}");
    // §3: the connection is then closed with application code 1.
    assert_eq!(v["closed"]["application"], true, "{v}");
    assert_eq!(v["closed"]["error_code"], 1, "{v}");
}

#[test]
fn unknown_message_type_gets_error_3_and_no_disconnect() {
    let t = tempfile::tempdir().expect("temporary directory");
    let node = start_node(t.path());
    // §4.4: `82 18 63 00` (type 99), framed.
    let v = python_client_ok(&node.addr, &["--raw-hex", "0000000482186300"]);
    let answer = v["answer"].as_array().expect("answer is an array");
    assert_eq!(answer[0], 3, "an Error: {v}");
    assert_eq!(answer[1], 3, "UNKNOWN_MESSAGE_TYPE: {v}");
    assert!(v["closed"].is_null(), "connection stays open: {v}");
}

#[test]
fn python_client_refuses_an_unexpected_node_id() {
    let t = tempfile::tempdir().expect("temporary directory");
    let node = start_node(t.path());
    let other = "00".repeat(32);
    let out = python_client(&node.addr, &["--expect-id", &other]);
    assert!(!out.status.success(), "must refuse: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the expected"), "{err}");
    assert!(err.contains(&node.id), "names the id it saw: {err}");
}

/// Another implementation (Python's `cryptography`) reads a user's key
/// files as `identity new --user` writes them (Ed25519 and X25519 PKCS#8)
/// and derives the user's private slots and profile key as
/// docs/protocol.md §7.9 says: the same keys as p2psip's.
#[test]
fn python_derives_the_same_private_slots_and_reads_the_encryption_key() {
    use p2psip::overlay::record::{profile_key, PrivateSlot};
    require_python_packages();
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("alice");
    let user = user.to_str().unwrap();
    let made = json(&run_ok(&[
        "identity",
        "new",
        "--user",
        "--dir",
        user,
        "--difficulty",
        "0",
        "--json",
    ]));
    let key = p2psip::identity::load_secret_key(&dir.path().join("alice/identity.key")).unwrap();
    for slot in ["contacts", "settings"] {
        let out = python()
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/private_slot.py"))
            .args([user, slot])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "private_slot.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = json(&String::from_utf8_lossy(&out.stdout));
        let ours = PrivateSlot::new(&key, slot).unwrap();
        assert_eq!(theirs["user_id"], made["id"]);
        assert_eq!(
            theirs["slot_public_key"],
            hex::encode(ours.owner().as_bytes())
        );
        assert_eq!(theirs["record_key"], hex::encode(ours.key().0));
        assert_eq!(
            theirs["profile_key"],
            hex::encode(profile_key(&key.public().user_id()).0)
        );
        assert_eq!(
            theirs["encryption_public_key"],
            made["encryption_public_key"]
        );
    }
}
