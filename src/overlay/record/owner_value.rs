//! Owner values (kind 2): a named value only its owner can write, under a
//! key derived from the owner's id and the name.

use super::{Record, RecordError, RecordKind};
use crate::identity::{SecretKey, UserId};
use crate::limits::{MAX_OWNER_VALUE_NAME_LEN, MAX_RECORD_VALUE_LEN};
use crate::overlay::key::Key;
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use sha2::{Digest, Sha256};

/// Domain-separation prefix of the key of an owner value.
pub const OWNER_VALUE_KEY_DOMAIN: &[u8] = b"p2psip-value-v1";

/// The key of the owner value named `name` of the user `user_id`:
/// `SHA-256("p2psip-value-v1" ‖ user_id ‖ name)`. The id has a fixed
/// length and the name comes last, so the concatenation is unambiguous.
pub fn owner_value_key(user_id: &UserId, name: &str) -> Key {
    let mut h = Sha256::new();
    h.update(OWNER_VALUE_KEY_DOMAIN);
    h.update(user_id.as_bytes());
    h.update(name.as_bytes());
    Key(h.finalize().into())
}

/// The value of an `OwnerValue` record: `[name: tstr (1..=128 bytes),
/// data: bstr]`. Its key is [`owner_value_key`] of the owner and the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerValue {
    pub(super) name: String,
    pub(super) data: Vec<u8>,
}

impl OwnerValue {
    /// A value named `name` (1 to [`MAX_OWNER_VALUE_NAME_LEN`] bytes)
    /// holding `data`; its encoding must fit [`MAX_RECORD_VALUE_LEN`].
    pub fn new(name: &str, data: Vec<u8>) -> Result<Self, RecordError> {
        if name.is_empty() || name.len() > MAX_OWNER_VALUE_NAME_LEN {
            return Err(RecordError::MalformedValue(WireError::FieldOutOfRange(
                "owner_value.name",
            )));
        }
        let value = Self {
            name: name.to_owned(),
            data,
        };
        let len = value.encode().len();
        if len > MAX_RECORD_VALUE_LEN {
            return Err(RecordError::ValueTooLarge { len });
        }
        Ok(value)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The key this value has when `owner` writes it.
    pub fn key(&self, owner: &UserId) -> Key {
        owner_value_key(owner, &self.name)
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e
            .array(2)
            .and_then(|e| e.str(&self.name)?.bytes(&self.data));
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        if arity != 2 {
            return Err(WireError::WrongArity {
                message_type: RecordKind::OwnerValue.to_u64(),
                expected: 2,
                found: arity,
            });
        }
        let name = r.str("owner_value.name", MAX_OWNER_VALUE_NAME_LEN)?;
        if name.is_empty() {
            return Err(WireError::FieldOutOfRange("owner_value.name"));
        }
        let data = r.bytes()?;
        r.finish()?;
        let value = Self {
            name: name.to_owned(),
            data: data.to_vec(),
        };
        require_canonical(input, &value.encode())?;
        Ok(value)
    }

    /// `owner` signs this value as an `OwnerValue` record under its key.
    pub fn sign(&self, owner: &SecretKey, seq: u64, expires: u64) -> Record {
        let key = self.key(&owner.public().user_id());
        Record::sign(
            owner,
            RecordKind::OwnerValue,
            key,
            seq,
            expires,
            self.encode(),
        )
    }
}

/// The rule of kind 2, for a record whose signature verified: the value is
/// an owner value and the key is the one its owner and name derive.
pub(super) fn check(record: &Record, owner_id: &UserId) -> Result<(), RecordError> {
    let value = OwnerValue::decode(&record.value).map_err(RecordError::MalformedValue)?;
    if record.key != value.key(owner_id) {
        return Err(RecordError::WrongKey);
    }
    Ok(())
}
