//! What this node observed a peer do: the only input of the reputation
//! table, and the typed mappings from the faults other modules report.

use crate::overlay::lookup::FaultKind;
use crate::overlay::record::RecordError;
use crate::wire::WireError;

/// An answer that was provably wrong: any honest node of the overlay,
/// given the same bytes, reaches the same verdict. An honest
/// implementation never produces one, whatever its clock or load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// A record that fails verification for a reason that proves forgery
    /// or corruption (bad signature, wrong key, not the owner, malformed
    /// value): see [`RecordError::is_provable_misbehaviour`].
    BadRecord,
    /// A contact whose id fails the admission puzzle.
    InvalidContact,
    /// More contacts than were asked for.
    TooManyContacts,
}

/// One observation of a peer, made by this node first-hand over an
/// authenticated connection. Report one per event: an answer is
/// [`Evidence::Answered`], [`Evidence::Verified`],
/// [`Evidence::Unverifiable`] or [`Evidence::Misbehaved`], never several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Evidence {
    /// The peer was heard from (it connected, or sent a request): refreshes
    /// its last-seen time; no effect on its score.
    Seen,
    /// A request to the peer was answered and the answer had nothing to
    /// verify (a Pong, a Stored acknowledgement).
    Answered,
    /// A request was answered and the answer's content verified (records
    /// with good signatures, valid contacts closer to the target).
    Verified,
    /// A request was answered, but its content was refused for a reason
    /// that does not prove misbehaviour (an expired record that may be a
    /// matter of clocks, an unknown record kind from a newer version).
    /// Counts as an answer, earns no credit, costs nothing.
    Unverifiable,
    /// A request timed out, was refused, or its answer never arrived whole.
    Unresponsive,
    /// An answer that was provably wrong.
    Misbehaved(Misbehaviour),
    /// A malformed or oversized message (broken framing or encoding).
    /// Means an immediate disconnect and a ban.
    ProtocolViolation,
    /// One request refused by the rate limiter.
    RateViolation,
}

impl Evidence {
    /// The evidence a refused record is: misbehaviour only when the refusal
    /// proves it ([`RecordError::is_provable_misbehaviour`]), otherwise an
    /// unverifiable answer that costs the peer nothing.
    pub fn from_record_error(error: &RecordError) -> Self {
        if error.is_provable_misbehaviour() {
            Evidence::Misbehaved(Misbehaviour::BadRecord)
        } else {
            Evidence::Unverifiable
        }
    }

    /// The evidence that bytes a peer sent were refused by the wire layer:
    /// a protocol violation when the framing or encoding is broken
    /// ([`WireError::is_protocol_violation`]); `None` for a message type
    /// this node merely does not know (a newer version), which is no fault.
    pub fn from_wire_error(error: &WireError) -> Option<Self> {
        error
            .is_protocol_violation()
            .then_some(Evidence::ProtocolViolation)
    }

    /// Whether this evidence adds to the peer's misbehaviour load (and so
    /// can trigger a ban).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            Evidence::Misbehaved(_) | Evidence::ProtocolViolation | Evidence::RateViolation
        )
    }
}

impl From<FaultKind> for Evidence {
    fn from(kind: FaultKind) -> Self {
        // Exhaustive on purpose: a new fault kind must decide its weight here.
        match kind {
            FaultKind::InvalidContact => Evidence::Misbehaved(Misbehaviour::InvalidContact),
            FaultKind::TooManyContacts => Evidence::Misbehaved(Misbehaviour::TooManyContacts),
            FaultKind::Unresponsive => Evidence::Unresponsive,
        }
    }
}

impl From<&RecordError> for Evidence {
    fn from(error: &RecordError) -> Self {
        Evidence::from_record_error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_faults_map_to_evidence() {
        assert_eq!(
            Evidence::from(FaultKind::InvalidContact),
            Evidence::Misbehaved(Misbehaviour::InvalidContact)
        );
        assert_eq!(
            Evidence::from(FaultKind::TooManyContacts),
            Evidence::Misbehaved(Misbehaviour::TooManyContacts)
        );
        assert_eq!(
            Evidence::from(FaultKind::Unresponsive),
            Evidence::Unresponsive
        );
    }

    #[test]
    fn only_provable_record_errors_are_misbehaviour() {
        assert_eq!(
            Evidence::from_record_error(&RecordError::BadSignature),
            Evidence::Misbehaved(Misbehaviour::BadRecord)
        );
        assert_eq!(
            Evidence::from(&RecordError::WrongKey),
            Evidence::Misbehaved(Misbehaviour::BadRecord)
        );
        // A matter of clocks or versions: no fault.
        let expired = RecordError::Expired {
            expires: 10,
            now: 20,
        };
        assert!(!expired.is_provable_misbehaviour());
        assert_eq!(Evidence::from(&expired), Evidence::Unverifiable);
        assert_eq!(
            Evidence::from(&RecordError::UnknownKind(99)),
            Evidence::Unverifiable
        );
        assert!(!Evidence::Unverifiable.is_misbehaviour());
    }

    #[test]
    fn wire_errors_map_to_protocol_violations() {
        assert_eq!(
            Evidence::from_wire_error(&WireError::Truncated),
            Some(Evidence::ProtocolViolation)
        );
        assert_eq!(
            Evidence::from_wire_error(&WireError::FrameTooLarge {
                len: 1 << 20,
                max: 1
            }),
            Some(Evidence::ProtocolViolation)
        );
        assert_eq!(
            Evidence::from_wire_error(&WireError::UnknownMessageType(77)),
            None
        );
    }
}
