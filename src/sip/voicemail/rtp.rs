//! The RTP fixed header (RFC 3550 §5.1), read strictly and written.
//!
//! The reader checks every length against the packet before it takes a
//! byte: the 12 fixed bytes, the CSRC list, the extension header and its
//! announced length, and the padding count, which must leave the
//! payload's bytes inside the packet. A packet longer than
//! [`RTP_MAX_PACKET_LEN`] is refused from its length.

use thiserror::Error;

/// The fixed header's length.
pub const RTP_HEADER_LEN: usize = 12;

/// The longest RTP packet read (a 200 ms G.711 packet is 1612 bytes).
pub const RTP_MAX_PACKET_LEN: usize = 2048;

/// The RTP version this reader knows.
const RTP_VERSION: u8 = 2;

/// Why an RTP packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the fixed header.
    #[error("RTP packet of {0} bytes is shorter than its fixed header")]
    Truncated(usize),
    /// Longer than [`RTP_MAX_PACKET_LEN`].
    #[error("RTP packet of {0} bytes is longer than {RTP_MAX_PACKET_LEN}")]
    TooLong(usize),
    /// A version other than 2.
    #[error("RTP version {0}")]
    Version(u8),
    /// The CSRC list runs past the end.
    #[error("RTP CSRC list runs past the packet")]
    Csrc,
    /// The extension header, or the length it announces, runs past the
    /// end.
    #[error("RTP header extension runs past the packet")]
    Extension,
    /// A padding count of zero, or more than the payload holds.
    #[error("RTP padding count is zero or longer than the payload")]
    Padding,
}

/// The fields of an RTP header the voicemail reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit (the first packet of a talk spurt, for audio).
    pub marker: bool,
    /// The payload type, 0 to 127.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The timestamp, in samples.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
}

/// Reads the big-endian `u16` at `at`.
fn u16_at(packet: &[u8], at: usize) -> Option<u16> {
    let b = packet.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// Reads the big-endian `u32` at `at`.
fn u32_at(packet: &[u8], at: usize) -> Option<u32> {
    let b = packet.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// Reads an RTP packet: its header and its payload (without CSRCs,
/// extension or padding).
pub fn parse_rtp(packet: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    if packet.len() > RTP_MAX_PACKET_LEN {
        return Err(RtpError::TooLong(packet.len()));
    }
    let truncated = RtpError::Truncated(packet.len());
    let (&b0, &b1) = match (packet.first(), packet.get(1)) {
        (Some(b0), Some(b1)) if packet.len() >= RTP_HEADER_LEN => (b0, b1),
        _ => return Err(truncated),
    };
    let version = b0 >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::Version(version));
    }
    let padded = b0 & 0x20 != 0;
    let extended = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let header = RtpHeader {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence: u16_at(packet, 2).ok_or(truncated)?,
        timestamp: u32_at(packet, 4).ok_or(truncated)?,
        ssrc: u32_at(packet, 8).ok_or(truncated)?,
    };
    let mut start = RTP_HEADER_LEN + 4 * csrc_count;
    if start > packet.len() {
        return Err(RtpError::Csrc);
    }
    if extended {
        // 16 bits defined by profile, 16 bits of length in 32-bit words.
        let words = u16_at(packet, start + 2).ok_or(RtpError::Extension)?;
        start += 4 + 4 * usize::from(words);
        if start > packet.len() {
            return Err(RtpError::Extension);
        }
    }
    let mut end = packet.len();
    if padded {
        let count = usize::from(*packet.last().ok_or(RtpError::Padding)?);
        if count == 0 || count > end - start {
            return Err(RtpError::Padding);
        }
        end -= count;
    }
    let payload = packet.get(start..end).ok_or(RtpError::Padding)?;
    Ok((header, payload))
}

/// An RTP packet: a version-2 header without CSRCs, extension or
/// padding, then `payload`.
pub fn write_rtp(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
    out.push(RTP_VERSION << 6);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xfffe,
            timestamp: 0x0102_0304,
            ssrc: 0xdead_beef,
        }
    }

    #[test]
    fn a_written_packet_reads_back() {
        let packet = write_rtp(&header(), &[1, 2, 3]);
        assert_eq!(packet.len(), RTP_HEADER_LEN + 3);
        assert_eq!(
            &packet[..RTP_HEADER_LEN],
            &[0x80, 0x88, 0xff, 0xfe, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(parse_rtp(&packet), Ok((header(), &[1u8, 2, 3][..])));
        // An empty payload is a packet too.
        assert_eq!(
            parse_rtp(&write_rtp(&header(), &[])),
            Ok((header(), &[][..]))
        );
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut packet = write_rtp(&header(), &[]);
        packet[0] |= 0x20 | 0x10 | 2; // padding, extension, 2 CSRCs
        packet.extend_from_slice(&[0; 8]); // the CSRCs
        packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // 1 word
        packet.extend_from_slice(&[7, 7, 7]); // the payload
        packet.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        assert_eq!(parse_rtp(&packet), Ok((header(), &[7u8, 7, 7][..])));
    }

    #[test]
    fn malformed_packets_are_refused() {
        let good = write_rtp(&header(), &[5; 4]);
        for n in 0..RTP_HEADER_LEN {
            assert_eq!(parse_rtp(&good[..n]), Err(RtpError::Truncated(n)));
        }
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert_eq!(parse_rtp(&v1), Err(RtpError::Version(1)));
        // 15 CSRCs (60 bytes) in a 16-byte packet.
        let mut csrc = good.clone();
        csrc[0] |= 0x0f;
        assert_eq!(parse_rtp(&csrc), Err(RtpError::Csrc));
        // 1 CSRC: exactly the 4 payload bytes, nothing left: accepted.
        let mut one = good.clone();
        one[0] |= 1;
        assert_eq!(parse_rtp(&one).map(|(_, p)| p.len()), Ok(0));
        // An extension header that is cut short, or announces too much.
        let mut ext = write_rtp(&header(), &[0xbe, 0xde]);
        ext[0] |= 0x10;
        assert_eq!(parse_rtp(&ext), Err(RtpError::Extension));
        let mut ext = write_rtp(&header(), &[0xbe, 0xde, 0xff, 0xff, 1, 2, 3, 4]);
        ext[0] |= 0x10;
        assert_eq!(parse_rtp(&ext), Err(RtpError::Extension));
        // Padding longer than the payload, or zero.
        let mut pad = write_rtp(&header(), &[1, 2, 5]);
        pad[0] |= 0x20;
        assert_eq!(parse_rtp(&pad), Err(RtpError::Padding));
        let mut pad = write_rtp(&header(), &[1, 2, 0]);
        pad[0] |= 0x20;
        assert_eq!(parse_rtp(&pad), Err(RtpError::Padding));
        let mut pad = write_rtp(&header(), &[]);
        pad[0] |= 0x20;
        assert_eq!(parse_rtp(&pad), Err(RtpError::Padding), "no byte to pad");
        // All of the payload is padding: an empty payload.
        let mut pad = write_rtp(&header(), &[1, 2, 3]);
        pad[0] |= 0x20;
        assert_eq!(parse_rtp(&pad).map(|(_, p)| p.len()), Ok(0));
        let long = vec![0x80; RTP_MAX_PACKET_LEN + 1];
        assert_eq!(
            parse_rtp(&long),
            Err(RtpError::TooLong(RTP_MAX_PACKET_LEN + 1))
        );
    }

    #[test]
    fn every_prefix_of_a_tricky_packet_reads_without_panic() {
        let mut packet = write_rtp(&header(), &[]);
        packet[0] |= 0x30 | 0x0f;
        packet.extend((0..100u8).map(|b| b.wrapping_mul(37)));
        for n in 0..=packet.len() {
            let _ = parse_rtp(&packet[..n]);
            let mut p = packet[..n].to_vec();
            if let Some(last) = p.last_mut() {
                *last = 0xff;
            }
            let _ = parse_rtp(&p);
        }
    }
}
