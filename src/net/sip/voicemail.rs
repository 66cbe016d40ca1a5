//! The node's voice mail: the I/O shell of the voicemail agent
//! ([`crate::sip::voicemail`]) and the deposit of what it records.
//!
//! The agent is a user agent of the node's own, on two UDP sockets on
//! loopback (whatever address the listener has: a packet for loopback
//! from outside the host is dropped by the kernel, so a forged source
//! address reaches nothing). The proxy sends it the calls that go to
//! voice mail as it
//! would to a phone of the node (media anchored, dialog routed), so it
//! reaches nothing the node's phones cannot, and nothing reaches it but
//! the node's proxy (it drops SIP from any other address, media from any
//! other than the call's).
//!
//! A recording is sealed to the callee (whose keys the node holds: it
//! serves the callee) and stored in the callee's mailbox: its chunks
//! first, then this node's deposit listing it
//! ([`crate::userdata::voicemail`]). Deposits go one at a time, so that
//! two messages recorded together do not overwrite each other's entry.

use super::Inner;
use crate::identity::SecretKey;
use crate::limits::{MAX_VOICEMAIL_DURATION, MAX_VOICEMAIL_FROM_LEN, SIP_MAX_MESSAGE_LEN};
use crate::overlay::record::chunk_key;
use crate::overlay::record::{mailbox_key, MailboxItem, MailboxValue, Record, RecordKind};
use crate::sip::voicemail::{
    Codec, Message, Recording, VoicemailConfig, VoicemailOutput, VoicemailUa, MAX_PLAYBACK_MESSAGES,
};
use crate::userdata::voicemail::{
    compose, next_deposit, open_audio, open_envelope, Envelope, Mailbox,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// Most recordings waiting to be stored; beyond, a new one is dropped
/// (and logged): the overlay is not keeping up.
const MAX_PENDING_DEPOSITS: usize = 32;

/// The messages this node deposited lately, per recipient (their ids
/// and entries), kept so that a lookup that misses this node's deposit
/// cannot make it drop them; bounded.
const MAX_REMEMBERED_RECIPIENTS: usize = 1024;

/// A mailbox state: the ids deleted, the ids heard.
type MailboxState = (
    std::collections::BTreeSet<[u8; 32]>,
    std::collections::BTreeSet<[u8; 32]>,
);

/// The running agent.
pub(super) struct Agent {
    ua: Mutex<VoicemailUa>,
    sip: UdpSocket,
    rtp: UdpSocket,
    wake: Notify,
    /// Signs this node's deposits: the node's own key.
    depositor: SecretKey,
    /// One deposit at a time.
    depositing: tokio::sync::Mutex<HashMap<[u8; 32], Vec<MailboxItem>>>,
    /// The owners' mailbox states (deleted, heard) this node last saw or
    /// wrote, per user: a read that misses the newest state must not make
    /// the node write one that undoes them.
    states: Mutex<HashMap<[u8; 32], MailboxState>>,
    pending: std::sync::atomic::AtomicUsize,
}

impl Agent {
    /// Binds the agent's sockets, on loopback whatever the listener's
    /// address: the kernel drops packets for loopback that come from
    /// outside, so nobody on the network can reach the agent, not even
    /// with the listener's address forged as the source.
    pub(super) async fn bind(
        listener: SocketAddr,
        domain: &str,
        depositor: SecretKey,
    ) -> std::io::Result<Self> {
        let loopback = match listener.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        // Where the listener's messages come from: its own address, or
        // loopback when it listens on any address.
        let proxy = if listener.ip().is_unspecified() {
            SocketAddr::new(loopback, listener.port())
        } else {
            listener
        };
        let sip = UdpSocket::bind(SocketAddr::new(loopback, 0)).await?;
        let rtp = UdpSocket::bind(SocketAddr::new(loopback, 0)).await?;
        let config = VoicemailConfig {
            sip: sip.local_addr()?,
            rtp: rtp.local_addr()?,
            proxy,
            domain: domain.to_owned(),
            max_duration: MAX_VOICEMAIL_DURATION,
            ..VoicemailConfig::default()
        };
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Ok(Self {
            ua: Mutex::new(VoicemailUa::new(config, seed)),
            sip,
            rtp,
            wake: Notify::new(),
            depositor,
            depositing: tokio::sync::Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            pending: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Where the proxy sends calls for voice mail.
    pub(super) fn sip_addr(&self) -> std::io::Result<SocketAddr> {
        self.sip.local_addr()
    }

    fn ua(&self) -> std::sync::MutexGuard<'_, VoicemailUa> {
        self.ua.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Merges what `mailbox` read of `user`'s state with what this node
    /// saw before, both ways.
    fn reconcile(&self, user: &crate::identity::UserId, mailbox: &mut Mailbox) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if !states.contains_key(user.as_bytes()) && states.len() >= MAX_REMEMBERED_RECIPIENTS {
            // Bounded: one goes (any), never all at once.
            if let Some(first) = states.keys().next().copied() {
                states.remove(&first);
            }
        }
        let known = states.entry(*user.as_bytes()).or_default();
        known.0.extend(mailbox.deleted.iter().copied());
        known.1.extend(mailbox.heard.iter().copied());
        mailbox.remember(&known.0, &known.1);
    }
}

impl Inner {
    /// Runs the agent: its sockets and timers, until dropped.
    pub(super) async fn voicemail_loop(self: Arc<Self>, agent: Arc<Agent>) {
        let mut sip_buf = vec![0u8; SIP_MAX_MESSAGE_LEN + 1];
        let mut rtp_buf = vec![0u8; 2048];
        loop {
            let wait = agent
                .ua()
                .poll_timeout()
                .map_or(Duration::from_secs(1), |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_secs(1));
            let outputs = tokio::select! {
                got = agent.sip.recv_from(&mut sip_buf) => match got {
                    Ok((len, from)) => {
                        let datagram = sip_buf.get(..len).unwrap_or_default();
                        agent.ua().handle_sip(Instant::now(), super::now_ms(), from, datagram)
                    }
                    Err(e) => {
                        debug!(error = %e, "voicemail SIP receive error");
                        Vec::new()
                    }
                },
                got = agent.rtp.recv_from(&mut rtp_buf) => match got {
                    Ok((len, from)) => {
                        let packet = rtp_buf.get(..len).unwrap_or_default();
                        agent.ua().handle_rtp(Instant::now(), from, packet)
                    }
                    Err(e) => {
                        debug!(error = %e, "voicemail RTP receive error");
                        Vec::new()
                    }
                },
                _ = tokio::time::sleep(wait) => agent.ua().handle_timeout(Instant::now()),
                _ = agent.wake.notified() => Vec::new(),
            };
            self.carry_out(&agent, outputs).await;
        }
    }

    /// Sends what the agent asked for, and starts the overlay work it
    /// needs.
    async fn carry_out(self: &Arc<Self>, agent: &Arc<Agent>, outputs: Vec<VoicemailOutput>) {
        for output in outputs {
            match output {
                VoicemailOutput::Sip { to, bytes } => {
                    let _ = agent.sip.send_to(&bytes, to).await;
                }
                VoicemailOutput::Rtp { to, bytes } => {
                    let _ = agent.rtp.send_to(&bytes, to).await;
                }
                VoicemailOutput::Recorded(recording) => {
                    self.clone().spawn_deposit(agent.clone(), recording);
                }
                VoicemailOutput::Fetch { call_id, account } => {
                    self.clone().spawn_playback(agent.clone(), call_id, account);
                }
            }
        }
    }

    /// Finds and opens `account`'s messages (newest first) for the
    /// playback call `call_id`, hands them to the agent, and marks them
    /// heard. A message that cannot be fetched or opened is skipped.
    fn spawn_playback(self: Arc<Self>, agent: Arc<Agent>, call_id: String, account: String) {
        tokio::spawn(async move {
            let (messages, ids) = match self.open_messages(&agent, &account).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(%account, error = %e, "voice mail not read for playback");
                    (Vec::new(), Vec::new())
                }
            };
            let count = messages.len();
            let outputs = agent.ua().messages(Instant::now(), &call_id, messages);
            // Nothing back: the call ended (or waited too long) first, and
            // nothing was played.
            let played = !outputs.is_empty();
            agent.wake.notify_one();
            self.carry_out(&agent, outputs).await;
            if !played {
                return;
            }
            info!(%account, messages = count, "voice mail played");
            if let Err(e) = self.mark_heard(&agent, &account, &ids).await {
                warn!(%account, error = %e, "messages played but not marked heard");
            }
            self.spawn_read_mailbox(account);
        });
    }

    /// `account`'s messages, opened, newest first (at most
    /// [`MAX_PLAYBACK_MESSAGES`]), and their ids.
    async fn open_messages(
        &self,
        agent: &Agent,
        account: &str,
    ) -> Result<(Vec<Message>, Vec<[u8; 32]>), String> {
        let keys = super::lock(&self.layers)
            .users
            .get(account)
            .cloned()
            .ok_or("the account is no longer served here")?;
        let enc = keys
            .encryption
            .as_ref()
            .ok_or("the account has no encryption key")?;
        let user = keys.signer.key.public().user_id();
        let records = self
            .overlay
            .newest_per_owner(&self.dialer, mailbox_key(&user), RecordKind::Mailbox)
            .await;
        let now = super::now_ms() / 1000;
        let mut mailbox = Mailbox::read(&user, &records, now, &[self.node_id]);
        agent.reconcile(&user, &mut mailbox);
        let mut messages = Vec::new();
        let mut played = Vec::new();
        for (_, item) in mailbox.items.iter().take(MAX_PLAYBACK_MESSAGES) {
            let Ok(envelope) = open_envelope(enc, item) else {
                continue;
            };
            let mut set = tokio::task::JoinSet::new();
            for index in 0..item.chunks {
                let overlay = self.overlay.clone();
                let dialer = self.dialer.clone();
                let key = chunk_key(&item.id, index);
                set.spawn(async move {
                    let found = overlay
                        .newest(&dialer, key, RecordKind::MailboxChunk)
                        .await
                        .and_then(|r| r.record().ok());
                    (index, found)
                });
            }
            let mut chunks: Vec<Option<Record>> = vec![None; usize::from(item.chunks)];
            while let Some(Ok((index, found))) = set.join_next().await {
                if let Some(slot) = chunks.get_mut(usize::from(index)) {
                    *slot = found;
                }
            }
            let policy = self.overlay.record_policy().clone();
            let Ok(audio) = open_audio(enc, item, &chunks, &policy, now) else {
                debug!(%account, "a message did not open for playback");
                continue;
            };
            let codec = Codec::from_payload_type(envelope.codec).unwrap_or(Codec::Pcmu);
            messages.push(Message { codec, audio });
            played.push(item.id);
        }
        Ok((messages, played))
    }

    /// Publishes `account`'s mailbox state with `heard` marked heard (the
    /// node holds the account's identity key: it serves the account).
    async fn mark_heard(
        &self,
        agent: &Agent,
        account: &str,
        heard: &[[u8; 32]],
    ) -> Result<(), String> {
        if heard.is_empty() {
            return Ok(());
        }
        let keys = super::lock(&self.layers)
            .users
            .get(account)
            .cloned()
            .ok_or("the account is no longer served here")?;
        let user = &keys.signer.key;
        let records = self
            .overlay
            .newest_per_owner(
                &self.dialer,
                mailbox_key(&user.public().user_id()),
                RecordKind::Mailbox,
            )
            .await;
        let now = super::now_ms() / 1000;
        let user_id = user.public().user_id();
        let mut mailbox = Mailbox::read(&user_id, &records, now, &[self.node_id]);
        agent.reconcile(&user_id, &mut mailbox);
        let record = mailbox
            .next_state(user, None, heard, now, crate::unix_now_micros())
            .map_err(|e| e.to_string())?;
        if self.overlay.publish(&self.dialer, &record).await == 0 {
            return Err("no node of the overlay stored the mailbox state".into());
        }
        if let Ok(MailboxValue::State { deleted, heard, .. }) = MailboxValue::decode(&record.value)
        {
            let mut read = Mailbox::default();
            read.remember(&deleted, &heard);
            agent.reconcile(&user_id, &mut read);
        }
        Ok(())
    }

    /// Stores a recording in its callee's mailbox, in the background.
    fn spawn_deposit(self: Arc<Self>, agent: Arc<Agent>, recording: Recording) {
        use std::sync::atomic::Ordering;
        if agent.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_DEPOSITS {
            agent.pending.fetch_sub(1, Ordering::SeqCst);
            warn!(callee = %recording.account, "voice message dropped: too many waiting to be stored");
            return;
        }
        tokio::spawn(async move {
            let account = recording.account.clone();
            let seconds = recording.duration.as_secs_f64();
            let started = Instant::now();
            match self.deposit(&agent, recording).await {
                Ok(chunks) => {
                    // The callee's phones that subscribed learn of it.
                    self.clone().spawn_read_mailbox(account.clone());
                    info!(
                    callee = %account,
                    seconds,
                    chunks,
                    stored_in_ms = started.elapsed().as_millis() as u64,
                    "voice message stored"
                    )
                }
                Err(e) => warn!(callee = %account, error = %e, "voice message not stored"),
            }
            agent.pending.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Seals `recording` to its callee, stores its chunks, then this
    /// node's deposit listing it. Returns the number of chunks.
    async fn deposit(&self, agent: &Agent, recording: Recording) -> Result<usize, String> {
        let keys = super::lock(&self.layers)
            .users
            .get(&recording.account)
            .cloned()
            .ok_or("the callee is no longer served here")?;
        let to = keys
            .encryption
            .as_ref()
            .ok_or("the callee has no encryption key")?
            .public();
        let recipient = keys.signer.key.public().user_id();
        let mut from = recording
            .caller
            .clone()
            .unwrap_or_else(|| recording.claimed_from.clone());
        let mut verified = recording.caller.is_some();
        if from.len() > MAX_VOICEMAIL_FROM_LEN {
            // Cut (on a character boundary): no longer the exact AOR.
            let mut end = MAX_VOICEMAIL_FROM_LEN;
            while !from.is_char_boundary(end) {
                end -= 1;
            }
            from.truncate(end);
            verified = false;
        }
        let envelope = Envelope {
            verified,
            from,
            time: recording.started_unix_ms / 1000,
            duration_ms: u64::try_from(recording.duration.as_millis()).unwrap_or(u64::MAX),
            codec: recording.codec.payload_type(),
        };
        let composed = compose(&to, &envelope, &recording.audio).map_err(|e| e.to_string())?;
        drop(recording);
        let chunks = composed.chunks.len();
        self.publish_all(&composed.chunks).await?;
        let mut remembered = agent.depositing.lock().await;
        let records = self
            .overlay
            .newest_per_owner(&self.dialer, mailbox_key(&recipient), RecordKind::Mailbox)
            .await;
        let now = super::now_ms() / 1000;
        let mut mailbox = Mailbox::read(&recipient, &records, now, &[self.node_id]);
        let me = *agent.depositor.public().as_bytes();
        let previous_seq = records
            .iter()
            .filter(|r| r.owner() == &me)
            .map(|r| r.seq())
            .max();
        // What this node deposited before, if the lookup missed it.
        let mine = remembered.entry(*recipient.as_bytes()).or_default();
        for item in mine.iter() {
            let known = mailbox.items.iter().any(|(_, i)| i.id == item.id);
            if !known && item.is_live(now) && !mailbox.deleted.contains(&item.id) {
                mailbox.items.push((me, item.clone()));
            }
        }
        let record = next_deposit(
            &agent.depositor,
            &recipient,
            &mailbox,
            previous_seq,
            composed.item,
            now,
            crate::unix_now_micros(),
        )
        .map_err(|e| e.to_string())?;
        let acks = self.overlay.publish(&self.dialer, &record).await;
        if acks == 0 {
            return Err("no node of the overlay stored the mailbox entry".into());
        }
        if let Ok(MailboxValue::Deposit { items, .. }) = MailboxValue::decode(&record.value) {
            *mine = items;
        }
        if remembered.len() > MAX_REMEMBERED_RECIPIENTS {
            // Bounded: another recipient's entry goes, never all at once.
            let other = remembered
                .keys()
                .find(|k| *k != recipient.as_bytes())
                .copied();
            if let Some(other) = other {
                remembered.remove(&other);
            }
        }
        Ok(chunks)
    }

    /// Publishes `records` at once; fails if any was stored nowhere.
    async fn publish_all(&self, records: &[Record]) -> Result<(), String> {
        let mut set = tokio::task::JoinSet::new();
        for record in records {
            let record = record.clone();
            let overlay = self.overlay.clone();
            let dialer = self.dialer.clone();
            set.spawn(async move { overlay.publish(&dialer, &record).await });
        }
        let mut stored_nowhere = 0;
        while let Some(acks) = set.join_next().await {
            if acks.map_or(true, |a| a == 0) {
                stored_nowhere += 1;
            }
        }
        if stored_nowhere > 0 {
            return Err(format!(
                "{stored_nowhere} of {} chunks were stored nowhere",
                records.len()
            ));
        }
        Ok(())
    }
}
