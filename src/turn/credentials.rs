//! Long-term credentials (RFC 8489 §9.2): the key a user's messages are
//! checked with, the users a relay serves, and the server's nonces.
//!
//! The key is MD5(username ":" realm ":" password); a relay stores only
//! it, never the password (it is as good as the password against this
//! realm, so it is kept like a secret key: 0600, zeroized when dropped).
//! The password is taken as given, without SASLprep/OpaqueString
//! processing: use ASCII passwords.
//!
//! Nonces are stateless: the time they were issued and an HMAC over it
//! and the client's transport address with a secret of the server, so a
//! relay keeps no table of nonces and a nonce works only for the client
//! it was given to, for [`NONCE_LIFETIME`] seconds.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Longest username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;
/// Users a relay serves at most.
pub const MAX_USERS: usize = 4096;
/// Seconds a nonce stays valid; after that a request gets 438 (Stale
/// Nonce) and the client retries with the new one.
pub const NONCE_LIFETIME: u64 = 600;
/// Length of a nonce: 16 hex digits of time, 24 of MAC.
pub const NONCE_LEN: usize = 40;
/// Bytes of the nonce's HMAC-SHA1 kept (96 bits).
const NONCE_MAC_LEN: usize = 12;

/// A user's long-term key, MD5(username ":" realm ":" password).
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermKey([u8; 16]);

impl LongTermKey {
    /// The key of `username` in `realm` with `password`.
    pub fn derive(username: &str, realm: &str, password: &[u8]) -> Self {
        let mut h = Md5::new();
        h.update(username.as_bytes());
        h.update(b":");
        h.update(realm.as_bytes());
        h.update(b":");
        h.update(password);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize());
        LongTermKey(out)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s.trim(), &mut out)
            .map_err(|_| "a TURN key is 32 hex digits".to_owned())?;
        Ok(LongTermKey(out))
    }

    /// The key as 32 hex digits (zeroized when dropped).
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0))
    }

    /// The key's bytes (the HMAC key of MESSAGE-INTEGRITY).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for LongTermKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LongTermKey(..)")
    }
}

/// Whether `name` may be a TURN username: 1 to [`MAX_USERNAME_LEN`]
/// bytes of ASCII letters, digits, `-`, `_`, `.` and `@`, not starting
/// with `.` (no SASLprep needed, nothing to escape in a file).
pub fn check_username(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "TURN username {:?}: use 1 to {MAX_USERNAME_LEN} ASCII letters, digits, '-', '_', \
             '.' or '@', not starting with '.'",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// The users a relay serves, by username (bounded by [`MAX_USERS`]).
#[derive(Debug, Clone, Default)]
pub struct Users {
    // A BTreeMap: ordered, no hashing of attacker-chosen names needed.
    keys: BTreeMap<String, LongTermKey>,
}

impl Users {
    /// No users: every authenticated request is refused 401.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, username: &str, key: LongTermKey) -> Result<(), String> {
        check_username(username)?;
        if self.keys.len() >= MAX_USERS && !self.keys.contains_key(username) {
            return Err(format!("more than {MAX_USERS} TURN users"));
        }
        self.keys.insert(username.to_owned(), key);
        Ok(())
    }

    /// The key of `username`.
    pub fn get(&self, username: &str) -> Option<&LongTermKey> {
        self.keys.get(username)
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The server's nonce secret (random, per process).
#[derive(Clone)]
pub struct NonceSecret([u8; 32]);

impl NonceSecret {
    /// A secret from 32 random bytes (the caller's RNG: the core has none).
    pub fn new(bytes: [u8; 32]) -> Self {
        NonceSecret(bytes)
    }

    fn mac(&self, issued: u64, client: SocketAddr) -> [u8; NONCE_MAC_LEN] {
        let mut out = [0u8; NONCE_MAC_LEN];
        // HMAC accepts keys of any length: this cannot fail.
        if let Ok(mut m) = <Hmac<Sha1> as Mac>::new_from_slice(&self.0) {
            m.update(b"p2psip turn nonce");
            m.update(&issued.to_be_bytes());
            match client.ip() {
                IpAddr::V4(ip) => m.update(&ip.octets()),
                IpAddr::V6(ip) => m.update(&ip.octets()),
            }
            m.update(&client.port().to_be_bytes());
            let tag = m.finalize().into_bytes();
            out.copy_from_slice(tag.get(..NONCE_MAC_LEN).unwrap_or(&[0; NONCE_MAC_LEN]));
        }
        out
    }

    /// The RESERVATION-TOKEN of reservation number `n` (RFC 8656
    /// §14.9): 8 bytes of HMAC-SHA1 under this secret, so unguessable
    /// without it, and distinct for distinct `n` (the server numbers
    /// its reservations, never reusing a number in a process).
    pub fn reservation_token(&self, n: u64) -> [u8; 8] {
        let mut out = [0u8; 8];
        if let Ok(mut m) = <Hmac<Sha1> as Mac>::new_from_slice(&self.0) {
            m.update(b"p2psip turn reservation");
            m.update(&n.to_be_bytes());
            let tag = m.finalize().into_bytes();
            out.copy_from_slice(tag.get(..8).unwrap_or(&[0; 8]));
        }
        out
    }

    /// A nonce for `client`, issued at `now` (seconds).
    pub fn nonce(&self, now: u64, client: SocketAddr) -> String {
        format!("{:016x}{}", now, hex::encode(self.mac(now, client)))
    }

    /// Whether `nonce` was issued by this server to `client` less than
    /// [`NONCE_LIFETIME`] seconds before `now` (the MAC compared in
    /// constant time).
    pub fn is_fresh(&self, nonce: &str, now: u64, client: SocketAddr) -> bool {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return false;
        }
        let (time, mac) = nonce.split_at(16);
        let Ok(issued) = u64::from_str_radix(time, 16) else {
            return false;
        };
        let mut given = [0u8; NONCE_MAC_LEN];
        if hex::decode_to_slice(mac, &mut given).is_err() {
            return false;
        }
        let genuine: bool = self.mac(issued, client).ct_eq(&given).into();
        genuine && issued <= now && now - issued < NONCE_LIFETIME
    }
}

impl Drop for NonceSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_md5_of_user_realm_password() {
        // MD5("user:realm:pass"), computed independently.
        let k = LongTermKey::derive("user", "realm", b"pass");
        assert_eq!(&*k.to_hex(), "8493fbc53ba582fb4c044c456bdc40eb");
        assert_eq!(LongTermKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(LongTermKey::from_hex("abc").is_err());
        assert_eq!(format!("{k:?}"), "LongTermKey(..)");
    }

    #[test]
    fn usernames() {
        for ok in ["alice", "a.b-c_d@x", "0"] {
            check_username(ok).unwrap();
        }
        for bad in ["", ".hidden", "a b", "a/b", "ä", &"x".repeat(65)] {
            let e = check_username(bad).unwrap_err();
            assert!(e.contains("TURN username"), "{e}");
        }
    }

    #[test]
    fn nonces_are_bound_to_client_and_time() {
        let s = NonceSecret::new([9; 32]);
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let n = s.nonce(1000, a);
        assert_eq!(n.len(), NONCE_LEN);
        assert!(s.is_fresh(&n, 1000, a));
        assert!(s.is_fresh(&n, 1000 + NONCE_LIFETIME - 1, a));
        assert!(!s.is_fresh(&n, 1000 + NONCE_LIFETIME, a));
        assert!(!s.is_fresh(&n, 999, a), "not from the future");
        assert!(!s.is_fresh(&n, 1000, b), "bound to the client");
        assert!(!NonceSecret::new([8; 32]).is_fresh(&n, 1000, a));
        let mut forged = n.clone().into_bytes();
        forged[39] = if forged[39] == b'0' { b'1' } else { b'0' };
        assert!(!s.is_fresh(std::str::from_utf8(&forged).unwrap(), 1000, a));
        // A later time with the old MAC.
        let shifted = format!("{:016x}{}", 1001, &n[16..]);
        assert!(!s.is_fresh(&shifted, 1001, a));
        assert!(!s.is_fresh("zz", 1000, a));
    }

    #[test]
    fn reservation_tokens_differ_by_number_and_secret() {
        let s = NonceSecret::new([9; 32]);
        let tokens: std::collections::BTreeSet<[u8; 8]> =
            (0..1000).map(|n| s.reservation_token(n)).collect();
        assert_eq!(tokens.len(), 1000);
        assert_eq!(s.reservation_token(7), s.reservation_token(7));
        assert_ne!(
            s.reservation_token(7),
            NonceSecret::new([8; 32]).reservation_token(7)
        );
    }
}
