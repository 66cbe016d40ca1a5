//! The SIP listener: the I/O shell around the sans-IO SIP layers
//! ([`crate::sip`]). `node run --sip-listen ADDR` opens UDP and TCP on
//! the same address; phones register there (the node is their
//! registrar) and will place calls there.
//!
//! The shell reads sockets and the clock and hands bytes and instants
//! to the transaction layer and the registrar, which decide; it sends
//! what they return, and performs the overlay work they ask for
//! (publishing an AOR's registration, signed with the user's key)
//! without holding their lock across it. Everything it keeps is bounded:
//! TCP connections ([`SIP_MAX_TCP_CONNECTIONS`], idle ones closed after
//! [`SIP_TCP_IDLE_TIMEOUT`]), each connection's read buffer (one message)
//! and send queue, and the transactions and bindings the layers bound.
//!
//! Garbage never stops the listener: a datagram that does not parse is
//! answered 400 (or 505, 513, 416) when it is a request with enough
//! headers to answer, dropped otherwise; a TCP stream that does not
//! parse is answered so when possible and closed; every other phone goes
//! on being served.

pub mod accounts;

use self::accounts::{list_accounts, serve, AccountsWatch};
use super::core::now_ms;
use super::dialer::Dialer;
use super::overlay::OverlayService;
use crate::identity::{aor_key, NodeId, SecretKey};
use crate::limits::{SIP_MAX_MESSAGE_LEN, SIP_MAX_TCP_CONNECTIONS, SIP_TCP_IDLE_TIMEOUT};
use crate::overlay::key::Key;
use crate::overlay::record::{next_registration, DeviceChange, Record, RecordKind};
use crate::sip::header::HeaderName;
use crate::sip::registrar::{Registered, Registrar, RegistrarStats};
use crate::sip::transaction::{
    ServerReceived, ServerTransactions, TimerConfig, TimerOutput, Transmit, Transport, TxError,
    TxId,
};
use crate::sip::{error_reply, Frame, Message, Method, Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// How often, at most, the listener looks for added or removed accounts.
const ACCOUNTS_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Messages queued for one TCP connection, at most; beyond, the phone
/// does not read and its connection is closed.
const TCP_SEND_QUEUE: usize = 64;

/// The methods the node answers (OPTIONS' Allow).
const ALLOW: &str = "REGISTER, OPTIONS";

/// What a phone sees the node as (`Server`, `User-Agent`).
const SERVER: &str = concat!("p2psip/", env!("CARGO_PKG_VERSION"));

/// A user's signing material, loaded from its account.
struct UserKeys {
    key: SecretKey,
    user_cert: Option<Vec<u8>>,
}

/// The sans-IO layers, behind one lock that is never held across I/O.
struct Layers {
    registrar: Registrar,
    transactions: ServerTransactions,
    /// Signing material by AOR.
    users: HashMap<String, Arc<UserKeys>>,
    watch: AccountsWatch,
    last_accounts_check: Option<Instant>,
}

/// A running SIP listener (see the module docs).
pub struct SipListener {
    inner: Arc<Inner>,
    tcp: TcpListener,
}

struct Inner {
    domain: String,
    node_dir: PathBuf,
    node_id: NodeId,
    overlay: Arc<OverlayService>,
    dialer: Arc<Dialer>,
    udp: UdpSocket,
    local: SocketAddr,
    layers: Mutex<Layers>,
    /// Senders of the open TCP connections, by peer address.
    tcp_peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    /// One publication at a time per AOR, so that the newest local state
    /// is what the overlay ends with.
    publishing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the timer task when a transaction or binding was added.
    wake: Notify,
}

/// What the listener reports to the admin socket.
#[derive(Debug, Clone, Default)]
pub struct SipSnapshot {
    /// Where it listens.
    pub local: Option<SocketAddr>,
    /// Phones bound, by AOR: their contact URIs.
    pub bindings: HashMap<String, Vec<String>>,
    /// The registrar's counters.
    pub stats: RegistrarStats,
    /// Transactions in progress.
    pub transactions: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data
    // here (every update is a single call into a layer).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl SipListener {
    /// Binds UDP and TCP on `listen` (TCP on the port UDP got, when
    /// `listen` asks for any port) for the overlay `domain`, serving the
    /// accounts in `node_dir`.
    pub async fn bind(
        listen: SocketAddr,
        node_dir: &Path,
        domain: &str,
        node_id: NodeId,
        overlay: Arc<OverlayService>,
        dialer: Arc<Dialer>,
    ) -> std::io::Result<Self> {
        let udp = UdpSocket::bind(listen).await?;
        let local = udp.local_addr()?;
        let tcp = TcpListener::bind(local).await?;
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let mut registrar = Registrar::new(domain, secret);
        zeroize::Zeroize::zeroize(&mut secret);
        registrar.set_local_ip(local.ip());
        let layers = Layers {
            registrar,
            transactions: ServerTransactions::new(TimerConfig::default()),
            users: HashMap::new(),
            watch: AccountsWatch::new(node_dir),
            last_accounts_check: None,
        };
        let inner = Arc::new(Inner {
            domain: domain.to_owned(),
            node_dir: node_dir.to_path_buf(),
            node_id,
            overlay,
            dialer,
            udp,
            local,
            layers: Mutex::new(layers),
            tcp_peers: Mutex::new(HashMap::new()),
            publishing: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        });
        inner.reload_accounts(Instant::now());
        Ok(Self { inner, tcp })
    }

    /// The address UDP and TCP listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// A handle for status queries.
    pub fn handle(&self) -> SipHandle {
        SipHandle {
            inner: self.inner.clone(),
        }
    }

    /// Serves until the future is dropped.
    pub async fn run(self) {
        let udp = self.inner.clone().udp_loop();
        let tcp = self.inner.clone().accept_loop(self.tcp);
        let timers = self.inner.clone().timer_loop();
        tokio::join!(udp, tcp, timers);
    }
}

/// A handle on a running listener, for the admin socket.
#[derive(Clone)]
pub struct SipHandle {
    inner: Arc<Inner>,
}

impl SipHandle {
    /// The listener's state now.
    pub fn snapshot(&self) -> SipSnapshot {
        let layers = lock(&self.inner.layers);
        let now = now_ms();
        SipSnapshot {
            local: Some(self.inner.local),
            bindings: layers
                .registrar
                .all_bindings()
                .map(|(aor, phones)| {
                    let live = phones.iter().filter(|p| p.expires_ms > now);
                    (aor.to_owned(), live.map(|p| p.uri.clone()).collect())
                })
                .collect(),
            stats: layers.registrar.stats(),
            transactions: layers.transactions.len(),
        }
    }
}

impl Inner {
    /// Loads the accounts again if the directory changed (checked at most
    /// once per [`ACCOUNTS_CHECK_EVERY`]); unbinds the AORs dropped.
    fn reload_accounts(self: &Arc<Self>, now: Instant) {
        let changes = {
            let mut layers = lock(&self.layers);
            if layers
                .last_accounts_check
                .is_some_and(|t| now.duration_since(t) < ACCOUNTS_CHECK_EVERY)
            {
                return;
            }
            layers.last_accounts_check = Some(now);
            if !layers.watch.changed() {
                return;
            }
            let (files, problems) = list_accounts(&self.node_dir);
            for problem in problems {
                warn!(%problem, "SIP account skipped");
            }
            let mut accounts = Vec::new();
            let mut users = HashMap::new();
            for file in files {
                match serve(file, &self.domain) {
                    Ok(served) => {
                        users.insert(
                            served.account.aor.clone(),
                            Arc::new(UserKeys {
                                key: served.key,
                                user_cert: served.user_cert,
                            }),
                        );
                        accounts.push(served.account);
                    }
                    Err(problem) => warn!(%problem, "SIP account skipped"),
                }
            }
            info!(accounts = accounts.len(), "SIP accounts loaded");
            let changes = layers.registrar.set_accounts(accounts);
            // Keep the keys of AORs being unbound until that is published.
            for (aor, _) in &changes {
                if let Some(keys) = layers.users.get(aor).cloned() {
                    users.insert(aor.clone(), keys);
                }
            }
            layers.users = users;
            changes
        };
        for (aor, _) in changes {
            self.clone().spawn_publish(aor, None);
        }
    }

    async fn udp_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; SIP_MAX_MESSAGE_LEN + 1];
        loop {
            let (len, peer) = match self.udp.recv_from(&mut buf).await {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors surface here on some systems: not fatal.
                    debug!(error = %e, "SIP UDP receive error");
                    continue;
                }
            };
            let datagram = buf.get(..len).unwrap_or_default();
            match Message::parse(datagram) {
                Ok(message) => self.on_message(message, peer, Transport::Udp).await,
                Err(crate::sip::SipError::Empty) => {} // a keep-alive
                Err(e) => {
                    debug!(%peer, error = %e, "malformed SIP datagram");
                    if let Some(reply) = error_reply(datagram, &e) {
                        self.send(Transmit {
                            peer,
                            transport: Transport::Udp,
                            message: Box::new(Message::Response(reply)),
                        })
                        .await;
                    }
                }
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(got) => got,
                Err(e) => {
                    warn!(error = %e, "SIP TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel(TCP_SEND_QUEUE);
            {
                let mut peers = lock(&self.tcp_peers);
                if peers.len() >= SIP_MAX_TCP_CONNECTIONS {
                    debug!(%peer, "SIP TCP connection refused: too many");
                    continue;
                }
                peers.insert(peer, tx);
            }
            let inner = self.clone();
            tokio::spawn(async move {
                inner.clone().serve_tcp(stream, peer, rx).await;
                lock(&inner.tcp_peers).remove(&peer);
            });
        }
    }

    /// Reads messages from one TCP connection and writes what is queued
    /// for it, until either side closes, it idles, or it sends garbage.
    async fn serve_tcp(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut outgoing: mpsc::Receiver<Vec<u8>>,
    ) {
        let (mut reader, mut writer) = stream.into_split();
        let writer_task = tokio::spawn(async move {
            while let Some(bytes) = outgoing.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        'read: loop {
            let read = tokio::time::timeout(SIP_TCP_IDLE_TIMEOUT, reader.read(&mut chunk)).await;
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            loop {
                match Message::parse_stream(&buf) {
                    Ok(None) => break,
                    Ok(Some(Frame::Ping)) => {
                        buf.drain(..4);
                        self.queue_tcp(peer, b"\r\n".to_vec());
                    }
                    Ok(Some(Frame::Blank)) => {
                        buf.drain(..2);
                    }
                    Ok(Some(Frame::Message(message, used))) => {
                        buf.drain(..used.min(buf.len()));
                        self.on_message(*message, peer, Transport::Tcp).await;
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "malformed SIP on TCP; closing");
                        if let Some(reply) = error_reply(&buf, &e) {
                            self.queue_tcp(peer, Message::Response(reply).to_bytes());
                        }
                        break 'read;
                    }
                }
            }
        }
        // Let the last answer go out, then close.
        lock(&self.tcp_peers).remove(&peer);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
    }

    fn queue_tcp(&self, peer: SocketAddr, bytes: Vec<u8>) {
        let sender = lock(&self.tcp_peers).get(&peer).cloned();
        if let Some(sender) = sender {
            if sender.try_send(bytes).is_err() {
                debug!(%peer, "SIP TCP send queue full; dropping the connection's message");
            }
        }
    }

    async fn send(&self, transmit: Transmit) {
        let bytes = transmit.message.to_bytes();
        match transmit.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.send_to(&bytes, transmit.peer).await {
                    debug!(peer = %transmit.peer, error = %e, "SIP UDP send failed");
                }
            }
            Transport::Tcp => self.queue_tcp(transmit.peer, bytes),
        }
    }

    async fn on_message(
        self: &Arc<Self>,
        message: Message,
        peer: SocketAddr,
        transport: Transport,
    ) {
        match message {
            Message::Request(request) => {
                let sends = self.on_request(request, peer, transport);
                for t in sends {
                    self.send(t).await;
                }
            }
            // The node sends no requests yet: a response is stray.
            Message::Response(response) => {
                debug!(%peer, code = response.code, "stray SIP response dropped");
            }
        }
    }

    /// Hands a request to the layers; returns what to send now.
    fn on_request(
        self: &Arc<Self>,
        request: Request,
        peer: SocketAddr,
        transport: Transport,
    ) -> Vec<Transmit> {
        let now = Instant::now();
        if request.method == Method::Register {
            self.reload_accounts(now);
        }
        let mut layers = lock(&self.layers);
        if request.method == Method::Register
            && !layers.registrar.admit_register(now_ms(), peer.ip())
        {
            return Vec::new();
        }
        let stateless = |code: u16| {
            vec![Transmit {
                peer,
                transport,
                message: Box::new(Message::Response(request.reply(code, None))),
            }]
        };
        let id = match layers.transactions.receive(now, peer, transport, &request) {
            Ok(ServerReceived::New(id)) => id,
            Ok(ServerReceived::Absorbed(resend)) => return resend.into_iter().collect(),
            Ok(ServerReceived::AckFor2xx) => return Vec::new(),
            Err(TxError::Full(_)) => return stateless(503),
            Err(TxError::AckIsNotATransaction) => return Vec::new(),
            Err(_) => return stateless(400),
        };
        self.wake.notify_one();
        let response = match request.method {
            Method::Register => {
                match layers
                    .registrar
                    .register(now_ms(), peer, transport, &request)
                {
                    Registered::Answer(response) => response,
                    Registered::Changed { response, aor, .. } => {
                        drop(layers);
                        self.clone().spawn_publish(aor, Some((id, response)));
                        return Vec::new();
                    }
                }
            }
            Method::Options => {
                let mut response = request.reply(200, None);
                response
                    .headers
                    .push(HeaderName::Other("Allow".into()), ALLOW);
                response
            }
            _ => {
                // Calls through the overlay are not built yet.
                let mut response = request.reply(501, None);
                response
                    .headers
                    .push(HeaderName::Other("Allow".into()), ALLOW);
                response
            }
        };
        respond(&mut layers.transactions, now, id, response)
    }

    /// Publishes what the overlay should hold for `aor` (the registrar's
    /// state when the publication starts, one at a time per AOR), then
    /// answers transaction `then`: its 200 OK if a node stored the
    /// record, 503 if none did.
    fn spawn_publish(self: Arc<Self>, aor: String, then: Option<(TxId, Response)>) {
        tokio::spawn(async move {
            let gate = lock(&self.publishing)
                .entry(aor.clone())
                .or_default()
                .clone();
            let stored = {
                let _turn = gate.lock().await;
                self.publish(&aor).await
            };
            if let Some((id, response)) = then {
                let response = match stored {
                    Ok(_) => response,
                    Err(ref why) => {
                        warn!(%aor, error = %why, "registration not published");
                        let mut refused = Response {
                            code: 503,
                            reason: crate::sip::reason_phrase(503).to_owned(),
                            ..response
                        };
                        refused.headers.remove(&HeaderName::Contact);
                        refused
                            .headers
                            .push(HeaderName::Other("Retry-After".into()), "30");
                        refused
                    }
                };
                let sends = respond(
                    &mut lock(&self.layers).transactions,
                    Instant::now(),
                    id,
                    response,
                );
                for t in sends {
                    self.send(t).await;
                }
            }
        });
    }

    /// Signs and stores `aor`'s registration as the registrar now sees
    /// it; returns how many nodes stored it.
    async fn publish(&self, aor: &str) -> Result<usize, String> {
        let (change, keys) = {
            let layers = lock(&self.layers);
            (
                layers.registrar.presence(aor),
                layers.users.get(aor).cloned(),
            )
        };
        let keys = keys.ok_or_else(|| "no key for this AOR".to_owned())?;
        let key = Key(aor_key(aor));
        let previous = self
            .overlay
            .newest(&self.dialer, key, RecordKind::SipRegistration)
            .await
            .and_then(|v| Record::decode(v.encoded()).ok());
        if previous.is_none() && change == DeviceChange::Unbind {
            return Ok(0); // nothing to withdraw
        }
        let now = now_ms() / 1000;
        let (record, _) = next_registration(
            previous.as_ref(),
            aor,
            keys.user_cert.clone(),
            &keys.key,
            self.node_id,
            change,
            now,
            unix_micros(),
        )
        .map_err(|e| e.to_string())?;
        let acks = self.overlay.publish(&self.dialer, &record).await;
        if acks == 0 {
            return Err("no node of the overlay stored the registration".into());
        }
        debug!(%aor, acks, seq = record.seq, "registration published");
        Ok(acks)
    }

    /// Fires the transactions' timers and lapses bindings, until dropped.
    async fn timer_loop(self: Arc<Self>) {
        loop {
            let (next_tx, next_binding) = {
                let layers = lock(&self.layers);
                (
                    layers.transactions.poll_timeout(),
                    layers.registrar.next_expiry(),
                )
            };
            let now = Instant::now();
            let mut wait = Duration::from_secs(1);
            if let Some(t) = next_tx {
                wait = wait.min(t.saturating_duration_since(now));
            }
            if let Some(t) = next_binding {
                wait = wait.min(Duration::from_millis(t.saturating_sub(now_ms())));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
            let (outputs, lapsed) = {
                let mut layers = lock(&self.layers);
                let outputs = layers.transactions.handle_timeout(Instant::now());
                let lapsed = layers.registrar.expire(now_ms());
                (outputs, lapsed)
            };
            for output in outputs {
                if let TimerOutput::Retransmit(t) = output {
                    self.send(t).await;
                }
            }
            for (aor, _) in lapsed {
                debug!(%aor, "a phone's registration lapsed");
                self.clone().spawn_publish(aor, None);
            }
        }
    }
}

/// Answers transaction `id`, with the node's Server header.
fn respond(
    transactions: &mut ServerTransactions,
    now: Instant,
    id: TxId,
    mut response: Response,
) -> Vec<Transmit> {
    response.headers.push(HeaderName::Server, SERVER);
    match transactions.respond(now, id, response) {
        Ok(t) => vec![t],
        Err(e) => {
            debug!(error = %e, "SIP response not sent");
            Vec::new()
        }
    }
}
