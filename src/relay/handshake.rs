//! The per-hop handshake, after Tor's ntor (proposal 216, tor-spec
//! §5.1.4), with a node id for Tor's identity digest:
//!
//! - the relay has a node id `ID` and a medium-term X25519 onion key
//!   `b`, `B` (published, signed, in its descriptor);
//! - the client sends an ephemeral `X`; the relay answers its ephemeral
//!   `Y` and `AUTH`;
//! - both compute `secret_input = X^y | X^b | ID | B | X | Y | PROTOID`
//!   (the client as `Y^x | B^x | ...`), `KEY_SEED = HMAC(t_key,
//!   secret_input)`, `verify = HMAC(t_verify, secret_input)`, and
//!   `AUTH = HMAC(t_mac, verify | ID | B | Y | X | PROTOID | "Server")`;
//! - the client accepts only a matching `AUTH` (compared in constant
//!   time): only the holder of `b` can produce it, so the relay is
//!   authenticated and the client is not; the ephemeral `x`, `y` give
//!   forward secrecy once `b` rotates;
//! - the hop's keys are HKDF-SHA256(salt `t_key`, ikm `KEY_SEED`, info
//!   `m_expand`).
//!
//! A shared secret that is all zeros (a low-order point offered by the
//! other side) is refused, so neither side can force a known key.

use super::onion::HopKeys;
use crate::identity::NodeId;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const PROTOID: &[u8] = b"p2psip-ntor-x25519-sha256-1";
const T_MAC: &[u8] = b"p2psip-ntor-x25519-sha256-1:mac";
const T_KEY: &[u8] = b"p2psip-ntor-x25519-sha256-1:key_extract";
const T_VERIFY: &[u8] = b"p2psip-ntor-x25519-sha256-1:verify";
const M_EXPAND: &[u8] = b"p2psip-ntor-x25519-sha256-1:key_expand";

/// Length of the client's message (`X`).
pub const CLIENT_MSG_LEN: usize = 32;
/// Length of the relay's answer (`Y`, `AUTH`).
pub const SERVER_MSG_LEN: usize = 64;

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A message of the wrong length.
    #[error("handshake message of {0} bytes")]
    Length(usize),
    /// The other side's key gave an all-zero shared secret (a low-order
    /// point): refused, or it could choose the keys.
    #[error("non-contributory key (low-order point)")]
    NotContributory,
    /// `AUTH` did not match: not the relay whose onion key was used, or
    /// the answer was altered.
    #[error("the relay's AUTH does not verify")]
    BadAuth,
}

/// A relay's onion key: the secret half stays in the relay, the public
/// half goes in its descriptor.
pub struct OnionKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for OnionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionKey")
            .field("public", &hex::encode(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

impl OnionKey {
    /// A fresh onion key.
    pub fn generate(rng: impl RngCore + CryptoRng) -> Self {
        let secret = StaticSecret::random_from_rng(rng);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The public half (`B`).
    pub fn public(&self) -> [u8; 32] {
        self.public.to_bytes()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `KEY_SEED` and `AUTH` from the two shared secrets and the public
/// values.
fn derive(
    xy: &[u8; 32],
    xb: &[u8; 32],
    id: &NodeId,
    b: &[u8; 32],
    x: &[u8; 32],
    y: &[u8; 32],
) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let secret_input: [&[u8]; 7] = [xy, xb, id.as_bytes(), b, x, y, PROTOID];
    let key_seed = Zeroizing::new(hmac(T_KEY, &secret_input));
    let verify = Zeroizing::new(hmac(T_VERIFY, &secret_input));
    let auth = hmac(
        T_MAC,
        &[&verify[..], id.as_bytes(), b, y, x, PROTOID, b"Server"],
    );
    (key_seed, auth)
}

/// The client's side, between its message and the relay's answer.
/// Its ephemeral secret `x` is used twice (with `Y` and with `B`), so
/// it is held as a [`StaticSecret`], fresh per handshake and zeroized
/// when the handshake ends.
pub struct ClientHandshake {
    x: StaticSecret,
    x_pub: PublicKey,
    relay: NodeId,
    onion: PublicKey,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake with relay `relay` whose onion key is `onion`;
    /// returns the state and the message to send (`X`).
    pub fn start(
        relay: NodeId,
        onion: [u8; 32],
        rng: impl RngCore + CryptoRng,
    ) -> (Self, [u8; CLIENT_MSG_LEN]) {
        let x = StaticSecret::random_from_rng(rng);
        let x_pub = PublicKey::from(&x);
        let msg = x_pub.to_bytes();
        (
            Self {
                x,
                x_pub,
                relay,
                onion: PublicKey::from(onion),
            },
            msg,
        )
    }

    /// Checks the relay's answer (`Y | AUTH`); the hop's keys.
    pub fn finish(self, answer: &[u8]) -> Result<HopKeys, HandshakeError> {
        let (y, auth) = split_answer(answer)?;
        let y_pub = PublicKey::from(y);
        let xy = self.x.diffie_hellman(&y_pub);
        let xb = self.x.diffie_hellman(&self.onion);
        if !xy.was_contributory() || !xb.was_contributory() {
            return Err(HandshakeError::NotContributory);
        }
        let (key_seed, expected) = derive(
            xy.as_bytes(),
            xb.as_bytes(),
            &self.relay,
            self.onion.as_bytes(),
            self.x_pub.as_bytes(),
            &y,
        );
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &auth[..])) {
            return Err(HandshakeError::BadAuth);
        }
        Ok(HopKeys::expand(T_KEY, &key_seed, M_EXPAND))
    }
}

/// `Y` and `AUTH` from the relay's answer.
fn split_answer(answer: &[u8]) -> Result<([u8; 32], [u8; 32]), HandshakeError> {
    let err = HandshakeError::Length(answer.len());
    if answer.len() != SERVER_MSG_LEN {
        return Err(err);
    }
    let y: [u8; 32] = answer
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or(err)?;
    let auth: [u8; 32] = answer
        .get(32..)
        .and_then(|s| s.try_into().ok())
        .ok_or(err)?;
    Ok((y, auth))
}

/// The relay's side: answers the client's message `X` with `Y | AUTH`
/// and returns the hop's keys. `id` is the relay's node id.
pub fn respond(
    id: &NodeId,
    onion: &OnionKey,
    client: &[u8],
    rng: impl RngCore + CryptoRng,
) -> Result<(HopKeys, [u8; SERVER_MSG_LEN]), HandshakeError> {
    let x: [u8; 32] = client
        .try_into()
        .map_err(|_| HandshakeError::Length(client.len()))?;
    let x_pub = PublicKey::from(x);
    let y = x25519_dalek::EphemeralSecret::random_from_rng(rng);
    let y_pub = PublicKey::from(&y);
    let xy = y.diffie_hellman(&x_pub);
    let xb = onion.secret.diffie_hellman(&x_pub);
    if !xy.was_contributory() || !xb.was_contributory() {
        return Err(HandshakeError::NotContributory);
    }
    let (key_seed, auth) = derive(
        xy.as_bytes(),
        xb.as_bytes(),
        id,
        onion.public.as_bytes(),
        &x,
        y_pub.as_bytes(),
    );
    let mut answer = [0u8; SERVER_MSG_LEN];
    answer[..32].copy_from_slice(y_pub.as_bytes());
    answer[32..].copy_from_slice(&auth);
    Ok((HopKeys::expand(T_KEY, &key_seed, M_EXPAND), answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn relay() -> (NodeId, OnionKey) {
        (NodeId::from_bytes([9; 32]), OnionKey::generate(OsRng))
    }

    #[test]
    fn both_sides_derive_the_same_keys_and_each_handshake_new_ones() {
        let (id, onion) = relay();
        let (client, x) = ClientHandshake::start(id, onion.public(), OsRng);
        let (relay_keys, answer) = respond(&id, &onion, &x, OsRng).unwrap();
        let client_keys = client.finish(&answer).unwrap();
        assert_eq!(client_keys, relay_keys);
        let (again, x2) = ClientHandshake::start(id, onion.public(), OsRng);
        let (_, answer2) = respond(&id, &onion, &x2, OsRng).unwrap();
        assert_ne!(again.finish(&answer2).unwrap(), client_keys);
    }

    #[test]
    fn only_the_holder_of_the_onion_key_can_answer() {
        let (id, onion) = relay();
        let impostor = OnionKey::generate(OsRng);
        let (client, x) = ClientHandshake::start(id, onion.public(), OsRng);
        let (_, answer) = respond(&id, &impostor, &x, OsRng).unwrap();
        assert_eq!(client.finish(&answer), Err(HandshakeError::BadAuth));
        // Another relay id, or any bit of the answer changed: refused.
        let (client, x) = ClientHandshake::start(id, onion.public(), OsRng);
        let (_, answer) = respond(&NodeId::from_bytes([8; 32]), &onion, &x, OsRng).unwrap();
        assert_eq!(client.finish(&answer), Err(HandshakeError::BadAuth));
        for bit in [0, 255, 256, 511] {
            let (client, x) = ClientHandshake::start(id, onion.public(), OsRng);
            let (_, mut answer) = respond(&id, &onion, &x, OsRng).unwrap();
            answer[bit / 8] ^= 1 << (bit % 8);
            assert!(client.finish(&answer).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn low_order_points_and_bad_lengths_are_refused() {
        let (id, onion) = relay();
        assert_eq!(
            respond(&id, &onion, &[0u8; 32], OsRng).map(|_| ()),
            Err(HandshakeError::NotContributory)
        );
        assert_eq!(
            respond(&id, &onion, &[1u8; 31], OsRng).map(|_| ()),
            Err(HandshakeError::Length(31))
        );
        let (client, _) = ClientHandshake::start(id, onion.public(), OsRng);
        assert_eq!(
            client.finish(&[0u8; 64]),
            Err(HandshakeError::NotContributory)
        );
        let (client, _) = ClientHandshake::start(id, onion.public(), OsRng);
        assert_eq!(client.finish(&[0u8; 63]), Err(HandshakeError::Length(63)));
    }
}
