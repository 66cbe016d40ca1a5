//! Reputation on a real node: `node run` processes, and misbehaving peers
//! (this test process, dialing with identities of its own over QUIC) that
//! send malformed frames, forged records and request floods. Each is
//! disconnected and banned, honest peers go on being served, a ban
//! survives a restart of the node, and a ban expires.
//!
//! Nothing here depends on how fast the machine is: the bans that must
//! last do so for an hour, and the one that must end is waited for by a
//! bounded poll, not a sleep.

mod common;

use common::cli::{json, run_ok, NodeProcess};
use common::{client, eventually, key_meeting_puzzle, now};
use p2psip::identity::{NodeId, SecretKey, VerifyPolicy};
use p2psip::net::{Client, NetError, CLOSE_BANNED, CLOSE_PROTOCOL_VIOLATION};
use p2psip::overlay::record::OwnerValue;
use p2psip::wire::{ErrorCode, Message};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The puzzle of the test overlay: cheap identities.
const DIFFICULTY: u8 = 4;

/// The bans of the node under attack: far longer than the whole test, so
/// that however slow the machine, no ban ends before it is checked.
const LONG_BAN_SECS: u64 = 3600;

/// The ban of the node that checks expiry: the shortest `--ban-secs`.
const SHORT_BAN_SECS: u64 = 1;

/// Polls for the short ban's end, 100 ms apart: a bound (a minute and
/// more) far above the one second it lasts, never a measurement.
const EXPIRY_POLLS: u32 = 600;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

fn start_node(
    dir: &str,
    listen: &str,
    overlay: &str,
    bootstrap: Option<&str>,
    ban_secs: u64,
) -> NodeProcess {
    let ban = ban_secs.to_string();
    let mut args = vec![
        "--dir",
        dir,
        "--listen",
        listen,
        "--overlay",
        overlay,
        "--ban-secs",
        &ban,
    ];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    NodeProcess::start(&args)
}

fn reputation(dir: &str) -> Vec<serde_json::Value> {
    let r = json(&run_ok(&["reputation", "--dir", dir, "--json"]));
    r["peers"].as_array().expect("peers").clone()
}

fn peer_in(report: &[serde_json::Value], id: &NodeId) -> serde_json::Value {
    let id = id.to_string();
    report
        .iter()
        .find(|p| p["node_id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{id} not in the reputation table: {report:?}"))
}

/// What became of a connection: closed by the node with an application
/// code, or still open after a ping.
async fn ping_outcome(c: &Client, addr: SocketAddr, node: NodeId) -> Result<(), u64> {
    let conn = match c.connect(addr, Some(node)).await {
        Ok(conn) => conn,
        Err(NetError::Connection(quinn::ConnectionError::ApplicationClosed(close))) => {
            return Err(close.error_code.into_inner())
        }
        Err(e) => panic!("unexpected connect error: {e}"),
    };
    match conn.ping().await {
        Ok(_) => Ok(()),
        Err(NetError::Connection(quinn::ConnectionError::ApplicationClosed(close))) => {
            Err(close.error_code.into_inner())
        }
        Err(e) => panic!("unexpected ping error: {e}"),
    }
}

/// Waits (bounded) for the node to close `conn`; returns the code.
async fn closed_with(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => close.error_code.into_inner(),
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// Three distinct keys that meet the overlay's puzzle.
fn attacker_keys() -> Vec<SecretKey> {
    let mut keys: Vec<SecretKey> = Vec::new();
    while keys.len() < 3 {
        let k = key_meeting_puzzle(DIFFICULTY);
        if keys
            .iter()
            .all(|o| o.public().node_id() != k.public().node_id())
        {
            keys.push(k);
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_banned_while_honest_ones_are_served_and_the_ban_survives_a_restart()
{
    let root = tempfile::tempdir().expect("tempdir");
    let overlay = p(root.path(), "overlay.toml");
    std::fs::write(
        &overlay,
        format!("name = \"lab.example\"\nid_difficulty = {DIFFICULTY}\nk = 8\nreplication = 2\n"),
    )
    .expect("overlay file");
    let (a_dir, b_dir, c_dir, alice) = (
        p(root.path(), "a"),
        p(root.path(), "b"),
        p(root.path(), "c"),
        p(root.path(), "alice"),
    );
    let difficulty = DIFFICULTY.to_string();
    for dir in [&a_dir, &b_dir, &c_dir] {
        run_ok(&["identity", "new", "--dir", dir, "--difficulty", &difficulty]);
    }
    run_ok(&["identity", "new", "--dir", &alice, "--user"]);
    let alice_id = json(&run_ok(&["identity", "show", "--dir", &alice, "--json"]))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let aor = format!("sip:{alice_id}@lab.example");

    let a = start_node(&a_dir, "127.110.0.1:0", &overlay, None, LONG_BAN_SECS);
    let a_addr: SocketAddr = a.addr.parse().expect("address");
    let a_id: NodeId = a.id.parse().expect("node id");
    let boot = format!("{}@{}", a.id, a.addr);
    let b = start_node(
        &b_dir,
        "127.111.0.1:0",
        &overlay,
        Some(&boot),
        LONG_BAN_SECS,
    );
    let b_id: NodeId = b.id.parse().expect("node id");
    // B joins in the background after printing its address: a
    // registration published before B knows A would stay on B alone, and
    // A, knowing nobody yet, would not find it.
    let table_size = |dir: &str| {
        json(&run_ok(&["status", "--dir", dir, "--json"]))["table_size"]
            .as_u64()
            .unwrap_or(0)
    };
    eventually("B and A to know each other", || {
        table_size(&b_dir) >= 1 && table_size(&a_dir) >= 1
    })
    .await;
    run_ok(&["register", &aor, "--user-dir", &alice, "--dir", &b_dir]);
    // The honest baseline: A finds the registration (itself or via B).
    let found = json(&run_ok(&["lookup", &aor, "--dir", &a_dir, "--json"]));
    assert_eq!(found["aor"], aor.as_str());

    let policy = || VerifyPolicy::self_certifying(DIFFICULTY);
    let keys = attacker_keys();
    let ids: Vec<NodeId> = keys.iter().map(|k| k.public().node_id()).collect();
    let malformed = client(&keys[0], policy(), "127.112.0.1");
    let forger = client(&keys[1], policy(), "127.113.0.1");
    let flooder = client(&keys[2], policy(), "127.114.0.1");

    // 1. A malformed frame (length 0): closed as a protocol violation,
    //    then banned: a new connection is closed right after the handshake.
    let conn = malformed
        .connect(a_addr, Some(a_id))
        .await
        .expect("connects");
    let (mut send, _recv) = conn.connection().open_bi().await.expect("stream");
    send.write_all(&[0, 0, 0, 0]).await.expect("write");
    let _ = send.finish();
    assert_eq!(
        closed_with(conn.connection()).await,
        u64::from(CLOSE_PROTOCOL_VIOLATION)
    );
    assert_eq!(
        ping_outcome(&malformed, a_addr, a_id).await,
        Err(u64::from(CLOSE_BANNED))
    );

    // 2. Forged records (a signed value whose sequence was changed after
    //    signing): refused each time; two provable lies are a ban.
    let user = SecretKey::from_seed(&[0x5a; 32]);
    let mut forged = OwnerValue::new("voicemail", b"not yours".to_vec())
        .expect("value")
        .sign(&user, 1, now() as u64 + 3600);
    forged.seq = 2;
    let store = Message::Store {
        overlay: "lab.example".into(),
        record: forged.encode(),
    };
    let conn = forger.connect(a_addr, Some(a_id)).await.expect("connects");
    match conn.request(&store).await {
        Err(NetError::Remote { code, .. }) => assert_eq!(code, ErrorCode::RecordRefused),
        other => panic!("a forged record must be refused, got {other:?}"),
    }
    // The second lie is answered (the forger reads why), then the
    // connection is closed.
    match conn.request(&store).await {
        Err(NetError::Remote { code, .. }) => assert_eq!(code, ErrorCode::RecordRefused),
        other => panic!("the banning refusal must reach the forger, got {other:?}"),
    }
    assert_eq!(
        closed_with(conn.connection()).await,
        u64::from(CLOSE_BANNED)
    );

    // 3. A flood of requests: over its rate, refused, then banned (long
    //    before the 256 refusals in a row that close a connection). Sixteen
    //    pings in flight at once (the node's streams per connection), so
    //    that the flood outruns the refill (100 a second) even when each
    //    round trip is slow on a busy machine.
    let conn = flooder.connect(a_addr, Some(a_id)).await.expect("connects");
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let conn = conn.clone();
        flood.spawn(async move {
            for _ in 0..1000 {
                match conn.ping().await {
                    Ok(_)
                    | Err(NetError::Remote {
                        code: ErrorCode::RateLimited,
                        ..
                    }) => {}
                    // Closed under this ping, or under another one in flight.
                    Err(_) if conn.connection().close_reason().is_some() => return,
                    Err(e) => panic!("unexpected error during the flood: {e}"),
                }
            }
        });
    }
    while let Some(done) = flood.join_next().await {
        done.expect("flood task");
    }
    match conn.connection().close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code.into_inner(), u64::from(CLOSE_BANNED))
        }
        other => panic!("the flood was not stopped by a ban: {other:?}"),
    }

    // Honest peers are served all along: B's lookups through A, and A's.
    let found = json(&run_ok(&["lookup", &aor, "--dir", &b_dir, "--json"]));
    assert_eq!(found["aor"], aor.as_str());
    let found = json(&run_ok(&["lookup", &aor, "--dir", &a_dir, "--json"]));
    assert_eq!(found["aor"], aor.as_str());

    // What A's operator sees.
    let report = reputation(&a_dir);
    let (m, f, fl) = (
        peer_in(&report, &ids[0]),
        peer_in(&report, &ids[1]),
        peer_in(&report, &ids[2]),
    );
    for bad in [&m, &f, &fl] {
        assert_eq!(bad["standing"], "banned", "{bad}");
        assert!(bad["banned_until"].as_u64().is_some(), "{bad}");
        assert_eq!(bad["bans"], 1, "{bad}");
    }
    assert_eq!(m["violations"], 1, "{m}");
    assert_eq!(f["misbehaviour"], 2, "{f}");
    assert!(fl["rate_violations"].as_u64().unwrap_or(0) >= 18, "{fl}");
    let honest = peer_in(&report, &b_id);
    assert_ne!(honest["standing"], "banned", "{honest}");
    assert_ne!(honest["standing"], "suspect", "{honest}");
    assert_eq!(honest["misbehaviour"], 0, "{honest}");
    assert_eq!(honest["violations"], 0, "{honest}");
    // The documented fields, exactly (docs/admin.md).
    let mut fields: Vec<&str> = m
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "answered",
            "banned_until",
            "bans",
            "first_seen",
            "last_seen",
            "misbehaviour",
            "node_id",
            "rate_violations",
            "score",
            "standing",
            "unresponsive",
            "unverifiable",
            "verified",
            "violations"
        ]
    );

    // The ban survives a restart (SIGTERM saves the table; the file is
    // the owner's alone), to the second.
    let a_listen = a.addr.clone();
    assert!(a.terminate().success());
    let file = Path::new(&a_dir).join("data").join("reputation.cbor");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file)
            .expect("reputation table saved")
            .permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600);
    let a = start_node(&a_dir, &a_listen, &overlay, None, LONG_BAN_SECS);
    assert_eq!(
        ping_outcome(&malformed, a_addr, a_id).await,
        Err(u64::from(CLOSE_BANNED)),
        "the ban was forgotten by the restart"
    );
    let restarted = peer_in(&reputation(&a_dir), &ids[0]);
    assert_eq!(restarted["standing"], "banned", "{restarted}");
    assert_eq!(restarted["banned_until"], m["banned_until"], "{restarted}");
    assert_eq!(restarted["bans"], 1, "{restarted}");
    drop(a);
    drop(b);

    // A ban expires: on a node whose bans last one second, the same
    // malformed frame bans the same identity, which is then served again.
    // The ban is shown by the table's count of it, not by a refusal that
    // a slow machine might not get to see within the second.
    let c = start_node(&c_dir, "127.115.0.1:0", &overlay, None, SHORT_BAN_SECS);
    let c_addr: SocketAddr = c.addr.parse().expect("address");
    let c_id: NodeId = c.id.parse().expect("node id");
    let conn = malformed
        .connect(c_addr, Some(c_id))
        .await
        .expect("connects");
    let (mut send, _recv) = conn.connection().open_bi().await.expect("stream");
    send.write_all(&[0, 0, 0, 0]).await.expect("write");
    let _ = send.finish();
    assert_eq!(
        closed_with(conn.connection()).await,
        u64::from(CLOSE_PROTOCOL_VIOLATION)
    );
    let mut served = false;
    for _ in 0..EXPIRY_POLLS {
        match ping_outcome(&malformed, c_addr, c_id).await {
            Ok(()) => {
                served = true;
                break;
            }
            Err(code) => assert_eq!(code, u64::from(CLOSE_BANNED)),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the ban never expired");
    let after = peer_in(&reputation(&c_dir), &ids[0]);
    assert_eq!(after["bans"], 1, "banned once: {after}");
    assert_eq!(after["violations"], 1, "{after}");
    assert_ne!(after["standing"], "banned", "{after}");
    assert_eq!(after["banned_until"], serde_json::Value::Null, "{after}");
    drop(c);
}
