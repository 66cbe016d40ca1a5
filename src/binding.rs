//! Device bindings: a user's signed, expiring statement "user U vouches for
//! node N", verifiable by anyone who has the binding alone.
//!
//! Encoding (canonical CBOR, see `docs/protocol.md`):
//!
//! ```text
//! binding  = [1, user_public_key: bstr(32), node_id: bstr(32),
//!             not_before: uint, expires: uint, signature: bstr(64)]
//! signed   = "p2psip-binding-v1" || CBOR([1, user_public_key, node_id,
//!                                         not_before, expires])
//! ```
//!
//! On disk a binding is PEM-armoured with the label `P2PSIP BINDING`.

use crate::identity::{NodeId, PublicKey, SecretKey, UserId};
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;

/// Domain-separation prefix of the binding signature.
pub const BINDING_DOMAIN: &[u8] = b"p2psip-binding-v1";
/// PEM label of a binding file.
pub const BINDING_PEM_LABEL: &str = "P2PSIP BINDING";
const VERSION: u64 = 1;

/// Why a binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The bytes are not a binding.
    #[error("malformed binding: {0}")]
    Wire(#[from] WireError),
    /// Not a PEM `P2PSIP BINDING` block.
    #[error("not a PEM P2PSIP BINDING file: {0}")]
    Pem(String),
    /// A binding version this implementation does not know.
    #[error("unsupported binding version {0}")]
    UnsupportedVersion(u64),
    /// The user key is not a valid Ed25519 key.
    #[error("the binding's user key is not a valid Ed25519 key")]
    InvalidKey,
    /// The signature does not verify.
    #[error("bad binding signature")]
    BadSignature,
    /// `expires` is not after `not_before`.
    #[error("binding expires before it starts")]
    EmptyWindow,
    /// Not valid yet.
    #[error("binding not valid before {not_before} (unix time), now is {now}")]
    NotYetValid {
        /// Start, unix seconds.
        not_before: u64,
        /// Time of the check.
        now: u64,
    },
    /// Expired.
    #[error("binding expired at {expires} (unix time), now is {now}")]
    Expired {
        /// End, unix seconds.
        expires: u64,
        /// Time of the check.
        now: u64,
    },
}

/// A decoded binding whose signature has not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The vouching user's key.
    pub user_key: [u8; 32],
    /// The node vouched for.
    pub node_id: NodeId,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub expires: u64,
    /// Ed25519 signature by `user_key` over the signed bytes.
    pub signature: [u8; 64],
}

/// A binding whose signature and validity were checked; only
/// [`Binding::verify`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBinding {
    /// The user who vouches.
    pub user_id: UserId,
    /// The node vouched for.
    pub node_id: NodeId,
    /// End of validity, unix seconds.
    pub expires: u64,
}

fn signed_bytes(user_key: &[u8; 32], node_id: &NodeId, not_before: u64, expires: u64) -> Vec<u8> {
    let mut e = encoder();
    let _ = e.array(5).and_then(|e| {
        e.u64(VERSION)?
            .bytes(user_key)?
            .bytes(node_id.as_bytes())?
            .u64(not_before)?
            .u64(expires)
    });
    let mut out = BINDING_DOMAIN.to_vec();
    out.extend_from_slice(&e.into_writer());
    out
}

impl Binding {
    /// `user` signs that it vouches for `node_id` from `not_before` until
    /// `expires` (unix seconds).
    pub fn sign(user: &SecretKey, node_id: NodeId, not_before: u64, expires: u64) -> Self {
        let user_key = *user.public().as_bytes();
        let signature = user.sign(&signed_bytes(&user_key, &node_id, not_before, expires));
        Self {
            user_key,
            node_id,
            not_before,
            expires,
            signature,
        }
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e.array(6).and_then(|e| {
            e.u64(VERSION)?
                .bytes(&self.user_key)?
                .bytes(self.node_id.as_bytes())?
                .u64(self.not_before)?
                .u64(self.expires)?
                .bytes(&self.signature)
        });
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding (the signature is not checked).
    pub fn decode(input: &[u8]) -> Result<Self, BindingError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let version = r.u64()?;
        if version != VERSION {
            return Err(BindingError::UnsupportedVersion(version));
        }
        if arity != 6 {
            return Err(WireError::WrongArity {
                message_type: version,
                expected: 6,
                found: arity,
            }
            .into());
        }
        let binding = Self {
            user_key: r.bytes_exact("binding.user_key")?,
            node_id: NodeId::from_bytes(r.bytes_exact("binding.node_id")?),
            not_before: r.u64()?,
            expires: r.u64()?,
            signature: r.bytes_exact("binding.signature")?,
        };
        r.finish()?;
        require_canonical(input, &binding.encode())?;
        Ok(binding)
    }

    /// Checks the signature and that `now` (unix seconds) is inside the
    /// validity window.
    pub fn verify(&self, now: u64) -> Result<VerifiedBinding, BindingError> {
        let key = PublicKey::from_bytes(&self.user_key).map_err(|_| BindingError::InvalidKey)?;
        if self.expires <= self.not_before {
            return Err(BindingError::EmptyWindow);
        }
        let signed = signed_bytes(&self.user_key, &self.node_id, self.not_before, self.expires);
        if !key.verify_strict(&signed, &self.signature) {
            return Err(BindingError::BadSignature);
        }
        if now < self.not_before {
            return Err(BindingError::NotYetValid {
                not_before: self.not_before,
                now,
            });
        }
        if now >= self.expires {
            return Err(BindingError::Expired {
                expires: self.expires,
                now,
            });
        }
        Ok(VerifiedBinding {
            user_id: key.user_id(),
            node_id: self.node_id,
            expires: self.expires,
        })
    }

    /// The PEM armour of the encoding.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(BINDING_PEM_LABEL, self.encode()))
    }

    /// Decodes a PEM-armoured binding.
    pub fn from_pem(text: &[u8]) -> Result<Self, BindingError> {
        let block = pem::parse(text).map_err(|e| BindingError::Pem(e.to_string()))?;
        if block.tag() != BINDING_PEM_LABEL {
            return Err(BindingError::Pem(format!(
                "label is {:?}, expected {BINDING_PEM_LABEL:?}",
                block.tag()
            )));
        }
        Self::decode(block.contents())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (SecretKey, Binding) {
        let user = SecretKey::from_seed(&[5u8; 32]);
        let node = SecretKey::from_seed(&[6u8; 32]).public().node_id();
        let b = Binding::sign(&user, node, 1000, 2000);
        (user, b)
    }

    #[test]
    fn sign_encode_decode_verify() {
        let (user, b) = sample();
        let decoded = Binding::from_pem(b.to_pem().as_bytes()).unwrap();
        assert_eq!(decoded, b);
        let v = decoded.verify(1500).unwrap();
        assert_eq!(v.user_id, user.public().user_id());
        assert_eq!(v.node_id, b.node_id);
    }

    /// The byte-exact example of docs/protocol.md: RFC 8032 test key 1 (the
    /// user) vouches for the node of test key 2. Ed25519 is deterministic.
    #[test]
    fn documented_example_is_byte_exact() {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            &mut seed,
        )
        .unwrap();
        let user = SecretKey::from_seed(&seed);
        let node: NodeId = "74e69e973f2c642e02d22152438dc61fcbdf04dc38ab125a6e091d17f69e8276"
            .parse()
            .unwrap();
        let b = Binding::sign(&user, node, 1_700_000_000, 1_800_000_000);
        let expected =
            "86 01 5820 d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a \
             5820 74e69e973f2c642e02d22152438dc61fcbdf04dc38ab125a6e091d17f69e8276 \
             1a 6553f100 1a 6b49d200 \
             5840 5d88ec0a6d9d62ec5cebd7cf32545f27e47f12974b98d7f589ba3e21bb3e15e2\
             69cddc93d7526ddea81fbb40895c44d9996b72ac5df75999541fca05d4c89c06";
        let expected: String = expected.split_whitespace().collect();
        assert_eq!(hex::encode(b.encode()), expected);
        assert_eq!(
            Binding::decode(&b.encode())
                .unwrap()
                .verify(1_750_000_000)
                .unwrap()
                .user_id,
            user.public().user_id()
        );
    }

    #[test]
    fn validity_window() {
        let (_, b) = sample();
        assert!(matches!(
            b.verify(999),
            Err(BindingError::NotYetValid { .. })
        ));
        assert!(matches!(b.verify(2000), Err(BindingError::Expired { .. })));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let (_, b) = sample();
        let mut other = b.clone();
        other.expires += 1;
        assert_eq!(other.verify(1500), Err(BindingError::BadSignature));
        let mut other = b.clone();
        other.node_id = NodeId::from_bytes([0; 32]);
        assert_eq!(other.verify(1500), Err(BindingError::BadSignature));
        let mut other = b;
        other.signature[0] ^= 1;
        assert_eq!(other.verify(1500), Err(BindingError::BadSignature));
    }

    #[test]
    fn wrong_label_and_garbage_are_refused() {
        let (_, b) = sample();
        let wrong = pem::encode(&pem::Pem::new("CERTIFICATE", b.encode()));
        assert!(matches!(
            Binding::from_pem(wrong.as_bytes()),
            Err(BindingError::Pem(_))
        ));
        assert!(Binding::decode(&[0x86, 0x01]).is_err());
        assert_eq!(
            Binding::decode(&[0x86, 0x02]),
            Err(BindingError::UnsupportedVersion(2))
        );
    }
}
