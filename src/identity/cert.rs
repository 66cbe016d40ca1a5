//! X.509 certificates: built with rcgen, read with x509-parser, and checked
//! against exactly the identity rules of spec v1.
//!
//! Two modes:
//!
//! - **Self-certifying** (open overlays): the certificate is self-signed by
//!   the identity key; the id is recomputed from its public key (never read
//!   from a name) and must solve the admission puzzle.
//! - **Enrolled** (closed overlays, RELOAD-style): the certificate is issued
//!   by an overlay CA whose certificate is a trust anchor, and carries the id
//!   it was issued for as a subjectAltName URI (`p2psip:node:<hex>` or
//!   `p2psip:user:<hex>`), which must equal the id recomputed from its key.
//!   User certificates also carry the SIP address-of-record they bind.
//!
//! In both modes: X.509 v3, Ed25519 key and signature only (OID
//! 1.3.101.112), no trailing bytes, inside the validity window, and no
//! unknown critical extension. In enrolled mode a leaf is never a CA.

use super::{IdKind, NodeId, PublicKey, SecretKey, UserId};
use crate::limits::MAX_TRUST_ANCHORS;
use std::sync::Arc;
use x509_parser::oid_registry::{
    Oid, OID_SIG_ED25519, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Version};

/// subjectAltName URI prefix that carries a node id in an issued certificate.
pub const NODE_ID_URI_PREFIX: &str = "p2psip:node:";
/// subjectAltName URI prefix that carries a user id in an issued certificate.
pub const USER_ID_URI_PREFIX: &str = "p2psip:user:";
/// Organization of every certificate p2psip builds.
const ORGANIZATION: &str = "p2psip";

/// Why a certificate was refused (or could not be built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// No certificate was presented.
    #[error("no certificate presented (a client whose key cannot sign with Ed25519 sends none)")]
    NoCertificate,
    /// More than one certificate was presented; p2psip uses a single leaf.
    #[error("certificate chains are not accepted: present exactly one certificate")]
    ExtraCertificates,
    /// The bytes are not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {0}")]
    Malformed(String),
    /// Bytes follow the certificate.
    #[error("trailing bytes after the certificate")]
    TrailingData,
    /// Not an X.509 version 3 certificate.
    #[error("not an X.509 v3 certificate")]
    NotVersion3,
    /// The subject key is not Ed25519.
    #[error("the certificate's key is not Ed25519 (OID 1.3.101.112); p2psip accepts Ed25519 only")]
    NotEd25519Key,
    /// The certificate is not signed with Ed25519.
    #[error("the certificate is not signed with Ed25519")]
    NotEd25519Signature,
    /// The Ed25519 key is not a valid, full-order point.
    #[error("the certificate's Ed25519 key is invalid or of small order")]
    InvalidKey,
    /// The signature over the certificate does not verify.
    #[error("bad certificate signature ({0})")]
    BadSignature(&'static str),
    /// The certificate is not valid yet.
    #[error("certificate not valid before {not_before} (unix time), now is {now}")]
    NotYetValid {
        /// notBefore, unix seconds.
        not_before: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
    /// The certificate has expired.
    #[error("certificate expired at {not_after} (unix time), now is {now}")]
    Expired {
        /// notAfter, unix seconds.
        not_after: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
    /// The id does not solve the admission puzzle.
    #[error("id fails the admission puzzle: {actual} leading zero bits, {required} required")]
    PuzzleNotSolved {
        /// The overlay's difficulty.
        required: u8,
        /// What the id achieves.
        actual: u32,
    },
    /// A critical extension this implementation does not know.
    #[error("unknown critical extension {0}")]
    UnknownCriticalExtension(String),
    /// An extension could not be parsed.
    #[error("malformed extension: {0}")]
    BadExtension(String),
    /// A leaf certificate claims to be a CA.
    #[error("a CA certificate cannot be used as a node or user certificate")]
    IsCa,
    /// A trust anchor is not a CA certificate.
    #[error("trust anchor is not a CA certificate (basicConstraints CA:TRUE required)")]
    NotCa,
    /// No trust anchor issued the certificate.
    #[error("certificate not issued by any configured trust anchor")]
    UnknownIssuer,
    /// An issued certificate does not carry its id.
    #[error(
        "issued certificate carries no p2psip id (subjectAltName URI p2psip:node:/p2psip:user:)"
    )]
    MissingId,
    /// The id carried by an issued certificate is not the id of its key.
    #[error("the id the certificate carries is not the id of its key")]
    IdMismatch,
    /// The certificate is of the wrong kind for its use.
    #[error("expected a {expected} certificate, got a {found} certificate")]
    WrongKind {
        /// The kind required.
        expected: IdKind,
        /// The kind presented.
        found: IdKind,
    },
    /// The peer is authentic but not the one that was expected.
    #[error("peer id {found} is not the expected {expected}")]
    UnexpectedId {
        /// The id the dialer expected.
        expected: NodeId,
        /// The id the certificate proves.
        found: NodeId,
    },
    /// Too many trust anchors were configured.
    #[error("too many trust anchors (at most {MAX_TRUST_ANCHORS})")]
    TooManyAnchors,
    /// A PEM file held no certificate, or was not PEM.
    #[error("not a PEM certificate file: {0}")]
    Pem(String),
    /// Building a certificate failed.
    #[error("could not build certificate: {0}")]
    Build(String),
}

/// A certificate that passed verification: the proof that `public_key`
/// belongs to the holder of `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// Node or user.
    pub kind: IdKind,
    /// The certificate's key.
    pub public_key: PublicKey,
    /// The id recomputed from the key under `kind`.
    pub id: [u8; 32],
    /// Leading zero bits of `SHA-256(id)`.
    pub puzzle_bits: u32,
    /// SIP URIs the certificate binds (enrolled user certificates).
    pub sip_names: Vec<String>,
    /// Whether a trust anchor issued it (enrolled) or it is self-signed.
    pub enrolled: bool,
    /// Start of the window in which this verdict holds, unix seconds: the
    /// certificate's notBefore, or its anchor's if later.
    pub not_before: i64,
    /// End of that window: the certificate's notAfter, or its anchor's if
    /// earlier.
    pub not_after: i64,
}

impl VerifiedCertificate {
    /// The node id, if this is a node certificate.
    pub fn node_id(&self) -> Option<NodeId> {
        (self.kind == IdKind::Node).then(|| NodeId::from_bytes(self.id))
    }

    /// The user id, if this is a user certificate.
    pub fn user_id(&self) -> Option<UserId> {
        (self.kind == IdKind::User).then(|| UserId::from_bytes(self.id))
    }
}

/// A parsed, checked overlay CA certificate.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    der: Vec<u8>,
    subject: Vec<u8>,
    key: PublicKey,
    not_before: i64,
    not_after: i64,
    name: String,
}

impl TrustAnchor {
    /// Checks that `der` is a self-signed Ed25519 CA certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let cert = parse_strict(der)?;
        let key = ed25519_key(&cert)?;
        if !is_ca(&cert)? {
            return Err(CertError::NotCa);
        }
        check_signature(&cert, &key, "CA certificate is not self-signed by its key")?;
        Ok(Self {
            der: der.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            key,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            name: common_name(&cert).unwrap_or_default(),
        })
    }

    /// The CA's name (its subject common name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// A set of trust anchors for an enrolled overlay.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors(Vec<TrustAnchor>);

impl TrustAnchors {
    /// Parses every `CERTIFICATE` block of PEM text as an anchor.
    pub fn add_pem(&mut self, pem_text: &[u8]) -> Result<(), CertError> {
        for der in pem_certificates(pem_text)? {
            if self.0.len() >= MAX_TRUST_ANCHORS {
                return Err(CertError::TooManyAnchors);
            }
            self.0.push(TrustAnchor::from_der(&der)?);
        }
        Ok(())
    }

    /// Adds one anchor.
    pub fn push(&mut self, anchor: TrustAnchor) -> Result<(), CertError> {
        if self.0.len() >= MAX_TRUST_ANCHORS {
            return Err(CertError::TooManyAnchors);
        }
        self.0.push(anchor);
        Ok(())
    }

    /// Whether no anchor is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The anchors.
    pub fn iter(&self) -> impl Iterator<Item = &TrustAnchor> {
        self.0.iter()
    }
}

/// Extracts the DER of every `CERTIFICATE` block in PEM text.
pub fn pem_certificates(pem_text: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| CertError::Pem(e.to_string()))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certs.is_empty() {
        return Err(CertError::Pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The Ed25519 key of a certificate, after the structural checks (DER, v3,
/// no trailing bytes, Ed25519 key, no unknown critical extension) but no
/// signature or validity check: for re-reading a certificate a verifier
/// already accepted, or the local identity's own.
pub fn certificate_public_key(der: &[u8]) -> Result<PublicKey, CertError> {
    ed25519_key(&parse_strict(der)?)
}

/// What a verifier accepts: the admission puzzle, and either
/// self-certifying mode (no anchors) or enrolled mode (anchors).
#[derive(Debug, Clone, Default)]
pub struct VerifyPolicy {
    /// Leading zero bits required of `SHA-256(id)`.
    pub difficulty: u8,
    /// Trust anchors; `None` means self-certifying mode.
    pub anchors: Option<Arc<TrustAnchors>>,
}

impl VerifyPolicy {
    /// Self-certifying mode at `difficulty`.
    pub fn self_certifying(difficulty: u8) -> Self {
        Self {
            difficulty,
            anchors: None,
        }
    }

    /// Enrolled mode: certificates must be issued by one of `anchors`.
    pub fn enrolled(anchors: TrustAnchors, difficulty: u8) -> Self {
        Self {
            difficulty,
            anchors: Some(Arc::new(anchors)),
        }
    }

    /// Verifies one certificate at time `now` (unix seconds).
    pub fn verify(&self, der: &[u8], now: i64) -> Result<VerifiedCertificate, CertError> {
        let cert = parse_strict(der)?;
        let key = ed25519_key(&cert)?;
        check_validity(
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
            now,
        )?;
        let mut not_before = cert.validity().not_before.timestamp();
        let mut not_after = cert.validity().not_after.timestamp();
        let (kind, enrolled, sip_names) = match &self.anchors {
            // A self-signed certificate may carry CA:TRUE (`openssl req
            // -x509` sets it by default); with chains refused it grants
            // nothing, so self-certifying mode ignores it.
            None => {
                check_signature(&cert, &key, "not self-signed by the certificate's own key")?;
                (self_signed_kind(&cert), false, Vec::new())
            }
            Some(anchors) => {
                if is_ca(&cert)? {
                    return Err(CertError::IsCa);
                }
                // Every anchor with the issuer's name is tried: two CAs may
                // share a name (a rollover, two overlays).
                let mut refusal = CertError::UnknownIssuer;
                let mut issuer = None;
                for anchor in anchors
                    .iter()
                    .filter(|a| a.subject == cert.issuer().as_raw())
                {
                    match check_validity(anchor.not_before, anchor.not_after, now).and_then(|()| {
                        check_signature(&cert, &anchor.key, "not signed by the trust anchor")
                    }) {
                        Ok(()) => {
                            issuer = Some(anchor);
                            break;
                        }
                        Err(e) => refusal = e,
                    }
                }
                let anchor = issuer.ok_or(refusal)?;
                // The verdict holds only while the anchor is valid too.
                not_before = not_before.max(anchor.not_before);
                not_after = not_after.min(anchor.not_after);
                let (kind, carried, sip_names) = issued_identity(&cert)?;
                if carried != kind.derive(&key) {
                    return Err(CertError::IdMismatch);
                }
                (kind, true, sip_names)
            }
        };
        let puzzle_bits = kind.puzzle_bits(&key);
        if puzzle_bits < u32::from(self.difficulty) {
            return Err(CertError::PuzzleNotSolved {
                required: self.difficulty,
                actual: puzzle_bits,
            });
        }
        Ok(VerifiedCertificate {
            kind,
            public_key: key,
            id: kind.derive(&key),
            puzzle_bits,
            sip_names,
            enrolled,
            not_before,
            not_after,
        })
    }

    /// Verifies a node's TLS certificate and returns its node id.
    pub fn verify_node(&self, der: &[u8], now: i64) -> Result<NodeId, CertError> {
        let verified = self.verify(der, now)?;
        verified.node_id().ok_or(CertError::WrongKind {
            expected: IdKind::Node,
            found: verified.kind,
        })
    }
}

/// Certificates critical extensions may use; anything else critical is
/// refused (RFC 5280 §4.2).
fn known_critical(oid: &Oid<'_>) -> bool {
    [
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME,
    ]
    .iter()
    .any(|known| known == oid)
}

fn parse_strict(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingData);
    }
    if cert.version() != X509Version::V3 {
        return Err(CertError::NotVersion3);
    }
    for ext in cert.extensions() {
        if ext.critical && !known_critical(&ext.oid) {
            return Err(CertError::UnknownCriticalExtension(ext.oid.to_id_string()));
        }
    }
    Ok(cert)
}

fn ed25519_key(cert: &X509Certificate<'_>) -> Result<PublicKey, CertError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 || spki.algorithm.parameters.is_some() {
        return Err(CertError::NotEd25519Key);
    }
    PublicKey::from_slice(&spki.subject_public_key.data).map_err(|_| CertError::InvalidKey)
}

fn check_signature(
    cert: &X509Certificate<'_>,
    key: &PublicKey,
    what: &'static str,
) -> Result<(), CertError> {
    let outer = &cert.signature_algorithm;
    let inner = &cert.tbs_certificate.signature;
    if outer.algorithm != OID_SIG_ED25519
        || outer.parameters.is_some()
        || inner.algorithm != OID_SIG_ED25519
        || inner.parameters.is_some()
    {
        return Err(CertError::NotEd25519Signature);
    }
    if key.verify_strict(cert.tbs_certificate.as_ref(), &cert.signature_value.data) {
        Ok(())
    } else {
        Err(CertError::BadSignature(what))
    }
}

fn check_validity(not_before: i64, not_after: i64, now: i64) -> Result<(), CertError> {
    if now < not_before {
        return Err(CertError::NotYetValid { not_before, now });
    }
    if now > not_after {
        return Err(CertError::Expired { not_after, now });
    }
    Ok(())
}

fn is_ca(cert: &X509Certificate<'_>) -> Result<bool, CertError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| CertError::BadExtension(e.to_string()))?;
    Ok(bc.is_some_and(|bc| bc.value.ca))
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// A self-signed certificate is a user's only if its subject says so
/// (OU=user); everything else, including certificates made by other tools,
/// is a node's. The kind only selects the id derivation, whose domain
/// separation keeps the two apart.
fn self_signed_kind(cert: &X509Certificate<'_>) -> IdKind {
    let is_user = cert
        .subject()
        .iter_organizational_unit()
        .any(|ou| ou.as_str() == Ok("user"));
    if is_user {
        IdKind::User
    } else {
        IdKind::Node
    }
}

fn uris<'a>(cert: &'a X509Certificate<'a>) -> Result<Vec<&'a str>, CertError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::BadExtension(e.to_string()))?;
    Ok(san
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The kind and id an issued certificate carries, and its SIP names.
fn issued_identity(
    cert: &X509Certificate<'_>,
) -> Result<(IdKind, [u8; 32], Vec<String>), CertError> {
    let mut carried: Option<(IdKind, [u8; 32])> = None;
    let mut sip_names = Vec::new();
    for uri in uris(cert)? {
        let (kind, hex_id) = if let Some(h) = uri.strip_prefix(NODE_ID_URI_PREFIX) {
            (IdKind::Node, h)
        } else if let Some(h) = uri.strip_prefix(USER_ID_URI_PREFIX) {
            (IdKind::User, h)
        } else {
            if uri.starts_with("sip:") || uri.starts_with("sips:") {
                sip_names.push(uri.to_owned());
            }
            continue;
        };
        // The canonical text form only: 64 lowercase hex digits.
        if !hex_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(CertError::MissingId);
        }
        let id: NodeId = hex_id.parse().map_err(|_| CertError::MissingId)?;
        if carried.is_some() {
            // One certificate, one identity.
            return Err(CertError::IdMismatch);
        }
        carried = Some((kind, *id.as_bytes()));
    }
    let (kind, id) = carried.ok_or(CertError::MissingId)?;
    if kind == IdKind::Node && !sip_names.is_empty() {
        return Err(CertError::WrongKind {
            expected: IdKind::User,
            found: IdKind::Node,
        });
    }
    Ok((kind, id, sip_names))
}

/// rcgen signs through this adapter, so the identity key never leaves
/// ed25519-dalek (no second copy in another crypto library).
struct RcgenSigner<'a> {
    key: &'a SecretKey,
    public: [u8; 32],
}

impl<'a> RcgenSigner<'a> {
    fn new(key: &'a SecretKey) -> Self {
        Self {
            key,
            public: *key.public().as_bytes(),
        }
    }
}

impl rcgen::PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.key.sign(msg).to_vec())
    }
}

/// A subject's public key, for issuing without its secret.
struct RcgenPublic([u8; 32]);

impl rcgen::PublicKeyData for RcgenPublic {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

fn build_err(e: rcgen::Error) -> CertError {
    CertError::Build(e.to_string())
}

fn base_params(
    common_name: &str,
    unit: &str,
    not_before: i64,
    not_after: i64,
) -> Result<rcgen::CertificateParams, CertError> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, ORGANIZATION);
    dn.push(rcgen::DnType::OrganizationalUnitName, unit);
    dn.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)
        .map_err(|e| CertError::Build(e.to_string()))?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)
        .map_err(|e| CertError::Build(e.to_string()))?;
    let serial: [u8; 16] = rand::random();
    let mut serial = serial.to_vec();
    // A positive INTEGER: clear the top bit.
    if let Some(first) = serial.first_mut() {
        *first &= 0x7f;
    }
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(params)
}

fn leaf_params(
    kind: IdKind,
    id: [u8; 32],
    not_before: i64,
    not_after: i64,
) -> Result<rcgen::CertificateParams, CertError> {
    let id_hex = hex::encode(id);
    let mut params = base_params(&id_hex, kind.as_str(), not_before, not_after)?;
    let prefix = match kind {
        IdKind::Node => NODE_ID_URI_PREFIX,
        IdKind::User => USER_ID_URI_PREFIX,
    };
    let uri = rcgen::string::Ia5String::try_from(format!("{prefix}{id_hex}")).map_err(build_err)?;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

/// A self-signed certificate for `key` as a `kind` identity, valid from
/// `not_before` to `not_after` (unix seconds). Returns DER and PEM.
pub fn build_self_signed(
    key: &SecretKey,
    kind: IdKind,
    not_before: i64,
    not_after: i64,
) -> Result<(Vec<u8>, String), CertError> {
    let id = kind.derive(&key.public());
    let params = leaf_params(kind, id, not_before, not_after)?;
    let cert = params
        .self_signed(&RcgenSigner::new(key))
        .map_err(build_err)?;
    Ok((cert.der().to_vec(), cert.pem()))
}

/// A self-signed overlay CA certificate named `name`. Returns DER and PEM.
pub fn build_ca_certificate(
    key: &SecretKey,
    name: &str,
    not_before: i64,
    not_after: i64,
) -> Result<(Vec<u8>, String), CertError> {
    let mut params = base_params(name, "ca", not_before, not_after)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&RcgenSigner::new(key))
        .map_err(build_err)?;
    Ok((cert.der().to_vec(), cert.pem()))
}

/// Issues a certificate for `subject` (a public key only: the CA never sees
/// the subject's secret) as a `kind` identity, signed by the CA whose key is
/// `ca_key` and certificate `ca_der`. A user certificate binds `sip_name`.
pub fn issue_certificate(
    ca_key: &SecretKey,
    ca_der: &[u8],
    subject: &PublicKey,
    kind: IdKind,
    sip_name: Option<&str>,
    not_before: i64,
    not_after: i64,
) -> Result<(Vec<u8>, String), CertError> {
    let anchor = TrustAnchor::from_der(ca_der)?;
    if anchor.key != ca_key.public() {
        return Err(CertError::Build(
            "the CA key does not match the CA certificate".into(),
        ));
    }
    let id = kind.derive(subject);
    let mut params = leaf_params(kind, id, not_before, not_after)?;
    match (kind, sip_name) {
        (IdKind::User, Some(name)) => {
            let uri = rcgen::string::Ia5String::try_from(name.to_owned()).map_err(build_err)?;
            params.subject_alt_names.push(rcgen::SanType::URI(uri));
        }
        (IdKind::User, None) => {
            return Err(CertError::Build(
                "a user certificate needs a SIP name".into(),
            ))
        }
        (IdKind::Node, Some(_)) => {
            return Err(CertError::Build(
                "a node certificate carries no SIP name".into(),
            ))
        }
        (IdKind::Node, None) => {}
    }
    params.use_authority_key_identifier_extension = true;
    let signer = RcgenSigner::new(ca_key);
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&ca_der.to_vec().into(), &signer).map_err(build_err)?;
    let cert = params
        .signed_by(&RcgenPublic(*subject.as_bytes()), &issuer)
        .map_err(build_err)?;
    Ok((cert.der().to_vec(), cert.pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    #[test]
    fn self_signed_node_certificate_verifies_and_yields_the_node_id() {
        let k = key(1);
        let (der, pem) = build_self_signed(&k, IdKind::Node, NOW - DAY, NOW + DAY).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let v = VerifyPolicy::self_certifying(0).verify(&der, NOW).unwrap();
        assert_eq!(v.kind, IdKind::Node);
        assert_eq!(v.node_id(), Some(k.public().node_id()));
        assert!(!v.enrolled);
    }

    #[test]
    fn self_signed_user_certificate_yields_the_user_id_and_is_not_a_node() {
        let k = key(2);
        let (der, _) = build_self_signed(&k, IdKind::User, NOW - DAY, NOW + DAY).unwrap();
        let policy = VerifyPolicy::self_certifying(0);
        let v = policy.verify(&der, NOW).unwrap();
        assert_eq!(v.user_id(), Some(k.public().user_id()));
        assert!(matches!(
            policy.verify_node(&der, NOW),
            Err(CertError::WrongKind { .. })
        ));
    }

    #[test]
    fn validity_window_is_enforced_at_both_ends() {
        let (der, _) = build_self_signed(&key(1), IdKind::Node, NOW, NOW + DAY).unwrap();
        let p = VerifyPolicy::self_certifying(0);
        assert!(matches!(
            p.verify(&der, NOW - 1),
            Err(CertError::NotYetValid { .. })
        ));
        assert!(matches!(
            p.verify(&der, NOW + DAY + 1),
            Err(CertError::Expired { .. })
        ));
        assert!(p.verify(&der, NOW + DAY).is_ok());
    }

    #[test]
    fn puzzle_is_enforced() {
        let k = key(1);
        let bits = k.public().node_id().puzzle_bits();
        let (der, _) = build_self_signed(&k, IdKind::Node, NOW - DAY, NOW + DAY).unwrap();
        let need = u8::try_from(bits + 1).unwrap();
        assert_eq!(
            VerifyPolicy::self_certifying(need).verify(&der, NOW),
            Err(CertError::PuzzleNotSolved {
                required: need,
                actual: bits
            })
        );
    }

    #[test]
    fn any_flipped_signature_bit_is_refused() {
        let (der, _) = build_self_signed(&key(1), IdKind::Node, NOW - DAY, NOW + DAY).unwrap();
        // The signature is the last 64 bytes of the DER.
        for i in [der.len() - 64, der.len() - 30, der.len() - 1] {
            let mut bad = der.clone();
            bad[i] ^= 0x01;
            assert!(matches!(
                VerifyPolicy::self_certifying(0).verify(&bad, NOW),
                Err(CertError::BadSignature(_))
            ));
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let (mut der, _) = build_self_signed(&key(1), IdKind::Node, NOW - DAY, NOW + DAY).unwrap();
        der.push(0);
        assert_eq!(
            VerifyPolicy::self_certifying(0).verify(&der, NOW),
            Err(CertError::TrailingData)
        );
    }

    fn ca(seed: u8, name: &str) -> (SecretKey, Vec<u8>, TrustAnchors) {
        let ca_key = key(seed);
        let (der, _) = build_ca_certificate(&ca_key, name, NOW - DAY, NOW + 365 * DAY).unwrap();
        let mut anchors = TrustAnchors::default();
        anchors.push(TrustAnchor::from_der(&der).unwrap()).unwrap();
        (ca_key, der, anchors)
    }

    #[test]
    fn enrolled_node_certificate_from_the_anchor_is_accepted_and_others_refused() {
        let (ca_key, ca_der, anchors) = ca(10, "Overlay A");
        let (other_key, other_der, _) = ca(11, "Overlay B");
        let node = key(20).public();
        let (good, _) =
            issue_certificate(&ca_key, &ca_der, &node, IdKind::Node, None, NOW, NOW + DAY).unwrap();
        let (foreign, _) = issue_certificate(
            &other_key,
            &other_der,
            &node,
            IdKind::Node,
            None,
            NOW,
            NOW + DAY,
        )
        .unwrap();
        let policy = VerifyPolicy::enrolled(anchors, 0);
        assert_eq!(policy.verify_node(&good, NOW), Ok(node.node_id()));
        assert_eq!(policy.verify(&foreign, NOW), Err(CertError::UnknownIssuer));
        // A self-signed certificate is not enough in an enrolled overlay.
        let (selfsigned, _) =
            build_self_signed(&key(20), IdKind::Node, NOW - DAY, NOW + DAY).unwrap();
        assert_eq!(
            policy.verify(&selfsigned, NOW),
            Err(CertError::UnknownIssuer)
        );
        // The CA certificate itself is not a node certificate.
        assert_eq!(policy.verify(&ca_der, NOW), Err(CertError::IsCa));
    }

    #[test]
    fn same_name_different_ca_key_is_refused() {
        let (_, _, anchors) = ca(10, "Overlay A");
        let (imposter_key, imposter_der, _) = ca(12, "Overlay A");
        let (cert, _) = issue_certificate(
            &imposter_key,
            &imposter_der,
            &key(20).public(),
            IdKind::Node,
            None,
            NOW,
            NOW + DAY,
        )
        .unwrap();
        assert!(matches!(
            VerifyPolicy::enrolled(anchors, 0).verify(&cert, NOW),
            Err(CertError::BadSignature(_))
        ));
    }

    #[test]
    fn two_anchors_with_one_name_are_both_tried() {
        let (_, _, mut anchors) = ca(10, "Overlay A");
        let (second_key, second_der, second) = ca(13, "Overlay A");
        for a in second.iter() {
            anchors.push(a.clone()).unwrap();
        }
        let node = key(20).public();
        let (cert, _) = issue_certificate(
            &second_key,
            &second_der,
            &node,
            IdKind::Node,
            None,
            NOW,
            NOW + DAY,
        )
        .unwrap();
        let policy = VerifyPolicy::enrolled(anchors, 0);
        assert_eq!(policy.verify_node(&cert, NOW), Ok(node.node_id()));
    }

    #[test]
    fn the_verdict_window_ends_with_the_anchor() {
        let ca_key = key(10);
        let (ca_der, _) = build_ca_certificate(&ca_key, "Short CA", NOW - DAY, NOW + DAY).unwrap();
        let mut anchors = TrustAnchors::default();
        anchors
            .push(TrustAnchor::from_der(&ca_der).unwrap())
            .unwrap();
        let node = key(20).public();
        // The leaf outlives its CA.
        let (cert, _) = issue_certificate(
            &ca_key,
            &ca_der,
            &node,
            IdKind::Node,
            None,
            NOW,
            NOW + 30 * DAY,
        )
        .unwrap();
        let policy = VerifyPolicy::enrolled(anchors, 0);
        let v = policy.verify(&cert, NOW).unwrap();
        assert_eq!(v.not_after, NOW + DAY);
        assert!(matches!(
            policy.verify(&cert, NOW + 2 * DAY),
            Err(CertError::Expired { .. })
        ));
    }

    #[test]
    fn enrolled_user_certificate_binds_its_sip_name() {
        let (ca_key, ca_der, anchors) = ca(10, "Overlay A");
        let user = key(30).public();
        let (cert, _) = issue_certificate(
            &ca_key,
            &ca_der,
            &user,
            IdKind::User,
            Some("sip:alice@example.org"),
            NOW,
            NOW + DAY,
        )
        .unwrap();
        let v = VerifyPolicy::enrolled(anchors, 0)
            .verify(&cert, NOW)
            .unwrap();
        assert_eq!(v.user_id(), Some(user.user_id()));
        assert_eq!(v.sip_names, vec!["sip:alice@example.org".to_string()]);
        assert!(v.enrolled);
    }

    #[test]
    fn issuing_refuses_a_key_that_does_not_match_the_ca_certificate() {
        let (_, ca_der, _) = ca(10, "Overlay A");
        let err = issue_certificate(
            &key(99),
            &ca_der,
            &key(20).public(),
            IdKind::Node,
            None,
            NOW,
            NOW + DAY,
        )
        .unwrap_err();
        assert!(matches!(err, CertError::Build(_)));
    }

    #[test]
    fn a_node_certificate_is_not_a_trust_anchor() {
        let (der, _) = build_self_signed(&key(1), IdKind::Node, NOW - DAY, NOW + DAY).unwrap();
        assert!(matches!(TrustAnchor::from_der(&der), Err(CertError::NotCa)));
    }
}
