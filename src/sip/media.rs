//! Media anchoring, sans-IO: which call a packet belongs to, and where it
//! goes next.
//!
//! A node stands in the media path of every call it carries, so that
//! phones never learn each other's address (docs/sip.md, "Media"). Each
//! SDP body that crosses the node passes through this table: a phone's
//! description is recorded (where the phone receives each stream) and
//! rewritten to ports the node opened for that phone
//! ([`MediaTable::from_phone`], [`MediaTable::to_phone`]); a node's
//! description makes that node a party of the call
//! ([`MediaTable::from_node`]). A call's media session is found by a tag
//! both nodes derive from its Call-ID ([`tag_of`]); between nodes its
//! packets travel as QUIC datagrams headed by [`DatagramHeader`]
//! (docs/protocol.md §10).
//!
//! A session has two sides: the party whose description opened it
//! (side 0: the caller's phone, or the caller's node) and every other
//! party (side 1: the callee's phones or nodes, one per fork). A packet
//! from one side goes to each party of the other side that described
//! its media; a 2xx to the INVITE drops the other forks. Nothing else is
//! forwarded: a packet on a phone's port from an address that is not
//! that phone's, a datagram from a node that is not a party, a stream or
//! component the call does not have, are dropped and counted.
//!
//! The table opens no socket: it asks a [`PortSource`] for ports and
//! tells it which to close; it reads no clock (the driver passes
//! instants). Everything is bounded: sessions ([`MEDIA_MAX_SESSIONS`]),
//! parties ([`MEDIA_MAX_PARTIES`]), streams ([`MEDIA_MAX_STREAMS`]), and
//! a session idle for [`MEDIA_IDLE_TIMEOUT`] is closed.

use super::sdp::{MediaStream, Sdp, SdpError};
use crate::identity::NodeId;
use crate::limits::{MEDIA_IDLE_TIMEOUT, MEDIA_MAX_PARTIES, MEDIA_MAX_SESSIONS, MEDIA_MAX_STREAMS};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use thiserror::Error;

/// Identifies a call's media between two nodes: the first 8 bytes of
/// SHA-256("p2psip-media-v1\n" ‖ Call-ID).
pub type Tag = [u8; 8];

/// The media tag of the call with Call-ID `call_id`.
pub fn tag_of(call_id: &str) -> Tag {
    let mut h = Sha256::new();
    h.update(b"p2psip-media-v1\n");
    h.update(call_id.as_bytes());
    let digest = h.finalize();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    tag
}

/// The first byte of a media datagram (its format's version).
pub const DATAGRAM_VERSION: u8 = 1;

/// Bytes of a media datagram before its payload.
pub const DATAGRAM_HEADER_LEN: usize = 11;

/// RTP, or RTCP on its own port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The stream's RTP port (and RTCP when multiplexed).
    Rtp = 0,
    /// The stream's RTCP port.
    Rtcp = 1,
}

impl Component {
    fn index(self) -> usize {
        self as usize
    }
}

/// What heads a media datagram between nodes: version 1, the call's
/// [`Tag`], the stream's index and the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader {
    /// The call.
    pub tag: Tag,
    /// The stream (`m=` line) index, from 0.
    pub stream: u8,
    /// RTP or RTCP.
    pub component: Component,
}

impl DatagramHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; DATAGRAM_HEADER_LEN] {
        let mut out = [0u8; DATAGRAM_HEADER_LEN];
        out[0] = DATAGRAM_VERSION;
        out[1..9].copy_from_slice(&self.tag);
        out[9] = self.stream;
        out[10] = self.component as u8;
        out
    }

    /// Reads a datagram: its header and payload.
    pub fn decode(datagram: &[u8]) -> Result<(Self, &[u8]), MediaError> {
        let (Some(head), Some(payload)) = (
            datagram.get(..DATAGRAM_HEADER_LEN),
            datagram.get(DATAGRAM_HEADER_LEN..),
        ) else {
            return Err(MediaError::BadDatagram("shorter than its header"));
        };
        let [version, t0, t1, t2, t3, t4, t5, t6, t7, stream, component] = head else {
            return Err(MediaError::BadDatagram("shorter than its header"));
        };
        if *version != DATAGRAM_VERSION {
            return Err(MediaError::BadDatagram("unknown version"));
        }
        if usize::from(*stream) >= MEDIA_MAX_STREAMS {
            return Err(MediaError::BadDatagram("stream index out of range"));
        }
        let component = match component {
            0 => Component::Rtp,
            1 => Component::Rtcp,
            _ => return Err(MediaError::BadDatagram("unknown component")),
        };
        let header = DatagramHeader {
            tag: [*t0, *t1, *t2, *t3, *t4, *t5, *t6, *t7],
            stream: *stream,
            component,
        };
        Ok((header, payload))
    }
}

/// Why media could not be anchored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The SDP body was refused.
    #[error("SDP refused: {0}")]
    Sdp(#[from] SdpError),
    /// [`MEDIA_MAX_SESSIONS`] calls are anchored already.
    #[error("media sessions full ({MEDIA_MAX_SESSIONS})")]
    SessionsFull,
    /// [`MEDIA_MAX_PARTIES`] parties in this call already.
    #[error("media parties of this call full ({MEDIA_MAX_PARTIES})")]
    PartiesFull,
    /// No ports could be opened.
    #[error("no media ports: {0}")]
    Ports(String),
    /// A media datagram that does not decode.
    #[error("malformed media datagram: {0}")]
    BadDatagram(&'static str),
}

/// Ports the driver opened for one phone of a call: where the node
/// receives that phone's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBlock {
    /// The block's handle.
    pub id: u64,
    /// The address the phone reaches the ports at.
    pub ip: IpAddr,
    /// Per stream, the RTP port (RTCP on the next one).
    pub rtp_ports: Vec<u16>,
}

/// Opens and closes the node's media ports (the I/O shell's sockets).
pub trait PortSource {
    /// Opens `streams` RTP/RTCP port pairs reachable by the phone at
    /// `phone`.
    fn open(&mut self, streams: usize, phone: SocketAddr) -> Result<PortBlock, MediaError>;
    /// Closes a block's ports.
    fn close(&mut self, block: u64);
}

/// A party of a call at this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// A phone of this node, by the address it sends SIP from.
    Phone(SocketAddr),
    /// Another node of the overlay.
    Node(NodeId),
}

/// What carried an SDP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// A request, or a response other than a 2xx to INVITE.
    Other,
    /// A 2xx to INVITE: the party that sent it is the call's answer, and
    /// the other forks are dropped.
    Accepted,
}

/// Where the driver sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// From block `block`'s socket for `stream`/`component`, to `to`.
    Phone {
        /// The block whose socket sends.
        block: u64,
        /// The stream.
        stream: u8,
        /// RTP or RTCP socket.
        component: Component,
        /// The phone's address.
        to: SocketAddr,
    },
    /// As a datagram to `node`, headed by `header`.
    Node {
        /// The node.
        node: NodeId,
        /// The datagram's header.
        header: DatagramHeader,
    },
}

#[derive(Debug)]
struct Party {
    leg: Leg,
    side: u8,
    /// Its media description, once it sent one (phones only keep it).
    described: bool,
    streams: Vec<MediaStream>,
    block: Option<PortBlock>,
    /// Where its packets came from, per stream and component, when that
    /// is not the address its SDP names (a NAT): they go back there.
    latched: Vec<[Option<SocketAddr>; 2]>,
}

impl Party {
    fn new(leg: Leg, side: u8) -> Self {
        Party {
            leg,
            side,
            described: false,
            streams: Vec::new(),
            block: None,
            latched: Vec::new(),
        }
    }

    /// Whether `ip` may send this phone's media: the host its SIP comes
    /// from, only.
    fn may_send_from(&self, ip: IpAddr) -> bool {
        matches!(self.leg, Leg::Phone(a) if a.ip().to_canonical() == ip.to_canonical())
    }

    /// Where this phone receives `stream`/`component`.
    fn destination(&self, stream: usize, component: Component) -> Option<SocketAddr> {
        if let Some(latched) = self
            .latched
            .get(stream)
            .and_then(|l| l.get(component.index()))
            .copied()
            .flatten()
        {
            return Some(latched);
        }
        let s = self.streams.get(stream)?;
        let declared = match component {
            Component::Rtp => s.rtp,
            Component::Rtcp => s.rtcp(),
        }?;
        // A phone's media goes to the host its SIP comes from, never to a
        // third address its SDP names (a reflector for anyone who can
        // write an SDP body): the SDP's port is believed, its address
        // is not.
        match self.leg {
            Leg::Phone(sip) => Some(SocketAddr::new(sip.ip(), declared.port())),
            Leg::Node(_) => Some(declared),
        }
    }
}

#[derive(Debug)]
struct Session {
    parties: Vec<Party>,
    /// A drop was reported for this call already.
    reported: bool,
    last_active: Instant,
    accepted: bool,
}

/// Why a media packet was dropped (the first drop of each call is
/// reported, for the operator's log: a connected call with no sound
/// should say why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Dropped {
    /// No call holds the packet's port or tag (it ended, or never was).
    #[error("no media session for it")]
    NoSession,
    /// From another host than the phone's SIP.
    #[error("from another address than the phone's")]
    WrongSource,
    /// From a node that is not a party of the call.
    #[error("from a node that is not a party of the call")]
    NotAParty,
    /// Before the party described its media, or for a stream it does
    /// not have.
    #[error("for a stream the party has not described")]
    NoStream,
    /// The other side has not described its media yet.
    #[error("the other side has no media address yet")]
    NoDestination,
}

/// Tags of calls whose dropped datagrams were reported with no session
/// to note it in, at most (forgotten all at once when full).
const MAX_REPORTED_UNKNOWN: usize = 1024;

/// Counters of the media a node relayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Calls anchored now.
    pub sessions: usize,
    /// Port blocks open now.
    pub blocks: usize,
    /// Packets from this node's phones, relayed.
    pub from_phones: u64,
    /// Datagrams from other nodes, relayed.
    pub from_nodes: u64,
    /// Packets and datagrams dropped (no call, not a party, wrong source).
    pub dropped: u64,
}

/// The node's anchored calls (see the module docs).
#[derive(Debug, Default)]
pub struct MediaTable {
    sessions: HashMap<Tag, Session>,
    /// Tags of unknown calls whose drops were reported.
    reported_unknown: std::collections::HashSet<Tag>,
    blocks: HashMap<u64, Tag>,
    stats: MediaStats,
}

impl MediaTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters.
    pub fn stats(&self) -> MediaStats {
        MediaStats {
            sessions: self.sessions.len(),
            blocks: self.blocks.len(),
            ..self.stats
        }
    }

    /// The session of `tag`, opened if it is new; the index of `leg`'s
    /// party in it, added if new.
    fn party(
        &mut self,
        now: Instant,
        tag: Tag,
        leg: Leg,
    ) -> Result<(&mut Session, usize), MediaError> {
        if !self.sessions.contains_key(&tag) && self.sessions.len() >= MEDIA_MAX_SESSIONS {
            return Err(MediaError::SessionsFull);
        }
        let session = self.sessions.entry(tag).or_insert_with(|| Session {
            parties: Vec::new(),
            reported: false,
            last_active: now,
            accepted: false,
        });
        let index = match session.parties.iter().position(|p| p.leg == leg) {
            Some(i) => i,
            None => {
                if session.parties.len() >= MEDIA_MAX_PARTIES {
                    return Err(MediaError::PartiesFull);
                }
                let side = u8::from(!session.parties.is_empty());
                session.parties.push(Party::new(leg, side));
                session.parties.len() - 1
            }
        };
        Ok((session, index))
    }

    /// Gives `phone`'s party of `tag` a block with at least `streams`
    /// pairs; returns it.
    fn ensure_block(
        &mut self,
        ports: &mut dyn PortSource,
        tag: Tag,
        index: usize,
        phone: SocketAddr,
        streams: usize,
    ) -> Result<PortBlock, MediaError> {
        let party = self
            .sessions
            .get_mut(&tag)
            .and_then(|s| s.parties.get_mut(index))
            .ok_or(MediaError::PartiesFull)?;
        if let Some(block) = &party.block {
            if block.rtp_ports.len() >= streams {
                return Ok(block.clone());
            }
        }
        let block = ports.open(streams.max(1), phone)?;
        if let Some(old) = party.block.replace(block.clone()) {
            ports.close(old.id);
            self.blocks.remove(&old.id);
        }
        party.latched.clear();
        self.blocks.insert(block.id, tag);
        Ok(block)
    }

    /// Removes a session whose parties all failed to come in.
    fn drop_if_empty(&mut self, tag: Tag) {
        if self
            .sessions
            .get(&tag)
            .is_some_and(|s| s.parties.is_empty())
        {
            self.sessions.remove(&tag);
        }
    }

    /// An SDP body from this node's phone at `phone` (its SIP address)
    /// in call `call_id`: recorded, and returned rewritten to the ports
    /// the node opened for that phone.
    pub fn from_phone(
        &mut self,
        now: Instant,
        ports: &mut dyn PortSource,
        call_id: &str,
        phone: SocketAddr,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        let sdp = Sdp::parse(body)?;
        let tag = tag_of(call_id);
        let leg = Leg::Phone(phone);
        let (_, index) = self.party(now, tag, leg)?;
        let block = match self.ensure_block(ports, tag, index, phone, sdp.streams().len()) {
            Ok(b) => b,
            Err(e) => {
                self.forget_party(ports, tag, leg);
                return Err(e);
            }
        };
        if let Some(party) = self
            .sessions
            .get_mut(&tag)
            .and_then(|s| s.parties.get_mut(index))
        {
            party.described = true;
            party.streams = sdp.streams().to_vec();
        }
        if carrier == Carrier::Accepted {
            self.accept(ports, tag, leg);
        }
        Ok(sdp.rewrite(block.ip, &block.rtp_ports))
    }

    /// An SDP body going to this node's phone at `phone` in call
    /// `call_id`: returned rewritten to the ports the node opened for
    /// that phone (where the phone sends its media).
    pub fn to_phone(
        &mut self,
        now: Instant,
        ports: &mut dyn PortSource,
        call_id: &str,
        phone: SocketAddr,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        let sdp = Sdp::parse(body)?;
        let tag = tag_of(call_id);
        let (_, index) = self.party(now, tag, Leg::Phone(phone))?;
        match self.ensure_block(ports, tag, index, phone, sdp.streams().len()) {
            Ok(block) => Ok(sdp.rewrite(block.ip, &block.rtp_ports)),
            Err(e) => {
                self.forget_party(ports, tag, Leg::Phone(phone));
                Err(e)
            }
        }
    }

    /// An SDP body from `node` in call `call_id`: the node becomes a
    /// party (its datagrams are relayed from now on).
    pub fn from_node(
        &mut self,
        now: Instant,
        ports: &mut dyn PortSource,
        call_id: &str,
        node: NodeId,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<(), MediaError> {
        Sdp::parse(body)?;
        let tag = tag_of(call_id);
        let (session, index) = self.party(now, tag, Leg::Node(node))?;
        if let Some(party) = session.parties.get_mut(index) {
            party.described = true;
        }
        if carrier == Carrier::Accepted {
            self.accept(ports, tag, Leg::Node(node));
        }
        Ok(())
    }

    /// `leg` accepted the call: the other parties on its side (forks
    /// that lost) are dropped.
    fn accept(&mut self, ports: &mut dyn PortSource, tag: Tag, leg: Leg) {
        let Some(session) = self.sessions.get_mut(&tag) else {
            return;
        };
        session.accepted = true;
        let Some(side) = session
            .parties
            .iter()
            .find(|p| p.leg == leg)
            .map(|p| p.side)
        else {
            return;
        };
        let losers: Vec<Leg> = session
            .parties
            .iter()
            .filter(|p| p.side == side && p.leg != leg)
            .map(|p| p.leg)
            .collect();
        for loser in losers {
            self.forget_party(ports, tag, loser);
        }
    }

    fn forget_party(&mut self, ports: &mut dyn PortSource, tag: Tag, leg: Leg) {
        if let Some(session) = self.sessions.get_mut(&tag) {
            if let Some(i) = session.parties.iter().position(|p| p.leg == leg) {
                let party = session.parties.remove(i);
                if let Some(block) = party.block {
                    ports.close(block.id);
                    self.blocks.remove(&block.id);
                }
            }
        }
        self.drop_if_empty(tag);
    }

    /// The call `call_id` ended (BYE, CANCEL): its ports are closed.
    pub fn end(&mut self, ports: &mut dyn PortSource, call_id: &str) {
        self.close(ports, tag_of(call_id));
    }

    /// The call `call_id` failed (a final answer other than 2xx to its
    /// INVITE): closed, unless it was answered before (a refused
    /// re-INVITE leaves the call up).
    pub fn failed(&mut self, ports: &mut dyn PortSource, call_id: &str) {
        let tag = tag_of(call_id);
        if self.sessions.get(&tag).is_some_and(|s| !s.accepted) {
            self.close(ports, tag);
        }
    }

    fn close(&mut self, ports: &mut dyn PortSource, tag: Tag) {
        if let Some(session) = self.sessions.remove(&tag) {
            for block in session.parties.into_iter().filter_map(|p| p.block) {
                ports.close(block.id);
                self.blocks.remove(&block.id);
            }
        }
    }

    /// Closes the sessions idle for [`MEDIA_IDLE_TIMEOUT`]; returns how
    /// many.
    pub fn expire(&mut self, now: Instant, ports: &mut dyn PortSource) -> usize {
        let idle: Vec<Tag> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_active) >= MEDIA_IDLE_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for tag in &idle {
            self.close(ports, *tag);
        }
        idle.len()
    }

    /// Where a packet goes that arrived on block `block`'s socket for
    /// `stream`/`component` from `from`. Returns why it was dropped the
    /// first time a packet of its call is (later drops are only counted).
    #[must_use]
    pub fn phone_packet(
        &mut self,
        now: Instant,
        block: u64,
        stream: u8,
        component: Component,
        from: SocketAddr,
        out: &mut Vec<Relay>,
    ) -> Option<Dropped> {
        out.clear();
        match self.route_phone_packet(now, block, stream, component, from, out) {
            Ok(()) => {
                self.stats.from_phones += 1;
                None
            }
            Err(why) => {
                self.stats.dropped += 1;
                let tag = self.blocks.get(&block).copied();
                self.first_drop(tag, why)
            }
        }
    }

    /// `why`, if it is the first drop reported for the call of `tag`.
    fn first_drop(&mut self, tag: Option<Tag>, why: Dropped) -> Option<Dropped> {
        match tag.and_then(|t| self.sessions.get_mut(&t)) {
            Some(session) => (!std::mem::replace(&mut session.reported, true)).then_some(why),
            None => {
                let tag = tag?;
                if self.reported_unknown.len() >= MAX_REPORTED_UNKNOWN {
                    self.reported_unknown.clear();
                }
                self.reported_unknown.insert(tag).then_some(why)
            }
        }
    }

    fn route_phone_packet(
        &mut self,
        now: Instant,
        block: u64,
        stream: u8,
        component: Component,
        from: SocketAddr,
        out: &mut Vec<Relay>,
    ) -> Result<(), Dropped> {
        let tag = self.blocks.get(&block).copied().ok_or(Dropped::NoSession)?;
        let session = self.sessions.get_mut(&tag).ok_or(Dropped::NoSession)?;
        let s = usize::from(stream);
        let party = session
            .parties
            .iter_mut()
            .find(|p| p.block.as_ref().is_some_and(|b| b.id == block))
            .ok_or(Dropped::NoSession)?;
        if !party.may_send_from(from.ip()) {
            return Err(Dropped::WrongSource);
        }
        if !party.described || s >= party.streams.len() {
            return Err(Dropped::NoStream);
        }
        // A phone behind a NAT sends from another address than its SDP
        // names: answers go where its packets come from (symmetric RTP).
        // A phone at its SDP address may send from another port (SIPp
        // does): its SDP is believed.
        let behind_nat = party
            .streams
            .get(s)
            .and_then(|st| st.rtp)
            .is_none_or(|rtp| rtp.ip().to_canonical() != from.ip().to_canonical());
        if behind_nat {
            if party.latched.len() < party.streams.len() {
                party.latched.resize(party.streams.len(), [None, None]);
            }
            if let Some(slot) = party
                .latched
                .get_mut(s)
                .and_then(|l| l.get_mut(component.index()))
            {
                *slot = Some(from);
            }
        }
        let side = party.side;
        session.last_active = now;
        Self::relay(session, tag, side, true, stream, component, out);
        if out.is_empty() {
            return Err(Dropped::NoDestination);
        }
        Ok(())
    }

    /// Where a datagram goes that `node` sent. Returns why it was
    /// dropped the first time a datagram of its call is.
    #[must_use]
    pub fn node_packet(
        &mut self,
        now: Instant,
        node: NodeId,
        header: DatagramHeader,
        out: &mut Vec<Relay>,
    ) -> Option<Dropped> {
        out.clear();
        let routed = match self.sessions.get_mut(&header.tag) {
            None => Err(Dropped::NoSession),
            Some(session) => match session
                .parties
                .iter()
                .find(|p| p.leg == Leg::Node(node) && p.described)
            {
                None => Err(Dropped::NotAParty),
                Some(party) => {
                    let side = party.side;
                    session.last_active = now;
                    // A node's media goes to phones only: never on to
                    // another node through this one.
                    Self::relay(
                        session,
                        header.tag,
                        side,
                        false,
                        header.stream,
                        header.component,
                        out,
                    );
                    if out.is_empty() {
                        Err(Dropped::NoDestination)
                    } else {
                        Ok(())
                    }
                }
            },
        };
        match routed {
            Ok(()) => {
                self.stats.from_nodes += 1;
                None
            }
            Err(why) => {
                self.stats.dropped += 1;
                self.first_drop(Some(header.tag), why)
            }
        }
    }

    /// The relays of a packet from side `side` to the described parties
    /// of the other side (to its nodes too if `to_nodes`).
    fn relay(
        session: &Session,
        tag: Tag,
        side: u8,
        to_nodes: bool,
        stream: u8,
        component: Component,
        out: &mut Vec<Relay>,
    ) {
        // One leg per packet: before the call is accepted the other side
        // may hold several forks that described media (early media), and
        // a packet copied to each would be an amplifier. The first fork
        // gets it; after the 2xx only the one that answered is left.
        for party in session
            .parties
            .iter()
            .filter(|p| p.side != side && p.described)
            .filter(|p| to_nodes || matches!(p.leg, Leg::Phone(_)))
            .take(1)
        {
            match (party.leg, &party.block) {
                (Leg::Phone(_), Some(block)) => {
                    if let Some(to) = party.destination(usize::from(stream), component) {
                        out.push(Relay::Phone {
                            block: block.id,
                            stream,
                            component,
                            to,
                        });
                    }
                }
                (Leg::Node(node), _) if to_nodes => out.push(Relay::Node {
                    node,
                    header: DatagramHeader {
                        tag,
                        stream,
                        component,
                    },
                }),
                _ => {}
            }
        }
    }
}

/// What the SIP core ([`super::proxy`]) asks of media anchoring. The
/// core decides when and for whom (only for a message it authorized or
/// matched to a transaction it forwarded, and only for the parties of
/// that dialog); this carries it out: [`TableAnchor`] on a
/// [`MediaTable`], the node's media relay on its sockets.
pub trait Anchor {
    /// An SDP body from `leg` in call `call_id`: a phone's is recorded
    /// and returned rewritten to the node's ports for it; a node's makes
    /// the node a party (`None`: the body goes on as it is).
    fn described(
        &mut self,
        now: Instant,
        call_id: &str,
        leg: Leg,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, MediaError>;
    /// An SDP body going to this node's phone at `phone`: rewritten to
    /// the node's ports for that phone.
    fn to_phone(
        &mut self,
        now: Instant,
        call_id: &str,
        phone: SocketAddr,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError>;
    /// The call ended (a BYE from one of its parties): its ports close.
    fn end(&mut self, call_id: &str);
    /// The call's INVITE failed: its ports close unless it was answered.
    fn failed(&mut self, call_id: &str);
}

/// A [`MediaTable`] with its port source: the [`Anchor`] of tests and of
/// the simulator.
#[derive(Debug, Default)]
pub struct TableAnchor<P> {
    /// The table.
    pub table: MediaTable,
    /// Where its ports come from.
    pub ports: P,
}

impl<P: PortSource> Anchor for TableAnchor<P> {
    fn described(
        &mut self,
        now: Instant,
        call_id: &str,
        leg: Leg,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, MediaError> {
        match leg {
            Leg::Phone(phone) => self
                .table
                .from_phone(now, &mut self.ports, call_id, phone, carrier, body)
                .map(Some),
            Leg::Node(node) => self
                .table
                .from_node(now, &mut self.ports, call_id, node, carrier, body)
                .map(|()| None),
        }
    }

    fn to_phone(
        &mut self,
        now: Instant,
        call_id: &str,
        phone: SocketAddr,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        self.table
            .to_phone(now, &mut self.ports, call_id, phone, body)
    }

    fn end(&mut self, call_id: &str) {
        self.table.end(&mut self.ports, call_id);
    }

    fn failed(&mut self, call_id: &str) {
        self.table.failed(&mut self.ports, call_id);
    }
}

/// An anchor shared behind a lock (a test or the simulator keeps a
/// handle to look at its ports while the proxy owns the other).
impl<A: Anchor> Anchor for std::sync::Arc<std::sync::Mutex<A>> {
    fn described(
        &mut self,
        now: Instant,
        call_id: &str,
        leg: Leg,
        carrier: Carrier,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, MediaError> {
        lock(self).described(now, call_id, leg, carrier, body)
    }

    fn to_phone(
        &mut self,
        now: Instant,
        call_id: &str,
        phone: SocketAddr,
        body: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        lock(self).to_phone(now, call_id, phone, body)
    }

    fn end(&mut self, call_id: &str) {
        lock(self).end(call_id)
    }

    fn failed(&mut self, call_id: &str) {
        lock(self).failed(call_id)
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data:
    // every change is one call into the anchor.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ports counted out of [`crate::limits::MEDIA_PORTS`] at one address,
/// none really opened: the [`PortSource`] of tests and of the simulator.
#[derive(Debug)]
pub struct VirtualPorts {
    ip: IpAddr,
    next_block: u64,
    next_port: u16,
    open: HashMap<u64, usize>,
}

impl VirtualPorts {
    /// Ports at `ip`.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            next_block: 0,
            next_port: *crate::limits::MEDIA_PORTS.start(),
            open: HashMap::new(),
        }
    }

    /// Blocks open now.
    pub fn open_blocks(&self) -> usize {
        self.open.len()
    }
}

impl PortSource for VirtualPorts {
    fn open(&mut self, streams: usize, _phone: SocketAddr) -> Result<PortBlock, MediaError> {
        let end = *crate::limits::MEDIA_PORTS.end();
        let mut rtp_ports = Vec::with_capacity(streams);
        for _ in 0..streams {
            let port = self.next_port;
            if port >= end {
                return Err(MediaError::Ports("the media port range is used up".into()));
            }
            rtp_ports.push(port);
            self.next_port = port.saturating_add(2);
        }
        self.next_block += 1;
        self.open.insert(self.next_block, streams);
        Ok(PortBlock {
            id: self.next_block,
            ip: self.ip,
            rtp_ports,
        })
    }

    fn close(&mut self, block: u64) {
        self.open.remove(&block);
    }
}

#[cfg(test)]
mod tests;
