//! Dialing nodes and sending them requests.
//!
//! In TLS 1.3 the client finishes its handshake before the server has
//! checked the client's certificate, so "connected" does not mean
//! "accepted": a refused client learns it only from the server's close.
//! [`PeerConnection::ping`] therefore reports success only once a Pong
//! has come back.

use super::cert_cache::{CertCache, DEFAULT_CERT_CACHE_ENTRIES};
use super::stream::{read_message, write_message, FrameReadError};
use super::tls::LocalIdentity;
use super::transport::{quinn_client_config, transport_config};
use super::{peer_node_id, Limits, NetError, CLOSE_NORMAL};
use crate::identity::{NodeId, VerifyPolicy};
use crate::limits::REQUEST_TIMEOUT;
use crate::wire::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server name sent in the TLS handshake. p2psip authenticates peers
/// by key, never by name; the verifier ignores it.
const SERVER_NAME: &str = "p2psip.invalid";

/// A client endpoint: one UDP socket from which to dial nodes.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    identity: LocalIdentity,
    policy: VerifyPolicy,
    transport: Arc<quinn::TransportConfig>,
    cache: Arc<CertCache>,
}

impl Client {
    /// Binds a client at `bind` (port 0 for any) that presents `identity`
    /// and accepts servers that satisfy `policy`.
    pub fn bind(
        bind: SocketAddr,
        identity: LocalIdentity,
        policy: VerifyPolicy,
    ) -> Result<Self, NetError> {
        let endpoint = super::transport::endpoint(bind, None)
            .map_err(|source| NetError::Bind { addr: bind, source })?;
        Ok(Self {
            endpoint,
            identity,
            policy,
            // A client serves no requests: the peer may open no streams.
            transport: transport_config(&Limits::default(), 0),
            cache: Arc::new(CertCache::new(DEFAULT_CERT_CACHE_ENTRIES)),
        })
    }

    /// Connects to `addr`; with `expected`, refuses any node but that one.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<PeerConnection, NetError> {
        let config = quinn_client_config(
            &self.identity,
            &self.policy,
            expected,
            &self.cache,
            &self.transport,
        )?;
        let connecting = self.endpoint.connect_with(config, addr, SERVER_NAME)?;
        let conn = tokio::time::timeout(REQUEST_TIMEOUT, connecting)
            .await
            .map_err(|_| NetError::Timeout)??;
        let peer = peer_node_id(&conn).ok_or(NetError::NoPeerIdentity)?;
        Ok(PeerConnection { conn, peer })
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Closes every connection and waits briefly for peers to be told.
    pub async fn close(&self) {
        self.endpoint.close(CLOSE_NORMAL.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// An authenticated connection to a node.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    conn: quinn::Connection,
    peer: NodeId,
}

/// A Pong, and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct PingReply {
    /// The peer's authenticated id.
    pub peer: NodeId,
    /// Round-trip time of the request.
    pub rtt: Duration,
    /// Our address as the peer sees it.
    pub observed: SocketAddr,
}

impl PeerConnection {
    /// Wraps an established connection whose peer certificate a
    /// [`PeerVerifier`] accepted.
    pub(crate) fn new(conn: quinn::Connection) -> Option<Self> {
        let peer = peer_node_id(&conn)?;
        Some(Self { conn, peer })
    }

    /// The peer's authenticated id.
    pub fn peer_id(&self) -> NodeId {
        self.peer
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends `request` on a new stream and returns the answer. An `Error`
    /// answer is returned as [`NetError::Remote`].
    pub async fn request(&self, request: &Message) -> Result<Message, NetError> {
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            write_message(&mut send, request)
                .await
                .map_err(NetError::Stream)?;
            read_message(&mut recv).await.map_err(|e| match e {
                FrameReadError::Wire(w) => NetError::Wire(w),
                FrameReadError::Stream(s) => match self.conn.close_reason() {
                    Some(reason) => NetError::Connection(reason),
                    None => NetError::Stream(s),
                },
            })
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| NetError::Timeout)??;
        match answer {
            Message::Error { code, reason } => Err(NetError::Remote { code, reason }),
            other => Ok(other),
        }
    }

    /// Pings the peer; succeeds only when a Pong with our nonce came back.
    pub async fn ping(&self) -> Result<PingReply, NetError> {
        let nonce: u64 = rand::random();
        let start = Instant::now();
        match self.request(&Message::Ping { nonce }).await? {
            Message::Pong {
                nonce: echoed,
                observed,
            } if echoed == nonce => Ok(PingReply {
                peer: self.peer,
                rtt: start.elapsed(),
                observed,
            }),
            other => Err(NetError::UnexpectedReply(format!("{other:?}"))),
        }
    }

    /// Closes the connection normally.
    pub fn close(&self) {
        self.conn.close(CLOSE_NORMAL.into(), b"done");
    }
}
