//! SIP over TCP from outside, with raw sockets on loopback against a
//! real `node run --sip-listen` process: the per-address connection cap,
//! the deadline for a first message, and a REGISTER sent a byte at a time
//! (read incrementally).

mod common;

use common::cli::{json, run_ok, NodeProcess};
use p2psip::limits::{SIP_MAX_TCP_CONNECTIONS_PER_IP, SIP_TCP_FIRST_MESSAGE_TIMEOUT};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const OVERLAY: &str = "lab.example";

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

/// A node with SIP on loopback and one account, `alice`: the node and
/// the user part of alice's AOR (the scratch directory lives as long).
fn node_with_alice() -> (tempfile::TempDir, NodeProcess, String) {
    let root = tempfile::tempdir().unwrap();
    let overlay = p(root.path(), "overlay.toml");
    std::fs::write(
        &overlay,
        format!("name = \"{OVERLAY}\"\nid_difficulty = 4\nk = 8\nreplication = 3\n"),
    )
    .unwrap();
    let dir = p(root.path(), "node");
    run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
    let alice_dir = p(root.path(), "alice");
    run_ok(&["identity", "new", "--user", "--dir", &alice_dir]);
    let pw = p(root.path(), "alice.pw");
    std::fs::write(&pw, "alice-secret\n").unwrap();
    let added = json(&run_ok(&[
        "sip",
        "add-user",
        "--dir",
        &dir,
        "--user-dir",
        &alice_dir,
        "--password-file",
        &pw,
        "--auth-user",
        "alice",
        "--overlay",
        &overlay,
        "--json",
    ]));
    let user = added["aor"]
        .as_str()
        .and_then(|a| a.strip_prefix("sip:"))
        .and_then(|a| a.strip_suffix(&format!("@{OVERLAY}")))
        .unwrap()
        .to_owned();
    let node = NodeProcess::start(&[
        "--dir",
        &dir,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &overlay,
        "--sip-listen",
        "127.0.0.1:0",
    ]);
    (root, node, user)
}

fn sip_addr(node: &NodeProcess) -> SocketAddr {
    node.sip.as_deref().unwrap().parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:{OVERLAY} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         From: <sip:probe@{OVERLAY}>;tag=1\r\nTo: <sip:{OVERLAY}>\r\nCall-ID: {branch}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// What the node answers on `tcp` (one read, at most `wait`).
fn answer(tcp: &mut TcpStream, wait: Duration) -> String {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match tcp.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => format!("<{e}>"),
    }
}

/// Whether the node closed `tcp` (end of stream or a reset) within
/// `wait`, reading and discarding whatever it sends first.
fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while let Some(left) = wait.checked_sub(started.elapsed()) {
        tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn one_address_holds_its_share_of_connections_and_another_still_connects() {
    let (_root, node, _) = node_with_alice();
    let sip = sip_addr(&node);
    let mut held: Vec<TcpStream> = (0..SIP_MAX_TCP_CONNECTIONS_PER_IP)
        .map(|_| connect_from("127.0.0.1", sip))
        .collect();
    // Each held connection is served (the node took every one).
    for (i, tcp) in held.iter_mut().enumerate() {
        tcp.write_all(options(&format!("held{i}")).as_bytes())
            .unwrap();
        let got = answer(tcp, Duration::from_secs(5));
        assert!(got.starts_with("SIP/2.0 200 OK"), "connection {i}: {got}");
    }
    // One more from the same address is closed at once, unanswered.
    let mut refused = connect_from("127.0.0.1", sip);
    let _ = refused.write_all(options("over").as_bytes());
    assert!(
        closed_within(&mut refused, Duration::from_secs(5)),
        "connection {} from one address was kept",
        SIP_MAX_TCP_CONNECTIONS_PER_IP + 1
    );
    // Another loopback address still connects and is served.
    let mut other = connect_from("127.0.0.2", sip);
    other.write_all(options("other").as_bytes()).unwrap();
    let got = answer(&mut other, Duration::from_secs(5));
    assert!(got.starts_with("SIP/2.0 200 OK"), "127.0.0.2: {got}");
    // A connection closed frees its place for the address.
    drop(held.pop());
    let mut served_again = false;
    for attempt in 0..50 {
        let mut again = connect_from("127.0.0.1", sip);
        if again
            .write_all(options(&format!("again{attempt}")).as_bytes())
            .is_ok()
            && answer(&mut again, Duration::from_secs(2)).starts_with("SIP/2.0 200 OK")
        {
            served_again = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served_again, "a freed place was not given again");
}

#[test]
fn a_connection_without_a_first_message_is_closed_within_the_deadline() {
    let (_root, node, _) = node_with_alice();
    let sip = sip_addr(&node);
    let deadline = SIP_TCP_FIRST_MESSAGE_TIMEOUT;
    let started = Instant::now();
    // Silent; keep-alives only (they are no message); a message at once.
    let mut silent = connect_from("127.0.0.1", sip);
    let mut pinging = connect_from("127.0.0.1", sip);
    pinging.write_all(b"\r\n\r\n").unwrap();
    assert_eq!(answer(&mut pinging, Duration::from_secs(5)), "\r\n", "pong");
    let mut talking = connect_from("127.0.0.1", sip);
    talking.write_all(options("first").as_bytes()).unwrap();
    assert!(answer(&mut talking, Duration::from_secs(5)).starts_with("SIP/2.0 200 OK"));

    let margin = Duration::from_secs(10);
    assert!(
        closed_within(&mut silent, deadline + margin),
        "a silent connection was kept past {:?}",
        deadline + margin
    );
    let waited = started.elapsed();
    assert!(
        waited >= deadline - Duration::from_secs(1),
        "closed after {waited:?}, before the deadline of {deadline:?}"
    );
    assert!(
        closed_within(&mut pinging, Duration::from_secs(5)),
        "a connection sending only keep-alives was kept past the deadline"
    );
    // The connection that brought a message stays (the idle timeout
    // applies to it), and is still served.
    talking.write_all(options("second").as_bytes()).unwrap();
    let got = answer(&mut talking, Duration::from_secs(5));
    assert!(
        got.starts_with("SIP/2.0 200 OK"),
        "after the deadline: {got}"
    );
}

#[test]
fn a_register_sent_one_byte_at_a_time_is_answered() {
    let (_root, node, user) = node_with_alice();
    let sip = sip_addr(&node);
    let register = format!(
        "REGISTER sip:{OVERLAY} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-slow\r\n\
         From: <sip:{user}@{OVERLAY}>;tag=1\r\nTo: <sip:{user}@{OVERLAY}>\r\nCall-ID: slow-1\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:9;transport=tcp>\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut tcp = connect_from("127.0.0.1", sip);
    tcp.set_nodelay(true).unwrap();
    for byte in register.as_bytes() {
        tcp.write_all(std::slice::from_ref(byte)).unwrap();
        tcp.flush().unwrap();
    }
    let got = answer(&mut tcp, Duration::from_secs(5));
    // Not authenticated yet: challenged, to this request.
    assert!(got.starts_with("SIP/2.0 401 Unauthorized"), "{got}");
    assert!(got.contains("Call-ID: slow-1"), "{got}");
}
