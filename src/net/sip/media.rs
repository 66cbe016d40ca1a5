//! The media relay: the I/O around [`MediaTable`]. It opens the UDP
//! ports the table asks for (an RTP/RTCP pair per stream, in
//! [`MEDIA_PORTS`]), reads them, and sends what the table decides: to a
//! phone from the port that phone sends to, or to another node as a QUIC
//! datagram on this node's connection to it (docs/protocol.md §10).
//! Datagrams from other nodes arrive through the overlay's media handler
//! ([`OverlayService::set_media_handler`]).
//!
//! Locks: the table's is taken for one decision and released before any
//! send; the sockets' and connections' maps are taken after it, never
//! the other way round.

use crate::identity::NodeId;
use crate::limits::{MEDIA_MAX_STREAMS, MEDIA_PORTS};
use crate::net::anonymous::AnonymousCalls;
use crate::net::overlay::OverlayService;
use crate::sip::media::{Anchor, Leg};
use crate::sip::media::{
    Carrier, Component, DatagramHeader, MediaError, MediaStats, MediaTable, PortBlock, PortSource,
    Relay, DATAGRAM_HEADER_LEN,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Tries at binding a free RTP/RTCP pair before giving up.
const BIND_ATTEMPTS: usize = 64;

/// The largest RTP or RTCP packet read from a phone.
const MAX_PACKET: usize = 2048;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sockets of one block, per stream RTP and RTCP, and their readers.
struct Block {
    sockets: Vec<[Arc<UdpSocket>; 2]>,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Block {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Finds this node's connection to another node for media.
pub trait NodeLinks: Send + Sync + 'static {
    /// An open connection to `node` that can carry datagrams, or `None`
    /// (and a connection is being set up for the next packets).
    fn link(&self, node: NodeId) -> Option<quinn::Connection>;
}

/// The media relay (see the module docs).
pub struct MediaRelay {
    table: Mutex<MediaTable>,
    blocks: Mutex<HashMap<u64, Block>>,
    next_block: AtomicU64,
    /// The IP the media sockets bind (the SIP listener's).
    bind_ip: IpAddr,
    links: Arc<dyn NodeLinks>,
    /// Datagrams too large for the connection, or with no connection.
    unsent: AtomicU64,
    /// The anonymous sessions, whose pseudonyms stand for nodes.
    sessions: std::sync::OnceLock<Arc<AnonymousCalls>>,
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay")
            .field("bind_ip", &self.bind_ip)
            .finish_non_exhaustive()
    }
}

/// The table's view of the relay's sockets while it holds its lock.
struct Ports<'a> {
    relay: &'a Arc<MediaRelay>,
}

impl PortSource for Ports<'_> {
    fn open(&mut self, streams: usize, phone: SocketAddr) -> Result<PortBlock, MediaError> {
        self.relay.open_block(streams, phone)
    }

    fn close(&mut self, block: u64) {
        lock(&self.relay.blocks).remove(&block);
    }
}

/// Binds an RTP/RTCP pair at `ip`: an even port of [`MEDIA_PORTS`] and
/// the next.
fn bind_pair(ip: IpAddr) -> std::io::Result<[std::net::UdpSocket; 2]> {
    use rand::Rng;
    let (low, high) = (*MEDIA_PORTS.start() / 2, *MEDIA_PORTS.end() / 2);
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let rtp_port = rand::thread_rng().gen_range(low..high) * 2;
        let rtp = match std::net::UdpSocket::bind(SocketAddr::new(ip, rtp_port)) {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match std::net::UdpSocket::bind(SocketAddr::new(ip, rtp_port + 1)) {
            Ok(rtcp) => return Ok([rtp, rtcp]),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free media port")))
}

/// The address of this host that `phone` reaches (for a listener bound
/// to the unspecified address).
fn local_ip_toward(phone: SocketAddr) -> Option<IpAddr> {
    let any: IpAddr = if phone.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let probe = std::net::UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    probe.connect(phone).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

impl MediaRelay {
    /// A relay binding its ports at `bind_ip`, reaching nodes by `links`.
    pub fn new(bind_ip: IpAddr, links: Arc<dyn NodeLinks>) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(MediaTable::new()),
            blocks: Mutex::new(HashMap::new()),
            next_block: AtomicU64::new(1),
            bind_ip,
            links,
            unsent: AtomicU64::new(0),
            sessions: std::sync::OnceLock::new(),
        })
    }

    /// Carries the media of anonymous sessions too: a pseudonym of
    /// `sessions` is reached through its session, not a connection.
    pub fn set_sessions(&self, sessions: Arc<AnonymousCalls>) {
        let _ = self.sessions.set(sessions);
    }

    fn session_of(&self, node: &NodeId) -> Option<&Arc<AnonymousCalls>> {
        self.sessions.get().filter(|s| s.is_session(node))
    }

    /// Routes the overlay's media datagrams here.
    pub fn attach(self: &Arc<Self>, overlay: &OverlayService) -> bool {
        let relay = Arc::downgrade(self);
        overlay.set_media_handler(Arc::new(move |node, datagram| {
            if let Some(relay) = relay.upgrade() {
                relay.datagram_from(node, &datagram);
            }
        }))
    }

    /// The table's counters, and datagrams that could not be sent.
    pub fn stats(&self) -> (MediaStats, u64) {
        (
            lock(&self.table).stats(),
            self.unsent.load(Ordering::Relaxed),
        )
    }

    fn open_block(
        self: &Arc<Self>,
        streams: usize,
        phone: SocketAddr,
    ) -> Result<PortBlock, MediaError> {
        let streams = streams.min(MEDIA_MAX_STREAMS);
        let advertised = if self.bind_ip.is_unspecified() {
            local_ip_toward(phone).ok_or_else(|| {
                MediaError::Ports(format!("no local address reaches the phone at {phone}"))
            })?
        } else {
            self.bind_ip
        };
        let id = self.next_block.fetch_add(1, Ordering::Relaxed);
        let mut sockets = Vec::with_capacity(streams);
        let mut rtp_ports = Vec::with_capacity(streams);
        for _ in 0..streams {
            let pair = bind_pair(self.bind_ip).map_err(|e| MediaError::Ports(e.to_string()))?;
            let [rtp, rtcp] = pair;
            let port = rtp
                .local_addr()
                .map_err(|e| MediaError::Ports(e.to_string()))?;
            rtp_ports.push(port.port());
            let mut pair = Vec::with_capacity(2);
            for socket in [rtp, rtcp] {
                socket
                    .set_nonblocking(true)
                    .map_err(|e| MediaError::Ports(e.to_string()))?;
                let socket =
                    UdpSocket::from_std(socket).map_err(|e| MediaError::Ports(e.to_string()))?;
                pair.push(Arc::new(socket));
            }
            let (Some(rtcp), Some(rtp)) = (pair.pop(), pair.pop()) else {
                return Err(MediaError::Ports("socket pair".into()));
            };
            sockets.push([rtp, rtcp]);
        }
        let mut readers = Vec::with_capacity(2 * streams);
        for (stream, pair) in sockets.iter().enumerate() {
            for (component, socket) in [Component::Rtp, Component::Rtcp].into_iter().zip(pair) {
                let relay = Arc::downgrade(self);
                let socket = socket.clone();
                let stream = u8::try_from(stream).unwrap_or(u8::MAX);
                readers.push(tokio::spawn(async move {
                    read_phone(relay, socket, id, stream, component).await;
                }));
            }
        }
        lock(&self.blocks).insert(id, Block { sockets, readers });
        Ok(PortBlock {
            id,
            ip: advertised,
            rtp_ports,
        })
    }

    /// Rewrites an SDP body from this node's phone at `phone`.
    pub fn from_phone(
        self: &Arc<Self>,
        call_id: &str,
        phone: SocketAddr,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        let mut ports = Ports { relay: self };
        lock(&self.table).from_phone(Instant::now(), &mut ports, call_id, phone, carrier, body)
    }

    /// Rewrites an SDP body going to this node's phone at `phone`.
    pub fn to_phone(
        self: &Arc<Self>,
        call_id: &str,
        phone: SocketAddr,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        let mut ports = Ports { relay: self };
        lock(&self.table).to_phone(Instant::now(), &mut ports, call_id, phone, body)
    }

    /// Takes note of an SDP body from `node`.
    pub fn described_by_node(
        self: &Arc<Self>,
        call_id: &str,
        node: NodeId,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<(), MediaError> {
        let mut ports = Ports { relay: self };
        lock(&self.table).from_node(Instant::now(), &mut ports, call_id, node, carrier, body)?;
        // Dial now (usually the SIP's connection, open already) rather
        // than drop the call's first packets; a session needs no dialing.
        if self.session_of(&node).is_none() {
            let _ = self.links.link(node);
        }
        Ok(())
    }

    /// The call ended (BYE, CANCEL).
    pub fn end(self: &Arc<Self>, call_id: &str) {
        let mut ports = Ports { relay: self };
        lock(&self.table).end(&mut ports, call_id);
    }

    /// The call's INVITE failed.
    pub fn failed(self: &Arc<Self>, call_id: &str) {
        let mut ports = Ports { relay: self };
        lock(&self.table).failed(&mut ports, call_id);
    }

    /// Closes idle calls; returns how many.
    pub fn expire(self: &Arc<Self>) -> usize {
        let mut ports = Ports { relay: self };
        lock(&self.table).expire(Instant::now(), &mut ports)
    }

    /// A datagram from `node` (a node of the overlay, or the pseudonym
    /// of an anonymous session).
    pub(crate) fn datagram_from(&self, node: NodeId, datagram: &[u8]) {
        let Ok((header, payload)) = DatagramHeader::decode(datagram) else {
            debug!(%node, "malformed media datagram dropped");
            return;
        };
        let mut out = Vec::with_capacity(2);
        let dropped = lock(&self.table).node_packet(Instant::now(), node, header, &mut out);
        if let Some(why) = dropped {
            // Once per call: a call with no sound should say why.
            warn!(node = %node.fmt_short(), call = %hex::encode(header.tag), reason = %why, "media from a node dropped");
        }
        self.carry_out(&out, payload);
    }

    /// Sends `payload` as the relays say.
    fn carry_out(&self, relays: &[Relay], payload: &[u8]) {
        for relay in relays {
            match *relay {
                Relay::Phone {
                    block,
                    stream,
                    component,
                    to,
                } => {
                    let socket = lock(&self.blocks).get(&block).and_then(|b| {
                        b.sockets
                            .get(usize::from(stream))
                            .and_then(|pair| pair.get(component as usize))
                            .cloned()
                    });
                    if let Some(socket) = socket {
                        let _ = socket.try_send_to(payload, to);
                    }
                }
                Relay::Node { node, header } => {
                    if let Some(sessions) = self.session_of(&node) {
                        let mut datagram = Vec::with_capacity(DATAGRAM_HEADER_LEN + payload.len());
                        datagram.extend_from_slice(&header.encode());
                        datagram.extend_from_slice(payload);
                        if !sessions.send_media(&node, datagram) {
                            self.unsent.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let Some(conn) = self.links.link(node) else {
                        debug!(%node, "no media link to the node yet; packet dropped");
                        self.unsent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let fits = conn
                        .max_datagram_size()
                        .is_some_and(|max| payload.len() + DATAGRAM_HEADER_LEN <= max);
                    if !fits {
                        debug!(%node, len = payload.len(), max = ?conn.max_datagram_size(), "media packet too large for a datagram; dropped");
                        self.unsent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let mut datagram = Vec::with_capacity(DATAGRAM_HEADER_LEN + payload.len());
                    datagram.extend_from_slice(&header.encode());
                    datagram.extend_from_slice(payload);
                    if conn.send_datagram(datagram.into()).is_err() {
                        self.unsent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Reads one media socket until its block closes.
async fn read_phone(
    relay: std::sync::Weak<MediaRelay>,
    socket: Arc<UdpSocket>,
    block: u64,
    stream: u8,
    component: Component,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut out = Vec::with_capacity(2);
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors of earlier sends surface here: not fatal.
            Err(_) => continue,
        };
        let Some(relay) = relay.upgrade() else {
            return;
        };
        let dropped = lock(&relay.table).phone_packet(
            Instant::now(),
            block,
            stream,
            component,
            from,
            &mut out,
        );
        if let Some(why) = dropped {
            // Once per call: a call with no sound should say why.
            warn!(%from, block, reason = %why, "media from a phone dropped");
        }
        relay.carry_out(&out, buf.get(..len).unwrap_or_default());
    }
}

/// Dials `node` (resolving its address), for a media link.
pub type Connect =
    Box<dyn Fn(NodeId) -> tokio::task::JoinHandle<Option<quinn::Connection>> + Send + Sync>;

/// The media relay as the SIP core's [`Anchor`]: the core says when and
/// for whom, the relay opens and closes the sockets.
pub struct RelayAnchor(pub Arc<MediaRelay>);

impl Anchor for RelayAnchor {
    fn described(
        &mut self,
        _now: Instant,
        call_id: &str,
        leg: Leg,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, MediaError> {
        match leg {
            Leg::Phone(phone) => self.0.from_phone(call_id, phone, carrier, body).map(Some),
            Leg::Node(node) => self
                .0
                .described_by_node(call_id, node, carrier, body)
                .map(|()| None),
        }
    }

    fn to_phone(
        &mut self,
        _now: Instant,
        call_id: &str,
        phone: SocketAddr,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        self.0.to_phone(call_id, phone, body)
    }

    fn end(&mut self, call_id: &str) {
        self.0.end(call_id);
    }

    fn failed(&mut self, call_id: &str) {
        self.0.failed(call_id);
    }
}

/// Connections to nodes for media: the dialer's, found by node id; a
/// missing one is dialed in the background (the packets meanwhile are
/// dropped, as a jitter buffer would).
pub struct DialerLinks {
    state: Arc<LinkState>,
    connect: Connect,
}

#[derive(Default)]
struct LinkState {
    conns: Mutex<HashMap<NodeId, quinn::Connection>>,
    dialing: Mutex<HashSet<NodeId>>,
}

impl DialerLinks {
    /// Links that dial with `connect`.
    pub fn new(connect: Connect) -> Arc<Self> {
        Arc::new(Self {
            state: Arc::default(),
            connect,
        })
    }
}

impl NodeLinks for DialerLinks {
    fn link(&self, node: NodeId) -> Option<quinn::Connection> {
        {
            let mut conns = lock(&self.state.conns);
            match conns.get(&node) {
                Some(c) if c.close_reason().is_none() => return Some(c.clone()),
                Some(_) => {
                    conns.remove(&node);
                }
                None => {}
            }
        }
        if !lock(&self.state.dialing).insert(node) {
            return None;
        }
        let task = (self.connect)(node);
        let state = self.state.clone();
        tokio::spawn(async move {
            let found = task.await;
            debug!(%node, linked = matches!(found, Ok(Some(_))), "media link");
            if let Ok(Some(conn)) = found {
                let mut conns = lock(&state.conns);
                if conns.len() >= crate::limits::SIP_OVERLAY_PEERS {
                    conns.retain(|_, c| c.close_reason().is_none());
                }
                conns.insert(node, conn);
            }
            lock(&state.dialing).remove(&node);
        });
        None
    }
}
