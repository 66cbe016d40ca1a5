//! Mailboxes (kinds 6 and 7): voice mail left for a user by anyone, sealed
//! to the user; only the user reads, marks heard and deletes.
//!
//! A user's mailbox lives under one key, `SHA-256("p2psip-mailbox-v1" ‖
//! UserId)`. Its records (kind 6, [`MailboxValue`]) are of two forms:
//!
//! - a **deposit**, one per depositor (the node that recorded the
//!   messages, signing with its node key): the list of its messages for
//!   this user, each an [`MailboxItem`] (the message's id, its time, how
//!   many chunks and bytes of sealed audio it has, and its envelope sealed
//!   to the user). A depositor appends by publishing its deposit again
//!   with a higher `seq`.
//! - the owner's **state**, signed by the user: the ids it deleted and the
//!   ids it heard. Only the user can write it.
//!
//! A message's audio is one sealed box cut into chunks (kind 7,
//! [`MailboxChunk`]), each signed by the message's own key: a fresh
//! Ed25519 key the recording node makes for that one message, whose public
//! key is the message's id. Chunk `i` lives under `SHA-256(
//! "p2psip-mailbox-chunk-v1" ‖ id ‖ i as u16 big-endian)`. Messages live
//! [`MAILBOX_ITEM_LIFETIME`] (30 days, the longest a record may) and their
//! records are never renewed, so the message key is thrown away once its
//! chunks are signed.
//!
//! The bounds every holder of the mailbox key applies when it stores a
//! deposit ([`admit_deposit`], called by the record store): at most
//! [`MAX_MAILBOX_ITEMS`] messages and [`MAX_MAILBOX_BYTES`] of audio in
//! the mailbox, at most [`MAX_MAILBOX_ITEMS_PER_SENDER_HOUR`] messages of
//! one depositor within an hour, at most [`MAX_MAILBOX_DEPOSITORS`]
//! depositors with live messages (so that one answer carries the whole
//! mailbox). Deleted and expired messages do not count.

use super::{Record, RecordError, RecordKind, VerifiedRecord};
use crate::identity::{PublicKey, SecretKey, UserId};
use crate::limits::{
    MAILBOX_CLOCK_SKEW_SECS, MAILBOX_ITEM_LIFETIME, MAX_MAILBOX_BYTES, MAX_MAILBOX_CHUNKS,
    MAX_MAILBOX_CHUNK_DATA, MAX_MAILBOX_DEPOSITORS, MAX_MAILBOX_ENVELOPE_LEN, MAX_MAILBOX_ITEMS,
    MAX_MAILBOX_ITEMS_PER_SENDER_HOUR, MAX_MAILBOX_STATE_IDS,
};
use crate::overlay::key::Key;
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Domain separation of a mailbox's key.
pub const MAILBOX_DOMAIN: &[u8] = b"p2psip-mailbox-v1";

/// Domain separation of a message chunk's key.
pub const MAILBOX_CHUNK_DOMAIN: &[u8] = b"p2psip-mailbox-chunk-v1";

const DEPOSIT: u64 = 0;
const STATE: u64 = 1;
const ITEM_ARITY: u64 = 5;

/// The key of `user`'s mailbox.
pub fn mailbox_key(user: &UserId) -> Key {
    let mut h = Sha256::new();
    h.update(MAILBOX_DOMAIN);
    h.update(user.as_bytes());
    Key(h.finalize().into())
}

/// The key of chunk `index` of the message `id`.
pub fn chunk_key(id: &[u8; 32], index: u16) -> Key {
    let mut h = Sha256::new();
    h.update(MAILBOX_CHUNK_DOMAIN);
    h.update(id);
    h.update(index.to_be_bytes());
    Key(h.finalize().into())
}

/// One message in a deposit: `[id: bstr(32), time: uint, chunks: uint,
/// len: uint, envelope: bstr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxItem {
    /// The message's id: the public key that signs its chunks.
    pub id: [u8; 32],
    /// When it was recorded, unix seconds (public: the bounds count by
    /// it).
    pub time: u64,
    /// How many chunks its sealed audio has (1 to
    /// [`MAX_MAILBOX_CHUNKS`]).
    pub chunks: u16,
    /// The sealed audio's length, bytes: the chunks' data laid end to end.
    pub len: u64,
    /// Who called, when, how long, the codec, sealed to the owner
    /// (at most [`MAX_MAILBOX_ENVELOPE_LEN`] bytes).
    pub envelope: Vec<u8>,
}

impl MailboxItem {
    /// Whether the message still lives at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.time.saturating_add(MAILBOX_ITEM_LIFETIME.as_secs()) > now
    }

    fn check(&self) -> Result<(), WireError> {
        let chunks = usize::from(self.chunks);
        if chunks == 0 || chunks > MAX_MAILBOX_CHUNKS {
            return Err(WireError::FieldOutOfRange("mailbox.item.chunks"));
        }
        let most = (chunks as u64).saturating_mul(MAX_MAILBOX_CHUNK_DATA as u64);
        if self.len < chunks as u64 || self.len > most {
            return Err(WireError::FieldOutOfRange("mailbox.item.len"));
        }
        if self.envelope.is_empty() || self.envelope.len() > MAX_MAILBOX_ENVELOPE_LEN {
            return Err(WireError::FieldOutOfRange("mailbox.item.envelope"));
        }
        Ok(())
    }
}

/// The value of a mailbox record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxValue {
    /// `[0, recipient: bstr(32), items: [* item]]`: a depositor's
    /// messages for `recipient`, ids strictly increasing, at most
    /// [`MAX_MAILBOX_ITEMS`].
    Deposit {
        /// The mailbox's owner.
        recipient: UserId,
        /// The messages.
        items: Vec<MailboxItem>,
    },
    /// `[1, recipient: bstr(32), deleted: [* bstr(32)], heard: [*
    /// bstr(32)]]`: the owner's state, each list strictly increasing, at
    /// most [`MAX_MAILBOX_STATE_IDS`] ids.
    State {
        /// The mailbox's owner (the record's signer).
        recipient: UserId,
        /// The ids of the messages the owner deleted.
        deleted: BTreeSet<[u8; 32]>,
        /// The ids of the messages the owner heard.
        heard: BTreeSet<[u8; 32]>,
    },
}

impl MailboxValue {
    /// The mailbox's owner.
    pub fn recipient(&self) -> &UserId {
        match self {
            MailboxValue::Deposit { recipient, .. } | MailboxValue::State { recipient, .. } => {
                recipient
            }
        }
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = match self {
            MailboxValue::Deposit { recipient, items } => e.array(3).and_then(|e| {
                e.u64(DEPOSIT)?
                    .bytes(recipient.as_bytes())?
                    .array(items.len() as u64)?;
                for item in items {
                    e.array(ITEM_ARITY)?
                        .bytes(&item.id)?
                        .u64(item.time)?
                        .u64(u64::from(item.chunks))?
                        .u64(item.len)?
                        .bytes(&item.envelope)?;
                }
                Ok(e)
            }),
            MailboxValue::State {
                recipient,
                deleted,
                heard,
            } => e.array(4).and_then(|e| {
                e.u64(STATE)?.bytes(recipient.as_bytes())?;
                for list in [deleted, heard] {
                    e.array(list.len() as u64)?;
                    for id in list {
                        e.bytes(id)?;
                    }
                }
                Ok(e)
            }),
        };
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding, strictly.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let form = r.u64()?;
        let expected = match form {
            DEPOSIT => 3,
            STATE => 4,
            _ => return Err(WireError::FieldOutOfRange("mailbox.form")),
        };
        if arity != expected {
            return Err(WireError::WrongArity {
                message_type: RecordKind::Mailbox.to_u64(),
                expected,
                found: arity,
            });
        }
        let recipient = UserId::from_bytes(r.bytes_exact("mailbox.recipient")?);
        let value = if form == DEPOSIT {
            let n = r.array()?;
            if n > MAX_MAILBOX_ITEMS as u64 {
                return Err(WireError::FieldOutOfRange("mailbox.items"));
            }
            let mut items: Vec<MailboxItem> = Vec::new();
            for _ in 0..n {
                let arity = r.array()?;
                if arity != ITEM_ARITY {
                    return Err(WireError::WrongArity {
                        message_type: RecordKind::Mailbox.to_u64(),
                        expected: ITEM_ARITY,
                        found: arity,
                    });
                }
                let id = r.bytes_exact("mailbox.item.id")?;
                let time = r.u64()?;
                let chunks = r.u16("mailbox.item.chunks")?;
                let len = r.u64()?;
                let envelope = r.bytes()?;
                if envelope.len() > MAX_MAILBOX_ENVELOPE_LEN {
                    return Err(WireError::FieldOutOfRange("mailbox.item.envelope"));
                }
                let item = MailboxItem {
                    id,
                    time,
                    chunks,
                    len,
                    envelope: envelope.to_vec(),
                };
                item.check()?;
                if items.last().is_some_and(|last| last.id >= item.id) {
                    return Err(WireError::FieldOutOfRange("mailbox.items order"));
                }
                items.push(item);
            }
            MailboxValue::Deposit { recipient, items }
        } else {
            let mut lists = [BTreeSet::new(), BTreeSet::new()];
            for list in lists.iter_mut() {
                let n = r.array()?;
                if n > MAX_MAILBOX_STATE_IDS as u64 {
                    return Err(WireError::FieldOutOfRange("mailbox.state ids"));
                }
                let mut last: Option<[u8; 32]> = None;
                for _ in 0..n {
                    let id: [u8; 32] = r.bytes_exact("mailbox.state id")?;
                    if last.is_some_and(|l| l >= id) {
                        return Err(WireError::FieldOutOfRange("mailbox.state order"));
                    }
                    last = Some(id);
                    list.insert(id);
                }
            }
            let [deleted, heard] = lists;
            MailboxValue::State {
                recipient,
                deleted,
                heard,
            }
        };
        r.finish()?;
        require_canonical(input, &value.encode())?;
        Ok(value)
    }

    /// A deposit of `items` for `recipient`, checked (at most
    /// [`MAX_MAILBOX_ITEMS`], each within bounds); the items are put in
    /// id order and a repeated id is refused.
    pub fn deposit(recipient: UserId, mut items: Vec<MailboxItem>) -> Result<Self, RecordError> {
        items.sort_by_key(|i| i.id);
        let value = MailboxValue::Deposit { recipient, items };
        MailboxValue::decode(&value.encode()).map_err(RecordError::MalformedValue)
    }

    /// The owner's state, checked.
    pub fn state(
        recipient: UserId,
        deleted: BTreeSet<[u8; 32]>,
        heard: BTreeSet<[u8; 32]>,
    ) -> Result<Self, RecordError> {
        let value = MailboxValue::State {
            recipient,
            deleted,
            heard,
        };
        MailboxValue::decode(&value.encode()).map_err(RecordError::MalformedValue)
    }

    /// `signer` signs this value as a mailbox record (a depositor its
    /// deposit, the owner its state).
    pub fn sign(&self, signer: &SecretKey, seq: u64, expires: u64) -> Record {
        Record::sign(
            signer,
            RecordKind::Mailbox,
            mailbox_key(self.recipient()),
            seq,
            expires,
            self.encode(),
        )
    }
}

/// The rule of kind 6: the key is the recipient's mailbox key; a state is
/// signed by the recipient, a deposit by anyone else.
pub(super) fn check(record: &Record, owner: &PublicKey) -> Result<(), RecordError> {
    let value = MailboxValue::decode(&record.value).map_err(RecordError::MalformedValue)?;
    if record.key != mailbox_key(value.recipient()) {
        return Err(RecordError::WrongKey);
    }
    let by_owner = owner.user_id() == *value.recipient();
    match (&value, by_owner) {
        (MailboxValue::State { .. }, true) | (MailboxValue::Deposit { .. }, false) => Ok(()),
        (MailboxValue::State { .. }, false) => Err(RecordError::MalformedValue(
            WireError::FieldOutOfRange("mailbox state not signed by the mailbox's owner"),
        )),
        (MailboxValue::Deposit { .. }, true) => Err(RecordError::MalformedValue(
            WireError::FieldOutOfRange("mailbox deposit signed by the mailbox's owner"),
        )),
    }
}

/// The value of a chunk record: `[index: uint, data: bstr]`, data of 1 to
/// [`MAX_MAILBOX_CHUNK_DATA`] bytes. Its key is [`chunk_key`] of its
/// signer (the message's id) and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxChunk {
    /// The chunk's place in the message, from 0.
    pub index: u16,
    /// A piece of the message's sealed audio.
    pub data: Vec<u8>,
}

impl MailboxChunk {
    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e
            .array(2)
            .and_then(|e| e.u64(u64::from(self.index))?.bytes(&self.data));
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding, strictly.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        if arity != 2 {
            return Err(WireError::WrongArity {
                message_type: RecordKind::MailboxChunk.to_u64(),
                expected: 2,
                found: arity,
            });
        }
        let index = r.u16("mailbox.chunk.index")?;
        if usize::from(index) >= MAX_MAILBOX_CHUNKS {
            return Err(WireError::FieldOutOfRange("mailbox.chunk.index"));
        }
        let data = r.bytes()?;
        if data.is_empty() || data.len() > MAX_MAILBOX_CHUNK_DATA {
            return Err(WireError::FieldOutOfRange("mailbox.chunk.data"));
        }
        r.finish()?;
        let chunk = Self {
            index,
            data: data.to_vec(),
        };
        require_canonical(input, &chunk.encode())?;
        Ok(chunk)
    }

    /// `message` (the message's own key) signs this chunk.
    pub fn sign(&self, message: &SecretKey, expires: u64) -> Record {
        Record::sign(
            message,
            RecordKind::MailboxChunk,
            chunk_key(message.public().as_bytes(), self.index),
            1,
            expires,
            self.encode(),
        )
    }
}

/// The rule of kind 7: the key is the one the signer and the index derive.
pub(super) fn check_chunk(record: &Record, owner: &PublicKey) -> Result<(), RecordError> {
    let chunk = MailboxChunk::decode(&record.value).map_err(RecordError::MalformedValue)?;
    if record.key != chunk_key(owner.as_bytes(), chunk.index) {
        return Err(RecordError::WrongKey);
    }
    Ok(())
}

/// Why a mailbox's holder refused a deposit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxRefusal {
    /// The mailbox would hold more than [`MAX_MAILBOX_ITEMS`] messages.
    #[error("the mailbox is full ({MAX_MAILBOX_ITEMS} messages)")]
    TooManyItems,
    /// The mailbox would hold more than [`MAX_MAILBOX_BYTES`] of audio.
    #[error("the mailbox is full ({MAX_MAILBOX_BYTES} bytes)")]
    TooManyBytes,
    /// The depositor left more than
    /// [`MAX_MAILBOX_ITEMS_PER_SENDER_HOUR`] messages within an hour.
    #[error(
        "the sender left more than {MAX_MAILBOX_ITEMS_PER_SENDER_HOUR} messages within an hour"
    )]
    SenderOverQuota,
    /// [`MAX_MAILBOX_DEPOSITORS`] others hold live messages there.
    #[error("the mailbox has messages from {MAX_MAILBOX_DEPOSITORS} depositors already")]
    TooManyDepositors,
    /// A message's time lies in the future.
    #[error("a message's time lies in the future")]
    FromTheFuture,
}

/// What a mailbox record says, for the bounds: its signer and value.
fn parsed(record: &VerifiedRecord) -> Option<MailboxValue> {
    MailboxValue::decode(record.value()).ok()
}

/// The ids the owner deleted, from the state among `records`.
fn deleted_ids(records: &[&VerifiedRecord]) -> BTreeSet<[u8; 32]> {
    records
        .iter()
        .filter_map(|r| parsed(r))
        .find_map(|v| match v {
            MailboxValue::State { deleted, .. } => Some(deleted),
            MailboxValue::Deposit { .. } => None,
        })
        .unwrap_or_default()
}

/// The live messages of a deposit that the owner has not deleted.
fn counted<'a>(
    items: &'a [MailboxItem],
    deleted: &'a BTreeSet<[u8; 32]>,
    now: u64,
) -> impl Iterator<Item = &'a MailboxItem> + 'a {
    items
        .iter()
        .filter(move |i| i.is_live(now) && !deleted.contains(&i.id))
}

/// Whether the holder of a mailbox that holds `others` (its live mailbox
/// records other than the offered one's slot) admits `offered` at `now`.
/// The one place the mailbox bounds are decided (see the module docs).
pub fn admit_deposit(
    others: &[&VerifiedRecord],
    offered: &VerifiedRecord,
    now: u64,
) -> Result<(), MailboxRefusal> {
    let Some(MailboxValue::Deposit { items, .. }) = parsed(offered) else {
        return Ok(());
    };
    if items
        .iter()
        .any(|i| i.time > now.saturating_add(MAILBOX_CLOCK_SKEW_SECS))
    {
        return Err(MailboxRefusal::FromTheFuture);
    }
    let deleted = deleted_ids(others);
    let mine: Vec<&MailboxItem> = counted(&items, &deleted, now).collect();
    let hour_ago = now.saturating_sub(3600);
    if mine.iter().filter(|i| i.time > hour_ago).count() > MAX_MAILBOX_ITEMS_PER_SENDER_HOUR {
        return Err(MailboxRefusal::SenderOverQuota);
    }
    let mut total_items = mine.len();
    let mut total_bytes: u64 = mine.iter().map(|i| i.len).sum();
    let mut depositors = 0;
    for other in others {
        if let Some(MailboxValue::Deposit { items, .. }) = parsed(other) {
            let live: Vec<&MailboxItem> = counted(&items, &deleted, now).collect();
            if !live.is_empty() {
                depositors += 1;
            }
            total_items += live.len();
            total_bytes = total_bytes.saturating_add(live.iter().map(|i| i.len).sum());
        }
    }
    if !mine.is_empty() && depositors >= MAX_MAILBOX_DEPOSITORS {
        return Err(MailboxRefusal::TooManyDepositors);
    }
    if total_items > MAX_MAILBOX_ITEMS {
        return Err(MailboxRefusal::TooManyItems);
    }
    if total_bytes > MAX_MAILBOX_BYTES {
        return Err(MailboxRefusal::TooManyBytes);
    }
    Ok(())
}

/// The mailbox records one answer carries, from the `live` ones at a
/// mailbox key: the owner's state and the deposits with messages still
/// counted, newest message first, at most `limit` in all. Deposits left
/// with nothing to read are left out, so that spent deposits cannot push
/// live ones out of an answer.
pub fn answer_selection(
    live: Vec<&VerifiedRecord>,
    limit: usize,
    now: u64,
) -> Vec<&VerifiedRecord> {
    let deleted = deleted_ids(&live);
    let mut states = Vec::new();
    let mut deposits: Vec<(u64, &VerifiedRecord)> = Vec::new();
    for record in live {
        match parsed(record) {
            Some(MailboxValue::State { .. }) => states.push(record),
            Some(MailboxValue::Deposit { items, .. }) => {
                if let Some(newest) = counted(&items, &deleted, now).map(|i| i.time).max() {
                    deposits.push((newest, record));
                }
            }
            None => {}
        }
    }
    deposits.sort_by_key(|d| std::cmp::Reverse(d.0));
    states
        .into_iter()
        .chain(deposits.into_iter().map(|(_, r)| r))
        .take(limit)
        .collect()
}
