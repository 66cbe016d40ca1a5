//! Profiles (kind 4): what a user publishes about itself, signed by its
//! identity key: the encryption key things are sealed to
//! ([`crate::identity::sealing`]) and an optional display name, which is
//! the user's own claim and shown as such.

use super::{Record, RecordError, RecordKind};
use crate::identity::sealing::EncryptionPublicKey;
use crate::identity::{SecretKey, UserId};
use crate::limits::MAX_DISPLAY_NAME_LEN;
use crate::overlay::key::Key;
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use sha2::{Digest, Sha256};

/// Domain-separation prefix of a profile's key.
pub const PROFILE_KEY_DOMAIN: &[u8] = b"p2psip-profile-v1";

/// The key of the profile of `user`: `SHA-256("p2psip-profile-v1" ‖
/// user_id)`.
pub fn profile_key(user: &UserId) -> Key {
    let mut h = Sha256::new();
    h.update(PROFILE_KEY_DOMAIN);
    h.update(user.as_bytes());
    Key(h.finalize().into())
}

/// The value of a profile record: `[encryption_key: bstr(32),
/// display_name: tstr (0..=64 bytes, no control characters)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    encryption_key: EncryptionPublicKey,
    display_name: String,
}

/// Whether `name` may be a display name: at most
/// [`MAX_DISPLAY_NAME_LEN`] bytes, no control characters, no `"` or `\`
/// (it is quoted in a SIP From header as it is).
pub fn check_display_name(name: &str) -> Result<(), WireError> {
    if name.len() > MAX_DISPLAY_NAME_LEN
        || name
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(WireError::FieldOutOfRange("profile.display_name"));
    }
    Ok(())
}

impl Profile {
    /// A profile; `display_name` may be empty (none).
    pub fn new(
        encryption_key: EncryptionPublicKey,
        display_name: &str,
    ) -> Result<Self, RecordError> {
        check_display_name(display_name).map_err(RecordError::MalformedValue)?;
        Ok(Self {
            encryption_key,
            display_name: display_name.to_owned(),
        })
    }

    /// The key things for this user are sealed to.
    pub fn encryption_key(&self) -> &EncryptionPublicKey {
        &self.encryption_key
    }

    /// The display name the user claims for itself (empty: none).
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e.array(2).and_then(|e| {
            e.bytes(self.encryption_key.as_bytes())?
                .str(&self.display_name)
        });
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        if arity != 2 {
            return Err(WireError::WrongArity {
                message_type: RecordKind::Profile.to_u64(),
                expected: 2,
                found: arity,
            });
        }
        let key = r.bytes_exact("profile.encryption_key")?;
        let display_name = r.str("profile.display_name", MAX_DISPLAY_NAME_LEN)?;
        check_display_name(display_name)?;
        r.finish()?;
        let value = Self {
            encryption_key: EncryptionPublicKey::from_bytes(key),
            display_name: display_name.to_owned(),
        };
        require_canonical(input, &value.encode())?;
        Ok(value)
    }

    /// `owner` signs this profile as its `Profile` record.
    pub fn sign(&self, owner: &SecretKey, seq: u64, expires: u64) -> Record {
        Record::sign(
            owner,
            RecordKind::Profile,
            profile_key(&owner.public().user_id()),
            seq,
            expires,
            self.encode(),
        )
    }
}

/// The rule of kind 4: the value is a profile and the key is the owner's
/// profile key.
pub(super) fn check(record: &Record, owner_id: &UserId) -> Result<(), RecordError> {
    Profile::decode(&record.value).map_err(RecordError::MalformedValue)?;
    if record.key != profile_key(owner_id) {
        return Err(RecordError::WrongKey);
    }
    Ok(())
}
