//! One ChaCha20-Poly1305 layer per hop. The originator of a circuit
//! holds every hop's keys ([`Originator`]); a relay holds its own
//! ([`RelayHop`]).
//!
//! A layer's plaintext is `cmd: u8 | seq: u64 | rest`: `cmd` 1 (relay)
//! means `rest` is the next layer's ciphertext, under sequence number
//! `seq`; `cmd` 2 (data) means this layer is the last and `rest` is
//! `len: u16 | payload | zero padding` of a fixed size. So a layer adds
//! [`LAYER_OVERHEAD`] bytes, and the data layer is always
//! [`DATA_LAYER_LEN`] bytes of ciphertext: every cell carries up to
//! [`PAYLOAD_MAX`] bytes through at most [`MAX_LAYERS`] layers.
//!
//! - Forward (originator → last hop): the originator seals the layers
//!   from the inside out; each relay opens its own (`RelayHop::peel`),
//!   and either passes the inner ciphertext on (padded back to a full
//!   cell with random bytes) or takes the payload.
//! - Backward: the last hop seals a data layer, each relay before it
//!   wraps a relay layer around what it got (`RelayHop::wrap`), and the
//!   originator opens them all (`Originator::open`).
//!
//! Each direction of each hop has its own key (from the handshake) and
//! its own sequence numbers: the sender counts up from 1; the receiver
//! keeps a replay window ([`ReplayWindow`]) and commits a number only
//! after the layer verified, so a forged cell cannot burn a number. A
//! layer that does not verify is refused by the hop that holds its key;
//! the cell goes no further.

use super::cell::{Cell, BODY_LEN};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Poly1305's tag.
const TAG_LEN: usize = 16;
/// `cmd` and `seq`.
const LAYER_HEADER_LEN: usize = 1 + 8;
/// What one layer adds.
pub const LAYER_OVERHEAD: usize = LAYER_HEADER_LEN + TAG_LEN;
/// The most layers a cell can carry: the most hops one circuit has. A
/// rendezvous point opens the caller's layers and seals the callee's
/// (and back), so a cell never carries both sides' layers; the
/// end-to-end protection ([`super::e2e`]) is inside the payload.
pub const MAX_LAYERS: usize = 6;
// Path choice never picks a path a cell cannot carry.
const _: () = assert!(crate::limits::RELAY_MAX_HOPS <= MAX_LAYERS);
/// The payload a cell carries (an RTP packet of 20 ms of G.711 is 172,
/// and the end-to-end frame around it 25 more).
pub const PAYLOAD_MAX: usize = BODY_LEN - MAX_LAYERS * LAYER_OVERHEAD - 2;
/// A data layer's ciphertext: header, length, payload, tag.
pub const DATA_LAYER_LEN: usize = LAYER_HEADER_LEN + 2 + PAYLOAD_MAX + TAG_LEN;
// An RTP packet of 20 ms of G.711 (172 bytes), with its kind and the
// control and end-to-end framing, fits through every layer.
const _: () = assert!(PAYLOAD_MAX > 172 + 1 + super::e2e::E2E_OVERHEAD);

const CMD_RELAY: u8 = 1;
const CMD_DATA: u8 = 2;
pub(super) const FORWARD: u8 = 0x46; // 'F'
pub(super) const BACKWARD: u8 = 0x42; // 'B'

/// Why a layer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OnionError {
    /// The layer does not verify: tampered, or not this hop's.
    #[error("the layer does not verify (tampered, or another hop's)")]
    Tampered,
    /// Its sequence number was seen already, or is too old.
    #[error("replayed or too old (seq {0})")]
    Replayed(u64),
    /// A length that no honest sender writes.
    #[error("layer of {0} bytes")]
    Length(usize),
    /// A payload over [`PAYLOAD_MAX`], or more layers than fit.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// A verified layer with a command this version does not know.
    #[error("unknown layer command {0}")]
    Command(u8),
    /// The sequence numbers of a direction ran out (2^64): the circuit
    /// must be rebuilt.
    #[error("sequence numbers exhausted")]
    Exhausted,
}

/// One hop's keys, one per direction, from the handshake.
#[derive(Clone)]
pub struct HopKeys {
    forward: Zeroizing<[u8; 32]>,
    backward: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for HopKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopKeys(..)")
    }
}

impl PartialEq for HopKeys {
    /// In constant time.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        let f = self.forward.ct_eq(&*other.forward);
        let b = self.backward.ct_eq(&*other.backward);
        bool::from(f & b)
    }
}

impl HopKeys {
    /// Expands a handshake's key seed (HKDF-SHA256).
    pub(crate) fn expand(salt: &[u8], key_seed: &[u8; 32], info: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), key_seed);
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's limit: this cannot fail.
        let _ = hk.expand(info, &mut okm[..]);
        let mut forward = Zeroizing::new([0u8; 32]);
        let mut backward = Zeroizing::new([0u8; 32]);
        forward.copy_from_slice(&okm[..32]);
        backward.copy_from_slice(&okm[32..]);
        Self { forward, backward }
    }

    pub(super) fn ciphers(&self) -> (ChaCha20Poly1305, ChaCha20Poly1305) {
        (
            ChaCha20Poly1305::new(Key::from_slice(&self.forward[..])),
            ChaCha20Poly1305::new(Key::from_slice(&self.backward[..])),
        )
    }
}

/// Which sequence numbers of one direction were seen: the highest, and
/// a bitmap of the [`ReplayWindow::WIDTH`] before it.
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    highest: u64,
    seen: u128,
}

impl ReplayWindow {
    /// How far behind the highest a number may arrive (reordering).
    pub const WIDTH: u64 = 128;

    /// Whether `seq` would be accepted (not 0, not seen, not too old).
    pub fn check(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            return true;
        }
        let behind = self.highest - seq;
        behind < Self::WIDTH && self.seen & (1u128 << behind) == 0
    }

    /// Records `seq` (checked first, and its layer verified).
    pub fn commit(&mut self, seq: u64) {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= Self::WIDTH {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
        } else {
            let behind = self.highest - seq;
            if behind < Self::WIDTH {
                self.seen |= 1u128 << behind;
            }
        }
    }
}

pub(super) fn nonce(direction: u8, seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = direction;
    n[4..].copy_from_slice(&seq.to_be_bytes());
    *Nonce::from_slice(&n)
}

/// The next number of a sending direction.
fn next(counter: &mut u64) -> Result<u64, OnionError> {
    *counter = counter.checked_add(1).ok_or(OnionError::Exhausted)?;
    Ok(*counter)
}

pub(super) fn seal(
    cipher: &ChaCha20Poly1305,
    direction: u8,
    seq: u64,
    plain: &[u8],
) -> Result<Vec<u8>, OnionError> {
    cipher
        .encrypt(
            &nonce(direction, seq),
            Payload {
                msg: plain,
                aad: &[direction],
            },
        )
        .map_err(|_| OnionError::Length(plain.len()))
}

pub(super) fn open(
    cipher: &ChaCha20Poly1305,
    direction: u8,
    seq: u64,
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OnionError> {
    cipher
        .decrypt(
            &nonce(direction, seq),
            Payload {
                msg: ct,
                aad: &[direction],
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| OnionError::Tampered)
}

/// A data layer's plaintext: `DATA | 0 | len | payload | zeros`.
fn data_plaintext(payload: &[u8]) -> Result<Vec<u8>, OnionError> {
    if payload.len() > PAYLOAD_MAX {
        return Err(OnionError::TooLarge("payload over PAYLOAD_MAX"));
    }
    let mut p = Vec::with_capacity(DATA_LAYER_LEN - TAG_LEN);
    p.push(CMD_DATA);
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p.resize(DATA_LAYER_LEN - TAG_LEN, 0);
    Ok(p)
}

/// The payload of a verified data layer's plaintext.
fn data_payload(plain: &[u8]) -> Result<Vec<u8>, OnionError> {
    let len = plain
        .get(LAYER_HEADER_LEN..LAYER_HEADER_LEN + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(OnionError::Length(plain.len()))?;
    plain
        .get(LAYER_HEADER_LEN + 2..LAYER_HEADER_LEN + 2 + len)
        .map(<[u8]>::to_vec)
        .ok_or(OnionError::Length(len))
}

/// `cmd` and `seq` of a verified layer's plaintext.
fn layer_header(plain: &[u8]) -> Result<(u8, u64), OnionError> {
    let cmd = *plain.first().ok_or(OnionError::Length(0))?;
    let seq = plain
        .get(1..LAYER_HEADER_LEN)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or(OnionError::Length(plain.len()))?;
    Ok((cmd, seq))
}

/// A cell of circuit `circ_id` holding ciphertext `ct` under `seq`,
/// padded with random bytes.
fn cell(
    circ_id: u32,
    seq: u64,
    ct: &[u8],
    mut rng: impl RngCore + CryptoRng,
) -> Result<Cell, OnionError> {
    if ct.len() > BODY_LEN {
        return Err(OnionError::TooLarge("more layers than a cell holds"));
    }
    let mut body = [0u8; BODY_LEN];
    rng.fill_bytes(&mut body);
    body[..ct.len()].copy_from_slice(ct);
    Ok(Cell {
        circ_id,
        seq,
        ct_len: ct.len() as u16,
        body,
    })
}

/// One hop as its originator sees it.
struct OriginHop {
    forward: ChaCha20Poly1305,
    backward: ChaCha20Poly1305,
    sent: u64,
    received: ReplayWindow,
}

/// The originator of a circuit: every hop's keys, first hop first.
pub struct Originator {
    hops: Vec<OriginHop>,
}

impl std::fmt::Debug for Originator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Originator")
            .field("hops", &self.hops.len())
            .finish_non_exhaustive()
    }
}

/// What the originator got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Which hop sent it (0 is the first).
    pub hop: usize,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Originator {
    /// A circuit through hops with these keys, first hop first.
    pub fn new(keys: &[HopKeys]) -> Result<Self, OnionError> {
        if keys.is_empty() || keys.len() > MAX_LAYERS {
            return Err(OnionError::TooLarge("1 to MAX_LAYERS hops"));
        }
        Ok(Self {
            hops: keys
                .iter()
                .map(|k| {
                    let (forward, backward) = k.ciphers();
                    OriginHop {
                        forward,
                        backward,
                        sent: 0,
                        received: ReplayWindow::default(),
                    }
                })
                .collect(),
        })
    }

    /// Adds the next hop (telescoping: its handshake went through the
    /// hops before it).
    pub fn extend(&mut self, keys: &HopKeys) -> Result<(), OnionError> {
        if self.hops.len() >= MAX_LAYERS {
            return Err(OnionError::TooLarge("1 to MAX_LAYERS hops"));
        }
        let (forward, backward) = keys.ciphers();
        self.hops.push(OriginHop {
            forward,
            backward,
            sent: 0,
            received: ReplayWindow::default(),
        });
        Ok(())
    }

    /// Hops in the circuit.
    pub fn len(&self) -> usize {
        self.hops.len()
    }

    /// Whether it has none (never: [`Originator::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// A cell for the first hop (`circ_id` on that link) carrying
    /// `payload` to hop `to` (0-based; the last hop for media).
    pub fn seal(
        &mut self,
        circ_id: u32,
        to: usize,
        payload: &[u8],
        rng: impl RngCore + CryptoRng,
    ) -> Result<Cell, OnionError> {
        if to >= self.hops.len() {
            return Err(OnionError::TooLarge("no such hop"));
        }
        let mut plain = data_plaintext(payload)?;
        // From the inside out: hop `to`'s data layer, then a relay layer
        // per hop before it, naming the inner layer's sequence number.
        for i in (1..=to).rev() {
            let hop = self
                .hops
                .get_mut(i)
                .ok_or(OnionError::TooLarge("no such hop"))?;
            let seq = next(&mut hop.sent)?;
            let ct = seal(&hop.forward, FORWARD, seq, &plain)?;
            let mut outer = Vec::with_capacity(LAYER_HEADER_LEN + ct.len());
            outer.push(CMD_RELAY);
            outer.extend_from_slice(&seq.to_be_bytes());
            outer.extend_from_slice(&ct);
            plain = outer;
        }
        let first = self
            .hops
            .first_mut()
            .ok_or(OnionError::TooLarge("no such hop"))?;
        let seq = next(&mut first.sent)?;
        let ct = seal(&first.forward, FORWARD, seq, &plain)?;
        cell(circ_id, seq, &ct, rng)
    }

    /// Opens a cell that came back from the first hop: layer by layer,
    /// each checked against its hop's replay window, until a data layer.
    pub fn open(&mut self, cell: &Cell) -> Result<Received, OnionError> {
        let mut seq = cell.seq;
        let mut ct = cell.ciphertext().to_vec();
        for (i, hop) in self.hops.iter_mut().enumerate() {
            if !hop.received.check(seq) {
                return Err(OnionError::Replayed(seq));
            }
            let plain = open(&hop.backward, BACKWARD, seq, &ct)?;
            hop.received.commit(seq);
            match layer_header(&plain)? {
                (CMD_DATA, _) => {
                    return Ok(Received {
                        hop: i,
                        payload: data_payload(&plain)?,
                    })
                }
                (CMD_RELAY, inner) => {
                    seq = inner;
                    ct = plain.get(LAYER_HEADER_LEN..).unwrap_or_default().to_vec();
                }
                (cmd, _) => return Err(OnionError::Command(cmd)),
            }
        }
        Err(OnionError::TooLarge("more layers than hops"))
    }
}

/// One relay's part of a circuit: its keys, its sending counter
/// (backward) and its replay window (forward).
pub struct RelayHop {
    forward: ChaCha20Poly1305,
    backward: ChaCha20Poly1305,
    sent: u64,
    received: ReplayWindow,
}

impl std::fmt::Debug for RelayHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHop").finish_non_exhaustive()
    }
}

/// What a relay does with a forward cell it could open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeled {
    /// Pass this on to the next hop (its circuit id is the caller's).
    Forward(Box<Cell>),
    /// The payload is for this hop.
    Deliver(Vec<u8>),
}

impl RelayHop {
    /// This hop's part, with the keys of its handshake.
    pub fn new(keys: &HopKeys) -> Self {
        let (forward, backward) = keys.ciphers();
        Self {
            forward,
            backward,
            sent: 0,
            received: ReplayWindow::default(),
        }
    }

    /// Opens this hop's layer of a forward cell; the next link's cell
    /// is given `next_circ` (0 until the caller knows it) and padded
    /// back to full size.
    pub fn peel(
        &mut self,
        cell: &Cell,
        next_circ: u32,
        rng: impl RngCore + CryptoRng,
    ) -> Result<Peeled, OnionError> {
        if !self.received.check(cell.seq) {
            return Err(OnionError::Replayed(cell.seq));
        }
        let plain = open(&self.forward, FORWARD, cell.seq, cell.ciphertext())?;
        self.received.commit(cell.seq);
        match layer_header(&plain)? {
            (CMD_DATA, _) => Ok(Peeled::Deliver(data_payload(&plain)?)),
            (CMD_RELAY, inner) => {
                let ct = plain.get(LAYER_HEADER_LEN..).unwrap_or_default();
                Ok(Peeled::Forward(Box::new(self::cell(
                    next_circ, inner, ct, rng,
                )?)))
            }
            (cmd, _) => Err(OnionError::Command(cmd)),
        }
    }

    /// Wraps this hop's layer around a backward cell from the next hop,
    /// for the previous link (`prev_circ`).
    pub fn wrap(
        &mut self,
        cell: &Cell,
        prev_circ: u32,
        rng: impl RngCore + CryptoRng,
    ) -> Result<Cell, OnionError> {
        let inner = cell.ciphertext();
        if inner.len() + LAYER_OVERHEAD > BODY_LEN {
            return Err(OnionError::TooLarge("more layers than a cell holds"));
        }
        let mut plain = Vec::with_capacity(LAYER_HEADER_LEN + inner.len());
        plain.push(CMD_RELAY);
        plain.extend_from_slice(&cell.seq.to_be_bytes());
        plain.extend_from_slice(inner);
        let seq = next(&mut self.sent)?;
        let ct = seal(&self.backward, BACKWARD, seq, &plain)?;
        self::cell(prev_circ, seq, &ct, rng)
    }

    /// A backward cell carrying `payload` from this hop (the last hop
    /// of a circuit, answering its originator).
    pub fn reply(
        &mut self,
        prev_circ: u32,
        payload: &[u8],
        rng: impl RngCore + CryptoRng,
    ) -> Result<Cell, OnionError> {
        let plain = data_plaintext(payload)?;
        let seq = next(&mut self.sent)?;
        let ct = seal(&self.backward, BACKWARD, seq, &plain)?;
        cell(prev_circ, seq, &ct, rng)
    }
}

#[cfg(test)]
mod tests;
