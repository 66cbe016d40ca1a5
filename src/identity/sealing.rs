//! Sealing to a user: HPKE (RFC 9180) in base mode with DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305, from the `hpke` crate.
//!
//! Each user has an X25519 *encryption key* beside the Ed25519 identity
//! key (`USER_DIR/encryption.key`, PKCS#8 PEM as RFC 8410 defines it for
//! X25519, 0600); its public half is published in the user's profile
//! record, signed by the identity key. What is sealed to it (the user's
//! private records, voice mail) only that key opens.
//!
//! A sealed box is `enc (32 bytes) ‖ ciphertext`, the HPKE encapsulated
//! key followed by the AEAD output (plaintext + 16-byte tag). Every use
//! names its own `info` (domain separation between uses) and passes what
//! the box must stay bound to as `aad` (a record's key, say), so that a
//! box cut from one place and pasted in another does not open.

use super::keyfile::{read_key_file, KeyFileError};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

type Kem = X25519HkdfSha256;

/// Length of the encapsulated key at the front of a sealed box.
pub const ENCAPPED_LEN: usize = 32;
/// Length of the AEAD tag at the end of a sealed box.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext: the encapsulated key and the tag.
pub const SEAL_OVERHEAD: usize = ENCAPPED_LEN + TAG_LEN;

/// The DER of an RFC 8410 X25519 private key before its 32 key bytes:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.110 }, OCTET STRING {
/// OCTET STRING (32) } }`. `openssl pkey` reads and writes this form.
const PKCS8_X25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

/// Why a box did not seal or open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than an encapsulated key and a tag.
    #[error("sealed box of {len} bytes: shorter than the {SEAL_OVERHEAD} bytes of its envelope")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The box was not sealed to this key, with this `info` and `aad`,
    /// or was altered.
    #[error("the sealed box does not open with this key (altered, or sealed to someone else)")]
    DoesNotOpen,
    /// The recipient's public key is not a usable X25519 key.
    #[error("not a usable X25519 public key")]
    BadPublicKey,
    /// HPKE refused to seal (an all-zero shared secret).
    #[error("sealing failed")]
    SealFailed,
}

/// A user's encryption public key: an X25519 point.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncryptionPublicKey([u8; 32]);

impl EncryptionPublicKey {
    /// The key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for EncryptionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionPublicKey({})", hex::encode(self.0))
    }
}

/// A user's encryption secret key. It never prints itself and is
/// zeroized on drop.
pub struct EncryptionSecretKey(Zeroizing<[u8; 32]>);

impl EncryptionSecretKey {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> Self {
        let (secret, _) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&secret.to_bytes());
        Self(bytes)
    }

    /// The key from its 32 bytes (any 32 bytes are an X25519 scalar).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn hpke(&self) -> Result<<Kem as hpke::Kem>::PrivateKey, SealError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&self.0[..]).map_err(|_| SealError::DoesNotOpen)
    }

    /// The public half.
    pub fn public(&self) -> EncryptionPublicKey {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*self.0));
        EncryptionPublicKey(public.to_bytes())
    }

    /// Opens `sealed` (`enc ‖ ciphertext`), sealed to this key with
    /// `info` and `aad`.
    pub fn open(&self, info: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::TooShort { len: sealed.len() });
        }
        let (enc, ciphertext) = sealed.split_at(ENCAPPED_LEN);
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::DoesNotOpen)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.hpke()?,
            &enc,
            info,
            ciphertext,
            aad,
        )
        .map_err(|_| SealError::DoesNotOpen)
    }

    /// The key as RFC 8410 PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pem(&self) -> Zeroizing<String> {
        let mut der = Vec::with_capacity(PKCS8_X25519_PREFIX.len() + 32);
        der.extend_from_slice(&PKCS8_X25519_PREFIX);
        der.extend_from_slice(&self.0[..]);
        let block = pem::Pem::new("PRIVATE KEY", der);
        let text = Zeroizing::new(pem::encode(&block));
        // The block's copy of the DER is wiped, not just freed.
        drop(Zeroizing::new(block.into_contents()));
        text
    }

    /// The key from RFC 8410 PKCS#8 PEM; the only form accepted is the
    /// one [`EncryptionSecretKey::to_pem`] writes (and `openssl genpkey
    /// -algorithm X25519` too).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let parsed = pem::parse(text.trim()).map_err(|e| format!("not PEM: {e}"))?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(format!("a {:?} block, not PRIVATE KEY", parsed.tag()));
        }
        let der = Zeroizing::new(parsed.into_contents());
        let key = der
            .strip_prefix(&PKCS8_X25519_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or("not an RFC 8410 X25519 private key")?;
        Ok(Self::from_bytes(key))
    }
}

impl fmt::Debug for EncryptionSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionSecretKey(public: {:?})", self.public())
    }
}

/// Seals `plaintext` to `recipient` with `info` and `aad`: `enc ‖
/// ciphertext`, [`SEAL_OVERHEAD`] bytes longer than the plaintext.
pub fn seal(
    recipient: &EncryptionPublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient.0)
        .map_err(|_| SealError::BadPublicKey)?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut rand::rngs::OsRng,
    )
    .map_err(|_| SealError::SealFailed)?;
    let mut out = Vec::with_capacity(ENCAPPED_LEN + ciphertext.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Writes `key` to `path` as PKCS#8 PEM, 0600, never over an existing
/// file (as [`super::write_secret_key`]).
pub fn write_encryption_key(path: &Path, key: &EncryptionSecretKey) -> Result<(), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::AlreadyExists(path.to_path_buf()));
    }
    let pem = key.to_pem();
    crate::fsutil::write_atomically(path, pem.as_bytes(), 0o600, false).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists(path.to_path_buf())
        } else {
            KeyFileError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

/// Loads an encryption key, refusing a file that group or others can
/// access, that is not a regular file, or that is too large (the checks
/// of every key file, [`super::keyfile`]).
pub fn load_encryption_key(path: &Path) -> Result<EncryptionSecretKey, KeyFileError> {
    let text = read_key_file(path)?;
    EncryptionSecretKey::from_pem(&text).map_err(|reason| KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 9180, Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// ChaCha20-Poly1305, base mode, the first message.
    #[test]
    fn opens_the_rfc_9180_a_2_1_vector() {
        let sk_rm = unhex("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
        let key = EncryptionSecretKey::from_bytes(sk_rm.try_into().unwrap());
        assert_eq!(
            hex::encode(key.public().as_bytes()),
            "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
        );
        let mut sealed = unhex("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
        sealed.extend(unhex(
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        ));
        let info = unhex("4f6465206f6e2061204772656369616e2055726e");
        let opened = key.open(&info, b"Count-0", &sealed).unwrap();
        assert_eq!(opened, b"Beauty is truth, truth beauty");
        // Bound to its aad and info (checked here, where nothing else
        // could refuse it first).
        assert_eq!(
            key.open(&info, b"Count-1", &sealed),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            key.open(b"other", b"Count-0", &sealed),
            Err(SealError::DoesNotOpen)
        );
    }

    #[test]
    fn seals_to_the_recipient_only() {
        let alice = EncryptionSecretKey::generate();
        let mallory = EncryptionSecretKey::generate();
        let sealed = seal(&alice.public(), b"info", b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(alice.open(b"info", b"aad", &sealed).unwrap(), b"hello");
        assert_eq!(
            mallory.open(b"info", b"aad", &sealed),
            Err(SealError::DoesNotOpen)
        );
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert!(alice.open(b"info", b"aad", &flipped).is_err(), "bit at {i}");
        }
        assert_eq!(
            alice.open(b"info", b"aad", &sealed[..SEAL_OVERHEAD - 1]),
            Err(SealError::TooShort { len: 47 })
        );
    }

    #[test]
    fn key_file_is_0600_rfc_8410_and_refused_when_open_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption.key");
        let key = EncryptionSecretKey::generate();
        write_encryption_key(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        assert_eq!(load_encryption_key(&path).unwrap().public(), key.public());
        assert!(matches!(
            write_encryption_key(&path, &key),
            Err(KeyFileError::AlreadyExists(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_encryption_key(&path),
            Err(KeyFileError::TooPermissive { .. })
        ));
        // An Ed25519 key is not an encryption key.
        let ed = dir.path().join("identity.key");
        super::super::write_secret_key(&ed, &super::super::SecretKey::from_seed(&[1; 32])).unwrap();
        let err = load_encryption_key(&ed).unwrap_err().to_string();
        assert!(err.contains("not an RFC 8410 X25519 private key"), "{err}");
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let key = EncryptionSecretKey::from_bytes([7; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])), "{shown}");
    }
}
