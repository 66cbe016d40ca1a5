//! SIP registrations (kind 1): an address-of-record mapped to the nodes
//! (devices) its user has bound, with their contacts; only the user who
//! owns the AOR can write it.

use super::{NotOwnerReason, Record, RecordError, RecordKind, RecordPolicy, RegistrationError};
use crate::binding::Binding;
use crate::identity::{aor_key, IdKind, NodeId, PublicKey, SecretKey, UserId};
use crate::limits::{
    MAX_AOR_LEN, MAX_CONTACTS_PER_ENTRY, MAX_CONTACT_LEN, MAX_RECORD_VALUE_LEN,
    MAX_REGISTRATION_ENTRIES,
};
use crate::overlay::key::Key;
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;

/// The AOR a user owns in a self-certifying overlay:
/// `sip:<64 lowercase hex of user_id>@<overlay_name>`.
pub fn self_certifying_aor(user_id: &UserId, overlay_name: &str) -> String {
    format!("sip:{user_id}@{overlay_name}")
}

/// One device of a registration: `[node_id: bstr(32), contacts: [* tstr],
/// expires: uint, binding: bstr]`, where `binding` is the encoding of the
/// owner's [`Binding`] for that node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationEntry {
    /// The node (device) through which the AOR is reached.
    pub node_id: NodeId,
    /// SIP contact URIs at that node (at most [`MAX_CONTACTS_PER_ENTRY`],
    /// each at most [`MAX_CONTACT_LEN`] bytes).
    pub contacts: Vec<String>,
    /// End of this entry, unix seconds; at most the record's and the
    /// binding's expiry.
    pub expires: u64,
    /// The owner's binding of the node.
    pub binding: Binding,
}

impl RegistrationEntry {
    /// An entry for the node `binding` vouches for.
    pub fn new(binding: Binding, contacts: Vec<String>, expires: u64) -> Self {
        Self {
            node_id: binding.node_id,
            contacts,
            expires,
            binding,
        }
    }

    /// Whether the entry is live at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        now < self.expires
    }

    fn check_bounds(&self) -> Result<(), RegistrationError> {
        if self.contacts.len() > MAX_CONTACTS_PER_ENTRY {
            return Err(RegistrationError::TooManyContacts {
                count: self.contacts.len() as u64,
            });
        }
        if self.contacts.iter().any(|c| c.len() > MAX_CONTACT_LEN) {
            return Err(RegistrationError::ContactTooLong);
        }
        Ok(())
    }
}

/// The value of a `SipRegistration` record (RFC 7904 semantics):
/// `[aor: tstr, user_cert: bstr / null, entries: [* entry]]`, the entries
/// a dictionary keyed by node id, sorted by it.
///
/// Entries whose expiry has passed are kept in the encoding (the owner
/// signed them) but are not live: readers use [`Registration::live_entries`].
/// An empty entry list is how an owner unregisters (publishing it with a
/// higher sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub(super) aor: String,
    pub(super) user_cert: Option<Vec<u8>>,
    pub(super) entries: Vec<RegistrationEntry>,
}

impl Registration {
    /// An empty registration of `aor`, with the owner's user certificate
    /// (DER) in an enrolled overlay, `None` in a self-certifying one.
    pub fn new(aor: &str, user_cert: Option<Vec<u8>>) -> Result<Self, RegistrationError> {
        if aor.len() > MAX_AOR_LEN {
            return Err(RegistrationError::AorTooLong { len: aor.len() });
        }
        Ok(Self {
            aor: aor.to_owned(),
            user_cert,
            entries: Vec::new(),
        })
    }

    /// An empty registration of the self-certifying AOR of `user_id` in the
    /// overlay `overlay_name`.
    pub fn self_certifying(
        user_id: &UserId,
        overlay_name: &str,
    ) -> Result<Self, RegistrationError> {
        Self::new(&self_certifying_aor(user_id, overlay_name), None)
    }

    /// Adds `entry`, replacing any entry for the same node, keeping the
    /// entries sorted. Checks the bounds on contacts and entries (not the
    /// binding: [`Record::verify`] does).
    pub fn upsert(&mut self, entry: RegistrationEntry) -> Result<(), RegistrationError> {
        entry.check_bounds()?;
        match self
            .entries
            .binary_search_by(|e| e.node_id.cmp(&entry.node_id))
        {
            Ok(i) => {
                if let Some(slot) = self.entries.get_mut(i) {
                    *slot = entry;
                }
            }
            Err(i) => {
                if self.entries.len() >= MAX_REGISTRATION_ENTRIES {
                    return Err(RegistrationError::TooManyEntries {
                        count: self.entries.len() as u64 + 1,
                    });
                }
                self.entries.insert(i, entry);
            }
        }
        Ok(())
    }

    /// Removes the entry of `node_id`.
    pub fn remove(&mut self, node_id: &NodeId) -> Option<RegistrationEntry> {
        let i = self
            .entries
            .binary_search_by(|e| e.node_id.cmp(node_id))
            .ok()?;
        Some(self.entries.remove(i))
    }

    /// Drops the entries that are not live at `now`.
    pub fn prune(&mut self, now: u64) {
        self.entries.retain(|e| e.is_live(now));
    }

    /// The address-of-record.
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// The owner's user certificate (DER), in an enrolled overlay.
    pub fn user_cert(&self) -> Option<&[u8]> {
        self.user_cert.as_deref()
    }

    /// Every entry, live or lapsed, sorted by node id.
    pub fn entries(&self) -> &[RegistrationEntry] {
        &self.entries
    }

    /// The entries live at `now`.
    pub fn live_entries(&self, now: u64) -> impl Iterator<Item = &RegistrationEntry> {
        self.entries.iter().filter(move |e| e.is_live(now))
    }

    /// The overlay key of the AOR.
    pub fn key(&self) -> Key {
        Key(aor_key(&self.aor))
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = self.write(&mut e);
        e.into_writer()
    }

    fn write(
        &self,
        e: &mut minicbor::Encoder<Vec<u8>>,
    ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        e.array(3)?.str(&self.aor)?;
        match &self.user_cert {
            Some(der) => e.bytes(der)?,
            None => e.null()?,
        };
        e.array(self.entries.len() as u64)?;
        for entry in &self.entries {
            e.array(4)?
                .bytes(entry.node_id.as_bytes())?
                .array(entry.contacts.len() as u64)?;
            for contact in &entry.contacts {
                e.str(contact)?;
            }
            e.u64(entry.expires)?.bytes(&entry.binding.encode())?;
        }
        Ok(())
    }

    /// Decodes the canonical CBOR encoding and checks its structure:
    /// bounds, entries sorted by node id without duplicates, each binding
    /// a well-formed binding. Ownership, key and binding signatures are
    /// checked by [`Record::verify`].
    pub fn decode(input: &[u8]) -> Result<Self, RegistrationError> {
        let malformed = RegistrationError::Malformed;
        // The head `[aor, user_cert / null, ...` is read with minicbor's
        // decoder directly, because `wire::cbor::Reader` has no optional
        // item; the rest (the entries) with the strict reader, from where
        // the head ended. Both borrow from the input and allocate nothing
        // from a declared length.
        let mut d = minicbor::Decoder::new(input);
        let arity = d
            .array()
            .map_err(from_decode)
            .map_err(malformed)?
            .ok_or(RegistrationError::Malformed(WireError::Indefinite))?;
        if arity != 3 {
            return Err(malformed(WireError::WrongArity {
                message_type: RecordKind::SipRegistration.to_u64(),
                expected: 3,
                found: arity,
            }));
        }
        let aor = d.str().map_err(from_decode).map_err(malformed)?;
        if aor.len() > MAX_AOR_LEN {
            return Err(RegistrationError::AorTooLong { len: aor.len() });
        }
        let user_cert = match d.datatype().map_err(from_decode).map_err(malformed)? {
            minicbor::data::Type::Null => {
                d.null().map_err(from_decode).map_err(malformed)?;
                None
            }
            _ => Some(d.bytes().map_err(from_decode).map_err(malformed)?.to_vec()),
        };
        let rest = input.get(d.position()..).unwrap_or_default();
        let mut r = Reader::new(rest);
        let count = r.array().map_err(malformed)?;
        if count > MAX_REGISTRATION_ENTRIES as u64 {
            return Err(RegistrationError::TooManyEntries { count });
        }
        let mut entries: Vec<RegistrationEntry> = Vec::new();
        for _ in 0..count {
            let entry = decode_entry(&mut r)?;
            if let Some(last) = entries.last() {
                if entry.node_id <= last.node_id {
                    return Err(RegistrationError::EntriesNotSorted);
                }
            }
            entries.push(entry);
        }
        r.finish().map_err(malformed)?;
        let reg = Self {
            aor: aor.to_owned(),
            user_cert,
            entries,
        };
        require_canonical(input, &reg.encode()).map_err(malformed)?;
        Ok(reg)
    }

    /// `owner` signs this registration as a `SipRegistration` record under
    /// the AOR's key. Fails if the encoding exceeds
    /// [`MAX_RECORD_VALUE_LEN`].
    pub fn sign(&self, owner: &SecretKey, seq: u64, expires: u64) -> Result<Record, RecordError> {
        let value = self.encode();
        if value.len() > MAX_RECORD_VALUE_LEN {
            return Err(RecordError::ValueTooLarge { len: value.len() });
        }
        Ok(Record::sign(
            owner,
            RecordKind::SipRegistration,
            self.key(),
            seq,
            expires,
            value,
        ))
    }
}

fn from_decode(e: minicbor::decode::Error) -> WireError {
    if e.is_end_of_input() {
        WireError::Truncated
    } else {
        WireError::Malformed(e.to_string())
    }
}

fn decode_entry(r: &mut Reader<'_>) -> Result<RegistrationEntry, RegistrationError> {
    let malformed = RegistrationError::Malformed;
    let arity = r.array().map_err(malformed)?;
    if arity != 4 {
        return Err(malformed(WireError::WrongArity {
            message_type: RecordKind::SipRegistration.to_u64(),
            expected: 4,
            found: arity,
        }));
    }
    let node_id = NodeId::from_bytes(
        r.bytes_exact("registration.entry.node_id")
            .map_err(malformed)?,
    );
    let count = r.array().map_err(malformed)?;
    if count > MAX_CONTACTS_PER_ENTRY as u64 {
        return Err(RegistrationError::TooManyContacts { count });
    }
    let mut contacts = Vec::new();
    for _ in 0..count {
        let contact = r
            .str("registration.entry.contact", MAX_CONTACT_LEN)
            .map_err(|e| match e {
                WireError::FieldOutOfRange(_) => RegistrationError::ContactTooLong,
                e => malformed(e),
            })?;
        contacts.push(contact.to_owned());
    }
    let expires = r.u64().map_err(malformed)?;
    let binding_bytes = r.bytes().map_err(malformed)?;
    let binding = Binding::decode(binding_bytes)
        .map_err(|error| RegistrationError::BadBinding { node_id, error })?;
    Ok(RegistrationEntry {
        node_id,
        contacts,
        expires,
        binding,
    })
}

/// The rule of kind 1, for a record whose signature verified at `now`:
/// the value is a registration under its AOR's key; the owner owns the AOR
/// (by its id in a self-certifying overlay, by a user certificate listing
/// it in an enrolled one); every entry is bound by the owner to its node,
/// within the record's and the binding's lifetimes.
pub(super) fn check(
    record: &Record,
    owner: &PublicKey,
    policy: &RecordPolicy,
    now: u64,
) -> Result<(), RecordError> {
    let reg = Registration::decode(&record.value)?;
    if record.key != reg.key() {
        return Err(RecordError::WrongKey);
    }
    match &policy.enrolled {
        None => {
            if reg.user_cert.is_some() {
                return Err(RecordError::NotOwner(NotOwnerReason::CertificateNotAllowed));
            }
            if reg.aor != self_certifying_aor(&owner.user_id(), &policy.overlay_name) {
                return Err(RecordError::NotOwner(NotOwnerReason::AorNotSelfCertifying));
            }
        }
        Some(certificates) => {
            let der = reg
                .user_cert
                .as_deref()
                .ok_or(RecordError::NotOwner(NotOwnerReason::CertificateRequired))?;
            let cert = certificates
                .verify(der, i64::try_from(now).unwrap_or(i64::MAX))
                .map_err(RegistrationError::Certificate)?;
            if cert.kind != IdKind::User {
                return Err(RecordError::NotOwner(NotOwnerReason::NotAUserCertificate));
            }
            if cert.public_key != *owner {
                return Err(RecordError::NotOwner(
                    NotOwnerReason::CertificateKeyMismatch,
                ));
            }
            if !cert.sip_names.contains(&reg.aor) {
                return Err(RecordError::NotOwner(NotOwnerReason::AorNotInCertificate));
            }
            if i128::from(record.expires) > i128::from(cert.not_after) {
                return Err(RegistrationError::OutlivesCertificate {
                    expires: record.expires,
                    not_after: cert.not_after,
                }
                .into());
            }
        }
    }
    for entry in &reg.entries {
        let node_id = entry.node_id;
        if entry.binding.user_key != record.owner {
            return Err(RegistrationError::BindingNotOwners { node_id }.into());
        }
        if entry.binding.node_id != node_id {
            return Err(RegistrationError::BindingForAnotherNode { node_id }.into());
        }
        if entry.expires > record.expires {
            return Err(RegistrationError::EntryOutlivesRecord { node_id }.into());
        }
        if entry.expires > entry.binding.expires {
            return Err(RegistrationError::EntryOutlivesBinding { node_id }.into());
        }
        // A live entry's binding must be valid now. A lapsed entry
        // (expires <= now) is dead data that a reader skips; its binding
        // must still verify, at the last second the entry was live, so
        // that a record does not become invalid as a whole when one of
        // its entries lapses while stored.
        let at = now.min(entry.expires.saturating_sub(1));
        entry
            .binding
            .verify(at)
            .map_err(|error| RegistrationError::BadBinding { node_id, error })?;
    }
    Ok(())
}

/// What a device (a node) changes in its user's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChange {
    /// Bind the node until `expires` (unix seconds), with these contacts.
    Bind {
        /// SIP contact URIs published for the node (may be empty: the
        /// node id is the contact).
        contacts: Vec<String>,
        /// End of the entry, unix seconds.
        expires: u64,
    },
    /// Remove the node's entry (the user is no longer reached there).
    Unbind,
}

/// Why [`next_registration`] could not build the next record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The registration found under the AOR is another user's.
    #[error("registered by another user ({0}); only its owner can change it")]
    OtherOwner(String),
    /// The registration found under the AOR does not decode.
    #[error("the registration found is unreadable: {0}")]
    BadPrevious(RegistrationError),
    /// The new registration breaks a bound.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// The new record breaks a bound.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// The next registration record of `aor` after `change` by the node
/// `node_id`, signed by `user`: the one decision, shared by the CLI's
/// `register` and the SIP registrar, of what a device's update keeps.
///
/// Kept from `previous` (the newest record found, if any): the other
/// devices' live entries whose binding is `user`'s and valid at `now`;
/// the node's own entry is replaced or removed. The sequence number is
/// above the previous one and at least `now_micros` (a clock-based number
/// supersedes a record this node never saw). The record lasts as long as
/// its longest entry; with no entry left (the last device unbound), as
/// long as the record it replaces, so that it supersedes it everywhere,
/// and at least a minute.
#[allow(clippy::too_many_arguments)]
pub fn next_registration(
    previous: Option<&Record>,
    aor: &str,
    user_cert: Option<Vec<u8>>,
    user: &SecretKey,
    node_id: NodeId,
    change: DeviceChange,
    now: u64,
    now_micros: u64,
) -> Result<(Record, Registration), UpdateError> {
    let user_key = *user.public().as_bytes();
    let mut registration = Registration::new(aor, user_cert)?;
    if let Some(previous) = previous {
        if previous.owner != user_key {
            let owner = PublicKey::from_bytes(&previous.owner).map_or_else(
                |_| "a key that is not Ed25519".to_owned(),
                |k| k.user_id().to_string(),
            );
            return Err(UpdateError::OtherOwner(owner));
        }
        let old = Registration::decode(&previous.value).map_err(UpdateError::BadPrevious)?;
        for entry in old
            .live_entries(now)
            .filter(|e| e.node_id != node_id)
            .filter(|e| e.binding.user_key == user_key && e.binding.verify(now).is_ok())
        {
            registration.upsert(entry.clone())?;
        }
    }
    if let DeviceChange::Bind { contacts, expires } = change {
        let binding = Binding::sign(user, node_id, now, expires);
        registration.upsert(RegistrationEntry::new(binding, contacts, expires))?;
    }
    let record_expires = registration
        .entries()
        .iter()
        .map(|e| e.expires)
        .max()
        .or(previous.map(|p| p.expires))
        .unwrap_or(0)
        .max(now.saturating_add(60));
    let seq = previous.map_or(now_micros, |p| p.seq.saturating_add(1).max(now_micros));
    let record = registration.sign(user, seq, record_expires)?;
    Ok((record, registration))
}
