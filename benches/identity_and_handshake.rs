//! Benchmarks: identity generation, Ed25519 sign/verify, certificate
//! verification, and mutually authenticated QUIC handshakes through
//! p2psip's verifiers versus plain quinn + rustls with the same
//! certificates and an accept-anything verifier, side by side in one run.
//!
//! Run: `cargo bench --bench identity_and_handshake` (prints a Markdown
//! table; `docs/benchmarks.md` records the figures). Set `P2PSIP_BENCH_QUICK=1`
//! for a smoke run with tiny counts.

use p2psip::identity::{generate, IdKind, SecretKey, VerifyPolicy};
use p2psip::net::tls::{client_config, server_config, LocalIdentity, PeerVerifier};
use p2psip::net::ALPN;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::var_os("P2PSIP_BENCH_QUICK").is_some()
}

fn scale(n: usize) -> usize {
    if quick() {
        (n / 50).max(2)
    } else {
        n
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Accepts any certificate; still checks the handshake signature, as any
/// TLS stack must. The baseline p2psip's verifiers are compared with.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl AcceptAnything {
    fn new() -> Self {
        Self(Arc::new(rustls::crypto::ring::default_provider()))
    }
    fn sig(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
}

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.sig(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for AcceptAnything {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.sig(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

struct Setup {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    addr: SocketAddr,
}

fn setup(server_id: &LocalIdentity, client_id: &LocalIdentity, p2psip_verifiers: bool) -> Setup {
    let (sv, cv): (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>) = if p2psip_verifiers {
        let policy = VerifyPolicy::self_certifying(0);
        (
            Arc::new(PeerVerifier::new(policy.clone(), None)),
            Arc::new(PeerVerifier::new(policy, Some(server_id.node_id()))),
        )
    } else {
        (
            Arc::new(AcceptAnything::new()),
            Arc::new(AcceptAnything::new()),
        )
    };
    let stls = server_config(server_id, sv).unwrap();
    let ctls = client_config(client_id, cv).unwrap();
    assert_eq!(stls.alpn_protocols, vec![ALPN.to_vec()]);
    let sq = quinn::crypto::rustls::QuicServerConfig::try_from(stls).unwrap();
    let cq = quinn::crypto::rustls::QuicClientConfig::try_from(ctls).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(sq)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    // Accept loop: complete each handshake (the server has then verified
    // the client), then close, which tells the client it was accepted.
    let s = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = s.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.close(0u32.into(), b"");
                }
            });
        }
    });
    Setup {
        server,
        client,
        client_config: quinn::ClientConfig::new(Arc::new(cq)),
        addr,
    }
}

/// One full mutual-auth handshake: connect, then wait for the server's
/// close, which it sends only after accepting the client's certificate.
async fn handshake(s: &Setup) {
    let conn = s
        .client
        .connect_with(s.client_config.clone(), s.addr, "p2psip.invalid")
        .unwrap()
        .await
        .expect("handshake");
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == 0u32.into() => {}
        other => panic!("server refused: {other}"),
    }
}

async fn handshakes_per_sec(s: Arc<Setup>, total: usize, concurrency: usize) -> f64 {
    let start = Instant::now();
    let per_task = total / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                handshake(&s).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per_task * concurrency) as f64 / start.elapsed().as_secs_f64()
}

fn rate(n: usize, f: impl FnMut()) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows: Vec<(String, String)> = Vec::new();

    // Identity generation: one candidate = key derivation + NodeId + puzzle hash.
    let n = scale(20_000);
    let mut counter = 0u64;
    let one_core = rate(n, || {
        counter += 1;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&counter.to_le_bytes());
        let k = SecretKey::from_seed(&seed);
        std::hint::black_box(IdKind::Node.puzzle_bits(&k.public()));
    });
    rows.push((
        "identity candidates/s, 1 core".into(),
        format!("{one_core:.0}"),
    ));
    let d = if quick() { 8 } else { 16 };
    let reps = if quick() { 2 } else { 6 };
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(generate(
            IdKind::Node,
            d,
            0,
            Duration::from_secs(3600),
            &mut |_| {},
        ));
    }
    let per_id = start.elapsed().as_secs_f64() / reps as f64;
    rows.push((
        format!("identities/s at difficulty {d}, {threads} cores (mean of {reps})"),
        format!("{:.2} ({per_id:.2} s each)", 1.0 / per_id),
    ));
    let all_cores = (1u64 << d) as f64 / per_id;
    rows.push((
        format!(
            "expected time for one identity at the default difficulty {} on {threads} cores",
            p2psip::limits::DEFAULT_ID_DIFFICULTY
        ),
        format!(
            "{:.0} s",
            (1u64 << p2psip::limits::DEFAULT_ID_DIFFICULTY) as f64 / all_cores
        ),
    ));

    // Signatures.
    let key = SecretKey::from_seed(&[42u8; 32]);
    let msg = [7u8; 64];
    let sig = key.sign(&msg);
    let pk = key.public();
    let n = scale(20_000);
    let sign = rate(n, || {
        std::hint::black_box(key.sign(&msg));
    });
    let verify = rate(n, || assert!(pk.verify_strict(&msg, &sig)));
    rows.push(("Ed25519 sign/s".into(), format!("{sign:.0}")));
    rows.push(("Ed25519 verify_strict/s".into(), format!("{verify:.0}")));

    // Certificate verification (what each handshake costs per side).
    let now = p2psip::unix_now();
    let (der, _) =
        p2psip::identity::build_self_signed(&key, IdKind::Node, now - 60, now + 3600).unwrap();
    let policy = VerifyPolicy::self_certifying(0);
    let cert_rate = rate(n / 2, || {
        std::hint::black_box(policy.verify_node(&der, now).unwrap());
    });
    rows.push((
        "certificate verifications/s".into(),
        format!("{cert_rate:.0}"),
    ));

    // Handshakes, side by side: alternate rounds so both see the same noise.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (seq_n, conc_n, rounds) = if quick() { (20, 32, 1) } else { (400, 800, 5) };
    rt.block_on(async {
        let server_id = LocalIdentity::self_signed(&SecretKey::from_seed(&[1; 32]), now).unwrap();
        let client_id = LocalIdentity::self_signed(&SecretKey::from_seed(&[2; 32]), now).unwrap();
        let ours = Arc::new(setup(&server_id, &client_id, true));
        let plain = Arc::new(setup(&server_id, &client_id, false));
        // Warm up both.
        handshakes_per_sec(ours.clone(), 10, 1).await;
        handshakes_per_sec(plain.clone(), 10, 1).await;
        for (label, total, conc) in [("sequential", seq_n, 1), ("16 concurrent", conc_n, 16)] {
            let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let x = handshakes_per_sec(ours.clone(), total, conc).await;
                let y = handshakes_per_sec(plain.clone(), total, conc).await;
                a.push(x);
                b.push(y);
                ratios.push(x / y);
            }
            rows.push((
                format!("handshakes/s {label}, p2psip verifiers (median of {rounds})"),
                format!("{:.0}", median(a)),
            ));
            rows.push((
                format!("handshakes/s {label}, accept-anything verifier (median of {rounds})"),
                format!("{:.0}", median(b)),
            ));
            rows.push((
                format!("ratio p2psip / accept-anything, {label} (median of per-round ratios)"),
                format!("{:.3}", median(ratios)),
            ));
        }
        ours.server.close(0u32.into(), b"");
        plain.server.close(0u32.into(), b"");
    });

    println!("| measure | value |");
    println!("|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
