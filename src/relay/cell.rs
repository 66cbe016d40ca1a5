//! The cell: what every link of a circuit carries, one per QUIC
//! datagram, always [`CELL_LEN`] bytes so that a cell's size tells an
//! observer nothing (talk or silence, data or padding, which hop).
//!
//! ```text
//! circ_id: u32 | seq: u64 | ct_len: u16 | body: [u8; BODY_LEN]
//! ```
//!
//! `circ_id` names the circuit on this link only (each hop's differs);
//! `seq` is the sequence number of the outermost layer (its nonce, and
//! what the replay window checks); `ct_len` how much of `body` is that
//! layer's ciphertext (the rest is random padding). All big-endian.

/// A cell's length on the wire.
/// Sized for voice: an RTP packet of 20 ms of G.711 (172 bytes) through
/// seven layers (3 + 3 hops and an end-to-end layer), 50 cells a second
/// being 2.4 times the codec's 64 kbit/s.
pub const CELL_LEN: usize = 384;
/// The header: circuit id, sequence number, ciphertext length.
pub const HEADER_LEN: usize = 4 + 8 + 2;
/// The body.
pub const BODY_LEN: usize = CELL_LEN - HEADER_LEN;

/// Why bytes are not a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// Not exactly [`CELL_LEN`] bytes.
    #[error("a cell is {CELL_LEN} bytes, not {0}")]
    Length(usize),
    /// `ct_len` beyond the body.
    #[error("ciphertext length {0} beyond the {BODY_LEN}-byte body")]
    CiphertextLength(usize),
    /// Circuit id 0 is reserved.
    #[error("circuit id 0 is reserved")]
    ZeroCircuit,
}

/// One cell.
#[derive(Clone, PartialEq, Eq)]
pub struct Cell {
    /// The circuit on this link.
    pub circ_id: u32,
    /// The outermost layer's sequence number.
    pub seq: u64,
    /// The outermost layer's ciphertext length.
    pub ct_len: u16,
    /// Ciphertext, then padding.
    pub body: [u8; BODY_LEN],
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cell")
            .field("circ_id", &self.circ_id)
            .field("seq", &self.seq)
            .field("ct_len", &self.ct_len)
            .finish_non_exhaustive()
    }
}

impl Cell {
    /// The cell's bytes.
    pub fn encode(&self) -> [u8; CELL_LEN] {
        let mut out = [0u8; CELL_LEN];
        out[..4].copy_from_slice(&self.circ_id.to_be_bytes());
        out[4..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..14].copy_from_slice(&self.ct_len.to_be_bytes());
        out[HEADER_LEN..].copy_from_slice(&self.body);
        out
    }

    /// Reads a cell, strictly: exactly [`CELL_LEN`] bytes, a circuit id,
    /// a ciphertext length within the body.
    pub fn decode(bytes: &[u8]) -> Result<Self, CellError> {
        let bytes: &[u8; CELL_LEN] = bytes
            .try_into()
            .map_err(|_| CellError::Length(bytes.len()))?;
        let (head, rest) = bytes.split_at(HEADER_LEN);
        let mut circ = [0u8; 4];
        let mut seq = [0u8; 8];
        let mut len = [0u8; 2];
        circ.copy_from_slice(&head[..4]);
        seq.copy_from_slice(&head[4..12]);
        len.copy_from_slice(&head[12..]);
        let circ_id = u32::from_be_bytes(circ);
        if circ_id == 0 {
            return Err(CellError::ZeroCircuit);
        }
        let ct_len = u16::from_be_bytes(len);
        if usize::from(ct_len) > BODY_LEN {
            return Err(CellError::CiphertextLength(usize::from(ct_len)));
        }
        let mut body = [0u8; BODY_LEN];
        body.copy_from_slice(rest);
        Ok(Self {
            circ_id,
            seq: u64::from_be_bytes(seq),
            ct_len,
            body,
        })
    }

    /// The outermost layer's ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        self.body.get(..usize::from(self.ct_len)).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_and_bad_ones_are_named() {
        let cell = Cell {
            circ_id: 7,
            seq: 1 << 40,
            ct_len: 300,
            body: [0xab; BODY_LEN],
        };
        let bytes = cell.encode();
        assert_eq!(bytes.len(), CELL_LEN);
        assert_eq!(Cell::decode(&bytes), Ok(cell.clone()));
        assert_eq!(cell.ciphertext().len(), 300);
        assert_eq!(
            Cell::decode(&bytes[1..]),
            Err(CellError::Length(CELL_LEN - 1))
        );
        let mut zero = bytes;
        zero[..4].fill(0);
        assert_eq!(Cell::decode(&zero), Err(CellError::ZeroCircuit));
        let mut long = bytes;
        long[12..14].copy_from_slice(&(BODY_LEN as u16 + 1).to_be_bytes());
        assert_eq!(
            Cell::decode(&long),
            Err(CellError::CiphertextLength(BODY_LEN + 1))
        );
    }
}
