//! End-to-end protection of what two nodes send each other through a
//! rendezvous, on top of their circuits: the rendezvous point and every
//! relay see only sealed frames.
//!
//! The callee's rendezvous handle carries an X25519 key of its node;
//! the caller runs the circuit handshake ([`super::handshake`], ntor
//! style) against it through the spliced circuits: [`Frame::Hello`]
//! with `X`, [`Frame::Welcome`] with `Y | AUTH`. Only the holder of the
//! handle's key can answer (the caller authenticates the callee's node;
//! the caller stays anonymous), and the keys have forward secrecy.
//! From then on every payload is a [`Frame::Sealed`]: ChaCha20-Poly1305
//! under the handshake's key for its direction, with a sequence number
//! and a replay window, like a circuit layer.
//!
//! ```text
//! frame = 0x10 | X (32)                 Hello   (caller → callee)
//!       / 0x11 | Y | AUTH (64)          Welcome (callee → caller)
//!       / 0x20 | seq: u64 | ciphertext  Sealed  (either way; seq from 1)
//! ```

use super::handshake::{CLIENT_MSG_LEN, SERVER_MSG_LEN};
use super::onion::{open, seal, HopKeys, OnionError, ReplayWindow, BACKWARD, FORWARD, PAYLOAD_MAX};
use chacha20poly1305::ChaCha20Poly1305;
use zeroize::Zeroizing;

/// What a sealed frame adds to its plaintext: type, sequence number,
/// Poly1305 tag.
pub const E2E_OVERHEAD: usize = 1 + 8 + 16;
/// The largest plaintext a sealed frame carries in one cell (a control
/// byte goes before the frame).
pub const E2E_PLAINTEXT_MAX: usize = PAYLOAD_MAX - 1 - E2E_OVERHEAD;

const HELLO: u8 = 0x10;
const WELCOME: u8 = 0x11;
const SEALED: u8 = 0x20;

/// A frame between the two ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The caller's handshake message.
    Hello([u8; CLIENT_MSG_LEN]),
    /// The callee's answer.
    Welcome([u8; SERVER_MSG_LEN]),
    /// A protected payload.
    Sealed {
        /// Its sequence number in its direction.
        seq: u64,
        /// Ciphertext and tag.
        ct: Vec<u8>,
    },
}

impl Frame {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Hello(x) => [&[HELLO][..], x].concat(),
            Frame::Welcome(a) => [&[WELCOME][..], a].concat(),
            Frame::Sealed { seq, ct } => [&[SEALED][..], &seq.to_be_bytes(), ct].concat(),
        }
    }

    /// Reads a frame, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, OnionError> {
        let rest = bytes.get(1..).unwrap_or_default();
        match bytes.first() {
            Some(&HELLO) => rest.try_into().map(Frame::Hello),
            Some(&WELCOME) => rest.try_into().map(Frame::Welcome),
            Some(&SEALED) if rest.len() >= 8 + 16 => {
                let (seq, ct) = rest.split_at(8);
                let seq = u64::from_be_bytes(seq.try_into().map_err(|_| OnionError::Tampered)?);
                Ok(Frame::Sealed {
                    seq,
                    ct: ct.to_vec(),
                })
            }
            Some(&cmd) => return Err(OnionError::Command(cmd)),
            None => return Err(OnionError::Length(0)),
        }
        .map_err(|_| OnionError::Length(bytes.len()))
    }
}

/// One end's keys and counters.
pub struct EndToEnd {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    send_dir: u8,
    recv_dir: u8,
    sent: u64,
    window: ReplayWindow,
}

impl std::fmt::Debug for EndToEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndToEnd")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl EndToEnd {
    /// The caller's end (it sends in the handshake's forward direction).
    pub fn caller(keys: &HopKeys) -> Self {
        let (forward, backward) = keys.ciphers();
        Self::new(forward, backward, FORWARD, BACKWARD)
    }

    /// The callee's end.
    pub fn callee(keys: &HopKeys) -> Self {
        let (forward, backward) = keys.ciphers();
        Self::new(backward, forward, BACKWARD, FORWARD)
    }

    fn new(send: ChaCha20Poly1305, recv: ChaCha20Poly1305, send_dir: u8, recv_dir: u8) -> Self {
        Self {
            send,
            recv,
            send_dir,
            recv_dir,
            sent: 0,
            window: ReplayWindow::default(),
        }
    }

    /// `plain` sealed into a frame's bytes.
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, OnionError> {
        if plain.len() > E2E_PLAINTEXT_MAX {
            return Err(OnionError::TooLarge("end-to-end payload"));
        }
        self.sent = self.sent.checked_add(1).ok_or(OnionError::Exhausted)?;
        let ct = seal(&self.send, self.send_dir, self.sent, plain)?;
        Ok(Frame::Sealed { seq: self.sent, ct }.encode())
    }

    /// The plaintext of a sealed frame; a forged, replayed or too old
    /// one is refused and burns no sequence number.
    pub fn open(&mut self, seq: u64, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, OnionError> {
        if !self.window.check(seq) {
            return Err(OnionError::Replayed(seq));
        }
        let plain = open(&self.recv, self.recv_dir, seq, ct)?;
        self.window.commit(seq);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::relay::handshake::{respond, ClientHandshake, OnionKey};
    use rand::rngs::OsRng;

    fn pair() -> (EndToEnd, EndToEnd) {
        let callee_id = NodeId::from_bytes([5; 32]);
        let key = OnionKey::generate(OsRng);
        let (client, x) = ClientHandshake::start(callee_id, key.public(), OsRng);
        let Frame::Hello(x) = Frame::decode(&Frame::Hello(x).encode()).unwrap() else {
            panic!()
        };
        let (callee_keys, answer) = respond(&callee_id, &key, &x, OsRng).unwrap();
        let Frame::Welcome(answer) = Frame::decode(&Frame::Welcome(answer).encode()).unwrap()
        else {
            panic!()
        };
        let caller_keys = client.finish(&answer).unwrap();
        (
            EndToEnd::caller(&caller_keys),
            EndToEnd::callee(&callee_keys),
        )
    }

    fn open_frame(end: &mut EndToEnd, bytes: &[u8]) -> Result<Vec<u8>, OnionError> {
        match Frame::decode(bytes)? {
            Frame::Sealed { seq, ct } => end.open(seq, &ct).map(|p| p.to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn both_ends_agree_each_direction_has_its_key_and_replays_and_forgeries_fail() {
        let (mut caller, mut callee) = pair();
        let rtp = vec![0x80; 173];
        let frame = caller.seal(&rtp).unwrap();
        assert_eq!(frame.len(), rtp.len() + E2E_OVERHEAD);
        assert_eq!(open_frame(&mut callee, &frame).unwrap(), rtp);
        // Replayed: refused.
        assert!(matches!(
            open_frame(&mut callee, &frame),
            Err(OnionError::Replayed(1))
        ));
        // A frame reflected back to its sender does not open (the other
        // direction's key).
        let back = caller.seal(b"x").unwrap();
        assert!(open_frame(&mut caller, &back).is_err());
        // Tampered: refused, and its number is not burnt.
        let mut forged = caller.seal(b"hello").unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(matches!(
            open_frame(&mut callee, &forged),
            Err(OnionError::Tampered)
        ));
        forged[last] ^= 1;
        assert_eq!(open_frame(&mut callee, &forged).unwrap(), b"hello");
        // The other way.
        let frame = callee.seal(b"echo").unwrap();
        assert_eq!(open_frame(&mut caller, &frame).unwrap(), b"echo");
        // Sizes: the largest plaintext seals, one more byte does not.
        assert!(caller.seal(&[0; E2E_PLAINTEXT_MAX]).is_ok());
        assert!(caller.seal(&[0; E2E_PLAINTEXT_MAX + 1]).is_err());
    }

    #[test]
    fn frames_decode_strictly() {
        assert!(Frame::decode(&[]).is_err());
        assert!(Frame::decode(&[0x10; 32]).is_err(), "short Hello");
        assert!(Frame::decode(&[0x11; 66]).is_err(), "long Welcome");
        assert!(Frame::decode(&[0x20; 24]).is_err(), "no room for a tag");
        assert!(Frame::decode(&[0x99; 40]).is_err(), "unknown type");
    }
}
