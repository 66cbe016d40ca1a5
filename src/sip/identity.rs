//! Caller identity across the overlay, in the manner of RFC 8224: the
//! caller's node signs what the callee must be able to trust with the
//! caller's user key, and the callee's node checks it against the
//! caller's self-certifying AOR (or, in an enrolled overlay, the user
//! certificate the overlay's CA issued for that AOR) before it tells the
//! phone, with P-Asserted-Identity, who calls.
//!
//! The header (this project's profile, docs/protocol.md §9.3):
//!
//! ```text
//! Identity: <signature, 128 hex>;info=<p2psip:key:<public key, 64 hex>>;alg=EdDSA;ppt=p2psip;iat=<unix secs>
//! Identity: <signature, 128 hex>;info=<p2psip:cert:<user certificate DER, hex>>;alg=EdDSA;ppt=p2psip;iat=<unix secs>
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
use crate::identity::{IdKind, PublicKey, SecretKey, UserId};
use crate::overlay::record::{self_certifying_aor, RecordPolicy};
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
    /// The key's self-certifying AOR is not the From's, or the
    /// certificate does not name the From AOR.
    #[error("the signing key does not own the From AOR")]
    NotTheCallersKey,
    /// The user certificate does not verify under the overlay's CA (or
    /// the overlay has none, or is enrolled and the header names a bare
    /// key).
    #[error("the caller's certificate is not valid here: {0}")]
    Certificate(String),
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

/// Who signs a caller's calls: its user key, and in an enrolled overlay
/// the user certificate the CA issued for its AOR.
#[derive(Debug)]
pub struct Signer {
    /// The user's key.
    pub key: SecretKey,
    /// Its certificate (DER), in an enrolled overlay.
    pub cert: Option<Vec<u8>>,
}

/// The Identity value for `request` signed by `caller` at `now` (unix
/// seconds) in the overlay `domain`; `None` if the request lacks a From,
/// To or Call-ID, or if, without a certificate, its From is not
/// `caller`'s self-certifying AOR (a certificate's AORs are checked by
/// the verifier).
pub fn sign(request: &Request, caller: &Signer, domain: &str, now: u64) -> Option<String> {
    let from = header_aor(request, HeaderName::From, "From")?;
    let info = match &caller.cert {
        Some(cert) => format!("p2psip:cert:{}", hex::encode(cert)),
        None => {
            let own =
                self_certifying_aor(&caller.key.public().user_id(), &domain.to_ascii_lowercase());
            if from != own {
                return None;
            }
            format!("p2psip:key:{}", hex::encode(caller.key.public().as_bytes()))
        }
    };
    let text = signed_text(request, now)?;
    let signature = caller.key.sign(text.as_bytes());
    Some(format!(
        "{};info=<{info}>;alg=EdDSA;ppt=p2psip;iat={now}",
        hex::encode(signature),
    ))
}

/// Checks `request`'s Identity header at `now` (unix seconds) under the
/// overlay's `policy`: returns the caller's AOR it proves. A
/// self-certifying overlay takes `p2psip:key:` (the key must own the From
/// AOR by its id); an enrolled one takes `p2psip:cert:` (a user
/// certificate valid under the overlay's CA now, listing the From AOR).
pub fn verify(request: &Request, policy: &RecordPolicy, now: u64) -> Result<String, IdentityError> {
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
    let (mut info, mut alg, mut ppt, mut iat) = (None, None, None, None);
    for part in parts {
        let (name, v) = part.split_once('=').unwrap_or((part, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "info" => info = v.strip_prefix('<').and_then(|k| k.strip_suffix('>')),
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
    let from = header_aor(request, HeaderName::From, "From")
        .ok_or(IdentityError::Malformed("no From AOR"))?;
    let info = info.ok_or(IdentityError::Malformed("no info"))?;
    let key = match (
        info.split_once(':').and_then(|(_, r)| r.split_once(':')),
        &policy.enrolled,
    ) {
        (Some(("key", hex_key)), None) => {
            let key: [u8; 32] = hex::decode(hex_key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or(IdentityError::Malformed("info is not <p2psip:key:64 hex>"))?;
            let key =
                PublicKey::from_bytes(&key).map_err(|_| IdentityError::Malformed("not a key"))?;
            let own = self_certifying_aor(
                &UserId::from_public_key(&key),
                &policy.overlay_name.to_ascii_lowercase(),
            );
            if from != own {
                return Err(IdentityError::NotTheCallersKey);
            }
            key
        }
        (Some(("cert", hex_der)), Some(certificates)) if info.starts_with("p2psip:") => {
            let der = hex::decode(hex_der)
                .map_err(|_| IdentityError::Malformed("info is not <p2psip:cert:hex>"))?;
            let cert = certificates
                .verify(&der, i64::try_from(now).unwrap_or(i64::MAX))
                .map_err(|e| IdentityError::Certificate(e.to_string()))?;
            if cert.kind != IdKind::User {
                return Err(IdentityError::Certificate("not a user certificate".into()));
            }
            if !cert.sip_names.contains(&from) {
                return Err(IdentityError::NotTheCallersKey);
            }
            cert.public_key
        }
        (Some(("key", _)), Some(_)) => {
            return Err(IdentityError::Certificate(
                "an enrolled overlay proves callers by certificate, not by key".into(),
            ))
        }
        (Some(("cert", _)), None) => {
            return Err(IdentityError::Certificate(
                "a self-certifying overlay has no CA".into(),
            ))
        }
        _ => {
            return Err(IdentityError::Malformed(
                "info is not <p2psip:key:...> or <p2psip:cert:...>",
            ))
        }
    };
    if !info.starts_with("p2psip:") {
        return Err(IdentityError::Malformed("info is not a p2psip: URI"));
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

    fn signer(seed: u8) -> Signer {
        Signer {
            key: SecretKey::from_seed(&[seed; 32]),
            cert: None,
        }
    }

    fn lab() -> RecordPolicy {
        RecordPolicy::self_certifying("lab.example")
    }

    fn signed(key: &Signer, from: &str, at: u64) -> Request {
        let mut r = invite(from);
        let value = sign(&r, key, "lab.example", at).unwrap();
        r.headers.push(HeaderName::Identity, value);
        r
    }

    #[test]
    fn the_callers_key_proves_its_self_certifying_aor() {
        let alice = signer(3);
        let aor = self_certifying_aor(&alice.key.public().user_id(), "lab.example");
        let r = signed(&alice, &aor, NOW);
        assert_eq!(verify(&r, &lab(), NOW + 30), Ok(aor));
    }

    #[test]
    fn another_from_a_changed_request_or_an_old_one_is_not_backed() {
        let alice = signer(3);
        let mallory = signer(4);
        let aor = self_certifying_aor(&alice.key.public().user_id(), "lab.example");
        // Mallory's node will not sign an AOR that is not hers ...
        assert_eq!(sign(&invite(&aor), &mallory, "lab.example", NOW), None);
        // ... and a forged header naming her key fails.
        let mallory_aor = self_certifying_aor(&mallory.key.public().user_id(), "lab.example");
        let mut r = signed(&mallory, &mallory_aor, NOW);
        r.headers.set(HeaderName::From, format!("<{aor}>;tag=1"));
        assert_eq!(
            verify(&r, &lab(), NOW),
            Err(IdentityError::NotTheCallersKey)
        );
        // A good signature, then the SDP (the body) changed on the way.
        let mut r = signed(&alice, &aor, NOW);
        r.body = b"v=1\n".to_vec();
        assert_eq!(verify(&r, &lab(), NOW), Err(IdentityError::BadSignature));
        // Another callee.
        let mut r = signed(&alice, &aor, NOW);
        r.headers.set(HeaderName::To, "<sip:carol@lab.example>");
        assert_eq!(verify(&r, &lab(), NOW), Err(IdentityError::BadSignature));
        // Too old, or from the future.
        let r = signed(&alice, &aor, NOW);
        assert_eq!(verify(&r, &lab(), NOW + 61), Err(IdentityError::Stale));
        assert_eq!(verify(&r, &lab(), NOW - 61), Err(IdentityError::Stale));
        // Garbage.
        let mut r = invite(&aor);
        r.headers
            .push(HeaderName::Identity, "zz;info=<p2psip:key:00>");
        assert!(matches!(
            verify(&r, &lab(), NOW),
            Err(IdentityError::Malformed(_))
        ));
    }

    /// An enrolled overlay: the CA's user certificate proves the AOR it
    /// lists; a bare key, another AOR, or a foreign CA's certificate
    /// does not.
    #[test]
    fn in_an_enrolled_overlay_the_cas_certificate_proves_the_caller() {
        use crate::identity::{
            build_ca_certificate, issue_certificate, TrustAnchor, TrustAnchors, VerifyPolicy,
        };
        let now = NOW as i64;
        let ca = |seed: u8| {
            let key = SecretKey::from_seed(&[seed; 32]);
            let (der, _) =
                build_ca_certificate(&key, "Example", now - 86_400, now + 86_400).unwrap();
            (key, der)
        };
        let (ca_key, ca_der) = ca(50);
        let mut anchors = TrustAnchors::default();
        anchors
            .push(TrustAnchor::from_der(&ca_der).unwrap())
            .unwrap();
        let policy = RecordPolicy::enrolled("example.org", VerifyPolicy::enrolled(anchors, 0));
        let user = SecretKey::from_seed(&[7; 32]);
        let aor = "sip:alice@example.org";
        let issue = |by: &(SecretKey, Vec<u8>), names: &str| {
            issue_certificate(
                &by.0,
                &by.1,
                &user.public(),
                IdKind::User,
                Some(names),
                now - 60,
                now + 3600,
            )
            .unwrap()
            .0
        };
        let alice = Signer {
            key: SecretKey::from_seed(&[7; 32]),
            cert: Some(issue(
                &(SecretKey::from_seed(&[50; 32]), ca_der.clone()),
                aor,
            )),
        };
        let _ = ca_key;
        let r = signed(&alice, aor, NOW);
        assert_eq!(verify(&r, &policy, NOW), Ok(aor.to_owned()));
        // The certificate does not list the From.
        let mut other = invite("sip:bob@example.org");
        other.headers.push(
            HeaderName::Identity,
            sign(&other, &alice, "example.org", NOW).unwrap(),
        );
        assert_eq!(
            verify(&other, &policy, NOW),
            Err(IdentityError::NotTheCallersKey)
        );
        // Another CA's certificate.
        let foreign = Signer {
            key: SecretKey::from_seed(&[7; 32]),
            cert: Some(issue(&ca(51), aor)),
        };
        assert!(matches!(
            verify(&signed(&foreign, aor, NOW), &policy, NOW),
            Err(IdentityError::Certificate(_))
        ));
        // A bare key in an enrolled overlay, a certificate in a
        // self-certifying one.
        let bare = Signer {
            key: SecretKey::from_seed(&[7; 32]),
            cert: None,
        };
        let own = self_certifying_aor(&bare.key.public().user_id(), "example.org");
        let mut by_key = invite(&own);
        by_key.headers.push(
            HeaderName::Identity,
            sign(&by_key, &bare, "example.org", NOW).unwrap(),
        );
        assert!(matches!(
            verify(&by_key, &policy, NOW),
            Err(IdentityError::Certificate(_))
        ));
        assert!(matches!(
            verify(&r, &lab(), NOW),
            Err(IdentityError::Certificate(_))
        ));
        // A changed body still breaks the signature.
        let mut changed = signed(&alice, aor, NOW);
        changed.body = b"v=1\n".to_vec();
        assert_eq!(
            verify(&changed, &policy, NOW),
            Err(IdentityError::BadSignature)
        );
    }
}
