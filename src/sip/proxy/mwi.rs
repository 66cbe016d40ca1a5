//! Message-waiting indication (RFC 3842 over RFC 6665): a phone of the
//! node subscribes to its own account's `message-summary`, and the node
//! notifies it of the account's voice mail (new and heard messages).
//!
//! The node is the notifier: a SUBSCRIBE from a phone, authenticated as
//! any other request of it, for the AOR the phone proved, gets `200` and
//! a NOTIFY at once, and one more whenever the counts the driver reports
//! ([`super::Proxy::mailbox_counts`]) change. A subscription to any other
//! AOR is `403`, to any other event package `489`. Subscriptions are
//! bounded ([`SIP_MAX_MWI_SUBSCRIPTIONS`], and per account), live at most
//! [`MWI_MAX_EXPIRES`] unless refreshed, and a refresh comes from the
//! host the subscription came from.

use super::{send, Action, Proxy};
use crate::sip::header::HeaderName;
use crate::sip::message::{Headers, Message, Method, Request};
use crate::sip::transaction::{ServerReceived, Transport};
use crate::sip::typed::NameAddr;
use crate::sip::uri::SipUri;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::debug;

/// Most subscriptions a node holds.
pub const SIP_MAX_MWI_SUBSCRIPTIONS: usize = 1024;

/// Most subscriptions of one account (one per phone, as bindings are).
pub const MWI_MAX_PER_ACCOUNT: usize = crate::limits::SIP_MAX_BINDINGS_PER_AOR;

/// Longest a subscription lives without a refresh.
pub const MWI_MAX_EXPIRES: Duration = Duration::from_secs(3600);

/// The event package.
pub const MESSAGE_SUMMARY: &str = "message-summary";

/// An account's voice mail as its phones are told of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Messages not heard yet.
    pub new: usize,
    /// Messages heard and kept.
    pub old: usize,
}

#[derive(Debug)]
struct Subscription {
    account: String,
    peer: SocketAddr,
    transport: Transport,
    /// Where NOTIFYs go: the phone's Contact.
    target: SipUri,
    call_id: String,
    our_tag: String,
    /// The SUBSCRIBE's From (with the phone's tag): the NOTIFY's To.
    remote: String,
    cseq: u32,
    expires_at: Instant,
}

/// The subscriptions, by Call-ID and the phone's tag.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    by_dialog: HashMap<(String, String), Subscription>,
    /// The counts last reported, per account.
    counts: HashMap<String, MailboxCounts>,
    /// When a read of each account's mailbox was last asked for.
    last_read: HashMap<String, Instant>,
}

impl Subscriptions {
    /// The earliest expiry.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_dialog.values().map(|s| s.expires_at).min()
    }
}

/// Whether `request` is about the `message-summary` event package (the
/// node answers those itself; other SUBSCRIBEs are routed as before).
pub(super) fn is_message_summary(request: &Request) -> bool {
    request
        .headers
        .get(&HeaderName::Event)
        .and_then(|e| e.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(MESSAGE_SUMMARY))
}

/// The least time between two reads of one account's mailbox that
/// subscriptions ask for (a refresh flood costs no lookups).
const MIN_READ_INTERVAL: Duration = Duration::from_secs(1);

/// The body of a NOTIFY (RFC 3842 §5.2).
fn summary(account: &str, counts: MailboxCounts) -> Vec<u8> {
    let waiting = if counts.new > 0 { "yes" } else { "no" };
    format!(
        "Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\nVoice-Message: {}/{}\r\n",
        counts.new, counts.old
    )
    .into_bytes()
}

impl Proxy {
    /// A SUBSCRIBE to `message-summary` (new, refresh, or unsubscribe).
    /// Always answered here: the node is the notifier of its accounts'
    /// mailboxes and forwards none.
    pub(super) fn subscribe(
        &mut self,
        now: Instant,
        unix_ms: u64,
        peer: SocketAddr,
        transport: Transport,
        request: Request,
    ) -> Vec<Action> {
        if matches!(transport, Transport::Overlay(_)) {
            return self.stateless(
                peer,
                transport,
                &request,
                403,
                Some("subscriptions are local"),
            );
        }
        let call_id = request
            .headers
            .get(&HeaderName::CallId)
            .unwrap_or_default()
            .to_owned();
        let their_tag = super::from_tag(&request).unwrap_or_default();
        let key = (call_id, their_tag);
        let existing = super::to_tag(&request);
        // Who subscribes: for a refresh, the phone that subscribed (by
        // its host); for a new one, an authenticated phone.
        let account = match &existing {
            Some(tag) => match self.mwi.by_dialog.get(&key) {
                Some(s) if &s.our_tag == tag && s.peer.ip() == peer.ip() => s.account.clone(),
                _ => return self.stateless(peer, transport, &request, 481, None),
            },
            None => match self.authorize_caller(unix_ms, peer, &request) {
                Ok(aor) => aor,
                Err(mut answer) => {
                    if answer.code >= 300 && !super::has_to_tag(&answer) {
                        let tag = self.stateless_tag(&request);
                        super::add_to_tag(&mut answer, &tag);
                    }
                    return vec![send(peer, transport, Message::Response(answer))];
                }
            },
        };
        // Only one's own mailbox.
        let target_aor = super::aor_of(&request.uri);
        if existing.is_none() && target_aor.as_deref() != Some(account.as_str()) {
            return self.stateless(
                peer,
                transport,
                &request,
                403,
                Some("a phone subscribes to its own account's voice mail only"),
            );
        }
        let Some(contact) = request
            .headers
            .get(&HeaderName::Contact)
            .and_then(|c| NameAddr::parse("Contact", c).ok())
        else {
            return self.stateless(peer, transport, &request, 400, Some("no Contact"));
        };
        let requested = request
            .headers
            .get(&HeaderName::Expires)
            .and_then(|e| e.trim().parse::<u64>().ok())
            .unwrap_or(MWI_MAX_EXPIRES.as_secs());
        let expires = requested.min(MWI_MAX_EXPIRES.as_secs());
        if existing.is_none() && expires > 0 {
            let of_account = self
                .mwi
                .by_dialog
                .values()
                .filter(|s| s.account == account)
                .count();
            if of_account >= MWI_MAX_PER_ACCOUNT
                || self.mwi.by_dialog.len() >= SIP_MAX_MWI_SUBSCRIPTIONS
            {
                return self.stateless(
                    peer,
                    transport,
                    &request,
                    503,
                    Some("too many subscriptions"),
                );
            }
        }
        let id = match self.server.receive(now, peer, transport, &request) {
            Ok(ServerReceived::New(id)) => id,
            Ok(ServerReceived::Absorbed(resend)) => {
                return resend.into_iter().map(Action::Send).collect()
            }
            _ => return Vec::new(),
        };
        let our_tag = match &existing {
            Some(tag) => tag.clone(),
            None => self.branch(),
        };
        let mut ok = request.reply(200, Some(&our_tag));
        ok.headers.push(HeaderName::Expires, expires.to_string());
        ok.headers
            .push(HeaderName::Contact, format!("<sip:{}>", self.local));
        let mut actions = self.respond(now, id, ok);
        let remote = request
            .headers
            .get(&HeaderName::From)
            .unwrap_or_default()
            .to_owned();
        let cseq = self.mwi.by_dialog.get(&key).map_or(0, |s| s.cseq);
        let subscription = Subscription {
            account: account.clone(),
            peer,
            transport,
            target: contact.uri,
            call_id: key.0.clone(),
            our_tag,
            remote,
            cseq,
            expires_at: now + Duration::from_secs(expires),
        };
        if expires == 0 {
            // Unsubscribed: a last NOTIFY says so (RFC 6665 §4.2.1.4).
            let mut last = subscription;
            actions.extend(self.notify(now, &mut last, "terminated;reason=timeout"));
            self.mwi.by_dialog.remove(&key);
            return actions;
        }
        let mut subscription = subscription;
        let state = format!("active;expires={expires}");
        actions.extend(self.notify(now, &mut subscription, &state));
        self.mwi.by_dialog.insert(key, subscription);
        let recent = self
            .mwi
            .last_read
            .get(&account)
            .is_some_and(|at| now.saturating_duration_since(*at) < MIN_READ_INTERVAL);
        if !recent {
            if self.mwi.last_read.len() >= SIP_MAX_MWI_SUBSCRIPTIONS {
                self.mwi.last_read.clear();
            }
            self.mwi.last_read.insert(account.clone(), now);
            actions.push(Action::ReadMailbox { account });
        }
        actions
    }

    /// The driver read `account`'s mailbox: its phones that subscribed
    /// are told, when the counts changed.
    pub fn mailbox_counts(
        &mut self,
        now: Instant,
        account: &str,
        counts: MailboxCounts,
    ) -> Vec<Action> {
        let changed = self.mwi.counts.get(account) != Some(&counts);
        if !changed {
            return Vec::new();
        }
        if self.mwi.counts.len() >= SIP_MAX_MWI_SUBSCRIPTIONS {
            self.mwi.counts.clear();
        }
        self.mwi.counts.insert(account.to_owned(), counts);
        let keys: Vec<(String, String)> = self
            .mwi
            .by_dialog
            .iter()
            .filter(|(_, s)| s.account == account && s.expires_at > now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut actions = Vec::new();
        for key in keys {
            let Some(mut s) = self.mwi.by_dialog.remove(&key) else {
                continue;
            };
            let left = s.expires_at.saturating_duration_since(now).as_secs();
            actions.extend(self.notify(now, &mut s, &format!("active;expires={left}")));
            self.mwi.by_dialog.insert(key, s);
        }
        actions
    }

    /// Drops the subscriptions that lapsed at `now`.
    pub(super) fn expire_subscriptions(&mut self, now: Instant) {
        self.mwi.by_dialog.retain(|_, s| s.expires_at > now);
    }

    /// Sends `subscription`'s phone a NOTIFY with the counts last known.
    fn notify(&mut self, now: Instant, s: &mut Subscription, state: &str) -> Vec<Action> {
        let counts = self.mwi.counts.get(&s.account).copied().unwrap_or_default();
        s.cseq = s.cseq.saturating_add(1);
        let branch = self.branch();
        let mut headers = Headers::new();
        headers.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch}",
                s.transport.via_token(),
                self.local,
            ),
        );
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(
            HeaderName::From,
            format!("<{}>;tag={}", s.account, s.our_tag),
        );
        headers.push(HeaderName::To, s.remote.clone());
        headers.push(HeaderName::CallId, s.call_id.clone());
        headers.push(HeaderName::CSeq, format!("{} NOTIFY", s.cseq));
        headers.push(HeaderName::Contact, format!("<sip:{}>", self.local));
        headers.push(HeaderName::Event, MESSAGE_SUMMARY);
        headers.push(HeaderName::Other("Subscription-State".into()), state);
        headers.push(
            HeaderName::ContentType,
            "application/simple-message-summary",
        );
        let request = Request {
            method: Method::Notify,
            uri: s.target.clone(),
            headers,
            body: summary(&s.account, counts),
        };
        match self.client.send(now, s.peer, s.transport, request) {
            Ok((_, transmit)) => vec![Action::Send(transmit)],
            Err(e) => {
                debug!(error = %e, "NOTIFY not sent");
                Vec::new()
            }
        }
    }
}
