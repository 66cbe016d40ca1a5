//! The STUN message codec (RFC 8489), strict and bounded: a 20-byte
//! header (type, length, magic cookie, transaction id), then attributes
//! of type, length, value, padded to 4 bytes.
//!
//! [`Message::decode`] checks the header length against the datagram,
//! every attribute's length against what is left, the number of
//! attributes ([`MAX_ATTRIBUTES`]) and FINGERPRINT when present (it must
//! be last). Attributes after MESSAGE-INTEGRITY are ignored, except
//! FINGERPRINT, as the RFC says. [`Message::verify_integrity`] checks
//! MESSAGE-INTEGRITY (HMAC-SHA1) in constant time. [`MessageBuilder`]
//! writes messages, with MESSAGE-INTEGRITY and FINGERPRINT last.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the STUN header.
pub const HEADER_LEN: usize = 20;
/// Attributes a decoded message may carry at most (a TURN request needs
/// fewer than ten; CreatePermission may repeat XOR-PEER-ADDRESS).
pub const MAX_ATTRIBUTES: usize = 32;
/// What the CRC-32 of a message is XORed with in FINGERPRINT.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// Length of a MESSAGE-INTEGRITY value (HMAC-SHA1).
pub const INTEGRITY_LEN: usize = 20;
/// Longest reason phrase written in ERROR-CODE (the RFC allows 127
/// characters).
pub const MAX_REASON_LEN: usize = 127;

/// STUN and TURN methods (RFC 8489 §18.2, RFC 8656 §17).
pub mod method {
    /// Binding (STUN).
    pub const BINDING: u16 = 0x001;
    /// Allocate (TURN).
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh (TURN).
    pub const REFRESH: u16 = 0x004;
    /// Send (TURN, indication).
    pub const SEND: u16 = 0x006;
    /// Data (TURN, indication).
    pub const DATA: u16 = 0x007;
    /// CreatePermission (TURN).
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind (TURN).
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// STUN and TURN attribute types (RFC 8489 §18.3, RFC 8656 §18).
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY.
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT.
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT.
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN.
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// The class of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request (answered by a response).
    Request,
    /// An indication (never answered).
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// The 16-bit message type of `method` (12 bits) and `class`: the class
/// bits sit at positions 4 and 8 among the method's (RFC 8489 §5).
pub fn message_type(method: u16, class: Class) -> u16 {
    let m = method & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// The method and class of a 16-bit message type (its top two bits are
/// ignored; the header check refuses them).
pub fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = ((t >> 4) & 1) | ((t >> 7) & 2);
    (method, Class::from_bits(class))
}

/// Why bytes are not an acceptable STUN message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Fewer bytes than a header.
    #[error("{0} bytes: shorter than the 20-byte STUN header")]
    TooShort(usize),
    /// The first two bits are not zero.
    #[error("the first two bits are not zero: not a STUN message")]
    NotStun,
    /// The magic cookie is missing.
    #[error("no magic cookie (0x2112A442): not an RFC 5389/8489 message")]
    NoCookie,
    /// The header's length is not a multiple of 4.
    #[error("header length {0} is not a multiple of 4")]
    Unaligned(usize),
    /// The header's length disagrees with the datagram.
    #[error("header length {declared} but {actual} bytes follow the header")]
    LengthMismatch {
        /// What the header says.
        declared: usize,
        /// What follows the header.
        actual: usize,
    },
    /// An attribute runs past the end of the message.
    #[error("attribute {typ:#06x} at offset {at}: its length {len} runs past the message's end")]
    AttributeOverrun {
        /// The attribute's type.
        typ: u16,
        /// Where its header starts.
        at: usize,
        /// Its declared length.
        len: usize,
    },
    /// An attribute header cut short.
    #[error("a truncated attribute header at offset {0}")]
    TruncatedAttribute(usize),
    /// More attributes than [`MAX_ATTRIBUTES`].
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    /// Something after FINGERPRINT.
    #[error("attribute {0:#06x} after FINGERPRINT (it must be last)")]
    AfterFingerprint(u16),
    /// A FINGERPRINT whose value does not match the message.
    #[error("FINGERPRINT does not match the message (corrupted or not STUN)")]
    FingerprintMismatch,
    /// An attribute whose value is malformed.
    #[error("attribute {name}: {why}")]
    BadAttribute {
        /// The attribute's name.
        name: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// No MESSAGE-INTEGRITY to check.
    #[error("no MESSAGE-INTEGRITY")]
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not verify with the key.
    #[error("MESSAGE-INTEGRITY does not match (wrong key or altered message)")]
    IntegrityMismatch,
    /// A message being built grew past 65535 bytes of attributes.
    #[error("the message would be longer than a STUN message can be")]
    TooLarge,
}

/// The header of `raw`, if it looks like STUN: method, class and
/// transaction id (to answer a malformed request with 400).
pub fn peek_header(raw: &[u8]) -> Option<(u16, Class, [u8; 12])> {
    let header = raw.get(..HEADER_LEN)?;
    let t = u16::from_be_bytes([header[0], header[1]]);
    if t & 0xC000 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    let mut tid = [0u8; 12];
    tid.copy_from_slice(&header[8..20]);
    let (method, class) = split_type(t);
    Some((method, class, tid))
}

/// A decoded message, borrowing the datagram.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The method (12 bits).
    pub method: u16,
    /// The class.
    pub class: Class,
    /// The transaction id.
    pub transaction_id: [u8; 12],
    raw: &'a [u8],
    /// The attributes before MESSAGE-INTEGRITY (or all, without it),
    /// in order: type and value (without padding).
    attrs: Vec<(u16, &'a [u8])>,
    /// The offset of the MESSAGE-INTEGRITY attribute's header.
    integrity: Option<usize>,
    /// Whether a (matching) FINGERPRINT was present.
    fingerprint: bool,
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl<'a> Message<'a> {
    /// Decodes one datagram as a STUN message, checking FINGERPRINT
    /// when present. MESSAGE-INTEGRITY is checked separately, with the
    /// key of the user the message names ([`Message::verify_integrity`]).
    pub fn decode(raw: &'a [u8]) -> Result<Self, StunError> {
        if raw.len() < HEADER_LEN {
            return Err(StunError::TooShort(raw.len()));
        }
        let t = read_u16(raw, 0).ok_or(StunError::TooShort(raw.len()))?;
        if t & 0xC000 != 0 {
            return Err(StunError::NotStun);
        }
        let (method, class, transaction_id) = peek_header(raw).ok_or(StunError::NoCookie)?;
        let declared = usize::from(read_u16(raw, 2).ok_or(StunError::TooShort(raw.len()))?);
        if declared % 4 != 0 {
            return Err(StunError::Unaligned(declared));
        }
        let actual = raw.len() - HEADER_LEN;
        if declared != actual {
            return Err(StunError::LengthMismatch { declared, actual });
        }
        let mut attrs = Vec::new();
        let mut integrity = None;
        let mut fingerprint = false;
        let mut count = 0usize;
        let mut at = HEADER_LEN;
        while at < raw.len() {
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            let (Some(typ), Some(len)) = (read_u16(raw, at), read_u16(raw, at + 2)) else {
                return Err(StunError::TruncatedAttribute(at));
            };
            let len = usize::from(len);
            let start = at + 4;
            let value = raw
                .get(start..start + len)
                .ok_or(StunError::AttributeOverrun { typ, at, len })?;
            // The padding must be there too (its bytes are ignored).
            let next = start + padded(len);
            if next > raw.len() {
                return Err(StunError::AttributeOverrun { typ, at, len });
            }
            if fingerprint {
                return Err(StunError::AfterFingerprint(typ));
            }
            match typ {
                attr::FINGERPRINT => {
                    let value: [u8; 4] = value.try_into().map_err(|_| StunError::BadAttribute {
                        name: "FINGERPRINT",
                        why: "not 4 bytes",
                    })?;
                    let crc = crc32fast::hash(raw.get(..at).unwrap_or_default()) ^ FINGERPRINT_XOR;
                    if crc != u32::from_be_bytes(value) {
                        return Err(StunError::FingerprintMismatch);
                    }
                    fingerprint = true;
                }
                attr::MESSAGE_INTEGRITY if integrity.is_none() => {
                    if len != INTEGRITY_LEN {
                        return Err(StunError::BadAttribute {
                            name: "MESSAGE-INTEGRITY",
                            why: "not 20 bytes",
                        });
                    }
                    integrity = Some(at);
                }
                // After MESSAGE-INTEGRITY only FINGERPRINT counts.
                _ if integrity.is_some() => {}
                _ => attrs.push((typ, value)),
            }
            at = next;
        }
        Ok(Message {
            method,
            class,
            transaction_id,
            raw,
            attrs,
            integrity,
            fingerprint,
        })
    }

    /// The attributes that count (before MESSAGE-INTEGRITY), in order.
    pub fn attributes(&self) -> &[(u16, &'a [u8])] {
        &self.attrs
    }

    /// The value of the first attribute of type `typ`.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(t, _)| *t == typ).map(|(_, v)| *v)
    }

    /// The values of every attribute of type `typ`.
    pub fn all(&self, typ: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.attrs
            .iter()
            .filter(move |(t, _)| *t == typ)
            .map(|(_, v)| *v)
    }

    /// Whether the message carries MESSAGE-INTEGRITY.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether the message carried a (matching) FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint
    }

    /// Checks MESSAGE-INTEGRITY with `key` (for long-term credentials,
    /// MD5(username ":" realm ":" password)), in constant time: the HMAC
    /// covers the message up to the attribute, with the header's length
    /// set as if it ended there (RFC 8489 §14.5).
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let at = self.integrity.ok_or(StunError::NoIntegrity)?;
        let tag = self
            .raw
            .get(at + 4..at + 4 + INTEGRITY_LEN)
            .ok_or(StunError::NoIntegrity)?;
        let covered = self.raw.get(..at).ok_or(StunError::NoIntegrity)?;
        let mac = integrity_mac(key, covered, at + 4 + INTEGRITY_LEN - HEADER_LEN)?;
        mac.verify_slice(tag)
            .map_err(|_| StunError::IntegrityMismatch)
    }

    /// The comprehension-required attributes (type below 0x8000) not in
    /// `known`: a request carrying any is answered 420.
    pub fn unknown_required(&self, known: &[u16]) -> Vec<u16> {
        let mut unknown: Vec<u16> = Vec::new();
        for (t, _) in &self.attrs {
            if *t < 0x8000 && !known.contains(t) && !unknown.contains(t) {
                unknown.push(*t);
            }
        }
        unknown
    }

    /// A text attribute (USERNAME, REALM, NONCE), as UTF-8 of at most
    /// `max` bytes.
    pub fn text(
        &self,
        typ: u16,
        name: &'static str,
        max: usize,
    ) -> Result<Option<&'a str>, StunError> {
        let Some(v) = self.get(typ) else {
            return Ok(None);
        };
        if v.len() > max {
            return Err(StunError::BadAttribute {
                name,
                why: "too long",
            });
        }
        std::str::from_utf8(v)
            .map(Some)
            .map_err(|_| StunError::BadAttribute {
                name,
                why: "not UTF-8",
            })
    }

    /// An XOR-encoded address attribute's value.
    pub fn xor_address(&self, typ: u16) -> Result<Option<SocketAddr>, StunError> {
        self.get(typ)
            .map(|v| decode_xor_address(v, &self.transaction_id))
            .transpose()
    }

    /// A 32-bit attribute (LIFETIME).
    pub fn u32_attr(&self, typ: u16, name: &'static str) -> Result<Option<u32>, StunError> {
        let Some(v) = self.get(typ) else {
            return Ok(None);
        };
        let b: [u8; 4] = v.try_into().map_err(|_| StunError::BadAttribute {
            name,
            why: "not 4 bytes",
        })?;
        Ok(Some(u32::from_be_bytes(b)))
    }

    /// The ERROR-CODE's number (e.g. 401), if any.
    pub fn error_code(&self) -> Option<u16> {
        let v = self.get(attr::ERROR_CODE)?;
        let class = u16::from(*v.get(2)? & 0x07);
        let number = u16::from(*v.get(3)?);
        Some(class * 100 + number)
    }

    /// The datagram this message was decoded from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// HMAC-SHA1 with `key` over `covered` (header and attributes before
/// MESSAGE-INTEGRITY), the header's length field set to `length`.
fn integrity_mac(key: &[u8], covered: &[u8], length: usize) -> Result<Hmac<Sha1>, StunError> {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).map_err(|_| StunError::NoIntegrity)?;
    let length = u16::try_from(length).map_err(|_| StunError::TooLarge)?;
    let header = covered
        .get(..HEADER_LEN)
        .ok_or(StunError::TooShort(covered.len()))?;
    mac.update(&header[..2]);
    mac.update(&length.to_be_bytes());
    mac.update(&header[4..]);
    mac.update(covered.get(HEADER_LEN..).unwrap_or_default());
    Ok(mac)
}

/// Decodes an XOR-MAPPED-ADDRESS-style value (RFC 8489 §14.2).
pub fn decode_xor_address(v: &[u8], tid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let bad = |why| StunError::BadAttribute {
        name: "XOR address",
        why,
    };
    let port = read_u16(v, 2).ok_or(bad("shorter than 4 bytes"))? ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match (v.get(1), v.len()) {
        (Some(0x01), 8) => {
            let mut a = [0u8; 4];
            for (i, b) in a.iter_mut().enumerate() {
                *b = v[4 + i] ^ cookie[i];
            }
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
        }
        (Some(0x02), 20) => {
            let mut a = [0u8; 16];
            for (i, b) in a.iter_mut().enumerate() {
                let k = if i < 4 { cookie[i] } else { tid[i - 4] };
                *b = v[4 + i] ^ k;
            }
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        (Some(0x01 | 0x02), _) => Err(bad("length does not fit its family")),
        _ => Err(bad("unknown address family")),
    }
}

/// Encodes an address XORed as RFC 8489 §14.2 says.
pub fn encode_xor_address(addr: SocketAddr, tid: &[u8; 12]) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut out = Vec::with_capacity(20);
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend(ip.octets().iter().zip(cookie).map(|(a, k)| a ^ k));
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            let key = cookie.iter().chain(tid.iter());
            out.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    out
}

/// Writes a message, attribute by attribute.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    tid: [u8; 12],
    too_large: bool,
}

impl MessageBuilder {
    /// A message of `method` and `class` with transaction id `tid`.
    pub fn new(method: u16, class: Class, tid: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        MessageBuilder {
            buf,
            tid,
            too_large: false,
        }
    }

    fn set_length(&mut self) {
        match u16::try_from(self.buf.len() - HEADER_LEN) {
            Ok(len) => self.buf[2..4].copy_from_slice(&len.to_be_bytes()),
            Err(_) => self.too_large = true,
        }
    }

    /// Appends an attribute (padded with zeros).
    pub fn add(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        let Ok(len) = u16::try_from(value.len()) else {
            self.too_large = true;
            return self;
        };
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf
            .resize(self.buf.len() + padded(value.len()) - value.len(), 0);
        self.set_length();
        self
    }

    /// Appends an XOR-encoded address.
    pub fn add_xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let v = encode_xor_address(addr, &self.tid);
        self.add(typ, &v)
    }

    /// Appends a 32-bit attribute.
    pub fn add_u32(&mut self, typ: u16, value: u32) -> &mut Self {
        self.add(typ, &value.to_be_bytes())
    }

    /// Appends ERROR-CODE `code` (300 to 699) with `reason` (cut to
    /// [`MAX_REASON_LEN`] characters).
    pub fn add_error(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = vec![0, 0, (code / 100) as u8 & 0x07, (code % 100) as u8];
        let reason: String = reason.chars().take(MAX_REASON_LEN).collect();
        v.extend_from_slice(reason.as_bytes());
        self.add(attr::ERROR_CODE, &v)
    }

    /// Appends MESSAGE-INTEGRITY computed with `key` (it must come after
    /// every attribute it protects).
    pub fn add_integrity(&mut self, key: &[u8]) -> &mut Self {
        let covered_len = self.buf.len();
        let mac = integrity_mac(key, &self.buf, covered_len + 4 + INTEGRITY_LEN - HEADER_LEN);
        match mac {
            Ok(mac) => {
                let tag = mac.finalize().into_bytes();
                self.add(attr::MESSAGE_INTEGRITY, &tag)
            }
            Err(_) => {
                self.too_large = true;
                self
            }
        }
    }

    /// Appends FINGERPRINT (it must be last).
    pub fn add_fingerprint(&mut self) -> &mut Self {
        // The length must already count the FINGERPRINT attribute.
        let len = self.buf.len() + 8 - HEADER_LEN;
        match u16::try_from(len) {
            Ok(len) => self.buf[2..4].copy_from_slice(&len.to_be_bytes()),
            Err(_) => {
                self.too_large = true;
                return self;
            }
        }
        let crc = crc32fast::hash(&self.buf) ^ FINGERPRINT_XOR;
        self.add(attr::FINGERPRINT, &crc.to_be_bytes())
    }

    /// The message's bytes.
    pub fn finish(&self) -> Result<Vec<u8>, StunError> {
        if self.too_large {
            return Err(StunError::TooLarge);
        }
        Ok(self.buf.clone())
    }

    /// The message's bytes, consuming the builder.
    pub fn into_bytes(self) -> Result<Vec<u8>, StunError> {
        if self.too_large {
            return Err(StunError::TooLarge);
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        hex::decode(s).unwrap()
    }

    // RFC 5769 §2.1: a request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
    // USERNAME "evtj:h6vY" (padded with spaces), MESSAGE-INTEGRITY with
    // the short-term password, FINGERPRINT.
    fn rfc5769_request() -> Vec<u8> {
        unhex(
            "00010058 2112a442 b7e7a701 bc34d686 fa87dfae
             80220010 5354554e 20746573 7420636c 69656e74
             00240004 6e0001ff 80290008 932ff9b1 51263b36
             00060009 6576746a 3a683676 59202020
             00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
             80280004 e57a3bcf",
        )
    }

    // RFC 5769 §2.2: IPv4 response, mapped address 192.0.2.1:32853.
    fn rfc5769_ipv4_response() -> Vec<u8> {
        unhex(
            "0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200008 0001a147 e112a643
             00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             80280004 c07d4c96",
        )
    }

    // RFC 5769 §2.3: IPv6 response, 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
    fn rfc5769_ipv6_response() -> Vec<u8> {
        unhex(
            "01010048 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
             00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
             80280004 c8fb0b4c",
        )
    }

    // RFC 5769 §2.4: long-term credentials, USERNAME "マトリックス",
    // password "TheMatrIX" (after SASLprep), realm "example.org".
    fn rfc5769_long_term() -> Vec<u8> {
        unhex(
            "00010060 2112a442 78ad3433 c6ad72c0 29da412e
             00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
             0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
             0014000b 6578616d 706c652e 6f726700
             00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666",
        )
    }

    const SHORT_TERM: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    #[test]
    fn rfc5769_sample_request() {
        let raw = rfc5769_request();
        let m = Message::decode(&raw).unwrap();
        assert_eq!((m.method, m.class), (method::BINDING, Class::Request));
        assert!(m.has_fingerprint());
        assert_eq!(
            m.text(attr::USERNAME, "USERNAME", 509).unwrap(),
            Some("evtj:h6vY")
        );
        assert_eq!(m.get(attr::SOFTWARE), Some(&b"STUN test client"[..]));
        m.verify_integrity(SHORT_TERM).unwrap();
        assert_eq!(
            m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"),
            Err(StunError::IntegrityMismatch)
        );
    }

    #[test]
    fn rfc5769_responses() {
        let raw = rfc5769_ipv4_response();
        let m = Message::decode(&raw).unwrap();
        assert_eq!((m.method, m.class), (method::BINDING, Class::Success));
        m.verify_integrity(SHORT_TERM).unwrap();
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        let raw = rfc5769_ipv6_response();
        let m = Message::decode(&raw).unwrap();
        m.verify_integrity(SHORT_TERM).unwrap();
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
    }

    #[test]
    fn rfc5769_long_term_credentials() {
        let raw = rfc5769_long_term();
        let m = Message::decode(&raw).unwrap();
        assert!(!m.has_fingerprint());
        let user = m.text(attr::USERNAME, "USERNAME", 509).unwrap().unwrap();
        assert_eq!(user, "マトリックス");
        assert_eq!(
            m.text(attr::REALM, "REALM", 763).unwrap(),
            Some("example.org")
        );
        assert_eq!(
            m.text(attr::NONCE, "NONCE", 763).unwrap(),
            Some("f//499k954d6OL34oL9FSTvy64sA")
        );
        let key = crate::turn::credentials::LongTermKey::derive(user, "example.org", b"TheMatrIX");
        m.verify_integrity(key.as_bytes()).unwrap();
        let wrong =
            crate::turn::credentials::LongTermKey::derive(user, "example.org", b"TheMatrix");
        assert_eq!(
            m.verify_integrity(wrong.as_bytes()),
            Err(StunError::IntegrityMismatch)
        );
    }

    #[test]
    fn builder_reproduces_rfc5769_response() {
        // Rebuild §2.2 from its parts: same bytes, integrity and fingerprint included.
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&unhex("b7e7a701 bc34d686 fa87dfae"));
        let mut b = MessageBuilder::new(method::BINDING, Class::Success, tid);
        b.add(attr::SOFTWARE, b"test vector")
            .add_xor_address(attr::XOR_MAPPED_ADDRESS, "192.0.2.1:32853".parse().unwrap())
            .add_integrity(SHORT_TERM)
            .add_fingerprint();
        let built = b.finish().unwrap();
        // The RFC pads SOFTWARE with a space; this builder pads with zero.
        let mut expected = rfc5769_ipv4_response();
        expected[20 + 4 + 11] = 0;
        assert_eq!(&built[..52], &expected[..52]);
        // Integrity covers the padding, so compare by verifying instead.
        let m = Message::decode(&built).unwrap();
        m.verify_integrity(SHORT_TERM).unwrap();
        assert!(m.has_fingerprint());
    }

    #[test]
    fn round_trip_of_every_attribute_kind() {
        let tid = [7u8; 12];
        let v6: SocketAddr = "[2001:db8::1]:3478".parse().unwrap();
        let mut b = MessageBuilder::new(method::ALLOCATE, Class::Error, tid);
        b.add_error(438, "Stale Nonce")
            .add(attr::REALM, b"p2psip")
            .add(attr::NONCE, b"abc")
            .add_u32(attr::LIFETIME, 600)
            .add_xor_address(attr::XOR_PEER_ADDRESS, v6)
            .add_integrity(b"key")
            .add_fingerprint();
        let raw = b.finish().unwrap();
        let m = Message::decode(&raw).unwrap();
        assert_eq!((m.method, m.class), (method::ALLOCATE, Class::Error));
        assert_eq!(m.transaction_id, tid);
        assert_eq!(m.error_code(), Some(438));
        assert_eq!(m.text(attr::NONCE, "NONCE", 10).unwrap(), Some("abc"));
        assert_eq!(m.u32_attr(attr::LIFETIME, "LIFETIME").unwrap(), Some(600));
        assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS).unwrap(), Some(v6));
        m.verify_integrity(b"key").unwrap();
        for t in [0u16, 0x0101, 0x0111, 0x3EEF] {
            let (method, class) = split_type(t);
            assert_eq!(message_type(method, class), t);
        }
    }

    #[test]
    fn refusals_name_what_was_wrong() {
        let good = rfc5769_request();
        assert_eq!(
            Message::decode(&good[..19]).unwrap_err(),
            StunError::TooShort(19)
        );
        let mut bad = good.clone();
        bad[0] = 0x80;
        assert_eq!(Message::decode(&bad).unwrap_err(), StunError::NotStun);
        let mut bad = good.clone();
        bad[4] = 0;
        assert_eq!(Message::decode(&bad).unwrap_err(), StunError::NoCookie);
        let mut bad = good.clone();
        bad[3] = 0x59;
        assert_eq!(
            Message::decode(&bad).unwrap_err(),
            StunError::Unaligned(0x59)
        );
        assert_eq!(
            Message::decode(&good[..good.len() - 4]).unwrap_err(),
            StunError::LengthMismatch {
                declared: 0x58,
                actual: 0x54
            }
        );
        // A flipped bit in the body: the fingerprint catches it.
        let mut bad = good.clone();
        bad[30] ^= 1;
        assert_eq!(
            Message::decode(&bad).unwrap_err(),
            StunError::FingerprintMismatch
        );
        // An attribute longer than the message.
        let mut bad = good.clone();
        bad[22..24].copy_from_slice(&0x00ffu16.to_be_bytes());
        assert!(matches!(
            Message::decode(&bad).unwrap_err(),
            StunError::AttributeOverrun {
                typ: 0x8022,
                at: 20,
                len: 255
            }
        ));
        let msg = StunError::AttributeOverrun {
            typ: 0x8022,
            at: 20,
            len: 255,
        }
        .to_string();
        assert!(msg.contains("0x8022") && msg.contains("255"), "{msg}");
        // Something after FINGERPRINT.
        let mut b = MessageBuilder::new(method::BINDING, Class::Request, [1; 12]);
        b.add_fingerprint().add(attr::SOFTWARE, b"x");
        let raw = b.finish().unwrap();
        assert!(matches!(
            Message::decode(&raw),
            Err(StunError::AfterFingerprint(0x8022)) | Err(StunError::FingerprintMismatch)
        ));
        // Too many attributes.
        let mut b = MessageBuilder::new(method::BINDING, Class::Request, [1; 12]);
        for _ in 0..=MAX_ATTRIBUTES {
            b.add(attr::SOFTWARE, b"");
        }
        let raw = b.finish().unwrap();
        assert_eq!(
            Message::decode(&raw).unwrap_err(),
            StunError::TooManyAttributes
        );
        // MESSAGE-INTEGRITY of the wrong size.
        let mut b = MessageBuilder::new(method::BINDING, Class::Request, [1; 12]);
        b.add(attr::MESSAGE_INTEGRITY, &[0; 16]);
        assert!(matches!(
            Message::decode(&b.finish().unwrap()),
            Err(StunError::BadAttribute {
                name: "MESSAGE-INTEGRITY",
                ..
            })
        ));
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut b = MessageBuilder::new(method::BINDING, Class::Request, [2; 12]);
        b.add(attr::USERNAME, b"a")
            .add_integrity(b"k")
            .add(attr::REALM, b"late");
        let raw = b.finish().unwrap();
        let m = Message::decode(&raw).unwrap();
        assert_eq!(m.get(attr::REALM), None);
        // The integrity check covers only what precedes it.
        m.verify_integrity(b"k").unwrap();
    }

    #[test]
    fn xor_address_refusals() {
        let tid = [0u8; 12];
        assert!(decode_xor_address(&[0, 1, 0], &tid).is_err());
        assert!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &tid).is_err());
        assert!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &tid).is_err());
        let a: SocketAddr = "10.1.2.3:9".parse().unwrap();
        assert_eq!(
            decode_xor_address(&encode_xor_address(a, &tid), &tid).unwrap(),
            a
        );
    }
}
