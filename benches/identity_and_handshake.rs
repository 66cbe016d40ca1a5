//! Benchmarks: identity generation, Ed25519 sign/verify, certificate
//! verification, and mutually authenticated QUIC handshakes through
//! p2psip's verifiers versus plain quinn + rustls with the same
//! certificates and an accept-anything verifier, side by side in one run.
//!
//! Run: `cargo bench --bench identity_and_handshake` (prints a Markdown
//! table; `docs/benchmarks.md` records the figures). Set `P2PSIP_BENCH_QUICK=1`
//! for a smoke run with tiny counts.

use p2psip::identity::{generate, IdKind, SecretKey, VerifyPolicy};
use p2psip::net::cert_cache::CertCache;
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

#[derive(Clone, Copy, PartialEq)]
enum Verifiers {
    /// p2psip's verifiers, every certificate verified in full.
    P2psipCold,
    /// p2psip's verifiers with their certificate cache (the node's and
    /// client's configuration): a reconnecting peer skips re-verification.
    P2psipCached,
    /// Accept any certificate (handshake signatures still checked).
    AcceptAnything,
}

fn setup(server_id: &LocalIdentity, client_id: &LocalIdentity, which: Verifiers) -> Setup {
    let policy = VerifyPolicy::self_certifying(0);
    let expected = Some(server_id.node_id());
    let (sv, cv): (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>) = match which {
        Verifiers::P2psipCold => (
            Arc::new(PeerVerifier::new(policy.clone(), None)),
            Arc::new(PeerVerifier::new(policy, expected)),
        ),
        Verifiers::P2psipCached => {
            let (a, b) = (Arc::new(CertCache::new(64)), Arc::new(CertCache::new(64)));
            (
                Arc::new(PeerVerifier::with_cache(policy.clone(), None, a)),
                Arc::new(PeerVerifier::with_cache(policy, expected, b)),
            )
        }
        Verifiers::AcceptAnything => (
            Arc::new(AcceptAnything::new()),
            Arc::new(AcceptAnything::new()),
        ),
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
    // All cores: the same work on every thread, as `generate` does it.
    let per_thread = scale(20_000);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in 0..per_thread as u64 {
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&i.to_le_bytes());
                    seed[8] = t as u8 + 1;
                    let k = SecretKey::from_seed(&seed);
                    std::hint::black_box(IdKind::Node.puzzle_bits(&k.public()));
                }
            });
        }
    });
    let all_cores = (per_thread * threads) as f64 / start.elapsed().as_secs_f64();
    rows.push((
        format!("identity candidates/s, {threads} cores"),
        format!("{all_cores:.0}"),
    ));
    let d = p2psip::limits::DEFAULT_ID_DIFFICULTY;
    rows.push((
        format!("expected time for one identity at the default difficulty {d} on {threads} cores (2^{d} / rate)"),
        format!("{:.1} s", (1u64 << d) as f64 / all_cores),
    ));
    // One real search, to show `generate` reaches that rate (one sample of
    // a geometric distribution: expect wide spread).
    let d_small = if quick() { 8 } else { 16 };
    let start = Instant::now();
    std::hint::black_box(generate(
        IdKind::Node,
        d_small,
        0,
        Duration::from_secs(3600),
        &mut |_| {},
    ));
    rows.push((
        format!("one generate() at difficulty {d_small}, {threads} cores (single sample)"),
        format!("{:.2} s", start.elapsed().as_secs_f64()),
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
    let (seq_n, conc_n, rounds) = if quick() { (20, 32, 1) } else { (400, 800, 7) };
    rt.block_on(async {
        let server_id = LocalIdentity::self_signed(&SecretKey::from_seed(&[1; 32]), now).unwrap();
        let client_id = LocalIdentity::self_signed(&SecretKey::from_seed(&[2; 32]), now).unwrap();
        let cold = Arc::new(setup(&server_id, &client_id, Verifiers::P2psipCold));
        let cached = Arc::new(setup(&server_id, &client_id, Verifiers::P2psipCached));
        let plain = Arc::new(setup(&server_id, &client_id, Verifiers::AcceptAnything));
        for s in [&cold, &cached, &plain] {
            handshakes_per_sec(s.clone(), 10, 1).await; // warm up
        }
        for (label, total, conc) in [("sequential", seq_n, 1), ("16 concurrent", conc_n, 16)] {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            let (mut ra, mut rb) = (Vec::new(), Vec::new());
            // Interleave the three in every round so that they share the
            // machine's noise; compare within a round.
            for round in 0..rounds {
                // Rotate the order each round so no configuration always
                // runs first or last.
                let mut r = [0.0f64; 3];
                for k in 0..3 {
                    let which = (round + k) % 3;
                    let s = [&cold, &cached, &plain][which];
                    r[which] = handshakes_per_sec(s.clone(), total, conc).await;
                }
                let [x, y, z] = r;
                a.push(x);
                b.push(y);
                c.push(z);
                ra.push(x / z);
                rb.push(y / z);
            }
            for (what, v) in [
                ("p2psip verifiers, full verification", a),
                ("p2psip verifiers, certificate cache (as configured)", b),
                ("accept-anything verifier", c),
            ] {
                rows.push((
                    format!("handshakes/s {label}, {what} (median of {rounds})"),
                    format!("{:.0}", median(v)),
                ));
            }
            rows.push((
                format!("ratio full verification / accept-anything, {label}"),
                format!("{:.3}", median(ra)),
            ));
            rows.push((
                format!("ratio cached / accept-anything, {label}"),
                format!("{:.3}", median(rb)),
            ));
        }
        for s in [&cold, &cached, &plain] {
            s.server.close(0u32.into(), b"");
        }
    });

    println!("| measure | value |");
    println!("|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
