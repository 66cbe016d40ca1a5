//! Voice mail messages: what a recording node seals and stores in a
//! user's mailbox ([`crate::overlay::record::mailbox`]), and how the user
//! opens them.
//!
//! A message is two sealed boxes, both to the recipient's encryption key
//! (its profile), both bound to the message's id (the public key of the
//! fresh key that signs its chunks) as HPKE `aad`:
//!
//! ```text
//! envelope  = HPKE(info "p2psip-voicemail-envelope-v1", aad id,
//!                  [1, from: tstr, verified: uint (0|1), time: uint,
//!                   duration_ms: uint, codec: uint (RTP payload type 0|8)])
//! audio box = HPKE(info "p2psip-voicemail-audio-v1", aad id,
//!                  the G.711 bytes as recorded)
//! ```
//!
//! The envelope rides in the depositor's mailbox record; the audio box is
//! cut into chunks of at most [`MAX_MAILBOX_CHUNK_DATA`] bytes. The
//! storing nodes see sizes and times, never who called or what was said.

use crate::identity::sealing::{self, EncryptionPublicKey, EncryptionSecretKey, SealError};
use crate::identity::{NodeId, SecretKey, UserId};
use crate::limits::{
    MAILBOX_ITEM_LIFETIME, MAX_MAILBOX_CHUNKS, MAX_MAILBOX_CHUNK_DATA, MAX_MAILBOX_ENVELOPE_LEN,
    MAX_MAILBOX_STATE_IDS, MAX_VOICEMAIL_FROM_LEN,
};
use crate::overlay::record::{
    chunk_key, mailbox_key, MailboxChunk, MailboxItem, MailboxValue, Record, RecordError,
    RecordKind, RecordPolicy, VerifiedRecord,
};
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use std::collections::BTreeSet;
use std::io::Write;

/// HPKE `info` of a message's envelope.
pub const ENVELOPE_INFO: &[u8] = b"p2psip-voicemail-envelope-v1";
/// HPKE `info` of a message's audio.
pub const AUDIO_INFO: &[u8] = b"p2psip-voicemail-audio-v1";

/// RTP payload type of G.711 µ-law (PCMU).
pub const PCMU: u8 = 0;
/// RTP payload type of G.711 A-law (PCMA).
pub const PCMA: u8 = 8;

/// G.711's sample rate.
pub const SAMPLE_RATE: u32 = 8000;

/// Why a message could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VoicemailError {
    /// Nothing was recorded.
    #[error("the message holds no audio")]
    Empty,
    /// More audio than a message holds.
    #[error("the message's audio ({0} bytes) is longer than a message holds")]
    TooLong(usize),
    /// The envelope does not fit.
    #[error("the envelope is too large")]
    EnvelopeTooLarge,
    /// A field of the envelope is out of range.
    #[error("bad envelope: {0}")]
    BadEnvelope(WireError),
    /// Sealing or opening failed (for opening: not sealed to this key, or
    /// altered).
    #[error("{0}")]
    Seal(#[from] SealError),
    /// A chunk is missing or does not belong to the message.
    #[error("chunk {index} of the message is missing or not the message's")]
    BadChunk {
        /// The chunk's index.
        index: u16,
    },
    /// The chunks do not add up to the message's length.
    #[error("the chunks hold {found} bytes, the message {expected}")]
    WrongLength {
        /// What the item says.
        expected: u64,
        /// What the chunks hold.
        found: u64,
    },
}

/// What the recipient learns of a message before hearing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Who called: the AOR the caller's Identity signature verified, or
    /// the From the caller claimed when `verified` is false.
    pub from: String,
    /// Whether `from` was verified.
    pub verified: bool,
    /// When the message was recorded, unix seconds.
    pub time: u64,
    /// How long it is, milliseconds.
    pub duration_ms: u64,
    /// The codec: RTP payload type [`PCMU`] or [`PCMA`].
    pub codec: u8,
}

const ENVELOPE_VERSION: u64 = 1;

impl Envelope {
    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e.array(6).and_then(|e| {
            e.u64(ENVELOPE_VERSION)?
                .str(&self.from)?
                .u64(u64::from(self.verified))?
                .u64(self.time)?
                .u64(self.duration_ms)?
                .u64(u64::from(self.codec))
        });
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding, strictly.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let version = r.u64()?;
        if arity != 6 || version != ENVELOPE_VERSION {
            return Err(WireError::FieldOutOfRange("voicemail.envelope"));
        }
        let from = r.str("voicemail.from", MAX_VOICEMAIL_FROM_LEN)?.to_owned();
        let verified = match r.u64()? {
            0 => false,
            1 => true,
            _ => return Err(WireError::FieldOutOfRange("voicemail.verified")),
        };
        let time = r.u64()?;
        let duration_ms = r.u64()?;
        let codec = match r.u64()? {
            0 => PCMU,
            8 => PCMA,
            _ => return Err(WireError::FieldOutOfRange("voicemail.codec")),
        };
        r.finish()?;
        let envelope = Self {
            from,
            verified,
            time,
            duration_ms,
            codec,
        };
        require_canonical(input, &envelope.encode())?;
        Ok(envelope)
    }
}

/// A message ready to store: its entry for the depositor's mailbox record
/// and its chunk records, signed by the message's key (already dropped).
#[derive(Debug, Clone)]
pub struct Composed {
    /// The entry for the depositor's deposit.
    pub item: MailboxItem,
    /// The chunks, in order.
    pub chunks: Vec<Record>,
}

/// Seals `audio` (G.711 bytes) and `envelope` to `to`, the recipient's
/// encryption key, and cuts it into chunk records.
pub fn compose(
    to: &EncryptionPublicKey,
    envelope: &Envelope,
    audio: &[u8],
) -> Result<Composed, VoicemailError> {
    if audio.is_empty() {
        return Err(VoicemailError::Empty);
    }
    if envelope.from.len() > MAX_VOICEMAIL_FROM_LEN {
        return Err(VoicemailError::BadEnvelope(WireError::FieldOutOfRange(
            "voicemail.from",
        )));
    }
    let most = MAX_MAILBOX_CHUNKS * MAX_MAILBOX_CHUNK_DATA - sealing::SEAL_OVERHEAD;
    if audio.len() > most {
        return Err(VoicemailError::TooLong(audio.len()));
    }
    let key = SecretKey::generate();
    let id = *key.public().as_bytes();
    let sealed_envelope = sealing::seal(to, ENVELOPE_INFO, &id, &envelope.encode())?;
    if sealed_envelope.len() > MAX_MAILBOX_ENVELOPE_LEN {
        return Err(VoicemailError::EnvelopeTooLarge);
    }
    let sealed_audio = sealing::seal(to, AUDIO_INFO, &id, audio)?;
    let expires = envelope
        .time
        .saturating_add(MAILBOX_ITEM_LIFETIME.as_secs());
    let chunks: Vec<Record> = sealed_audio
        .chunks(MAX_MAILBOX_CHUNK_DATA)
        .enumerate()
        .map(|(index, data)| {
            MailboxChunk {
                // At most MAX_MAILBOX_CHUNKS (64) chunks: checked above.
                index: u16::try_from(index).unwrap_or(u16::MAX),
                data: data.to_vec(),
            }
            .sign(&key, expires)
        })
        .collect();
    let item = MailboxItem {
        id,
        time: envelope.time,
        chunks: u16::try_from(chunks.len()).unwrap_or(u16::MAX),
        len: sealed_audio.len() as u64,
        envelope: sealed_envelope,
    };
    Ok(Composed { item, chunks })
}

/// Opens a message's envelope with the recipient's key.
pub fn open_envelope(
    with: &EncryptionSecretKey,
    item: &MailboxItem,
) -> Result<Envelope, VoicemailError> {
    let plaintext = with.open(ENVELOPE_INFO, &item.id, &item.envelope)?;
    Envelope::decode(&plaintext).map_err(VoicemailError::BadEnvelope)
}

/// Puts a message's audio together from its chunk records (`chunks[i]`
/// the record found under chunk `i`'s key, if any) and opens it. Each
/// chunk must verify under `policy`, be signed by the message's key, carry
/// its index, and the chunks must add up to the item's length.
pub fn open_audio(
    with: &EncryptionSecretKey,
    item: &MailboxItem,
    chunks: &[Option<Record>],
    policy: &RecordPolicy,
    now: u64,
) -> Result<Vec<u8>, VoicemailError> {
    let mut sealed = Vec::new();
    for index in 0..item.chunks {
        let bad = VoicemailError::BadChunk { index };
        let record = chunks
            .get(usize::from(index))
            .and_then(Option::as_ref)
            .ok_or(bad.clone())?;
        let verified = record.verify(policy, now).map_err(|_| bad.clone())?;
        if verified.kind() != RecordKind::MailboxChunk
            || verified.owner() != &item.id
            || verified.key() != &chunk_key(&item.id, index)
        {
            return Err(bad);
        }
        let chunk = MailboxChunk::decode(verified.value()).map_err(|_| bad.clone())?;
        if sealed.len() as u64 + chunk.data.len() as u64 > item.len {
            return Err(VoicemailError::WrongLength {
                expected: item.len,
                found: sealed.len() as u64 + chunk.data.len() as u64,
            });
        }
        sealed.extend_from_slice(&chunk.data);
    }
    if sealed.len() as u64 != item.len {
        return Err(VoicemailError::WrongLength {
            expected: item.len,
            found: sealed.len() as u64,
        });
    }
    Ok(with.open(AUDIO_INFO, &item.id, &sealed)?)
}

/// A user's mailbox as read from the overlay: the owner's state and the
/// messages still to be read (live, not deleted), newest first.
#[derive(Debug, Clone, Default)]
pub struct Mailbox {
    /// The sequence number of the owner's state record, if one was found.
    pub state_seq: Option<u64>,
    /// The ids the owner deleted.
    pub deleted: BTreeSet<[u8; 32]>,
    /// The ids the owner heard.
    pub heard: BTreeSet<[u8; 32]>,
    /// The messages: the depositor's key and the item, one per id.
    pub items: Vec<([u8; 32], MailboxItem)>,
    /// The ids of every live message any deposit lists, deleted or not.
    pub listed: BTreeSet<[u8; 32]>,
    /// The nodes whose deposits the reader trusts (see [`Mailbox::read`]).
    trusted: Vec<NodeId>,
}

impl Mailbox {
    /// Reads the mailbox of `owner` from `records` (what a lookup of its
    /// key found, verified): records under another key, of another kind
    /// or for another recipient are ignored.
    ///
    /// Anyone may deposit, and the owner's encryption key is public, so a
    /// deposit can claim anything in its envelope, and can list the id of
    /// a message another node deposited. `trusted` are the nodes the
    /// owner trusts to deposit (those serving it): their entry of an id
    /// wins over anyone else's, and only their envelopes' `verified` is
    /// believed ([`Mailbox::is_trusted`]). Each id is listed once.
    pub fn read(owner: &UserId, records: &[VerifiedRecord], now: u64, trusted: &[NodeId]) -> Self {
        let key = mailbox_key(owner);
        let mut mailbox = Mailbox {
            trusted: trusted.to_vec(),
            ..Mailbox::default()
        };
        let mut deposits = Vec::new();
        for record in records {
            if record.key() != &key || record.kind() != RecordKind::Mailbox {
                continue;
            }
            match MailboxValue::decode(record.value()) {
                Ok(MailboxValue::State {
                    recipient,
                    deleted,
                    heard,
                }) if recipient == *owner && mailbox.state_seq.is_none_or(|s| s < record.seq()) => {
                    mailbox.state_seq = Some(record.seq());
                    mailbox.deleted = deleted;
                    mailbox.heard = heard;
                }
                Ok(MailboxValue::Deposit { recipient, items }) if recipient == *owner => {
                    deposits.push((*record.owner(), items));
                }
                _ => {}
            }
        }
        // Trusted depositors first: theirs is the entry of an id.
        deposits.sort_by_key(|(depositor, _)| !mailbox.is_trusted(depositor));
        let mut seen = BTreeSet::new();
        for (depositor, items) in deposits {
            for item in items {
                if !item.is_live(now) {
                    continue;
                }
                mailbox.listed.insert(item.id);
                if !mailbox.deleted.contains(&item.id) && seen.insert(item.id) {
                    mailbox.items.push((depositor, item));
                }
            }
        }
        mailbox
            .items
            .sort_by(|a, b| b.1.time.cmp(&a.1.time).then(a.1.id.cmp(&b.1.id)));
        mailbox
    }

    /// Whether `depositor` (a deposit's signing key) is the key of a node
    /// the reader trusts.
    pub fn is_trusted(&self, depositor: &[u8; 32]) -> bool {
        crate::identity::PublicKey::from_bytes(depositor)
            .is_ok_and(|key| self.trusted.contains(&key.node_id()))
    }

    /// Adds ids the owner deleted or heard that the read did not find
    /// (the state the owner last wrote, kept by the writer): a read that
    /// missed the newest state must not undo them.
    pub fn remember(&mut self, deleted: &BTreeSet<[u8; 32]>, heard: &BTreeSet<[u8; 32]>) {
        self.deleted.extend(deleted.iter().copied());
        self.heard.extend(heard.iter().copied());
        self.items.retain(|(_, i)| !deleted.contains(&i.id));
    }

    /// The message whose id (64 hex digits) or short id starts with
    /// `prefix` (at least 8 hex digits), if exactly one does.
    pub fn find(&self, prefix: &str) -> Result<&MailboxItem, String> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < 8 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{prefix:?}: a message id is 8 to 64 hex digits (see `voicemail list`)"
            ));
        }
        let mut found = self
            .items
            .iter()
            .filter(|(_, i)| hex::encode(i.id).starts_with(&prefix));
        match (found.next(), found.next()) {
            (Some((_, item)), None) => Ok(item),
            (None, _) => Err(format!("no message {prefix} in the mailbox")),
            (Some(_), Some(_)) => Err(format!("{prefix} names more than one message")),
        }
    }

    /// The owner's next state record: `deleted` added to the deleted ids
    /// (and dropped from the heard ones), the ids of `heard` added to the
    /// heard ids.
    /// When a list would exceed [`MAX_MAILBOX_STATE_IDS`], the ids of
    /// messages no longer in the mailbox are dropped from it first.
    pub fn next_state(
        &self,
        user: &SecretKey,
        deleted: Option<[u8; 32]>,
        heard: &[[u8; 32]],
        now: u64,
        now_micros: u64,
    ) -> Result<Record, RecordError> {
        // Ids no deposit lists any more (expired) are the ones to forget.
        let present = &self.listed;
        let mut deleted_ids = self.deleted.clone();
        let mut heard_ids = self.heard.clone();
        if let Some(id) = deleted {
            deleted_ids.insert(id);
            heard_ids.remove(&id);
        }
        heard_ids.extend(heard.iter().copied());
        let keep: BTreeSet<[u8; 32]> = deleted.into_iter().chain(heard.iter().copied()).collect();
        for list in [&mut deleted_ids, &mut heard_ids] {
            if list.len() > MAX_MAILBOX_STATE_IDS {
                list.retain(|id| present.contains(id) || keep.contains(id));
            }
            while list.len() > MAX_MAILBOX_STATE_IDS {
                let Some(first) = list.iter().find(|id| !keep.contains(*id)).copied() else {
                    break;
                };
                list.remove(&first);
            }
        }
        let value = MailboxValue::state(user.public().user_id(), deleted_ids, heard_ids)?;
        let seq = now_micros.max(self.state_seq.map_or(0, |s| s.saturating_add(1)));
        Ok(value.sign(
            user,
            seq,
            now.saturating_add(MAILBOX_ITEM_LIFETIME.as_secs()),
        ))
    }
}

/// A depositor's next deposit for `recipient`: its messages there that
/// are still live and not deleted (from `mailbox`, as read), and `item`.
/// [`crate::limits::MAX_MAILBOX_ITEMS`] messages always fit one record (the envelope's
/// `from` is bounded for that, [`MAX_VOICEMAIL_FROM_LEN`]); beyond them,
/// the holders refuse the deposit and nothing is dropped here.
pub fn next_deposit(
    depositor: &SecretKey,
    recipient: &UserId,
    mailbox: &Mailbox,
    previous_seq: Option<u64>,
    item: MailboxItem,
    now: u64,
    now_micros: u64,
) -> Result<Record, RecordError> {
    let me = *depositor.public().as_bytes();
    let mut items: Vec<MailboxItem> = mailbox
        .items
        .iter()
        .filter(|(d, _)| *d == me)
        .map(|(_, i)| i.clone())
        .collect();
    items.push(item);
    let seq = now_micros.max(previous_seq.map_or(0, |s| s.saturating_add(1)));
    let expires = now.saturating_add(MAILBOX_ITEM_LIFETIME.as_secs());
    let value = MailboxValue::deposit(*recipient, items)?;
    let record = value.sign(depositor, seq, expires);
    if record.value.len() > crate::limits::MAX_RECORD_VALUE_LEN {
        return Err(RecordError::ValueTooLarge {
            len: record.value.len(),
        });
    }
    Ok(record)
}

/// The short id a user names a message by: the first 8 bytes of its id,
/// hex.
pub fn short_id(id: &[u8; 32]) -> String {
    hex::encode(id.get(..8).unwrap_or_default())
}

/// Writes `samples` (8 kHz, mono) as a standard WAV file: RIFF, PCM
/// format 1, 16 bits.
pub fn write_wav(out: &mut impl Write, samples: &[i16]) -> std::io::Result<()> {
    let data_len = u32::try_from(samples.len() * 2)
        .map_err(|_| std::io::Error::other("too many samples for a WAV file"))?;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data_len).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    header.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // byte rate
    header.extend_from_slice(&2u16.to_le_bytes()); // block align
    header.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_len.to_le_bytes());
    out.write_all(&header)?;
    let mut body = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        body.extend_from_slice(&s.to_le_bytes());
    }
    out.write_all(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::record::MailboxRefusal;
    use crate::overlay::store::{RecordStore, StoreError, StoreLimits};

    const NOW: u64 = 1_780_000_000;

    fn envelope(time: u64) -> Envelope {
        Envelope {
            from: "sip:alice@p2psip".into(),
            verified: true,
            time,
            duration_ms: 3000,
            codec: PCMU,
        }
    }

    fn policy() -> RecordPolicy {
        RecordPolicy::self_certifying("p2psip")
    }

    #[test]
    fn a_message_opens_only_with_the_recipients_key_and_all_its_chunks() {
        let bob = EncryptionSecretKey::generate();
        let mallory = EncryptionSecretKey::generate();
        let audio: Vec<u8> = (0..60 * 8000u32).map(|i| (i % 251) as u8).collect();
        let m = compose(&bob.public(), &envelope(NOW), &audio).unwrap();
        assert_eq!(usize::from(m.item.chunks), m.chunks.len());
        assert_eq!(m.chunks.len(), 30, "60 s of G.711 in 16 KiB chunks");
        let found: Vec<Option<Record>> = m.chunks.iter().cloned().map(Some).collect();
        assert_eq!(open_envelope(&bob, &m.item).unwrap(), envelope(NOW));
        assert_eq!(
            open_audio(&bob, &m.item, &found, &policy(), NOW).unwrap(),
            audio
        );
        // Another key opens nothing.
        assert!(open_envelope(&mallory, &m.item).is_err());
        assert!(open_audio(&mallory, &m.item, &found, &policy(), NOW).is_err());
        // A missing chunk, a chunk of another message, swapped chunks.
        let mut missing = found.clone();
        missing[7] = None;
        assert_eq!(
            open_audio(&bob, &m.item, &missing, &policy(), NOW),
            Err(VoicemailError::BadChunk { index: 7 })
        );
        let other = compose(&bob.public(), &envelope(NOW), &audio).unwrap();
        let mut foreign = found.clone();
        foreign[3] = Some(other.chunks[3].clone());
        assert_eq!(
            open_audio(&bob, &m.item, &foreign, &policy(), NOW),
            Err(VoicemailError::BadChunk { index: 3 })
        );
        let mut swapped = found.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            open_audio(&bob, &m.item, &swapped, &policy(), NOW),
            Err(VoicemailError::BadChunk { .. })
        ));
        // The envelope of one message does not open as another's.
        let mut moved = other.item.clone();
        moved.envelope = m.item.envelope.clone();
        assert!(open_envelope(&bob, &moved).is_err());
        // Empty and too long audio.
        assert_eq!(
            compose(&bob.public(), &envelope(NOW), &[]).unwrap_err(),
            VoicemailError::Empty
        );
        let huge = vec![0u8; MAX_MAILBOX_CHUNKS * MAX_MAILBOX_CHUNK_DATA];
        assert!(matches!(
            compose(&bob.public(), &envelope(NOW), &huge),
            Err(VoicemailError::TooLong(_))
        ));
    }

    #[test]
    fn the_wav_header_is_the_standard_one() {
        let mut out = Vec::new();
        write_wav(&mut out, &[0, 1, -1, i16::MAX]).unwrap();
        assert_eq!(out.len(), 44 + 8);
        assert_eq!(&out[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 36 + 8);
        assert_eq!(&out[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 8000);
        assert_eq!(u16::from_le_bytes(out[34..36].try_into().unwrap()), 16);
        assert_eq!(&out[36..40], b"data");
        assert_eq!(&out[44..46], &[0, 0]);
        assert_eq!(&out[50..52], &i16::MAX.to_le_bytes());
    }

    fn deposit(node: &SecretKey, to: &UserId, times: &[u64], seq: u64) -> Record {
        let bob = EncryptionSecretKey::generate();
        let items: Vec<MailboxItem> = times
            .iter()
            .map(|t| {
                compose(&bob.public(), &envelope(*t), &[1, 2, 3])
                    .unwrap()
                    .item
            })
            .collect();
        let newest = times.iter().copied().max().unwrap_or(NOW);
        MailboxValue::deposit(*to, items)
            .unwrap()
            .sign(node, seq, NOW.max(newest) + 3600)
    }

    #[test]
    fn a_mailboxs_holder_applies_its_bounds_and_only_the_owner_writes_its_state() {
        let bob = SecretKey::from_seed(&[2; 32]);
        let bob_id = bob.public().user_id();
        let mut store = RecordStore::new(StoreLimits::default());
        let put =
            |store: &mut RecordStore, r: &Record| store.put(r.verify(&policy(), NOW).unwrap(), NOW);
        // A depositor: five messages in the last hour, not a sixth.
        let n1 = SecretKey::from_seed(&[11; 32]);
        let five = deposit(&n1, &bob_id, &[NOW - 60; 5], 1);
        put(&mut store, &five).unwrap();
        let six = deposit(&n1, &bob_id, &[NOW - 60; 6], 2);
        assert_eq!(
            put(&mut store, &six),
            Err(StoreError::Mailbox(MailboxRefusal::SenderOverQuota))
        );
        // Older messages do not count against the hour.
        let old = deposit(
            &n1,
            &bob_id,
            &[NOW - 7200, NOW - 7200, NOW - 60, NOW - 60],
            3,
        );
        put(&mut store, &old).unwrap();
        // A message from the future is refused.
        let future = deposit(&n1, &bob_id, &[NOW + 3600], 4);
        assert_eq!(
            put(&mut store, &future),
            Err(StoreError::Mailbox(MailboxRefusal::FromTheFuture))
        );
        // Three depositors with live messages, not a fourth.
        for seed in [12u8, 13] {
            let n = SecretKey::from_seed(&[seed; 32]);
            put(&mut store, &deposit(&n, &bob_id, &[NOW - 60], 1)).unwrap();
        }
        let n4 = SecretKey::from_seed(&[14; 32]);
        let fourth = deposit(&n4, &bob_id, &[NOW - 60], 1);
        assert_eq!(
            put(&mut store, &fourth),
            Err(StoreError::Mailbox(MailboxRefusal::TooManyDepositors))
        );
        // The answer carries every depositor with live messages.
        let key = mailbox_key(&bob_id);
        let mut rng = rand::thread_rng();
        assert_eq!(
            store.answer(&key, RecordKind::Mailbox, NOW, &mut rng).len(),
            3
        );
        // Only bob writes bob's state; a deposit signed by bob is refused.
        let state = MailboxValue::state(bob_id, BTreeSet::new(), BTreeSet::new()).unwrap();
        assert!(state
            .sign(&n4, 1, NOW + 3600)
            .verify(&policy(), NOW)
            .is_err());
        assert!(deposit(&bob, &bob_id, &[NOW], 1)
            .verify(&policy(), NOW)
            .is_err());
        // Once bob deletes a depositor's messages, another may deposit.
        let mut n2_items = BTreeSet::new();
        let n2 = SecretKey::from_seed(&[12; 32]);
        let n2_deposit = store
            .get_owned(&key, RecordKind::Mailbox, n2.public().as_bytes(), NOW)
            .unwrap()
            .clone();
        if let Ok(MailboxValue::Deposit { items, .. }) = MailboxValue::decode(n2_deposit.value()) {
            n2_items.extend(items.iter().map(|i| i.id));
        }
        let state = MailboxValue::state(bob_id, n2_items, BTreeSet::new()).unwrap();
        put(&mut store, &state.sign(&bob, 1, NOW + 3600)).unwrap();
        put(&mut store, &fourth).unwrap();
        let answer = store.answer(&key, RecordKind::Mailbox, NOW, &mut rng);
        assert_eq!(answer.len(), 4, "the state and three live depositors");
        assert!(answer.iter().any(|r| r.owner() == bob.public().as_bytes()));
        assert!(!answer.iter().any(|r| r.owner() == n2.public().as_bytes()));
    }

    #[test]
    fn the_owner_reads_deletes_and_marks_heard_and_a_depositor_appends() {
        let bob = SecretKey::from_seed(&[2; 32]);
        let bob_id = bob.public().user_id();
        let bob_enc = EncryptionSecretKey::generate();
        let node = SecretKey::from_seed(&[30; 32]);
        let verify = |r: &Record| r.verify(&policy(), NOW).unwrap();
        let m1 = compose(&bob_enc.public(), &envelope(NOW - 100), &[1; 10]).unwrap();
        let m2 = compose(&bob_enc.public(), &envelope(NOW - 50), &[2; 10]).unwrap();
        let empty = Mailbox::default();
        let d1 = next_deposit(&node, &bob_id, &empty, None, m1.item.clone(), NOW, 7).unwrap();
        let read = Mailbox::read(&bob_id, &[verify(&d1)], NOW, &[]);
        assert_eq!(read.items.len(), 1);
        let d2 =
            next_deposit(&node, &bob_id, &read, Some(d1.seq), m2.item.clone(), NOW, 7).unwrap();
        assert!(d2.seq > d1.seq);
        let read = Mailbox::read(&bob_id, &[verify(&d2)], NOW, &[]);
        let ids: Vec<_> = read.items.iter().map(|(_, i)| i.id).collect();
        assert_eq!(ids, vec![m2.item.id, m1.item.id], "newest first");
        let short = short_id(&m1.item.id);
        assert_eq!(read.find(&short).unwrap().id, m1.item.id);
        assert!(read.find("00").is_err());
        assert!(read.find("zzzzzzzz").is_err());
        // Bob hears m1 then deletes m2.
        let s1 = read.next_state(&bob, None, &[m1.item.id], NOW, 1).unwrap();
        let read = Mailbox::read(&bob_id, &[verify(&d2), verify(&s1)], NOW, &[]);
        assert!(read.heard.contains(&m1.item.id));
        let s2 = read
            .next_state(&bob, Some(m2.item.id), &[], NOW, 1)
            .unwrap();
        assert!(s2.seq > s1.seq);
        let read = Mailbox::read(&bob_id, &[verify(&d2), verify(&s2)], NOW, &[]);
        let ids: Vec<_> = read.items.iter().map(|(_, i)| i.id).collect();
        assert_eq!(ids, vec![m1.item.id]);
        // Records for someone else's mailbox are not bob's.
        let carol = SecretKey::from_seed(&[3; 32]).public().user_id();
        let other = next_deposit(&node, &carol, &empty, None, m1.item.clone(), NOW, 7).unwrap();
        assert!(Mailbox::read(&bob_id, &[verify(&other)], NOW, &[])
            .items
            .is_empty());
        // The depositor's next deposit leaves out what bob deleted.
        let m3 = compose(&bob_enc.public(), &envelope(NOW), &[3; 10]).unwrap();
        let d3 = next_deposit(&node, &bob_id, &read, Some(d2.seq), m3.item, NOW, 7).unwrap();
        match MailboxValue::decode(&d3.value).unwrap() {
            MailboxValue::Deposit { items, .. } => {
                assert_eq!(items.len(), 2);
                assert!(!items.iter().any(|i| i.id == m2.item.id));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_copied_id_or_a_forged_verified_caller_does_not_fool_the_owner() {
        let bob = SecretKey::from_seed(&[2; 32]);
        let bob_id = bob.public().user_id();
        let bob_enc = EncryptionSecretKey::generate();
        let node = SecretKey::from_seed(&[30; 32]);
        let mallory = SecretKey::from_seed(&[31; 32]);
        let verify = |r: &Record| r.verify(&policy(), NOW).unwrap();
        let real = compose(&bob_enc.public(), &envelope(NOW - 100), &[1; 10]).unwrap();
        let honest = next_deposit(
            &node,
            &bob_id,
            &Mailbox::default(),
            None,
            real.item.clone(),
            NOW,
            7,
        )
        .unwrap();
        // mallory lists the same id with her own envelope, "verified", and
        // a message of her own claiming to be verified.
        let mut copy = real.item.clone();
        let lie = Envelope {
            from: "sip:boss@p2psip".into(),
            ..envelope(NOW - 100)
        };
        copy.envelope =
            sealing::seal(&bob_enc.public(), ENVELOPE_INFO, &copy.id, &lie.encode()).unwrap();
        let own = compose(&bob_enc.public(), &lie, &[2; 10]).unwrap();
        let forged = MailboxValue::deposit(bob_id, vec![copy, own.item.clone()])
            .unwrap()
            .sign(&mallory, 1, NOW + 3600);
        let trusted = [node.public().node_id()];
        let read = Mailbox::read(&bob_id, &[verify(&forged), verify(&honest)], NOW, &trusted);
        // One entry per id, the trusted depositor's: the id still names
        // one message, and its envelope is the real one.
        assert_eq!(read.items.len(), 2);
        let short = short_id(&real.item.id);
        let found = read.find(&short).unwrap();
        assert_eq!(open_envelope(&bob_enc, found).unwrap(), envelope(NOW - 100));
        for (depositor, item) in &read.items {
            let trusted = read.is_trusted(depositor);
            assert_eq!(trusted, item.id == real.item.id, "only the node is trusted");
        }
    }

    #[test]
    fn more_deletions_than_a_state_holds_forget_only_messages_gone() {
        let bob = SecretKey::from_seed(&[2; 32]);
        let bob_id = bob.public().user_id();
        let bob_enc = EncryptionSecretKey::generate();
        let verify = |r: &Record| r.verify(&policy(), NOW).unwrap();
        // 50 messages still listed, and 128 ids deleted long ago (gone).
        let node = SecretKey::from_seed(&[30; 32]);
        let items: Vec<MailboxItem> = (0..50)
            .map(|i| {
                compose(&bob_enc.public(), &envelope(NOW - 100 - i), &[1; 4])
                    .unwrap()
                    .item
            })
            .collect();
        let listed: Vec<[u8; 32]> = items.iter().map(|i| i.id).collect();
        let deposit = MailboxValue::deposit(bob_id, items)
            .unwrap()
            .sign(&node, 1, NOW + 3600);
        let gone: BTreeSet<[u8; 32]> = (0..128u8).map(|i| [i; 32]).collect();
        let mut deleted = gone.clone();
        deleted.extend(listed.iter().take(40).copied());
        // (A state holds at most 128 ids: start from 88 gone + 40 listed.)
        let deleted: BTreeSet<[u8; 32]> = deleted.into_iter().skip(40).collect();
        assert_eq!(deleted.len(), MAX_MAILBOX_STATE_IDS);
        let state = MailboxValue::state(bob_id, deleted.clone(), BTreeSet::new())
            .unwrap()
            .sign(&bob, 1, NOW + 3600);
        let read = Mailbox::read(&bob_id, &[verify(&deposit), verify(&state)], NOW, &[]);
        let still_deleted: Vec<[u8; 32]> = listed
            .iter()
            .filter(|id| deleted.contains(*id))
            .copied()
            .collect();
        assert!(!still_deleted.is_empty());
        // One more deletion: the ids of messages gone make room; every
        // listed message deleted before stays deleted.
        let next = read
            .next_state(&bob, Some(listed[45]), &[], NOW, 2)
            .unwrap();
        match MailboxValue::decode(&next.value).unwrap() {
            MailboxValue::State {
                deleted: now_deleted,
                ..
            } => {
                assert!(now_deleted.len() <= MAX_MAILBOX_STATE_IDS);
                assert!(now_deleted.contains(&listed[45]));
                for id in &still_deleted {
                    assert!(now_deleted.contains(id), "a deletion was undone");
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fifty_messages_with_the_longest_callers_fit_one_deposit() {
        let bob_id = SecretKey::from_seed(&[2; 32]).public().user_id();
        let bob_enc = EncryptionSecretKey::generate();
        let node = SecretKey::from_seed(&[30; 32]);
        let longest = Envelope {
            from: format!("sip:{}@p2psip", "x".repeat(MAX_VOICEMAIL_FROM_LEN - 11)),
            duration_ms: u64::MAX,
            time: u64::from(u32::MAX) * 2,
            ..envelope(NOW)
        };
        assert_eq!(longest.from.len(), MAX_VOICEMAIL_FROM_LEN);
        let mut mailbox = Mailbox::default();
        let me = *node.public().as_bytes();
        for _ in 0..crate::limits::MAX_MAILBOX_ITEMS - 1 {
            let item = compose(&bob_enc.public(), &longest, &[1; 4]).unwrap().item;
            mailbox.items.push((me, MailboxItem { time: NOW, ..item }));
        }
        let last = compose(&bob_enc.public(), &longest, &[1; 4]).unwrap().item;
        let record = next_deposit(&node, &bob_id, &mailbox, None, last, NOW, 1).unwrap();
        assert!(record.value.len() <= crate::limits::MAX_RECORD_VALUE_LEN);
        // A longer From is refused when a message is made.
        let too_long = Envelope {
            from: format!("{}x", longest.from),
            ..longest
        };
        assert!(compose(&bob_enc.public(), &too_long, &[1]).is_err());
    }

    #[test]
    fn fifty_messages_fill_a_mailbox() {
        let bob = SecretKey::from_seed(&[2; 32]);
        let bob_id = bob.public().user_id();
        let mut store = RecordStore::new(StoreLimits::default());
        let day = 24 * 3600;
        // Depositors of 20, 20 and 10 older messages: full at 50.
        for (seed, (count, spread)) in
            (20u8..).zip([(20u64, 2 * day), (20, 3 * day), (10, 4 * day)])
        {
            let n = SecretKey::from_seed(&[seed; 32]);
            let times: Vec<u64> = (0..count).map(|i| NOW - spread - i * 3600).collect();
            let r = deposit(&n, &bob_id, &times, 1);
            store.put(r.verify(&policy(), NOW).unwrap(), NOW).unwrap();
        }
        let n = SecretKey::from_seed(&[20; 32]);
        let times: Vec<u64> = (0..21).map(|i| NOW - 2 * day - i * 3600).collect();
        let more = deposit(&n, &bob_id, &times, 2);
        assert_eq!(
            store.put(more.verify(&policy(), NOW).unwrap(), NOW),
            Err(StoreError::Mailbox(MailboxRefusal::TooManyItems))
        );
        // After 30 days the messages no longer count.
        let later = NOW + 30 * day;
        let fresh = deposit(&n, &bob_id, &[later - 10], 3);
        let v = fresh.verify(&policy(), later).unwrap();
        assert!(store.put(v, later).is_ok());
    }
}
