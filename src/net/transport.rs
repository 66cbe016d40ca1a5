//! QUIC endpoint configuration shared by the node and the client: the
//! transport parameters (stream and window limits, idle timeout) and the
//! per-dial client configuration that pins the expected peer id.

use super::cert_cache::CertCache;
use super::tls::{client_config, LocalIdentity, PeerVerifier};
use super::{Limits, NetError};
use crate::identity::{NodeId, VerifyPolicy};
use crate::limits::{CONNECTION_RECEIVE_WINDOW, MAX_IDLE_TIMEOUT, STREAM_RECEIVE_WINDOW};
use std::sync::Arc;

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

/// The transport parameters: `accept_streams` is how many concurrent
/// requests the peer may open (0 for a client, which serves none).
pub fn transport_config(limits: &Limits, accept_streams: u32) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(accept_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(CONNECTION_RECEIVE_WINDOW.into())
        .send_window(u64::from(CONNECTION_RECEIVE_WINDOW))
        // Media datagrams come with the relay; until then none are accepted.
        .datagram_receive_buffer_size(None);
    let idle = limits.idle_timeout.min(MAX_IDLE_TIMEOUT);
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    Arc::new(t)
}
