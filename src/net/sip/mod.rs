//! The SIP listener: the I/O shell around the sans-IO SIP layers
//! ([`crate::sip`]). `node run --sip-listen ADDR` opens UDP and TCP on
//! the same address; phones register there (the node is their
//! registrar) and will place calls there.
//!
//! The shell reads sockets and the clock and hands bytes and instants
//! to the SIP core ([`Proxy`]: admission, dialogs, transactions, the
//! registrar, and when media is anchored), which decides; it sends
//! what they return, and performs the overlay work they ask for
//! (publishing an AOR's registration, signed with the user's key)
//! without holding their lock across it. Everything it keeps is bounded:
//! TCP connections ([`SIP_MAX_TCP_CONNECTIONS`], at most
//! [`crate::limits::SIP_MAX_TCP_CONNECTIONS_PER_IP`] per address, closed
//! without a first message after
//! [`crate::limits::SIP_TCP_FIRST_MESSAGE_TIMEOUT`] and idle ones after
//! [`SIP_TCP_IDLE_TIMEOUT`]), each connection's read buffer (one message)
//! and send queue, and the transactions and bindings the layers bound.
//!
//! Garbage never stops the listener: a datagram that does not parse is
//! answered 400 (or 505, 513, 416) when it is a request with enough
//! headers to answer, dropped otherwise; a TCP stream that does not
//! parse is answered so when possible and closed; every other phone goes
//! on being served.

pub mod accounts;
pub mod media;
mod tcp;
mod voicemail;

use self::accounts::{list_accounts, serve, AccountsWatch};
use self::media::{DialerLinks, MediaRelay, RelayAnchor};
use self::tcp::{Refusal, TcpPeers};
use super::anonymous::{AnonymousCalls, Inbound};
use super::core::now_ms;
use super::dialer::Dialer;
use super::overlay::{OverlayService, SipDelivery};
use crate::identity::sealing::EncryptionSecretKey;
use crate::identity::{aor_key, NodeId};
use crate::limits::{
    MAX_RECORD_LIFETIME, SIP_MAX_MESSAGE_LEN, SIP_MAX_TCP_CONNECTIONS, SIP_OVERLAY_INBOX,
    SIP_OVERLAY_PEERS, SIP_TCP_IDLE_TIMEOUT,
};
use crate::overlay::key::Key;
use crate::overlay::record::mailbox_key;
use crate::overlay::record::{next_registration, DeviceChange, Record, RecordKind};
use crate::overlay::record::{profile_key, PrivateSlot, Profile};
use crate::overlay::routing::Contact;
use crate::relay::handle::RendezvousHandle;
use crate::sip::identity::Signer;
use crate::sip::media::MediaStats;
use crate::sip::proxy::{Action, Located, MailboxCounts, Proxy, UserData};
use crate::sip::registrar::RegistrarStats;
use crate::sip::stream::StreamReader;
use crate::sip::transaction::{Transmit, Transport};
use crate::sip::{error_reply, Frame, HeaderName, Message, Method};
use crate::userdata::voicemail::Mailbox;
use crate::userdata::{open_slot, AddressBook, Settings, CONTACTS_SLOT, SETTINGS_SLOT};
use crate::wire::Message as WireMessage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// The media address an SDP body names when it goes through an
/// anonymous session: the media itself goes through the session, and the
/// node's address must not.
pub const SESSION_SDP_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 1);
/// The media port it names (discard).
pub const SESSION_SDP_PORT: u16 = 9;

/// How often, at most, the listener looks for added or removed accounts.
const ACCOUNTS_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Messages queued for one TCP connection, at most; beyond, the phone
/// does not read and its connection is closed.
const TCP_SEND_QUEUE: usize = 64;

/// Messages queued for one node of the overlay, at most.
const NODE_SEND_QUEUE: usize = 256;

/// A node's sender task ends after this long without a message.
const NODE_SENDER_IDLE: Duration = Duration::from_secs(60);

/// A user's keys, loaded from its account: the identity key signs its
/// registrations and calls (and derives its private slots), the
/// encryption key opens its address book and settings.
struct UserKeys {
    signer: Arc<Signer>,
    encryption: Option<EncryptionSecretKey>,
    /// The keys of its address book's and settings' records.
    slots: [Key; 2],
}

/// The sans-IO core and what the shell keeps beside it, behind one lock
/// that is never held across I/O.
struct Layers {
    proxy: Proxy,
    /// Signing material by AOR.
    users: HashMap<String, Arc<UserKeys>>,
    watch: AccountsWatch,
    last_accounts_check: Option<Instant>,
}

/// A running SIP listener (see the module docs).
pub struct SipListener {
    inner: Arc<Inner>,
    tcp: TcpListener,
    deliveries: mpsc::Receiver<SipDelivery>,
    anonymous: Option<mpsc::Receiver<Inbound>>,
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
    /// Senders of the open TCP connections, by peer address, bounded in
    /// all and per IP address.
    tcp_peers: Mutex<TcpPeers<mpsc::Sender<Vec<u8>>>>,
    /// Senders to nodes of the overlay, in order per node.
    node_senders: Mutex<HashMap<NodeId, mpsc::Sender<Transmit>>>,
    /// Where nodes that sent SIP were (their authenticated connections).
    node_addrs: Mutex<HashMap<NodeId, SocketAddr>>,
    /// One publication at a time per AOR, so that the newest local state
    /// is what the overlay ends with.
    publishing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the timer task when a transaction or binding was added.
    wake: Notify,
    /// The calls' media, anchored here.
    media: Arc<MediaRelay>,
    /// Calls through anonymizing circuits (`--anonymous-calls`).
    anonymous: std::sync::OnceLock<Arc<AnonymousCalls>>,
    /// The node's voice mail.
    voicemail: std::sync::OnceLock<Arc<voicemail::Agent>>,
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
    /// Server and client transactions in progress.
    pub transactions: (usize, usize),
    /// The media relay's counters.
    pub media: MediaStats,
    /// Media datagrams that could not be sent to a node (no connection
    /// yet, or too large for it).
    pub media_unsent: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data
    // here (every update is a single call into a layer).
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut proxy = Proxy::new(node_id, domain, local, secret);
        proxy.set_record_policy(overlay.record_policy().clone());
        zeroize::Zeroize::zeroize(&mut secret);
        let (inbox, deliveries) = mpsc::channel(SIP_OVERLAY_INBOX);
        if !overlay.set_sip_inbox(inbox) {
            return Err(std::io::Error::other(
                "the overlay has a SIP listener already",
            ));
        }
        let layers = Layers {
            proxy,
            users: HashMap::new(),
            watch: AccountsWatch::new(node_dir),
            last_accounts_check: None,
        };
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            // A media link is this node's connection to the other node
            // (the one its SIP went over, usually open already).
            let links = DialerLinks::new(Box::new(move |node| {
                let weak = weak.clone();
                tokio::spawn(async move {
                    let inner = weak.upgrade()?;
                    let contact = inner.resolve(node).await?;
                    let conn = inner.dialer.connect(contact).await.ok()?;
                    Some(conn.connection().clone())
                })
            }));
            Inner {
                domain: domain.to_owned(),
                node_dir: node_dir.to_path_buf(),
                node_id,
                overlay,
                dialer,
                udp,
                local,
                layers: Mutex::new(layers),
                tcp_peers: Mutex::new(TcpPeers::new(
                    SIP_MAX_TCP_CONNECTIONS,
                    crate::limits::SIP_MAX_TCP_CONNECTIONS_PER_IP,
                )),
                node_senders: Mutex::new(HashMap::new()),
                node_addrs: Mutex::new(HashMap::new()),
                publishing: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                media: MediaRelay::new(local.ip(), links),
                anonymous: std::sync::OnceLock::new(),
                voicemail: std::sync::OnceLock::new(),
            }
        });
        if !inner.media.attach(&inner.overlay) {
            return Err(std::io::Error::other(
                "the overlay has a media relay already",
            ));
        }
        // The core decides when media is anchored and for whom; the
        // relay carries it out on its sockets.
        lock(&inner.layers)
            .proxy
            .set_media(Box::new(RelayAnchor(inner.media.clone())));
        inner.reload_accounts(Instant::now());
        Ok(Self {
            inner,
            tcp,
            deliveries,
            anonymous: None,
        })
    }

    /// Places and takes calls through anonymizing circuits
    /// (`--anonymous-calls`): registrations publish `calls`' rendezvous
    /// handle, calls go to callees' handles, never straight to their
    /// nodes (a callee without a handle is not called: 480).
    pub fn enable_anonymous(
        &mut self,
        calls: Arc<AnonymousCalls>,
        inbound: mpsc::Receiver<Inbound>,
    ) {
        self.inner.media.set_sessions(calls.clone());
        let _ = self.inner.anonymous.set(calls);
        self.anonymous = Some(inbound);
    }

    /// Answers the calls of the users served here that go to voice mail
    /// (their `voicemail` setting, on unless they turned it off), and
    /// stores the messages in their mailboxes, deposits signed with
    /// `depositor` (the node's key). Returns where the voicemail agent
    /// listens (loopback, or the listener's address).
    pub async fn enable_voicemail(
        &mut self,
        depositor: crate::identity::SecretKey,
    ) -> std::io::Result<SocketAddr> {
        let agent = voicemail::Agent::bind(self.inner.local, &self.inner.domain, depositor).await?;
        let at = agent.sip_addr()?;
        if self.inner.voicemail.set(Arc::new(agent)).is_err() {
            return Err(std::io::Error::other("voice mail is enabled already"));
        }
        lock(&self.inner.layers).proxy.set_voicemail(Some(at));
        Ok(at)
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
        let overlay = self.inner.clone().overlay_loop(self.deliveries);
        let anonymous = async {
            if let Some(inbound) = self.anonymous {
                tokio::join!(
                    self.inner.clone().session_loop(inbound),
                    self.inner.clone().handle_loop()
                );
            }
        };
        let voicemail = async {
            match self.inner.voicemail.get() {
                Some(agent) => self.inner.clone().voicemail_loop(agent.clone()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::join!(udp, tcp, timers, overlay, anonymous, voicemail);
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
        // Read before the layers' lock: the two locks are never held
        // together here.
        let (media, media_unsent) = self.inner.media.stats();
        let layers = lock(&self.inner.layers);
        let now = now_ms();
        let registrar = layers.proxy.registrar();
        SipSnapshot {
            local: Some(self.inner.local),
            bindings: registrar
                .all_bindings()
                .map(|(aor, phones)| {
                    let live = phones.iter().filter(|p| p.expires_ms > now);
                    (aor.to_owned(), live.map(|p| p.uri.clone()).collect())
                })
                .collect(),
            stats: registrar.stats(),
            transactions: layers.proxy.transactions(),
            media,
            media_unsent,
        }
    }

    /// A record under `key` was published through this node: if it is
    /// the address book or settings of a user served here, what was read
    /// of them is forgotten, so the user's next call reads them again.
    pub fn record_published(&self, key: &Key) {
        let mut layers = lock(&self.inner.layers);
        let accounts: Vec<String> = layers
            .users
            .iter()
            .filter(|(_, keys)| keys.slots.contains(key))
            .map(|(aor, _)| aor.clone())
            .collect();
        for account in accounts {
            layers.proxy.forget_user_data(&account);
        }
        // A user marked a message heard or deleted it through this node:
        // its phones learn at once.
        let mailboxes: Vec<String> = layers
            .users
            .iter()
            .filter(|(_, keys)| mailbox_key(&keys.signer.key.public().user_id()) == *key)
            .map(|(aor, _)| aor.clone())
            .collect();
        drop(layers);
        for account in mailboxes {
            self.inner.clone().spawn_read_mailbox(account);
        }
    }

    /// The phones bound at `now_ms` (unix milliseconds), by AOR, with
    /// where and how each registered; lapsed ones are left out.
    pub fn phones(&self, now_ms: u64) -> Vec<(String, Vec<crate::sip::registrar::PhoneBinding>)> {
        let layers = lock(&self.inner.layers);
        layers
            .proxy
            .registrar()
            .all_bindings()
            .map(|(aor, phones)| {
                let live = phones.iter().filter(|p| p.expires_ms > now_ms);
                (aor.to_owned(), live.cloned().collect::<Vec<_>>())
            })
            .filter(|(_, phones)| !phones.is_empty())
            .collect()
    }

    /// Removes phones bound to `aor` (normalised) on the operator's word
    /// ([`crate::sip::registrar::Registrar::unbind`]): the one with
    /// Contact `contact`, or every one. Logs each at info level and, when
    /// the AOR has no phone left, withdraws it from the overlay as when
    /// its last binding lapses.
    pub fn unbind(
        &self,
        aor: &str,
        contact: Option<&str>,
    ) -> Result<crate::sip::registrar::Unbound, crate::sip::registrar::UnbindError> {
        let unbound =
            lock(&self.inner.layers)
                .proxy
                .registrar_mut()
                .unbind(aor, contact, now_ms())?;
        for phone in &unbound.removed {
            info!(%aor, contact = %phone.uri, source = %phone.source, "SIP binding removed by the operator");
        }
        if unbound.change.is_some() {
            self.inner.clone().spawn_publish(aor.to_owned(), None);
        }
        Ok(unbound)
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
                        let slots = [CONTACTS_SLOT, SETTINGS_SLOT].map(|name| {
                            PrivateSlot::new(&served.key, name)
                                .map_or(Key([0; 32]), |slot| slot.key())
                        });
                        users.insert(
                            served.account.aor.clone(),
                            Arc::new(UserKeys {
                                signer: Arc::new(Signer {
                                    key: served.key,
                                    cert: served.user_cert,
                                }),
                                encryption: served.encryption,
                                slots,
                            }),
                        );
                        accounts.push(served.account);
                    }
                    Err(problem) => warn!(%problem, "SIP account skipped"),
                }
            }
            info!(accounts = accounts.len(), "SIP accounts loaded");
            let changes = layers.proxy.registrar_mut().set_accounts(accounts);
            // Keep the keys of AORs being unbound until that is published.
            for (aor, _) in &changes {
                if let Some(keys) = layers.users.get(aor).cloned() {
                    users.insert(aor.clone(), keys);
                }
            }
            let signers = users
                .iter()
                .map(|(aor, keys)| (aor.clone(), keys.signer.clone()))
                .collect();
            layers.proxy.set_signers(signers);
            layers.proxy.set_user_data_accounts(
                users
                    .iter()
                    .filter(|(_, keys)| keys.encryption.is_some())
                    .map(|(aor, _)| aor.clone())
                    .collect(),
            );
            let with_keys: Vec<String> = users
                .iter()
                .filter(|(aor, keys)| {
                    keys.encryption.is_some()
                        && layers
                            .users
                            .get(*aor)
                            .is_none_or(|old| old.encryption.is_none())
                })
                .map(|(aor, _)| aor.clone())
                .collect();
            layers.users = users;
            (changes, with_keys)
        };
        let (changes, new_profiles) = changes;
        for (aor, _) in changes {
            self.clone().spawn_publish(aor, None);
        }
        for aor in new_profiles {
            self.clone().spawn_publish_profile(aor);
        }
    }

    /// Makes sure the overlay holds `aor`'s profile with its encryption
    /// key (what others seal to it), for a user newly served here: a
    /// missing one, one with another key, or one past half its life is
    /// published again, keeping the display name the user set.
    fn spawn_publish_profile(self: Arc<Self>, aor: String) {
        tokio::spawn(async move {
            let Some(keys) = lock(&self.layers).users.get(&aor).cloned() else {
                return;
            };
            let Some(enc) = keys.encryption.as_ref() else {
                return;
            };
            let user = &keys.signer.key;
            let key = profile_key(&user.public().user_id());
            let found = self
                .overlay
                .newest(&self.dialer, key, RecordKind::Profile)
                .await
                .filter(|r| r.owner() == user.public().as_bytes());
            let now = now_ms() / 1000;
            let current = found.as_ref().and_then(|r| r.profile());
            let fresh = found.as_ref().is_some_and(|r| {
                r.expires().saturating_sub(now) >= MAX_RECORD_LIFETIME.as_secs() / 2
            });
            if fresh && current.as_ref().map(|p| *p.encryption_key()) == Some(enc.public()) {
                return;
            }
            let display = current.as_ref().map_or("", |p| p.display_name());
            let Ok(profile) = Profile::new(enc.public(), display) else {
                return;
            };
            let seq = found
                .as_ref()
                .map_or(0, |r| r.seq().saturating_add(1))
                .max(crate::unix_now_micros());
            let record = profile.sign(user, seq, now.saturating_add(MAX_RECORD_LIFETIME.as_secs()));
            let acks = self.overlay.publish(&self.dialer, &record).await;
            info!(%aor, acks, "the user's profile published");
        });
    }

    /// Carries out what the core asked for.
    fn perform(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(t) => self.send(t),
                Action::Locate { lookup, aor } => self.clone().spawn_locate(lookup, aor),
                Action::ReadUserData { account } => self.clone().spawn_read_user_data(account),
                Action::ReadMailbox { account } => self.clone().spawn_read_mailbox(account),
                Action::Publish { aor, reply } => self.clone().spawn_publish(aor, reply),
            }
        }
    }

    /// SIP messages from other nodes, in the order they came.
    async fn overlay_loop(self: Arc<Self>, mut deliveries: mpsc::Receiver<SipDelivery>) {
        while let Some(delivery) = deliveries.recv().await {
            let from = delivery.from;
            match Message::parse(&delivery.message) {
                Ok(message) => {
                    {
                        let mut addrs = lock(&self.node_addrs);
                        if addrs.len() >= SIP_OVERLAY_PEERS && !addrs.contains_key(&from.id) {
                            addrs.clear();
                        }
                        addrs.insert(from.id, from.addr);
                    }
                    self.on_message(message, from.addr, Transport::Overlay(from.id));
                }
                Err(e) => debug!(peer = %from.id, error = %e, "malformed SIP from a node dropped"),
            }
        }
    }

    /// SIP and media from anonymous sessions: SIP revealed (this node's
    /// pseudonym names it again) and handled as from a node whose id is
    /// the other end's pseudonym.
    async fn session_loop(self: Arc<Self>, mut inbound: mpsc::Receiver<Inbound>) {
        let Some(calls) = self.anonymous.get().cloned() else {
            return;
        };
        let (me, local) = (self.node_id.to_string(), self.local.to_string());
        while let Some(item) = inbound.recv().await {
            match item {
                Inbound::Sip { peer, bytes } => {
                    let Some(alias) = calls.own_alias(&peer) else {
                        continue;
                    };
                    let bytes =
                        crate::sip::topology::reveal(&bytes, &me, &alias.to_string(), &local);
                    match Message::parse(&bytes) {
                        Ok(message) => {
                            track_call(&calls, &peer, &message);
                            self.on_message(
                                message,
                                crate::sip::proxy::UNRESOLVED,
                                Transport::Overlay(peer),
                            );
                        }
                        Err(e) => {
                            debug!(peer = %peer.fmt_short(), error = %e, "malformed SIP from a session dropped")
                        }
                    }
                }
                Inbound::Media { peer, datagram } => self.media.datagram_from(peer, &datagram),
            }
        }
    }

    /// Publishes the registrations again whenever the rendezvous handle
    /// changes (it is in them).
    async fn handle_loop(self: Arc<Self>) {
        let Some(calls) = self.anonymous.get().cloned() else {
            return;
        };
        let mut watch = calls.watch_handle();
        while watch.changed().await.is_ok() {
            let aors: Vec<String> = lock(&self.layers)
                .proxy
                .registrar()
                .all_bindings()
                .map(|(aor, _)| aor.to_owned())
                .collect();
            for aor in aors {
                self.clone().spawn_publish(aor, None);
            }
        }
    }

    /// Sends a SIP message through an anonymous session: media
    /// addresses out of its SDP (the media goes through the session),
    /// the caller's Identity signed again over the body as it now is,
    /// this node hidden behind its pseudonym.
    fn send_to_session(self: &Arc<Self>, calls: &AnonymousCalls, peer: NodeId, transmit: Transmit) {
        let Some(alias) = calls.own_alias(&peer) else {
            self.failed(&transmit);
            return;
        };
        let mut message = transmit.message.as_ref().clone();
        if let Ok(Some(body)) = sdp_body(&message) {
            if let Ok(sdp) = crate::sip::sdp::Sdp::parse(body) {
                // Placeholders (RFC 5737's documentation address, the
                // discard port), not 0.0.0.0, which means "on hold".
                let ports = vec![SESSION_SDP_PORT; sdp.streams().len()];
                set_body(
                    &mut message,
                    sdp.rewrite(SESSION_SDP_ADDRESS.into(), &ports),
                );
                if let Message::Request(request) = &mut message {
                    self.sign_again(request);
                }
            }
        }
        let bytes = crate::sip::topology::hide(
            &message.to_bytes(),
            &self.node_id.to_string(),
            &alias.to_string(),
            &self.local.to_string(),
        );
        track_call(calls, &peer, &message);
        if !calls.send_sip(&peer, bytes) {
            self.failed(&transmit);
        }
    }

    /// Signs a request's Identity again (its body changed), with the key
    /// of the user its From names; without such a key the header goes.
    fn sign_again(&self, request: &mut crate::sip::Request) {
        if request.headers.get(&HeaderName::Identity).is_none() {
            return;
        }
        let aor = request
            .headers
            .get(&HeaderName::From)
            .and_then(|from| crate::sip::typed::NameAddr::parse("From", from).ok())
            .and_then(|from| crate::sip::registrar::aor_of(&from.uri));
        let signer =
            aor.and_then(|aor| lock(&self.layers).users.get(&aor).map(|k| k.signer.clone()));
        let signed = signer.and_then(|signer| {
            crate::sip::identity::sign(request, &signer, &self.domain, now_ms() / 1000)
        });
        match signed {
            Some(value) => request.headers.set(HeaderName::Identity, value),
            None => request.headers.remove(&HeaderName::Identity),
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
                Ok(message) => self.on_message(message, peer, Transport::Udp),
                Err(crate::sip::SipError::Empty) => {} // a keep-alive
                Err(e) => {
                    debug!(%peer, error = %e, "malformed SIP datagram");
                    if let Some(reply) = error_reply(datagram, &e) {
                        self.send(Transmit {
                            peer,
                            transport: Transport::Udp,
                            message: Box::new(Message::Response(reply)),
                        });
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
            let taken = {
                let mut peers = lock(&self.tcp_peers);
                let taken = peers.insert(peer, tx);
                if let Err(why) = taken {
                    let (full, per_address) = peers.refused();
                    debug!(
                        %peer,
                        ?why,
                        refused_full = full,
                        refused_per_address = per_address,
                        "SIP TCP connection refused"
                    );
                }
                taken
            };
            // A refused connection is closed at once (dropped here).
            let Ok(id) = taken else {
                continue;
            };
            let inner = self.clone();
            tokio::spawn(async move {
                inner.clone().serve_tcp(stream, peer, id, rx).await;
                lock(&inner.tcp_peers).remove(&peer, id);
            });
        }
    }

    /// Reads messages from one TCP connection (connection `id` with
    /// `peer`) and writes what is queued for it, until either side
    /// closes, it sends garbage, it brings no complete message within
    /// [`crate::limits::SIP_TCP_FIRST_MESSAGE_TIMEOUT`] of opening, or
    /// it idles for [`SIP_TCP_IDLE_TIMEOUT`] after one. The stream is
    /// read incrementally: each byte is parsed once.
    async fn serve_tcp(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        id: u64,
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
        let first_message_by =
            tokio::time::Instant::now() + crate::limits::SIP_TCP_FIRST_MESSAGE_TIMEOUT;
        let mut got_message = false;
        let mut parser = StreamReader::new();
        let mut chunk = vec![0u8; 16 * 1024];
        'read: loop {
            let deadline = match got_message {
                false => first_message_by,
                true => tokio::time::Instant::now() + SIP_TCP_IDLE_TIMEOUT,
            };
            let read = tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await;
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Err(_) => {
                    debug!(%peer, first_message = !got_message, "SIP TCP connection timed out; closing");
                    break;
                }
                Ok(Ok(n)) => n,
            };
            let mut next = parser
                .feed(chunk.get(..n).unwrap_or_default())
                .and_then(|()| parser.next_frame());
            loop {
                match next {
                    Ok(None) => break,
                    Ok(Some(Frame::Ping)) => self.queue_tcp(peer, b"\r\n".to_vec()),
                    Ok(Some(Frame::Blank)) => {}
                    Ok(Some(Frame::Message(message, _))) => {
                        got_message = true;
                        self.on_message(*message, peer, Transport::Tcp);
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "malformed SIP on TCP; closing");
                        if let Some(reply) = error_reply(parser.pending(), &e) {
                            self.queue_tcp(peer, Message::Response(reply).to_bytes());
                        }
                        break 'read;
                    }
                }
                next = parser.next_frame();
            }
        }
        // Let the last answer go out, then close.
        lock(&self.tcp_peers).remove(&peer, id);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
    }

    /// Queues bytes for the TCP connection with `peer`; without one,
    /// connects to it (a phone listening on its contact address), unless
    /// the listener or `peer`'s address holds as many connections as it
    /// may.
    fn queue_tcp(self: &Arc<Self>, peer: SocketAddr, bytes: Vec<u8>) {
        let open = {
            let mut peers = lock(&self.tcp_peers);
            match peers.get(&peer) {
                Some(sender) => Some(Ok(sender)),
                None => peers
                    .admits(&peer)
                    .err()
                    .map(|why| Err((why, peers.refused()))),
            }
        };
        match open {
            Some(Ok(sender)) => {
                if sender.try_send(bytes).is_err() {
                    debug!(%peer, "SIP TCP send queue full; dropping the connection's message");
                }
            }
            Some(Err((why, (full, per_address)))) => {
                debug!(
                    %peer,
                    ?why,
                    refused_full = full,
                    refused_per_address = per_address,
                    "SIP TCP connection to the phone refused; message dropped"
                );
            }
            None => {
                let inner = self.clone();
                tokio::spawn(async move {
                    let connect =
                        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(peer));
                    let stream = match connect.await {
                        Ok(Ok(stream)) => stream,
                        _ => {
                            debug!(%peer, "cannot connect to the phone over TCP");
                            return;
                        }
                    };
                    let (tx, rx) = mpsc::channel(TCP_SEND_QUEUE);
                    let taken = {
                        let mut peers = lock(&inner.tcp_peers);
                        match peers.insert(peer, tx.clone()) {
                            Ok(id) => Ok(id),
                            // Another task connected meanwhile: use its
                            // connection, close this one.
                            Err(Refusal::Exists) => Err(peers.get(&peer)),
                            Err(why) => {
                                debug!(%peer, ?why, "SIP TCP connection to the phone refused");
                                Err(None)
                            }
                        }
                    };
                    match taken {
                        Ok(id) => {
                            let _ = tx.try_send(bytes);
                            inner.clone().serve_tcp(stream, peer, id, rx).await;
                            lock(&inner.tcp_peers).remove(&peer, id);
                        }
                        Err(Some(existing)) => {
                            let _ = existing.try_send(bytes);
                        }
                        Err(None) => {}
                    }
                });
            }
        }
    }

    /// Sends a message: over UDP at once, to a TCP connection's queue,
    /// or to a node's queue (sent in order, each in its own request).
    fn send(self: &Arc<Self>, transmit: Transmit) {
        match transmit.transport {
            Transport::Udp => {
                let bytes = transmit.message.to_bytes();
                if let Err(e) = self.udp.try_send_to(&bytes, transmit.peer) {
                    debug!(peer = %transmit.peer, error = %e, "SIP UDP send failed");
                }
            }
            Transport::Tcp => self.queue_tcp(transmit.peer, transmit.message.to_bytes()),
            Transport::Overlay(node) => {
                if let Some(calls) = self.anonymous.get().filter(|c| c.is_session(&node)) {
                    self.send_to_session(calls, node, transmit);
                    return;
                }
                let mut senders = lock(&self.node_senders);
                let sender = match senders.get(&node) {
                    Some(s) if !s.is_closed() => s.clone(),
                    _ => {
                        if senders.len() >= SIP_OVERLAY_PEERS {
                            senders.retain(|_, s| !s.is_closed());
                        }
                        let (tx, rx) = mpsc::channel(NODE_SEND_QUEUE);
                        senders.insert(node, tx.clone());
                        tokio::spawn(self.clone().node_sender(node, rx));
                        tx
                    }
                };
                drop(senders);
                if let Err(e) = sender.try_send(transmit) {
                    let transmit = match e {
                        mpsc::error::TrySendError::Full(t)
                        | mpsc::error::TrySendError::Closed(t) => t,
                    };
                    self.failed(&transmit);
                }
            }
        }
    }

    /// Sends the messages queued for `node`, one after the other.
    async fn node_sender(self: Arc<Self>, node: NodeId, mut queue: mpsc::Receiver<Transmit>) {
        while let Ok(Some(transmit)) = tokio::time::timeout(NODE_SENDER_IDLE, queue.recv()).await {
            let bytes = transmit.message.to_bytes();
            let delivered = match self.resolve(node).await {
                Some(contact) => {
                    let message = WireMessage::Sip {
                        overlay: self.domain.clone(),
                        message: bytes,
                    };
                    match self.overlay.request(&self.dialer, contact, &message).await {
                        Ok(WireMessage::SipReceived) => true,
                        Ok(other) => {
                            debug!(%node, answer = other.name(), "SIP refused by the node");
                            false
                        }
                        Err(e) => {
                            debug!(%node, error = %e, "SIP not delivered to the node");
                            false
                        }
                    }
                }
                None => {
                    debug!(%node, "the node's address is unknown");
                    false
                }
            };
            if !delivered {
                self.failed(&transmit);
            }
        }
        lock(&self.node_senders).remove(&node);
    }

    /// Where `node` listens: where it last sent SIP from, in the routing
    /// table, or found by a lookup of its id.
    async fn resolve(&self, node: NodeId) -> Option<Contact> {
        if let Some(addr) = lock(&self.node_addrs).get(&node).copied() {
            return Some(Contact { id: node, addr });
        }
        let key = Key(*node.as_bytes());
        if let Some(c) = self
            .overlay
            .closest(&key, 1)
            .into_iter()
            .find(|c| c.id == node)
        {
            return Some(c);
        }
        let found = self.overlay.lookup(&self.dialer, key, None).await;
        found.closest.into_iter().find(|c| c.id == node)
    }

    fn failed(self: &Arc<Self>, transmit: &Transmit) {
        let actions = lock(&self.layers)
            .proxy
            .send_failed(Instant::now(), transmit);
        self.perform(actions);
    }

    fn on_message(self: &Arc<Self>, message: Message, peer: SocketAddr, transport: Transport) {
        let now = Instant::now();
        let actions = match message {
            Message::Request(request) => {
                if request.method == crate::sip::Method::Register {
                    self.reload_accounts(now);
                }
                lock(&self.layers)
                    .proxy
                    .handle_request(now, now_ms(), peer, transport, request)
            }
            Message::Response(response) => lock(&self.layers)
                .proxy
                .handle_response(now, peer, transport, response),
        };
        self.wake.notify_one();
        self.perform(actions);
    }

    /// Looks `aor` up in the overlay and tells the core what was found.
    fn spawn_locate(self: Arc<Self>, lookup: u64, aor: String) {
        tokio::spawn(async move {
            let key = Key(aor_key(&aor));
            let found = self
                .overlay
                .newest(&self.dialer, key, RecordKind::SipRegistration)
                .await;
            let now = now_ms() / 1000;
            let located = match found.and_then(|r| r.registration()) {
                None => Located::NotFound,
                Some(reg) if reg.aor() != aor => Located::NotFound,
                Some(reg) => {
                    let entries: Vec<_> = reg.live_entries(now).cloned().collect();
                    let nodes = match self.anonymous.get() {
                        Some(calls) => Self::sessions_to(calls, &entries).await,
                        None => entries.iter().map(|e| e.node_id).collect(),
                    };
                    if nodes.is_empty() {
                        Located::NoLiveEntry
                    } else {
                        Located::Nodes(nodes)
                    }
                }
            };
            debug!(%aor, ?located, "AOR located");
            let actions = lock(&self.layers)
                .proxy
                .located(Instant::now(), lookup, located);
            self.wake.notify_one();
            self.perform(actions);
        });
    }

    /// Reads `account`'s address book and settings from the overlay and
    /// opens them with the user's keys; hands the core what it found
    /// (empty where there is nothing, or nothing that opens).
    fn spawn_read_user_data(self: Arc<Self>, account: String) {
        tokio::spawn(async move {
            let keys = lock(&self.layers).users.get(&account).cloned();
            let mut data = UserData::default();
            if let Some((user, enc)) = keys
                .as_ref()
                .and_then(|k| Some((&k.signer.key, k.encryption.as_ref()?)))
            {
                let (book, settings) = tokio::join!(
                    self.read_slot(user, enc, CONTACTS_SLOT),
                    self.read_slot(user, enc, SETTINGS_SLOT)
                );
                if let Some(book) = book {
                    match AddressBook::decode(&book) {
                        Ok(book) => data.book = book,
                        Err(e) => warn!(%account, error = %e, "address book unreadable"),
                    }
                }
                if let Some(settings) = settings {
                    match Settings::decode(&settings) {
                        Ok(settings) => data.settings = settings,
                        Err(e) => warn!(%account, error = %e, "settings unreadable"),
                    }
                }
            }
            debug!(%account, contacts = data.book.len(), "user data read");
            let actions = lock(&self.layers)
                .proxy
                .user_data(Instant::now(), &account, data);
            self.wake.notify_one();
            self.perform(actions);
        });
    }

    /// Reads `account`'s mailbox and reports its counts to the core (for
    /// the phones subscribed to them). A mailbox that cannot be read
    /// counts as empty.
    fn spawn_read_mailbox(self: Arc<Self>, account: String) {
        tokio::spawn(async move {
            let Some(keys) = lock(&self.layers).users.get(&account).cloned() else {
                return;
            };
            let user = keys.signer.key.public().user_id();
            let records = self
                .overlay
                .newest_per_owner(&self.dialer, mailbox_key(&user), RecordKind::Mailbox)
                .await;
            let mailbox = Mailbox::read(&user, &records, now_ms() / 1000, &[self.node_id]);
            let heard = mailbox
                .items
                .iter()
                .filter(|(_, i)| mailbox.heard.contains(&i.id))
                .count();
            let counts = MailboxCounts {
                new: mailbox.items.len() - heard,
                old: heard,
            };
            debug!(%account, new = counts.new, old = counts.old, "mailbox read");
            let actions = lock(&self.layers)
                .proxy
                .mailbox_counts(Instant::now(), &account, counts);
            self.perform(actions);
        });
    }

    /// The plaintext of the private slot `name` of `user`, if the
    /// overlay holds a record of it that opens.
    async fn read_slot(
        &self,
        user: &crate::identity::SecretKey,
        enc: &EncryptionSecretKey,
        name: &'static str,
    ) -> Option<Vec<u8>> {
        let slot = PrivateSlot::new(user, name).ok()?;
        let found = self
            .overlay
            .newest(&self.dialer, slot.key(), RecordKind::Private)
            .await?;
        let record = found.record().ok()?;
        let now = now_ms() / 1000;
        match open_slot(&slot, name, enc, &record, now) {
            Ok(plaintext) => {
                // Records live 30 days: one read when less than half is
                // left signs it again for another 30, unchanged. Its seq
                // goes up by one only: any version the user wrote since
                // (at least the clock in microseconds) still wins, and a
                // stale copy served to this node cannot be made to.
                if record.expires.saturating_sub(now) < MAX_RECORD_LIFETIME.as_secs() / 2 {
                    let renewed = slot.renew(
                        &record,
                        record.seq.saturating_add(1),
                        now.saturating_add(MAX_RECORD_LIFETIME.as_secs()),
                    );
                    let acks = self.overlay.publish(&self.dialer, &renewed).await;
                    info!(slot = name, acks, "a user's private record renewed");
                }
                Some(plaintext)
            }
            Err(e) => {
                warn!(slot = name, error = %e, "a user's private record did not open");
                None
            }
        }
    }

    /// The sessions to the entries that publish a rendezvous handle
    /// (opened as needed): their pseudonyms. Entries without one are not
    /// called (this node calls through circuits only).
    async fn sessions_to(
        calls: &Arc<AnonymousCalls>,
        entries: &[crate::overlay::record::RegistrationEntry],
    ) -> Vec<NodeId> {
        let mut peers = Vec::new();
        for entry in entries {
            let Some(handle) = entry
                .contacts
                .iter()
                .find_map(|c| RendezvousHandle::from_contact(c, entry.node_id).ok())
            else {
                debug!(node = %entry.node_id.fmt_short(), "no rendezvous handle in the entry; not called");
                continue;
            };
            match calls.connect(handle).await {
                Ok(peer) => peers.push(peer),
                Err(e) => {
                    warn!(node = %entry.node_id.fmt_short(), error = %e, "no circuit to the callee's rendezvous")
                }
            }
        }
        peers
    }

    /// Publishes what the overlay should hold for `aor` (the registrar's
    /// state when the publication starts, one at a time per AOR), then
    /// tells the core, which answers the REGISTER waiting for it.
    fn spawn_publish(self: Arc<Self>, aor: String, reply: Option<crate::sip::transaction::TxId>) {
        tokio::spawn(async move {
            let gate = lock(&self.publishing)
                .entry(aor.clone())
                .or_default()
                .clone();
            let stored = {
                let _turn = gate.lock().await;
                self.publish(&aor).await
            };
            if let Err(why) = &stored {
                warn!(%aor, error = %why, "registration not published");
                lock(&self.layers)
                    .proxy
                    .registrar_mut()
                    .announce_failed(&aor);
            }
            if let Some(id) = reply {
                let actions =
                    lock(&self.layers)
                        .proxy
                        .published(Instant::now(), id, stored.is_ok());
                self.perform(actions);
            }
        });
    }

    /// Signs and stores `aor`'s registration as the registrar now sees
    /// it; returns how many nodes stored it.
    async fn publish(&self, aor: &str) -> Result<usize, String> {
        let (mut change, keys) = {
            let layers = lock(&self.layers);
            (
                layers.proxy.registrar().presence(aor, now_ms()),
                layers.users.get(aor).cloned(),
            )
        };
        // Anonymous: callers reach this node by its rendezvous handle.
        if let (DeviceChange::Bind { contacts, .. }, Some(calls)) =
            (&mut change, self.anonymous.get())
        {
            if let Some(handle) = calls.handle() {
                contacts.push(handle.to_contact());
            }
        }
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
            keys.signer.cert.clone(),
            &keys.signer.key,
            self.node_id,
            change,
            now,
            crate::unix_now_micros(),
        )
        .map_err(|e| e.to_string())?;
        let acks = self.overlay.publish(&self.dialer, &record).await;
        if acks == 0 {
            return Err("no node of the overlay stored the registration".into());
        }
        debug!(%aor, acks, seq = record.seq, "registration published");
        Ok(acks)
    }

    /// Fires the core's timers, until dropped.
    async fn timer_loop(self: Arc<Self>) {
        loop {
            let next = lock(&self.layers).proxy.poll_timeout();
            let now = Instant::now();
            // At least once a second: bindings lapse on the wall clock.
            let mut wait = Duration::from_secs(1);
            if let Some(t) = next {
                wait = wait.min(t.saturating_duration_since(now));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
            let actions = lock(&self.layers)
                .proxy
                .handle_timeout(Instant::now(), now_ms());
            self.perform(actions);
            let idle = self.media.expire();
            if idle > 0 {
                debug!(idle, "idle calls' media ports closed");
            }
        }
    }
}

/// Follows the calls an anonymous session carries, from its SIP either
/// way: a dialog-creating INVITE starts one; a 2xx to BYE, or a final
/// failure of the INVITE, ends it.
fn track_call(calls: &AnonymousCalls, peer: &NodeId, message: &Message) {
    let (Ok(call_id), Ok(cseq)) = (message.call_id(), message.cseq()) else {
        return;
    };
    match message {
        Message::Request(r) if r.method == Method::Invite => {
            let to_tag = r
                .headers
                .get(&HeaderName::To)
                .and_then(|to| crate::sip::typed::NameAddr::parse("To", to).ok())
                .is_some_and(|to| to.tag().is_some());
            if !to_tag {
                calls.call_started(peer, call_id);
            }
        }
        Message::Response(r)
            if (cseq.method == Method::Bye && (200..300).contains(&r.code))
                || (cseq.method == Method::Invite && r.code >= 300) =>
        {
            calls.call_ended(peer, call_id)
        }
        _ => {}
    }
}

/// A message's SDP body, if it has one (the core's rule,
/// [`crate::sip::proxy::sdp_body`]).
fn sdp_body(message: &Message) -> Result<Option<&[u8]>, &'static str> {
    match message {
        Message::Request(r) => crate::sip::proxy::sdp_body(&r.headers, &r.body),
        Message::Response(r) => crate::sip::proxy::sdp_body(&r.headers, &r.body),
    }
}

fn set_body(message: &mut Message, body: Vec<u8>) {
    match message {
        Message::Request(r) => r.body = body,
        Message::Response(r) => r.body = body,
    }
}
