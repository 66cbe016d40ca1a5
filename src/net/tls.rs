//! rustls configuration for p2psip: TLS 1.3 only, ALPN `p2psip/1`, mutual
//! authentication, and verifiers that accept exactly the identity rules of
//! [`crate::identity`].
//!
//! The verifiers (modelled on iroh's) refuse certificate chains, check the
//! leaf with [`VerifyPolicy`] (self-certifying or enrolled), optionally pin
//! the expected [`NodeId`], and verify the TLS 1.3 handshake signature with
//! the certificate's Ed25519 key. Session resumption is disabled on both
//! sides so that every connection is verified in full, at the time it is
//! made.

use super::cert_cache::CertCache;
use crate::identity::{
    build_self_signed, certificate_public_key, CertError, IdKind, NodeId, SecretKey, VerifyPolicy,
};
use crate::limits::{CLOCK_SKEW_ALLOWANCE, SELF_SIGNED_VALIDITY};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerMisbehaved, SignatureScheme,
};
use std::sync::Arc;

/// The ALPN protocol id of p2psip version 1.
pub const ALPN: &[u8] = b"p2psip/1";

/// The certificate and key this side presents.
///
/// The secret key is loaded once into rustls's signing key (ring) and the
/// PKCS#8 bytes used to load it are zeroized at once; every configuration
/// built from this identity shares that one signing key.
#[derive(Clone)]
pub struct LocalIdentity {
    certified: Arc<CertifiedKey>,
    node_id: NodeId,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// A fresh self-signed node certificate for `key`, valid from a little
    /// before `now` (unix seconds) for [`SELF_SIGNED_VALIDITY`].
    pub fn self_signed(key: &SecretKey, now: i64) -> Result<Self, CertError> {
        let not_before = now.saturating_sub(CLOCK_SKEW_ALLOWANCE.as_secs() as i64);
        let not_after = now.saturating_add(SELF_SIGNED_VALIDITY.as_secs() as i64);
        let (der, _) = build_self_signed(key, IdKind::Node, not_before, not_after)?;
        Self::with_certificate(key, der)
    }

    /// `key` presenting `cert_der` (for instance a certificate issued by an
    /// overlay CA). The certificate's key must be `key`'s public half.
    pub fn with_certificate(key: &SecretKey, cert_der: Vec<u8>) -> Result<Self, CertError> {
        if certificate_public_key(&cert_der)? != key.public() {
            return Err(CertError::Build(
                "the certificate is not for this identity key".into(),
            ));
        }
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| CertError::Build(e.to_string()))?;
        Self::load(cert_der, &pkcs8, key.public().node_id())
    }

    /// Any certificate and PKCS#8 key, unchecked: for tests and tools that
    /// must present what a misbehaving peer would.
    pub fn from_der_unchecked(
        cert_der: Vec<u8>,
        pkcs8_der: &[u8],
        node_id: NodeId,
    ) -> Result<Self, CertError> {
        Self::load(cert_der, pkcs8_der, node_id)
    }

    fn load(cert_der: Vec<u8>, pkcs8: &[u8], node_id: NodeId) -> Result<Self, CertError> {
        // Borrowed: rustls parses the key from our (zeroizing) buffer and
        // keeps no copy of the encoding.
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| CertError::Build(format!("unusable private key: {e}")))?;
        Ok(Self {
            certified: Arc::new(CertifiedKey::new(
                vec![CertificateDer::from(cert_der)],
                signing,
            )),
            node_id,
        })
    }

    /// The node id this side claims.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        self.certified
            .cert
            .first()
            .map(|c| c.as_ref())
            .unwrap_or_default()
    }

    fn resolver(&self) -> Arc<SingleCertAndKey> {
        Arc::new(SingleCertAndKey::from(self.certified.clone()))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The verifier for both directions: a server checks clients with it, a
/// client checks the server (and pins `expected` if set).
#[derive(Debug)]
pub struct PeerVerifier {
    policy: VerifyPolicy,
    expected: Option<NodeId>,
    provider: Arc<CryptoProvider>,
    cache: Option<Arc<CertCache>>,
}

impl PeerVerifier {
    /// A verifier applying `policy`, requiring the peer to be `expected`
    /// when set.
    pub fn new(policy: VerifyPolicy, expected: Option<NodeId>) -> Self {
        Self {
            policy,
            expected,
            provider: provider(),
            cache: None,
        }
    }

    /// Like [`PeerVerifier::new`], remembering certificates that passed in
    /// `cache`, which must only ever be used with this same `policy`.
    pub fn with_cache(
        policy: VerifyPolicy,
        expected: Option<NodeId>,
        cache: Arc<CertCache>,
    ) -> Self {
        Self {
            cache: Some(cache),
            ..Self::new(policy, expected)
        }
    }

    /// The node id of a certificate under the policy, through the cache.
    fn node_id_of(&self, der: &[u8], now: i64) -> Result<NodeId, CertError> {
        let Some(cache) = &self.cache else {
            return self.policy.verify_node(der, now);
        };
        let digest = CertCache::digest(der);
        if let Some(hit) = cache.lookup(&digest, now) {
            return hit;
        }
        let verified = self.policy.verify(der, now)?;
        let id = verified.node_id().ok_or(CertError::WrongKind {
            expected: IdKind::Node,
            found: verified.kind,
        })?;
        cache.insert(digest, id, verified.not_before, verified.not_after);
        Ok(id)
    }

    fn verify_leaf(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<NodeId, rustls::Error> {
        let result = if intermediates.is_empty() {
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            self.node_id_of(end_entity.as_ref(), now)
                .and_then(|id| match self.expected {
                    Some(expected) if expected != id => Err(CertError::UnexpectedId {
                        expected,
                        found: id,
                    }),
                    _ => Ok(id),
                })
        } else {
            Err(CertError::ExtraCertificates)
        };
        result.map_err(|e| {
            tracing::debug!(reason = %e, "peer certificate refused");
            rustls::Error::InvalidCertificate(to_rustls(e))
        })
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

fn to_rustls(e: CertError) -> CertificateError {
    match e {
        CertError::Expired { .. } => CertificateError::Expired,
        CertError::NotYetValid { .. } => CertificateError::NotValidYet,
        CertError::BadSignature(_) => CertificateError::BadSignature,
        CertError::UnknownIssuer => CertificateError::UnknownIssuer,
        other => CertificateError::Other(rustls::OtherError(Arc::new(Readable(other)))),
    }
}

/// rustls prints an `Other` certificate error with `{:?}`; this wrapper
/// makes that print the human-readable reason, which is what both the
/// local log and the peer (in the QUIC close reason) then see.
struct Readable(CertError);

impl std::fmt::Debug for Readable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Display for Readable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Readable {}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_leaf(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_leaf(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The server side: requires and verifies a client certificate.
pub fn server_config(
    identity: &LocalIdentity,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity.resolver());
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection re-verifies the client certificate.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// The client side: presents `identity` and verifies the server.
pub fn client_config(
    identity: &LocalIdentity,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(identity.resolver());
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(cfg)
}

/// The node id of a leaf certificate that a [`PeerVerifier`] accepted.
pub(crate) fn node_id_of_verified_leaf(leaf: &CertificateDer<'_>) -> Option<NodeId> {
    certificate_public_key(leaf.as_ref())
        .ok()
        .map(|k| k.node_id())
}
