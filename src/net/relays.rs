//! The node's part in the relay directory (issue 12): a relay publishes
//! its signed descriptor under its two directory keys and withdraws it
//! when it stops; any node reads every directory key to learn the
//! relays, which path choice ([`crate::relay::path`]) then picks from.
//! The records and their rules are [`crate::overlay::record`]'s (kind
//! 3, `docs/protocol.md` §7.8); lookups of directory keys run the
//! overlay's usual defences (disjoint paths, the density check).

use super::dialer::Dialer;
use super::overlay::OverlayService;
use crate::identity::{NodeId, SecretKey};
use crate::overlay::record::{
    relay_directory_keys, sign_relay_descriptors, withdraw_relay_descriptors, Record, RecordError,
    RecordKind, RelayOffer,
};
use crate::relay::path::VerifiedRelay;
use std::collections::HashMap;

/// Publishes `offer` as this relay's descriptor (sequence number `seq`,
/// higher than any before) under each of its directory keys; returns how
/// many nodes stored each record, in key order.
pub async fn publish_descriptor(
    overlay: &OverlayService,
    dialer: &Dialer,
    owner: &SecretKey,
    node_cert: Option<Vec<u8>>,
    offer: RelayOffer,
    seq: u64,
    now: u64,
) -> Result<Vec<usize>, RecordError> {
    let records =
        sign_relay_descriptors(owner, overlay.record_policy(), node_cert, offer, seq, now)?;
    Ok(publish_all(overlay, dialer, &records).await)
}

/// Replaces this relay's descriptor by a withdrawn one (sequence number
/// `seq`); returns how many nodes stored each record.
pub async fn withdraw_descriptor(
    overlay: &OverlayService,
    dialer: &Dialer,
    owner: &SecretKey,
    node_cert: Option<Vec<u8>>,
    seq: u64,
    now: u64,
) -> Result<Vec<usize>, RecordError> {
    let records = withdraw_relay_descriptors(owner, overlay.record_policy(), node_cert, seq, now)?;
    Ok(publish_all(overlay, dialer, &records).await)
}

async fn publish_all(overlay: &OverlayService, dialer: &Dialer, records: &[Record]) -> Vec<usize> {
    let mut acks = Vec::with_capacity(records.len());
    for record in records {
        acks.push(overlay.publish(dialer, record).await);
    }
    acks
}

/// The relays the overlay's directory names now: every directory key
/// read (what this node holds and what a lookup finds), each record
/// verified, withdrawn and expired ones left out, one descriptor per
/// relay (its highest sequence number).
pub async fn find_relays(
    overlay: &OverlayService,
    dialer: &Dialer,
    now: u64,
) -> Vec<VerifiedRelay> {
    let mut newest: HashMap<NodeId, (u64, Option<VerifiedRelay>)> = HashMap::new();
    for key in relay_directory_keys(&overlay.params().name) {
        let mut encoded = overlay.local_records(&key, RecordKind::RelayDescriptor);
        encoded.extend(
            overlay
                .lookup(dialer, key, Some(RecordKind::RelayDescriptor))
                .await
                .records,
        );
        for bytes in encoded {
            let Ok(record) =
                Record::decode(&bytes).and_then(|r| r.verify(overlay.record_policy(), now))
            else {
                continue;
            };
            if record.key() != &key || record.kind() != RecordKind::RelayDescriptor {
                continue;
            }
            let seq = record.seq();
            // A withdrawn descriptor hides the older offers of its relay.
            let relay = VerifiedRelay::from_record(&record);
            let id = match (&relay, record.relay_descriptor()) {
                (Some(r), _) => *r.node_id(),
                (None, Some(d)) => *d.node_id(),
                (None, None) => continue,
            };
            if newest.get(&id).is_none_or(|(s, _)| *s < seq) {
                newest.insert(id, (seq, relay));
            }
        }
    }
    let mut relays: Vec<VerifiedRelay> = newest.into_values().filter_map(|(_, r)| r).collect();
    relays.sort_by_key(|r| *r.node_id());
    relays
}
