//! QUIC endpoint configuration shared by the node and the client: the UDP
//! socket (with enlarged kernel buffers), the transport parameters (stream
//! and window limits, idle timeout) and the per-dial client configuration
//! that pins the expected peer id.

use super::cert_cache::CertCache;
use super::tls::{client_config, LocalIdentity, PeerVerifier};
use super::{Limits, NetError};
use crate::identity::{NodeId, VerifyPolicy};
use crate::limits::{
    CONNECTION_RECEIVE_WINDOW, MAX_IDLE_TIMEOUT, STREAM_RECEIVE_WINDOW, UDP_SOCKET_BUFFER,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// A quinn endpoint on a UDP socket bound at `addr` (an IPv6 one also
/// taking IPv4, where the system allows), with kernel buffers of
/// [`UDP_SOCKET_BUFFER`] asked for; serving with `server`, if given.
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_udp(addr)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The UDP socket of an endpoint: bound at `addr`, its receive and send
/// buffers enlarged as far as the kernel allows (a failure to enlarge them
/// is logged, not fatal: the socket works with smaller ones).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        if let Err(e) = socket.set_only_v6(false) {
            tracing::debug!(error = %e, "the IPv6 socket does not take IPv4 too");
        }
    }
    if let Err(e) = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_SOCKET_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the UDP send buffer");
    }
    // Linux reports twice what it grants (the other half is its
    // bookkeeping) and caps the grant at net.core.rmem_max.
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < UDP_SOCKET_BUFFER {
        tracing::debug!(
            granted_kib = granted / 1024,
            asked_kib = UDP_SOCKET_BUFFER / 1024,
            "UDP receive buffer capped by the kernel (raise net.core.rmem_max)"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The quinn client configuration for one dial: `identity` presented, the
/// server verified under `policy` (pinned to `expected` if set).
pub fn quinn_client_config(
    identity: &LocalIdentity,
    policy: &VerifyPolicy,
    expected: Option<NodeId>,
    cache: &Arc<CertCache>,
    transport: &Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, NetError> {
    let verifier = Arc::new(PeerVerifier::with_cache(
        policy.clone(),
        expected,
        cache.clone(),
    ));
    let tls = client_config(identity, verifier)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Tls(rustls::Error::General(e.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport.clone());
    Ok(config)
}

/// Bytes of media datagrams a connection buffers each way, at most
/// (about 5,000 G.711 packets).
pub const DATAGRAM_BUFFER: usize = 1024 * 1024;

/// The transport parameters: `accept_streams` is how many concurrent
/// requests the peer may open (0 for a client, which serves none).
pub fn transport_config(limits: &Limits, accept_streams: u32) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(accept_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(CONNECTION_RECEIVE_WINDOW.into())
        .send_window(u64::from(CONNECTION_RECEIVE_WINDOW))
        // Anchored calls' media (docs/protocol.md §10): a bounded buffer,
        // the oldest datagrams dropped when the reader falls behind.
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER);
    let idle = limits.idle_timeout.min(MAX_IDLE_TIMEOUT);
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    Arc::new(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel grants at most: `net.core.rmem_max`, if readable.
    fn rmem_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn an_endpoint_socket_gets_the_largest_receive_buffer_the_kernel_allows() {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap() / 2;
        match rmem_max() {
            Some(max) => assert_eq!(granted, UDP_SOCKET_BUFFER.min(max)),
            // Not Linux (or no /proc): at least more than nothing.
            None => assert!(granted > 0),
        }
        assert!(socket.local_addr().unwrap().port() != 0);
        let v6 = bind_udp("[::1]:0".parse().unwrap());
        // Loopback IPv6 may be absent in a container; where it exists the
        // socket binds.
        if let Ok(v6) = v6 {
            assert!(v6.local_addr().unwrap().is_ipv6());
        }
    }
}
