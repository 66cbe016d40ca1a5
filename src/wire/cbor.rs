//! The strict CBOR profile (RFC 8949 deterministic encoding, §4.2.1) that
//! every p2psip message and signed object follows, on top of minicbor.
//!
//! Readers take items in the exact order of a fixed schema; nothing is
//! skipped or decoded generically, so nesting depth is bounded by the
//! schema itself. Strings and byte strings are borrowed from the input:
//! a declared length is checked against the bytes present and nothing is
//! allocated from it. Canonical form is enforced by re-encoding the decoded
//! value and comparing ([`require_canonical`]).

use super::WireError;
use minicbor::{Decoder, Encoder};

fn from_decode(e: minicbor::decode::Error) -> WireError {
    if e.is_end_of_input() {
        WireError::Truncated
    } else {
        WireError::Malformed(e.to_string())
    }
}

/// A strict, schema-driven reader.
pub struct Reader<'b> {
    d: Decoder<'b>,
    len: usize,
}

impl<'b> Reader<'b> {
    /// Reads from `input`.
    pub fn new(input: &'b [u8]) -> Self {
        Self {
            d: Decoder::new(input),
            len: input.len(),
        }
    }

    /// A definite-length array header; returns its length.
    pub fn array(&mut self) -> Result<u64, WireError> {
        self.d
            .array()
            .map_err(from_decode)?
            .ok_or(WireError::Indefinite)
    }

    /// An unsigned integer.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.d.u64().map_err(from_decode)
    }

    /// An unsigned integer that must fit in 16 bits.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        u16::try_from(self.u64()?).map_err(|_| WireError::FieldOutOfRange(field))
    }

    /// A definite-length byte string, borrowed.
    pub fn bytes(&mut self) -> Result<&'b [u8], WireError> {
        self.d.bytes().map_err(from_decode)
    }

    /// A byte string of exactly `N` bytes.
    pub fn bytes_exact<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        self.bytes()?
            .try_into()
            .map_err(|_| WireError::FieldOutOfRange(field))
    }

    /// A definite-length UTF-8 text string of at most `max` bytes, borrowed.
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<&'b str, WireError> {
        let s = self.d.str().map_err(from_decode)?;
        if s.len() > max {
            return Err(WireError::FieldOutOfRange(field));
        }
        Ok(s)
    }

    /// Whether the next item is `null`; consumes it if so, leaves any
    /// other item to be read. For the optional fields of a schema
    /// (`x / null`).
    pub fn null(&mut self) -> Result<bool, WireError> {
        match self.d.datatype().map_err(from_decode)? {
            minicbor::data::Type::Null => {
                self.d.null().map_err(from_decode)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends reading: every byte must have been consumed.
    pub fn finish(self) -> Result<(), WireError> {
        if self.d.position() == self.len {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

/// A fresh encoder writing into a vector. Encoding into a vector cannot
/// fail, so the helpers below return plain values.
pub fn encoder() -> Encoder<Vec<u8>> {
    Encoder::new(Vec::new())
}

/// Fails with [`WireError::NonCanonical`] unless re-encoding the decoded
/// value gives back exactly the input. This makes `encode(decode(x)) == x`
/// hold for every accepted input, so a signature over the canonical
/// encoding covers exactly the bytes received.
pub fn require_canonical(input: &[u8], reencoded: &[u8]) -> Result<(), WireError> {
    if input == reencoded {
        Ok(())
    } else {
        Err(WireError::NonCanonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_arrays_are_refused() {
        assert_eq!(
            Reader::new(&[0x9f, 0x01, 0xff]).array(),
            Err(WireError::Indefinite)
        );
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A byte string claiming 2^64-1 bytes with none present.
        let input = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&input).bytes().is_err());
        // An array claiming 2^64-1 items: the header alone is read.
        let input = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Reader::new(&input).array(), Ok(u64::MAX));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut r = Reader::new(&[0x01, 0x02]);
        assert_eq!(r.u64(), Ok(1));
        assert_eq!(r.finish(), Err(WireError::TrailingBytes));
    }
}
