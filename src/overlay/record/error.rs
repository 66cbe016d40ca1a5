//! Why a record, or the registration it carries, was refused, and which
//! refusals prove that the sender misbehaved.

use crate::binding::BindingError;
use crate::identity::{CertError, NodeId};
use crate::limits::{
    MAX_AOR_LEN, MAX_CONTACTS_PER_ENTRY, MAX_CONTACT_LEN, MAX_RECORD_VALUE_LEN,
    MAX_REGISTRATION_ENTRIES,
};
use crate::wire::WireError;

/// Why the owner of a registration does not own its address-of-record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotOwnerReason {
    /// Self-certifying overlay: the AOR is not `sip:<UserId(owner)>@<overlay>`.
    #[error("in a self-certifying overlay the AOR must be sip:<owner's user id>@<overlay name>")]
    AorNotSelfCertifying,
    /// Self-certifying overlay: a user certificate is present.
    #[error("a registration in a self-certifying overlay carries no user certificate")]
    CertificateNotAllowed,
    /// Enrolled overlay: no user certificate.
    #[error("a registration in an enrolled overlay needs the owner's user certificate")]
    CertificateRequired,
    /// Enrolled overlay: the certificate is a node's.
    #[error("the certificate is not a user certificate")]
    NotAUserCertificate,
    /// Enrolled overlay: the certificate is for another key.
    #[error("the user certificate is for another key than the record's owner")]
    CertificateKeyMismatch,
    /// Enrolled overlay: the certificate does not list the AOR.
    #[error("the user certificate does not list the AOR")]
    AorNotInCertificate,
}

/// Why a registration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The value is not the registration schema.
    #[error("malformed registration: {0}")]
    Malformed(WireError),
    /// The AOR is longer than [`MAX_AOR_LEN`].
    #[error("AOR of {len} bytes exceeds the maximum of {MAX_AOR_LEN}")]
    AorTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// More entries than [`MAX_REGISTRATION_ENTRIES`].
    #[error("{count} entries exceed the maximum of {MAX_REGISTRATION_ENTRIES}")]
    TooManyEntries {
        /// The entries present (or declared).
        count: u64,
    },
    /// An entry has more contacts than [`MAX_CONTACTS_PER_ENTRY`].
    #[error("{count} contacts exceed the maximum of {MAX_CONTACTS_PER_ENTRY}")]
    TooManyContacts {
        /// The contacts present (or declared).
        count: u64,
    },
    /// A contact is longer than [`MAX_CONTACT_LEN`].
    #[error("a contact exceeds {MAX_CONTACT_LEN} bytes")]
    ContactTooLong,
    /// Entries are not in strictly increasing `node_id` order (unsorted,
    /// or a node listed twice).
    #[error("registration entries are not sorted by node id without duplicates")]
    EntriesNotSorted,
    /// An entry's binding is not a valid binding, or is not valid when it
    /// must be.
    #[error("binding of entry {node_id}: {error}")]
    BadBinding {
        /// The entry.
        node_id: NodeId,
        /// What is wrong with its binding.
        error: BindingError,
    },
    /// An entry's binding was signed by another user than the record's owner.
    #[error("the binding of entry {node_id} is not the owner's")]
    BindingNotOwners {
        /// The entry.
        node_id: NodeId,
    },
    /// An entry's binding vouches for another node than the entry's.
    #[error("the binding of entry {node_id} vouches for another node")]
    BindingForAnotherNode {
        /// The entry.
        node_id: NodeId,
    },
    /// An entry expires after the record.
    #[error("entry {node_id} expires after its record")]
    EntryOutlivesRecord {
        /// The entry.
        node_id: NodeId,
    },
    /// An entry expires after its binding.
    #[error("entry {node_id} expires after its binding")]
    EntryOutlivesBinding {
        /// The entry.
        node_id: NodeId,
    },
    /// Enrolled overlay: the user certificate does not verify.
    #[error("user certificate refused: {0}")]
    Certificate(CertError),
    /// Enrolled overlay: the record expires after the user certificate (or
    /// its anchor) does.
    #[error("the registration expires at {expires}, after its user certificate ({not_after})")]
    OutlivesCertificate {
        /// The record's expiry, unix seconds.
        expires: u64,
        /// The end of the certificate's verdict window, unix seconds.
        not_after: i64,
    },
}

impl RegistrationError {
    /// Whether the refusal holds whatever the verifier's clock and trust
    /// anchors (see [`RecordError::is_provable_misbehaviour`]).
    pub fn is_provable_misbehaviour(&self) -> bool {
        match self {
            RegistrationError::BadBinding { error, .. } => !matches!(
                error,
                BindingError::NotYetValid { .. } | BindingError::Expired { .. }
            ),
            RegistrationError::Certificate(_) | RegistrationError::OutlivesCertificate { .. } => {
                false
            }
            _ => true,
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a record under the CBOR profile.
    #[error("malformed record: {0}")]
    Wire(#[from] WireError),
    /// A record version this implementation does not know.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u64),
    /// A record kind this implementation does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u64),
    /// The value is longer than [`MAX_RECORD_VALUE_LEN`].
    #[error("record value of {len} bytes exceeds the maximum of {MAX_RECORD_VALUE_LEN}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
    },
    /// The owner is not a valid Ed25519 public key.
    #[error("the record's owner is not a valid Ed25519 key")]
    InvalidOwnerKey,
    /// The signature does not verify under the owner's key.
    #[error("bad record signature")]
    BadSignature,
    /// The record has expired.
    #[error("record expired at {expires} (unix time), now is {now}")]
    Expired {
        /// The record's expiry, unix seconds.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// The record claims a lifetime beyond
    /// [`MAX_RECORD_LIFETIME`](crate::limits::MAX_RECORD_LIFETIME).
    #[error("record expires at {expires} (unix time), too far after now ({now})")]
    LifetimeTooLong {
        /// The record's expiry, unix seconds.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// The key is not the key the kind's rule derives from the owner and
    /// the value.
    #[error("the record's key is not the key its kind derives from its owner and value")]
    WrongKey,
    /// The value of an owner value record is not the schema.
    #[error("malformed owner value: {0}")]
    MalformedValue(WireError),
    /// The owner does not own the address-of-record it registers.
    #[error("the owner does not own the AOR: {0}")]
    NotOwner(NotOwnerReason),
    /// The registration value breaks a rule.
    #[error("invalid registration: {0}")]
    BadRegistration(RegistrationError),
    /// The relay descriptor value breaks a rule.
    #[error("invalid relay descriptor: {0}")]
    BadRelayDescriptor(super::RelayDescriptorError),
}

impl RecordError {
    /// Whether the refusal proves misbehaviour: any honest node of the same
    /// overlay reaches the same verdict from the record's bytes alone,
    /// whatever its clock and (in an enrolled overlay) its exact set of
    /// trust anchors. A forged or malformed record, or one whose owner
    /// wrote where it may not, is provable; an expired record, an unknown
    /// kind or version, or a certificate or binding refused for its
    /// validity window or issuer may be an honest peer's staleness, clock
    /// skew or newer version, and is not. Reputation must only punish the
    /// former.
    pub fn is_provable_misbehaviour(&self) -> bool {
        match self {
            RecordError::Wire(_)
            | RecordError::ValueTooLarge { .. }
            | RecordError::InvalidOwnerKey
            | RecordError::BadSignature
            | RecordError::WrongKey
            | RecordError::MalformedValue(_)
            | RecordError::NotOwner(_) => true,
            RecordError::BadRegistration(e) => e.is_provable_misbehaviour(),
            RecordError::BadRelayDescriptor(e) => e.is_provable_misbehaviour(),
            RecordError::UnsupportedVersion(_)
            | RecordError::UnknownKind(_)
            | RecordError::Expired { .. }
            | RecordError::LifetimeTooLong { .. } => false,
        }
    }
}

impl From<RegistrationError> for RecordError {
    fn from(e: RegistrationError) -> Self {
        RecordError::BadRegistration(e)
    }
}
