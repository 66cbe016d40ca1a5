//! Framing: `length: u32 big-endian || body`, with
//! `1 <= length <= MAX_FRAME_LEN`.

use super::WireError;
use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Prefixes `body` with its length.
///
/// Fails with [`WireError::FrameTooLarge`] if `body` is longer than
/// [`MAX_FRAME_LEN`] and [`WireError::EmptyFrame`] if it is empty: this
/// side never sends what the other side must refuse.
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, WireError> {
    if body.is_empty() {
        return Err(WireError::EmptyFrame);
    }
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l as usize <= MAX_FRAME_LEN)
        .ok_or(WireError::FrameTooLarge {
            len: body.len() as u64,
            max: MAX_FRAME_LEN,
        })?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Reads a frame header and returns the body length it announces, refusing
/// an empty or oversized frame before anything is allocated for it.
pub fn frame_body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header);
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    if len as usize > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLarge {
            len: u64::from(len),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len as usize)
}

/// Splits one complete frame off the front of `buf`.
///
/// Returns the body and the number of bytes consumed;
/// [`WireError::Truncated`] if `buf` does not yet hold the whole frame.
pub fn decode_frame(buf: &[u8]) -> Result<(&[u8], usize), WireError> {
    let header: [u8; FRAME_HEADER_LEN] = buf
        .get(..FRAME_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Truncated)?;
    let len = frame_body_len(header)?;
    let end = FRAME_HEADER_LEN + len;
    let body = buf.get(FRAME_HEADER_LEN..end).ok_or(WireError::Truncated)?;
    Ok((body, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let framed = encode_frame(b"hello").unwrap();
        assert_eq!(framed, b"\x00\x00\x00\x05hello");
        assert_eq!(decode_frame(&framed), Ok((&b"hello"[..], 9)));
    }

    /// The framed examples of docs/protocol.md §4.4.
    #[test]
    fn documented_frames_are_byte_exact() {
        for (body, frame) in [
            ("82011b0123456789abcdef", "0000000b82011b0123456789abcdef"),
            (
                "84021b0123456789abcdef447f000001191151",
                "0000001384021b0123456789abcdef447f000001191151",
            ),
            ("83030263626164", "0000000783030263626164"),
        ] {
            let body = hex::decode(body).unwrap();
            assert_eq!(hex::encode(encode_frame(&body).unwrap()), frame);
        }
    }

    #[test]
    fn limits_are_enforced_from_the_header() {
        let max = MAX_FRAME_LEN as u32;
        assert_eq!(frame_body_len(max.to_be_bytes()), Ok(MAX_FRAME_LEN));
        assert_eq!(
            frame_body_len((max + 1).to_be_bytes()),
            Err(WireError::FrameTooLarge {
                len: u64::from(max) + 1,
                max: MAX_FRAME_LEN
            })
        );
        assert!(matches!(
            frame_body_len(u32::MAX.to_be_bytes()),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert_eq!(frame_body_len([0; 4]), Err(WireError::EmptyFrame));
        assert!(encode_frame(&vec![0; MAX_FRAME_LEN + 1]).is_err());
        assert!(encode_frame(&[]).is_err());
    }

    #[test]
    fn truncated_input_is_reported_not_panicked() {
        assert_eq!(decode_frame(b""), Err(WireError::Truncated));
        assert_eq!(decode_frame(b"\x00\x00"), Err(WireError::Truncated));
        assert_eq!(
            decode_frame(b"\x00\x00\x00\x05hell"),
            Err(WireError::Truncated)
        );
    }
}
