//! Real QUIC over loopback between real nodes and clients: mutual
//! authentication, the verifiers' refusals, protocol violations and
//! connection limits.

mod common;

use common::*;
use p2psip::identity::{
    build_ca_certificate, build_self_signed, issue_certificate, IdKind, TrustAnchor, TrustAnchors,
    VerifyPolicy,
};
use p2psip::net::{Limits, LocalIdentity, NetError, CLOSE_PROTOCOL_VIOLATION};
use p2psip::wire::{ErrorCode, Message};

const DAY: i64 = 86_400;

fn open() -> VerifyPolicy {
    VerifyPolicy::self_certifying(0)
}

#[tokio::test]
async fn two_nodes_see_each_others_authenticated_ids() {
    let (a, b) = (key(1), key(2));
    let node = start_node(&a, open(), Limits::default());
    let client = client(&b, open(), "127.0.0.1");
    let conn = client.connect(node.addr, None).await.unwrap();
    assert_eq!(conn.peer_id(), a.public().node_id());
    let pong = conn.ping().await.unwrap();
    assert_eq!(pong.peer, a.public().node_id());
    assert_eq!(pong.observed, client.local_addr().unwrap());
    let peers = node.node.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].0, b.public().node_id());
    node.stop().await;
}

#[tokio::test]
async fn dial_expecting_another_id_fails() {
    let node = start_node(&key(1), open(), Limits::default());
    let client = client(&key(2), open(), "127.0.0.1");
    let wrong = key(3).public().node_id();
    let err = client.connect(node.addr, Some(wrong)).await.unwrap_err();
    assert!(matches!(err, NetError::Connection(_)), "{err}");
    // The right expectation succeeds.
    let ok = client
        .connect(node.addr, Some(key(1).public().node_id()))
        .await
        .unwrap();
    ok.ping().await.unwrap();
    // The server's certificate is now in the client's cache; a cache hit
    // must still enforce the expectation.
    let err = client.connect(node.addr, Some(wrong)).await.unwrap_err();
    assert!(err.to_string().contains("not the expected"), "{err}");
}

/// Connects and pings; the refusal may show at either step (TLS 1.3).
async fn refused(client: &p2psip::net::Client, addr: std::net::SocketAddr) -> NetError {
    match client.connect(addr, None).await {
        Err(e) => e,
        Ok(conn) => conn
            .ping()
            .await
            .expect_err("the server must refuse this client"),
    }
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    let node = start_node(&key(1), open(), Limits::default());
    // A rustls client that offers no certificate at all.
    let verifier = std::sync::Arc::new(p2psip::net::tls::PeerVerifier::new(open(), None));
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
    tls.alpn_protocols = vec![p2psip::net::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    let outcome = async {
        let conn = endpoint.connect(node.addr, "p2psip.invalid")?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&p2psip::wire::encode_frame(
            &Message::Ping { nonce: 1 }.encode(),
        )?)
        .await?;
        send.finish()?;
        recv.read_to_end(1024).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(
        outcome.is_err(),
        "a client without certificate got an answer"
    );
    assert!(node.node.peers().is_empty());
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let node = start_node(&key(1), open(), Limits::default());
    let k = key(2);
    let t = now();
    let (der, _) = build_self_signed(&k, IdKind::Node, t - 10 * DAY, t - DAY).unwrap();
    let c = client_with(
        LocalIdentity::with_certificate(&k, der).unwrap(),
        open(),
        "127.0.0.1",
    );
    let err = refused(&c, node.addr).await;
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
}

#[tokio::test]
async fn bad_self_signature_is_refused() {
    let node = start_node(&key(1), open(), Limits::default());
    let k = key(2);
    let t = now();
    let (mut der, _) = build_self_signed(&k, IdKind::Node, t - DAY, t + DAY).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let pkcs8 = k.to_pkcs8_der().unwrap();
    let id = LocalIdentity::from_der_unchecked(der, &pkcs8, k.public().node_id()).unwrap();
    let err = refused(&client_with(id, open(), "127.0.0.1"), node.addr).await;
    assert!(
        err.to_string().to_lowercase().contains("signature"),
        "{err}"
    );
    assert!(node.node.peers().is_empty());
}

#[tokio::test]
async fn non_ed25519_certificate_is_refused() {
    let node = start_node(&key(1), open(), Limits::default());
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["p2psip".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let id = LocalIdentity::from_der_unchecked(
        cert.der().to_vec(),
        &kp.serialize_der(),
        key(9).public().node_id(),
    )
    .unwrap();
    // The server offers only Ed25519, so such a client sends no
    // certificate at all; either way it must be refused.
    let _ = refused(&client_with(id, open(), "127.0.0.1"), node.addr).await;
    assert!(node.node.peers().is_empty());
}

#[tokio::test]
async fn identity_failing_the_puzzle_is_refused_and_one_solving_it_accepted() {
    let node = start_node(
        &key_meeting_puzzle(4),
        VerifyPolicy::self_certifying(4),
        Limits::default(),
    );
    let weak = key_failing_puzzle(4);
    let err = refused(&client(&weak, open(), "127.0.0.1"), node.addr).await;
    assert!(err.to_string().contains("puzzle"), "{err}");
    let strong = key_meeting_puzzle(4);
    let c = client(&strong, open(), "127.0.0.1");
    c.connect(node.addr, None)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
}

#[tokio::test]
async fn client_refuses_a_server_failing_its_puzzle() {
    let node = start_node(&key_failing_puzzle(4), open(), Limits::default());
    let c = client(
        &key_meeting_puzzle(4),
        VerifyPolicy::self_certifying(4),
        "127.0.0.1",
    );
    let err = c.connect(node.addr, None).await.unwrap_err();
    assert!(err.to_string().contains("puzzle"), "{err}");
}

#[tokio::test]
async fn enrolled_overlay_accepts_its_ca_and_refuses_another() {
    let t = now();
    let ca = |seed: u8, name: &str| {
        let k = key(seed);
        let (der, _) = build_ca_certificate(&k, name, t - DAY, t + 365 * DAY).unwrap();
        (k, der)
    };
    let (ca_key, ca_der) = ca(50, "Overlay A");
    let (other_key, other_der) = ca(51, "Overlay B");
    let mut anchors = TrustAnchors::default();
    anchors
        .push(TrustAnchor::from_der(&ca_der).unwrap())
        .unwrap();
    let policy = VerifyPolicy::enrolled(anchors, 0);
    let enrolled = |node: &p2psip::identity::SecretKey, ca_key, ca_der: &[u8]| {
        let (der, _) = issue_certificate(
            ca_key,
            ca_der,
            &node.public(),
            IdKind::Node,
            None,
            t - 60,
            t + DAY,
        )
        .unwrap();
        LocalIdentity::with_certificate(node, der).unwrap()
    };
    let server = start_node_with(
        enrolled(&key(1), &ca_key, &ca_der),
        policy.clone(),
        Limits::default(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let good = client_with(
        enrolled(&key(2), &ca_key, &ca_der),
        policy.clone(),
        "127.0.0.1",
    );
    let good_conn = good.connect(server.addr, None).await.unwrap();
    let pong = good_conn.ping().await.unwrap();
    assert_eq!(pong.peer, key(1).public().node_id());

    let foreign = client_with(
        enrolled(&key(3), &other_key, &other_der),
        policy.clone(),
        "127.0.0.1",
    );
    let err = refused(&foreign, server.addr).await;
    assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");

    // Self-signed is not enough in an enrolled overlay.
    let selfsigned = client(&key(4), policy, "127.0.0.1");
    let _ = refused(&selfsigned, server.addr).await;
    assert_eq!(server.node.peers().len(), 1);
}

/// Sends raw bytes on a new stream and returns what comes back.
async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    recv.read_to_end(70_000).await.map_err(|e| e.to_string())
}

fn decode_answer(bytes: &[u8]) -> Message {
    let (body, used) = p2psip::wire::decode_frame(bytes).expect("a whole frame");
    assert_eq!(used, bytes.len());
    Message::decode(body).expect("a valid message")
}

async fn assert_violation_disconnects(bad: &[u8], expected: ErrorCode) {
    let node = start_node(&key(1), open(), Limits::default());
    let honest = client(&key(2), open(), "127.0.0.1");
    let honest_conn = honest.connect(node.addr, None).await.unwrap();
    honest_conn.ping().await.unwrap();

    let attacker = client(&key(3), open(), "127.0.0.1");
    let attacker_conn = attacker.connect(node.addr, None).await.unwrap();
    let conn = attacker_conn.connection().clone();
    match send_raw(&conn, bad).await {
        Ok(answer) => match decode_answer(&answer) {
            Message::Error { code, reason } => {
                assert_eq!(code, expected, "{reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected an Error, got {other:?}"),
        },
        // The close may overtake the answer; the close reason must say why.
        Err(e) => assert!(!e.is_empty()),
    }
    let reason = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed())
        .await
        .expect("the violating peer is disconnected");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_PROTOCOL_VIOLATION.into());
        }
        other => panic!("unexpected close: {other}"),
    }
    // The honest peer, connected all along, is still served.
    for _ in 0..5 {
        honest_conn.ping().await.unwrap();
    }
    eventually("attacker removed from the peer table", || {
        node.node.peers().len() == 1
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn oversized_frame_disconnects_only_the_offender() {
    let mut bad = (p2psip::limits::MAX_FRAME_LEN as u32 + 1)
        .to_be_bytes()
        .to_vec();
    bad.extend_from_slice(&[0u8; 16]);
    assert_violation_disconnects(&bad, ErrorCode::FrameTooLarge).await;
}

#[tokio::test]
async fn truncated_frame_disconnects_only_the_offender() {
    // Announces 100 bytes, sends 3, then finishes the stream.
    let bad = [0, 0, 0, 100, 1, 2, 3];
    assert_violation_disconnects(&bad, ErrorCode::MalformedMessage).await;
}

#[tokio::test]
async fn garbage_cbor_disconnects_only_the_offender() {
    let bad = p2psip::wire::encode_frame(&[0xff, 0x00, 0x13, 0x37]).unwrap();
    assert_violation_disconnects(&bad, ErrorCode::MalformedMessage).await;
}

#[tokio::test]
async fn unknown_message_type_gets_an_error_but_no_disconnect() {
    let node = start_node(&key(1), open(), Limits::default());
    let c = client(&key(2), open(), "127.0.0.1");
    let conn = c.connect(node.addr, None).await.unwrap();
    let frame = p2psip::wire::encode_frame(&[0x82, 0x18, 0x63, 0x00]).unwrap(); // [99, 0]
    let answer = send_raw(conn.connection(), &frame).await.unwrap();
    assert!(matches!(
        decode_answer(&answer),
        Message::Error {
            code: ErrorCode::UnknownMessageType,
            ..
        }
    ));
    // A Pong is not a request.
    let err = conn
        .request(&Message::Pong {
            nonce: 1,
            observed: "127.0.0.1:1".parse().unwrap(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Remote {
                code: ErrorCode::UnexpectedMessage,
                ..
            }
        ),
        "{err}"
    );
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn per_ip_limit_refuses_one_address_while_another_connects() {
    let limits = Limits {
        max_connections_per_ip: 2,
        ..Limits::default()
    };
    let node = start_node(&key(1), open(), limits);
    let mut held = Vec::new();
    for i in 0..2u8 {
        let c = client(&key(10 + i), open(), "127.0.0.2");
        let conn = c.connect(node.addr, None).await.unwrap();
        conn.ping().await.unwrap();
        held.push((c, conn));
    }
    let third = client(&key(12), open(), "127.0.0.2");
    let err = refused(&third, node.addr).await;
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    let other_ip = client(&key(13), open(), "127.0.0.3");
    let other_conn = other_ip.connect(node.addr, None).await.unwrap();
    other_conn.ping().await.unwrap();
    // A slot frees when a connection ends.
    let (c, conn) = held.pop().unwrap();
    conn.close();
    c.close().await;
    eventually("slot released", || node.node.connections() == 2).await;
    let again = client(&key(14), open(), "127.0.0.2");
    again
        .connect(node.addr, None)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
}

#[tokio::test]
async fn total_limit_refuses_everyone_beyond_it() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let node = start_node(&key(1), open(), limits);
    let first = client(&key(2), open(), "127.0.0.2");
    let conn = first.connect(node.addr, None).await.unwrap();
    conn.ping().await.unwrap();
    let second = client(&key(3), open(), "127.0.0.3");
    let _ = refused(&second, node.addr).await;
    conn.ping().await.unwrap();
}

#[tokio::test]
async fn works_over_ipv6_loopback() {
    let identity = LocalIdentity::self_signed(&key(1), now()).unwrap();
    let node = start_node_with(
        identity,
        open(),
        Limits::default(),
        "[::1]:0".parse().unwrap(),
    );
    let c = client(&key(2), open(), "[::1]");
    let pong = c
        .connect(node.addr, None)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert_eq!(pong.peer, key(1).public().node_id());
    assert!(pong.observed.is_ipv6());
    assert_eq!(pong.observed, c.local_addr().unwrap());
}
