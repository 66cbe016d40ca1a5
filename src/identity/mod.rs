//! Who a node or user is: Ed25519 keys, the self-certifying ids derived from
//! them (identity spec v1), the S/Kademlia admission puzzle, key files and
//! certificates.
//!
//! This module is a leaf: it does no networking and reads no clock. Where a
//! check depends on the time, the caller passes `now`.
//!
//! # Identity spec v1
//!
//! ```text
//! NodeId = SHA-256("p2psip-node-id-v1" || public_key)
//! UserId = SHA-256("p2psip-user-id-v1" || public_key)
//! puzzle_bits(id) = leading zero bits of SHA-256(id)
//! ```
//!
//! The domain prefixes make it impossible for a node and a user to share an
//! identifier, even with the same key.

mod cert;
mod keyfile;
mod keygen;
pub mod sealing;

pub use cert::{
    build_ca_certificate, build_self_signed, certificate_public_key, issue_certificate,
    pem_certificates, CertError, TrustAnchor, TrustAnchors, VerifiedCertificate, VerifyPolicy,
    NODE_ID_URI_PREFIX, USER_ID_URI_PREFIX,
};
pub use keyfile::{load_secret_key, write_secret_key, KeyFileError};
pub use keygen::{generate, GenerateProgress};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Domain prefix of [`NodeId`] derivation.
pub const NODE_ID_DOMAIN: &[u8] = b"p2psip-node-id-v1";
/// Domain prefix of [`UserId`] derivation.
pub const USER_ID_DOMAIN: &[u8] = b"p2psip-user-id-v1";
/// Domain prefix of the overlay key of a SIP address-of-record.
pub const AOR_KEY_DOMAIN: &[u8] = b"p2psip-aor-v1";

/// Errors of parsing an id or key from text or bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text is not exactly 64 hexadecimal digits.
    #[error("an id is 64 hexadecimal digits, got {0} characters")]
    BadLength(usize),
    /// The text holds a character that is not a hexadecimal digit.
    #[error("an id is 64 hexadecimal digits; found a non-hex character")]
    NotHex,
    /// 32 bytes that are not a usable Ed25519 public key.
    #[error("not a valid Ed25519 public key (not a curve point, or of small order)")]
    InvalidPublicKey,
}

fn parse_hex32(s: &str) -> Result<[u8; 32], IdError> {
    if s.len() != 64 {
        return Err(IdError::BadLength(s.chars().count()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| IdError::NotHex)?;
    Ok(out)
}

/// Leading zero bits of a byte string, the measure of the admission puzzle.
fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut bits = 0;
    for b in bytes {
        if *b == 0 {
            bits += 8;
        } else {
            bits += b.leading_zeros();
            break;
        }
    }
    bits
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $domain:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Derives the id of a public key (identity spec v1).
            pub fn from_public_key(key: &PublicKey) -> Self {
                let mut h = Sha256::new();
                h.update($domain);
                h.update(key.as_bytes());
                Self(h.finalize().into())
            }

            /// Wraps 32 bytes that are already an id (for instance read
            /// from a message). Nothing is checked: an id is any 256-bit
            /// value; admission rules are checked where ids are admitted.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The id's 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Leading zero bits of `SHA-256(id)`: the admission puzzle
            /// this id solves.
            pub fn puzzle_bits(&self) -> u32 {
                leading_zero_bits(&Sha256::digest(self.0))
            }

            /// Whether this id solves the puzzle at `difficulty`.
            pub fn meets_difficulty(&self, difficulty: u8) -> bool {
                self.puzzle_bits() >= u32::from(difficulty)
            }

            /// The first 10 hex digits, for logs.
            pub fn fmt_short(&self) -> String {
                hex::encode(&self.0[..5])
            }
        }

        impl fmt::Display for $name {
            /// The canonical text form: 64 lowercase hex digits.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.fmt_short())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            /// Parses 64 hex digits (either case).
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_hex32(s).map(Self)
            }
        }
    };
}

id_newtype!(
    /// A node's identifier: `SHA-256("p2psip-node-id-v1" || public_key)`.
    /// The overlay's XOR metric runs over these 256 bits.
    NodeId,
    NODE_ID_DOMAIN
);

id_newtype!(
    /// A user's identifier: `SHA-256("p2psip-user-id-v1" || public_key)`.
    UserId,
    USER_ID_DOMAIN
);

/// The overlay key of a SIP address-of-record:
/// `SHA-256("p2psip-aor-v1" || AOR)`.
pub fn aor_key(aor: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(AOR_KEY_DOMAIN);
    h.update(aor.as_bytes());
    h.finalize().into()
}

/// Whether an identity belongs to a node (a device in the overlay) or to a
/// user (a person, who owns addresses-of-record and vouches for devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A node of the overlay.
    Node,
    /// A user.
    User,
}

impl IdKind {
    /// `"node"` or `"user"`, as printed in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdKind::Node => "node",
            IdKind::User => "user",
        }
    }

    /// The id of `key` under this kind, as 32 bytes.
    pub fn derive(self, key: &PublicKey) -> [u8; 32] {
        match self {
            IdKind::Node => *NodeId::from_public_key(key).as_bytes(),
            IdKind::User => *UserId::from_public_key(key).as_bytes(),
        }
    }

    /// Leading zero bits of `SHA-256(id)` for the id of `key` under this kind.
    pub fn puzzle_bits(self, key: &PublicKey) -> u32 {
        leading_zero_bits(&Sha256::digest(self.derive(key)))
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Ed25519 public key, validated when built: a curve point that is not
/// of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Validates 32 bytes as an Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| IdError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(IdError::InvalidPublicKey);
        }
        Ok(Self(key))
    }

    /// Validates a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| IdError::InvalidPublicKey)?;
        Self::from_bytes(arr)
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The node id of this key.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(self)
    }

    /// The user id of this key.
    pub fn user_id(&self) -> UserId {
        UserId::from_public_key(self)
    }

    /// Verifies an Ed25519 signature strictly (RFC 8032 with the extra
    /// checks of `verify_strict`: no malleable or small-order components).
    pub fn verify_strict(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_strict(message, &sig).is_ok()
    }

    /// The underlying dalek key.
    pub fn as_dalek(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.as_bytes()))
    }
}

/// An Ed25519 secret key. It never prints itself and is zeroized on drop.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from its 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The key as PKCS#8 v1 DER, in a buffer zeroized on drop.
    pub fn to_pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyFileError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let doc = self
            .0
            .to_pkcs8_der()
            .map_err(|e| KeyFileError::Encode(e.to_string()))?;
        Ok(zeroize::Zeroizing::new(doc.as_bytes().to_vec()))
    }

    pub(crate) fn dalek(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecretKey(public: {})",
            hex::encode(self.public().as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x01]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x40]), 9);
        assert_eq!(leading_zero_bits(&[0x00, 0x00]), 16);
        assert_eq!(leading_zero_bits(&[]), 0);
    }

    #[test]
    fn id_text_form_round_trips_and_rejects_garbage() {
        let id = NodeId::from_bytes([0xab; 32]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<NodeId>(), Ok(id));
        assert_eq!("abc".parse::<NodeId>(), Err(IdError::BadLength(3)));
        assert_eq!("zz".repeat(32).parse::<NodeId>(), Err(IdError::NotHex));
        // Multi-byte characters must not confuse the length check.
        assert!("é".repeat(32).parse::<NodeId>().is_err());
    }

    #[test]
    fn small_order_public_keys_are_refused() {
        // The identity point encodes as 0x01 followed by zeros: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(IdError::InvalidPublicKey)
        );
        assert_eq!(
            PublicKey::from_slice(&[0u8; 31]),
            Err(IdError::InvalidPublicKey)
        );
    }

    #[test]
    fn secret_key_debug_does_not_leak_the_seed() {
        let seed = [7u8; 32];
        let key = SecretKey::from_seed(&seed);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(seed)));
        assert!(shown.contains(&hex::encode(key.public().as_bytes())));
    }
}
