//! A relay's onion keys over time: the current one, which its descriptor
//! advertises, and the one it replaced, still answered during the
//! rotation overlap so that a circuit begun from an older descriptor
//! still completes.
//!
//! ```text
//!  key A: |---- current (ROTATION) ----|---- previous (OVERLAP) ----|
//!  key B:                              |---- current (ROTATION) ----|---- previous ...
//!         ^ A made                     ^ rotate(): B made, A kept   ^ A dropped
//! ```
//!
//! A key is advertised with the expiry `made + ROTATION + OVERLAP`
//! ([`RELAY_ONION_KEY_ROTATION`], [`RELAY_ONION_KEY_OVERLAP`]): four days,
//! within the descriptor rule's [`RELAY_ONION_KEY_MAX_LIFETIME`]. The
//! overlap is longer than a descriptor lives
//! ([`RELAY_DESCRIPTOR_MAX_LIFETIME`](crate::limits::RELAY_DESCRIPTOR_MAX_LIFETIME)),
//! so any descriptor a client may still hold names a key the relay still
//! answers. Once a key is dropped its secret is zeroized (x25519-dalek's
//! `StaticSecret` zeroizes on drop), which gives the circuits built with
//! it forward secrecy from then on. Sans-IO: `now` (unix seconds) and the
//! RNG are inputs.

use super::handshake::OnionKey;
#[cfg(doc)]
use crate::limits::RELAY_ONION_KEY_MAX_LIFETIME;
use crate::limits::{RELAY_ONION_KEY_OVERLAP, RELAY_ONION_KEY_ROTATION};
use crate::overlay::record::{OnionKeyInfo, RelayOffer};
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;

/// Lifetime of an onion key as advertised: rotation period plus overlap.
const KEY_LIFETIME: u64 = RELAY_ONION_KEY_ROTATION.as_secs() + RELAY_ONION_KEY_OVERLAP.as_secs();

/// One onion key and when it was made.
#[derive(Debug)]
struct Dated {
    key: OnionKey,
    made: u64,
}

impl Dated {
    fn expires(&self) -> u64 {
        self.made.saturating_add(KEY_LIFETIME)
    }

    fn info(&self) -> OnionKeyInfo {
        OnionKeyInfo {
            key: self.key.public(),
            expires: self.expires(),
        }
    }
}

/// A relay's current onion key and the previous one during its overlap.
///
/// Call [`OnionKeys::rotate`] periodically (before each descriptor is
/// published is enough); when it returns `true` publish a new descriptor
/// ([`OnionKeys::offer`]). Answer a client's handshake with the key
/// [`OnionKeys::find`] returns for the onion key the client named.
#[derive(Debug)]
pub struct OnionKeys {
    current: Dated,
    previous: Option<Dated>,
}

impl OnionKeys {
    /// A fresh current key, made at `now`, and no previous one.
    pub fn new(now: u64, rng: impl RngCore + CryptoRng) -> Self {
        Self {
            current: Dated {
                key: OnionKey::generate(rng),
                made: now,
            },
            previous: None,
        }
    }

    /// At `now`: replaces the current key by a fresh one once it is
    /// [`RELAY_ONION_KEY_ROTATION`] old (the replaced key becomes the
    /// previous one while it has not expired), and drops the previous key
    /// once it has expired. Returns whether the current key changed (the
    /// descriptor must then be published again).
    pub fn rotate(&mut self, now: u64, rng: impl RngCore + CryptoRng) -> bool {
        let due = now
            >= self
                .current
                .made
                .saturating_add(RELAY_ONION_KEY_ROTATION.as_secs());
        if due {
            let old = std::mem::replace(
                &mut self.current,
                Dated {
                    key: OnionKey::generate(rng),
                    made: now,
                },
            );
            self.previous = Some(old);
        }
        if self.previous.as_ref().is_some_and(|p| now >= p.expires()) {
            self.previous = None;
        }
        due
    }

    /// The current key (the one to advertise).
    pub fn current(&self) -> &OnionKey {
        &self.current.key
    }

    /// The key whose public half is `public`, if it is usable at `now`
    /// (the current key or, during its overlap, the previous one).
    pub fn find(&self, public: &[u8; 32], now: u64) -> Option<&OnionKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|d| d.key.public() == *public && now < d.expires())
            .map(|d| &d.key)
    }

    /// The current key as a descriptor advertises it.
    pub fn current_info(&self) -> OnionKeyInfo {
        self.current.info()
    }

    /// The previous key as a descriptor advertises it, if it is still
    /// usable at `now`.
    pub fn previous_info(&self, now: u64) -> Option<OnionKeyInfo> {
        self.previous
            .as_ref()
            .filter(|p| now < p.expires())
            .map(Dated::info)
    }

    /// The offer a descriptor built at `now` carries: these keys and the
    /// given addresses, capacity and services (see [`RelayOffer`]). Pass
    /// it to [`crate::overlay::record::sign_relay_descriptors`].
    pub fn offer(
        &self,
        now: u64,
        addresses: Vec<SocketAddr>,
        capacity: u32,
        relays_circuits: bool,
        turn: Option<SocketAddr>,
    ) -> RelayOffer {
        RelayOffer {
            addresses,
            onion_key: self.current_info(),
            previous_onion_key: self.previous_info(now),
            capacity,
            relays_circuits,
            turn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::overlay::record::{sign_relay_descriptors, RecordPolicy};
    use crate::relay::handshake::{respond, ClientHandshake};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: u64 = 1_750_000_000;
    const ROTATION: u64 = RELAY_ONION_KEY_ROTATION.as_secs();
    const OVERLAP: u64 = RELAY_ONION_KEY_OVERLAP.as_secs();

    #[test]
    fn rotation_keeps_the_previous_key_for_the_overlap_then_drops_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut keys = OnionKeys::new(NOW, &mut rng);
        let a = keys.current().public();
        assert!(!keys.rotate(NOW + ROTATION - 1, &mut rng), "not yet due");
        assert_eq!(keys.current().public(), a);
        assert!(keys.rotate(NOW + ROTATION, &mut rng), "due");
        let b = keys.current().public();
        assert_ne!(a, b);
        let t = NOW + ROTATION;
        // Both answer during the overlap; the descriptor names both.
        assert_eq!(keys.find(&a, t).map(OnionKey::public), Some(a));
        assert_eq!(keys.find(&b, t).map(OnionKey::public), Some(b));
        assert_eq!(
            keys.find(&a, t + OVERLAP - 1).map(OnionKey::public),
            Some(a)
        );
        let info = keys.previous_info(t).unwrap();
        assert_eq!((info.key, info.expires), (a, t + OVERLAP));
        // After the overlap the old key is refused, then forgotten.
        assert!(keys.find(&a, t + OVERLAP).is_none());
        assert_eq!(keys.previous_info(t + OVERLAP), None);
        // (B may be due itself by then: it becomes the previous key.)
        let _ = keys.rotate(t + OVERLAP, &mut rng);
        assert!(
            keys.previous.as_ref().is_none_or(|p| p.key.public() != a),
            "A dropped (and zeroized)"
        );
        assert!(keys.find(&[9; 32], t).is_none(), "an unknown key");
    }

    #[test]
    fn a_late_rotation_does_not_keep_an_expired_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut keys = OnionKeys::new(NOW, &mut rng);
        let a = keys.current().public();
        // Asleep past the key's whole lifetime.
        assert!(keys.rotate(NOW + ROTATION + OVERLAP, &mut rng));
        assert!(keys.previous.is_none());
        assert!(keys.find(&a, NOW + ROTATION + OVERLAP).is_none());
    }

    #[test]
    fn the_offer_verifies_in_a_descriptor_and_the_handshake_uses_the_found_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let relay = SecretKey::from_seed(&[1; 32]);
        let id = relay.public().node_id();
        let policy = RecordPolicy::self_certifying("p2psip");
        let mut keys = OnionKeys::new(NOW, &mut rng);
        let old = keys.current_info();
        let t = NOW + ROTATION + 5;
        assert!(keys.rotate(t, &mut rng));
        let offer = keys.offer(t, vec!["192.0.2.1:4433".parse().unwrap()], 10, true, None);
        assert_eq!(offer.previous_onion_key, Some(old));
        let records = sign_relay_descriptors(&relay, &policy, None, offer, 1, t).unwrap();
        assert!(records.iter().all(|r| r.verify(&policy, t).is_ok()));
        // A client that still holds the old descriptor completes its
        // handshake with the previous key during the overlap.
        let (client, msg) = ClientHandshake::start(id, old.key, &mut rng);
        let key = keys.find(&old.key, t + 1).unwrap();
        let (relay_keys, answer) = respond(&id, key, &msg, &mut rng).unwrap();
        let client_keys = client.finish(&answer).unwrap();
        assert_eq!(format!("{client_keys:?}"), format!("{relay_keys:?}"));
    }
}
