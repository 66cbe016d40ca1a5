//! Caller identity across the overlay, in the manner of RFC 8224: the
//! caller's node signs what the callee must be able to trust with the
//! caller's user key, and the callee's node checks it against the
//! caller's self-certifying AOR before it tells the phone, with
//! P-Asserted-Identity, who calls.
//!
//! The header (this project's profile, docs/sip.md):
//!
//! ```text
//! Identity: <signature, 128 hex>;info=<p2psip:key:<public key, 64 hex>>;alg=EdDSA;ppt=p2psip;iat=<unix secs>
//! ```
//!
//! The signature is Ed25519 over the UTF-8 text
//! `"p2psip-identity-v1\n" caller-AOR "\n" callee-AOR "\n" Call-ID "\n"
//! iat "\n" hex(SHA-256(body))`, the AORs normalised
//! ([`super::registrar::aor_of`]).

use super::header::HeaderName;
use super::message::Request;
use super::registrar::aor_of;
use super::typed::NameAddr;
use crate::identity::{PublicKey, SecretKey, UserId};
use crate::overlay::record::self_certifying_aor;
use sha2::{Digest, Sha256};

/// How far an `iat` may lie from the verifier's clock, in seconds (RFC
/// 8224 §6.2.1 recommends 60).
pub const IDENTITY_FRESHNESS_SECS: u64 = 60;

/// Why an Identity header does not back the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The request carries no Identity header (an unverified caller).
    #[error("no Identity header")]
    Absent,
    /// The header is not this profile's.
    #[error("malformed Identity header: {0}")]
    Malformed(&'static str),
    /// The key's self-certifying AOR is not the From's.
    #[error("the signing key does not own the From AOR")]
    NotTheCallersKey,
    /// Signed too long ago, or in the future.
    #[error("the Identity header is stale")]
    Stale,
    /// The signature does not verify over this request.
    #[error("the Identity signature does not match the request")]
    BadSignature,
}

fn header_aor(request: &Request, name: HeaderName, label: &'static str) -> Option<String> {
    request
        .headers
        .get(&name)
        .and_then(|v| NameAddr::parse(label, v).ok())
        .and_then(|n| aor_of(&n.uri))
}

fn signed_text(request: &Request, iat: u64) -> Option<String> {
    let from = header_aor(request, HeaderName::From, "From")?;
    let to = header_aor(request, HeaderName::To, "To")?;
    let call_id = request.headers.get(&HeaderName::CallId)?;
    let body = hex::encode(Sha256::digest(&request.body));
    Some(format!(
        "p2psip-identity-v1\n{from}\n{to}\n{call_id}\n{iat}\n{body}"
    ))
}

/// The Identity value for `request` signed by `caller` at `now` (unix
/// seconds) in the overlay `domain`; `None` if the request lacks a From,
/// To or Call-ID, or if its From is not `caller`'s self-certifying AOR
/// (an AOR a CA named is not provable this way yet: such calls arrive
/// unverified).
pub fn sign(request: &Request, caller: &SecretKey, domain: &str, now: u64) -> Option<String> {
    let from = header_aor(request, HeaderName::From, "From")?;
    if from != self_certifying_aor(&caller.public().user_id(), &domain.to_ascii_lowercase()) {
        return None;
    }
    let text = signed_text(request, now)?;
    let signature = caller.sign(text.as_bytes());
    Some(format!(
        "{};info=<p2psip:key:{}>;alg=EdDSA;ppt=p2psip;iat={now}",
        hex::encode(signature),
        hex::encode(caller.public().as_bytes())
    ))
}

/// Checks `request`'s Identity header at `now` (unix seconds) in the
/// overlay `domain`: returns the caller's AOR it proves.
pub fn verify(request: &Request, domain: &str, now: u64) -> Result<String, IdentityError> {
    let value = request
        .headers
        .get(&HeaderName::Identity)
        .ok_or(IdentityError::Absent)?;
    let mut parts = value.split(';').map(str::trim);
    let signature = parts
        .next()
        .and_then(|s| hex::decode(s).ok())
        .filter(|s| s.len() == 64)
        .ok_or(IdentityError::Malformed(
            "the signature is not 128 hex digits",
        ))?;
    let (mut key, mut alg, mut ppt, mut iat) = (None, None, None, None);
    for part in parts {
        let (name, v) = part.split_once('=').unwrap_or((part, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "info" => {
                key = v
                    .strip_prefix("<p2psip:key:")
                    .and_then(|k| k.strip_suffix('>'))
            }
            "alg" => alg = Some(v),
            "ppt" => ppt = Some(v),
            "iat" => iat = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    if alg != Some("EdDSA") || ppt != Some("p2psip") {
        return Err(IdentityError::Malformed("alg must be EdDSA and ppt p2psip"));
    }
    let iat = iat.ok_or(IdentityError::Malformed("no iat"))?;
    let key: [u8; 32] = key
        .and_then(|k| hex::decode(k).ok())
        .and_then(|k| k.try_into().ok())
        .ok_or(IdentityError::Malformed("info is not <p2psip:key:64 hex>"))?;
    let key = PublicKey::from_bytes(&key).map_err(|_| IdentityError::Malformed("not a key"))?;
    let from = header_aor(request, HeaderName::From, "From")
        .ok_or(IdentityError::Malformed("no From AOR"))?;
    if from != self_certifying_aor(&UserId::from_public_key(&key), &domain.to_ascii_lowercase()) {
        return Err(IdentityError::NotTheCallersKey);
    }
    if now.abs_diff(iat) > IDENTITY_FRESHNESS_SECS {
        return Err(IdentityError::Stale);
    }
    let text = signed_text(request, iat).ok_or(IdentityError::Malformed("no To or Call-ID"))?;
    if !key.verify_strict(text.as_bytes(), &signature) {
        return Err(IdentityError::BadSignature);
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    const NOW: u64 = 1_750_000_000;

    fn invite(from: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@lab.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n\
             From: <{from}>;tag=1\r\nTo: <sip:bob@lab.example>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn signed(key: &SecretKey, from: &str, at: u64) -> Request {
        let mut r = invite(from);
        let value = sign(&r, key, "lab.example", at).unwrap();
        r.headers.push(HeaderName::Identity, value);
        r
    }

    #[test]
    fn the_callers_key_proves_its_self_certifying_aor() {
        let alice = SecretKey::from_seed(&[3; 32]);
        let aor = self_certifying_aor(&alice.public().user_id(), "lab.example");
        let r = signed(&alice, &aor, NOW);
        assert_eq!(verify(&r, "lab.example", NOW + 30), Ok(aor));
    }

    #[test]
    fn another_from_a_changed_request_or_an_old_one_is_not_backed() {
        let alice = SecretKey::from_seed(&[3; 32]);
        let mallory = SecretKey::from_seed(&[4; 32]);
        let aor = self_certifying_aor(&alice.public().user_id(), "lab.example");
        // Mallory's node will not sign an AOR that is not hers ...
        assert_eq!(sign(&invite(&aor), &mallory, "lab.example", NOW), None);
        // ... and a forged header naming her key fails.
        let mallory_aor = self_certifying_aor(&mallory.public().user_id(), "lab.example");
        let mut r = signed(&mallory, &mallory_aor, NOW);
        r.headers.set(HeaderName::From, format!("<{aor}>;tag=1"));
        assert_eq!(
            verify(&r, "lab.example", NOW),
            Err(IdentityError::NotTheCallersKey)
        );
        // A good signature, then the SDP (the body) changed on the way.
        let mut r = signed(&alice, &aor, NOW);
        r.body = b"v=1\n".to_vec();
        assert_eq!(
            verify(&r, "lab.example", NOW),
            Err(IdentityError::BadSignature)
        );
        // Another callee.
        let mut r = signed(&alice, &aor, NOW);
        r.headers.set(HeaderName::To, "<sip:carol@lab.example>");
        assert_eq!(
            verify(&r, "lab.example", NOW),
            Err(IdentityError::BadSignature)
        );
        // Too old, or from the future.
        let r = signed(&alice, &aor, NOW);
        assert_eq!(
            verify(&r, "lab.example", NOW + 61),
            Err(IdentityError::Stale)
        );
        assert_eq!(
            verify(&r, "lab.example", NOW - 61),
            Err(IdentityError::Stale)
        );
        // Garbage.
        let mut r = invite(&aor);
        r.headers
            .push(HeaderName::Identity, "zz;info=<p2psip:key:00>");
        assert!(matches!(
            verify(&r, "lab.example", NOW),
            Err(IdentityError::Malformed(_))
        ));
    }
}
