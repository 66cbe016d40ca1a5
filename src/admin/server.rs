//! The node side of the admin socket.

use super::api::{
    json_line, Answer, CircuitsResult, DirectoryRelay, GetRecordResult, GetRecordsResult,
    GetResult, LookupEntry, LookupResult, MediaTestResult, OverlayMode, PeerEntry, PeerStanding,
    PublishResult, RelayedCircuit, ReloadResult, ReputationResult, Request, Route, RoutesResult,
    SipBinding, SipPhone, SipUnbindResult, SipUsersResult, StatusResult, TraceHopEntry,
    TraceResult,
};
use super::{MAX_ADMIN_CONNECTIONS, MAX_REQUEST_LEN, REQUEST_READ_TIMEOUT, SOCKET_FILE};
use crate::identity::UserId;
use crate::net::sip::SipHandle;
use crate::net::Node;
use crate::overlay::key::Key;
use crate::overlay::record::{owner_value_key, Record, RecordKind};
use serde::Serialize;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another node already answers on this directory's socket.
    #[error("{0}: a node is already running in this directory")]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket is in the way; it is left alone.
    #[error("{0}: exists and is not a socket; remove it if it is not needed")]
    NotASocket(PathBuf),
    /// Creating or securing the socket failed.
    #[error("{path}: cannot open the admin socket: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// What the `reload` operation runs: the node's own reload (the one
/// SIGHUP runs too), set by whoever started the node
/// ([`AdminServer::with_reload`]).
pub type Reloader = Arc<dyn Fn() -> Result<ReloadResult, String> + Send + Sync>;

/// The admin socket of a running node; removes its file when dropped.
pub struct AdminServer {
    listener: UnixListener,
    path: PathBuf,
    owner_uid: u32,
    reload: Option<Reloader>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("path", &self.path)
            .field("owner_uid", &self.owner_uid)
            .field("reload", &self.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Opens `DIR/admin.sock`, owner-only. A stale socket (left by a node
    /// that died) is replaced; a live one means a node already runs here.
    pub fn bind(dir: &Path) -> Result<Self, BindError> {
        let path = dir.join(SOCKET_FILE);
        let io = |source| BindError::Io {
            path: path.clone(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(BindError::NotASocket(path));
            }
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(BindError::AlreadyRunning(path));
            }
            std::fs::remove_file(&path).map_err(io)?;
        }
        let listener = UnixListener::bind(&path).map_err(io)?;
        // The socket is created with the umask's mode; narrow it at once.
        // Until then the per-connection credential check below still
        // refuses other users.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let owner_uid = std::fs::metadata(&path).map_err(io)?.uid();
        Ok(Self {
            listener,
            path,
            owner_uid,
            reload: None,
        })
    }

    /// Serves the `reload` operation with `reload` (without it, `reload`
    /// answers that this node cannot reload).
    pub fn with_reload(mut self, reload: Reloader) -> Self {
        self.reload = Some(reload);
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves admin requests for `node` until the task is dropped.
    /// `sip` is the node's SIP listener, if it runs one.
    pub async fn serve(&self, node: Arc<Node>, mode: OverlayMode, sip: Option<SipHandle>) {
        let ctx = Arc::new(Ctx {
            node,
            mode,
            sip,
            started: Instant::now(),
            reload: self.reload.clone(),
        });
        let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.owner_uid => {}
                Ok(cred) => {
                    warn!(
                        uid = cred.uid(),
                        "admin connection from another user refused"
                    );
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "admin connection without credentials refused");
                    continue;
                }
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ =
                        write_answer(&mut stream, Err("the node is busy; try again".into())).await;
                });
                continue;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                serve_connection(stream, &ctx).await;
                drop(slot);
            });
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Ctx {
    node: Arc<Node>,
    mode: OverlayMode,
    sip: Option<SipHandle>,
    started: Instant,
    reload: Option<Reloader>,
}

/// One operation's result, written as the struct it holds.
#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Status(StatusResult),
    Routes(RoutesResult),
    Reputation(ReputationResult),
    Lookup(LookupResult),
    Trace(TraceResult),
    Get(GetResult),
    GetRecord(GetRecordResult),
    GetRecords(GetRecordsResult),
    Publish(PublishResult),
    SipUsers(SipUsersResult),
    SipUnbind(SipUnbindResult),
    Reload(ReloadResult),
    Circuits(CircuitsResult),
    MediaTest(MediaTestResult),
}

async fn serve_connection(mut stream: UnixStream, ctx: &Ctx) {
    let mut line = Vec::new();
    let read = {
        let reader = BufReader::new((&mut stream).take(MAX_REQUEST_LEN as u64 + 1));
        tokio::time::timeout(REQUEST_READ_TIMEOUT, read_line(reader, &mut line)).await
    };
    let answer = match read {
        Err(_) => Err("no request within the time limit".to_owned()),
        Ok(Err(e)) => {
            debug!(error = %e, "admin request unreadable");
            return;
        }
        Ok(Ok(())) if line.len() > MAX_REQUEST_LEN => {
            Err(format!("request longer than {MAX_REQUEST_LEN} bytes"))
        }
        Ok(Ok(())) => match Request::parse(&line) {
            Ok(request) => handle(ctx, request).await,
            Err(e) => Err(format!("bad request: {e}")),
        },
    };
    let _ = write_answer(&mut stream, answer).await;
}

async fn read_line(
    mut reader: BufReader<tokio::io::Take<&mut UnixStream>>,
    line: &mut Vec<u8>,
) -> std::io::Result<()> {
    reader.read_until(b'\n', line).await.map(|_| ())
}

async fn write_answer(
    stream: &mut UnixStream,
    answer: Result<Outcome, String>,
) -> std::io::Result<()> {
    let answer = match answer {
        Ok(result) => Answer::success(result),
        Err(error) => Answer::failure(error),
    };
    let text = json_line(&answer).map_err(std::io::Error::other)?;
    tokio::time::timeout(REQUEST_READ_TIMEOUT, stream.write_all(text.as_bytes()))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn handle(ctx: &Ctx, request: Request) -> Result<Outcome, String> {
    let node = &ctx.node;
    let overlay = node
        .overlay()
        .ok_or_else(|| "this node serves no overlay".to_owned())?;
    match request {
        Request::Status {} => Ok(Outcome::Status(status(node, ctx.mode, ctx.started)?)),
        Request::Reputation {} => Ok(Outcome::Reputation(reputation(node))),
        Request::SipUsers {} => Ok(Outcome::SipUsers(sip_users(ctx.sip.as_ref()))),
        Request::SipUnbind { aor, contact } => {
            sip_unbind(ctx.sip.as_ref(), &aor, contact.as_deref()).map(Outcome::SipUnbind)
        }
        Request::Reload {} => match &ctx.reload {
            Some(reload) => reload().map(Outcome::Reload),
            None => Err("this node cannot reload its configuration".into()),
        },
        Request::Circuits { directory } => {
            Ok(Outcome::Circuits(circuits(node, overlay, directory).await))
        }
        Request::MediaTest { aor, hops, seconds } => media_test(node, overlay, &aor, hops, seconds)
            .await
            .map(Outcome::MediaTest),
        Request::Routes {} => Ok(Outcome::Routes(RoutesResult {
            overlay: overlay.params().name.clone(),
            table_size: overlay.table_len(),
            routes: overlay
                .routes()
                .into_iter()
                .map(|(bucket, c)| Route {
                    bucket,
                    node_id: c.id,
                    addr: c.addr,
                })
                .collect(),
        })),
        Request::Lookup { aor } => {
            let key = Key(crate::identity::aor_key(&aor));
            let record = overlay
                .newest(node.dialer(), key, RecordKind::SipRegistration)
                .await
                .ok_or_else(|| format!("no registration of {aor:?} was found in the overlay"))?;
            let registration = record
                .registration()
                .filter(|r| r.aor() == aor)
                .ok_or_else(|| format!("the record found under {aor:?} is for another AOR"))?;
            let now = now();
            let entries = registration
                .live_entries(now)
                .map(|e| LookupEntry {
                    node_id: e.node_id,
                    contacts: e.contacts.clone(),
                    expires: e.expires,
                })
                .collect();
            Ok(Outcome::Lookup(LookupResult {
                aor,
                owner: record.owner_id(),
                seq: record.seq(),
                expires: record.expires(),
                entries,
                record: record.encoded().to_vec(),
            }))
        }
        Request::Trace { target } => Ok(Outcome::Trace(trace(node, target).await?)),
        Request::Get { owner, name } => {
            let owner_id: UserId = owner.parse().map_err(|e| format!("owner {owner:?}: {e}"))?;
            let key = owner_value_key(&owner_id, &name);
            let record = overlay
                .newest(node.dialer(), key, RecordKind::OwnerValue)
                .await
                .filter(|r| r.owner_id() == owner_id)
                .ok_or_else(|| format!("no value {name:?} of {owner} was found in the overlay"))?;
            let value = record
                .owner_value()
                .filter(|v| v.name() == name)
                .ok_or_else(|| format!("the record found under {name:?} is for another name"))?;
            Ok(Outcome::Get(GetResult {
                owner: owner_id,
                value: String::from_utf8_lossy(value.data()).into_owned(),
                value_hex: value.data().to_vec(),
                name,
                seq: record.seq(),
                expires: record.expires(),
                record: record.encoded().to_vec(),
            }))
        }
        Request::GetRecord { key, kind } => {
            let (at, kind_of) = key_and_kind(&key, kind)?;
            let record = overlay
                .newest(node.dialer(), at, kind_of)
                .await
                .ok_or_else(|| {
                    format!("no record of kind {kind} under {key} was found in the overlay")
                })?;
            Ok(Outcome::GetRecord(record_result(&record)))
        }
        Request::GetRecords { key, kind } => {
            let (at, kind_of) = key_and_kind(&key, kind)?;
            let records = overlay
                .newest_per_owner(node.dialer(), at, kind_of)
                .await
                .iter()
                .map(record_result)
                .collect();
            Ok(Outcome::GetRecords(GetRecordsResult {
                key: at.0.to_vec(),
                kind,
                records,
            }))
        }
        Request::Publish { record } => {
            let bytes = hex::decode(record.trim()).map_err(|e| format!("record: not hex: {e}"))?;
            let decoded = Record::decode(&bytes).map_err(|e| format!("record refused: {e}"))?;
            let verified = decoded
                .verify(overlay.record_policy(), now())
                .map_err(|e| format!("record refused: {e}"))?;
            let acks = overlay.publish(node.dialer(), &decoded).await;
            if acks == 0 {
                return Err("no node of the overlay stored the record".into());
            }
            if let Some(sip) = &ctx.sip {
                sip.record_published(verified.key());
            }
            Ok(Outcome::Publish(PublishResult {
                key: verified.key().0.to_vec(),
                kind: verified.kind().to_u64(),
                seq: verified.seq(),
                expires: verified.expires(),
                acks,
                replication: overlay.params().replication,
            }))
        }
    }
}

/// The key (64 hex digits) and kind (its number) a request names.
fn key_and_kind(key: &str, kind: u64) -> Result<(Key, RecordKind), String> {
    let bytes: [u8; 32] = hex::decode(key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("key {key:?}: not 64 hex digits"))?;
    let kind_of =
        RecordKind::from_u64(kind).ok_or_else(|| format!("kind {kind}: no such record kind"))?;
    Ok((Key(bytes), kind_of))
}

/// A record as `get_record` and `get_records` answer it.
fn record_result(record: &crate::overlay::record::VerifiedRecord) -> GetRecordResult {
    GetRecordResult {
        key: record.key().0.to_vec(),
        kind: record.kind().to_u64(),
        owner: record.owner().to_vec(),
        seq: record.seq(),
        expires: record.expires(),
        record: record.encoded().to_vec(),
    }
}

/// The answer to `sip_users` (the contract is docs/admin.md).
fn sip_users(sip: Option<&SipHandle>) -> SipUsersResult {
    let Some(sip) = sip else {
        return SipUsersResult {
            listen: None,
            bindings: Vec::new(),
            registers_accepted: 0,
            auth_failures: 0,
            locked_out: 0,
            calls_authorized: 0,
            rate_limited: 0,
        };
    };
    let snapshot = sip.snapshot();
    let now = crate::net::core::now_ms();
    let mut bindings: Vec<SipBinding> = sip
        .phones(now)
        .into_iter()
        .map(|(aor, bound)| {
            let mut phones: Vec<SipPhone> = bound.iter().map(|b| sip_phone(b, now)).collect();
            phones.sort_by(|a, b| a.contact.cmp(&b.contact));
            SipBinding {
                aor,
                contacts: phones.iter().map(|p| p.contact.clone()).collect(),
                phones,
            }
        })
        .collect();
    bindings.sort_by(|a, b| a.aor.cmp(&b.aor));
    SipUsersResult {
        listen: snapshot.local.map(|a| a.to_string()),
        bindings,
        registers_accepted: snapshot.stats.accepted,
        auth_failures: snapshot.stats.auth_failures,
        locked_out: snapshot.stats.locked_out,
        calls_authorized: snapshot.stats.calls_authorized,
        rate_limited: snapshot.stats.rate_limited,
    }
}

/// One phone's binding as the admin interface shows it at `now_ms`.
fn sip_phone(b: &crate::sip::registrar::PhoneBinding, now_ms: u64) -> SipPhone {
    use crate::sip::transaction::Transport;
    SipPhone {
        contact: b.uri.clone(),
        source: b.source.to_string(),
        transport: match b.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Overlay(_) => "overlay",
        }
        .to_owned(),
        expires_in: b.expires_ms.saturating_sub(now_ms).div_ceil(1000),
    }
}

/// The answer to `sip_unbind` (the contract is docs/admin.md).
fn sip_unbind(
    sip: Option<&SipHandle>,
    aor: &str,
    contact: Option<&str>,
) -> Result<SipUnbindResult, String> {
    let sip =
        sip.ok_or_else(|| "this node serves no phones (it runs without --sip-listen)".to_owned())?;
    let normalised = crate::sip::SipUri::parse(aor)
        .ok()
        .and_then(|uri| crate::sip::registrar::aor_of(&uri))
        .ok_or_else(|| format!("{aor:?}: not a SIP AOR (sip:USER@DOMAIN)"))?;
    let now = crate::net::core::now_ms();
    let unbound = sip
        .unbind(&normalised, contact)
        .map_err(|e| e.to_string())?;
    let remaining = sip
        .phones(now)
        .iter()
        .find(|(bound, _)| *bound == normalised)
        .map_or(0, |(_, phones)| phones.len());
    let mut bindings: Vec<SipPhone> = unbound.removed.iter().map(|b| sip_phone(b, now)).collect();
    bindings.sort_by(|a, b| a.contact.cmp(&b.contact));
    Ok(SipUnbindResult {
        aor: normalised,
        removed: bindings.len(),
        bindings,
        remaining,
    })
}

/// The answer to `status` (the contract is docs/admin.md).
pub(super) fn status(
    node: &Node,
    mode: OverlayMode,
    started: Instant,
) -> Result<StatusResult, String> {
    let overlay = node
        .overlay()
        .ok_or_else(|| "this node serves no overlay".to_owned())?;
    Ok(StatusResult {
        id: node.node_id(),
        listen: node.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        overlay: overlay.params().name.clone(),
        mode,
        id_difficulty: overlay.params().id_difficulty,
        peers: connected_peers(node),
        table_size: overlay.table_len(),
        records: overlay.records_len(),
        uptime_secs: started.elapsed().as_secs(),
        ready: overlay.readiness().is_some(),
        joined_at: overlay.readiness().map(|r| r.at_unix_ms / 1000),
    })
}

/// The answer to `reputation` (the contract is docs/admin.md).
pub(super) fn reputation(node: &Node) -> ReputationResult {
    let secs = |ms: u64| ms / 1000;
    let peers = node
        .core()
        .report()
        .into_iter()
        .map(|p| PeerEntry {
            node_id: p.id,
            // Two decimals: the score is a decaying real number.
            score: (p.score * 100.0).round() / 100.0,
            standing: p.standing.into(),
            answered: p.answered,
            verified: p.verified,
            unverifiable: p.unverifiable,
            unresponsive: p.unresponsive,
            misbehaviour: p.misbehaviour,
            violations: p.violations,
            rate_violations: p.rate_violations,
            bans: p.bans,
            first_seen: secs(p.first_seen_ms),
            last_seen: secs(p.last_seen_ms),
            banned_until: p.banned_until_ms.map(secs),
        })
        .collect();
    ReputationResult { peers }
}

/// Distinct authenticated peers with an open connection, either way.
fn connected_peers(node: &Node) -> usize {
    let mut ids: Vec<_> = node.peers().into_iter().map(|(id, _)| id).collect();
    ids.extend(node.dialer().connected());
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

fn now() -> u64 {
    crate::unix_now().max(0) as u64
}

/// The answer to `trace` (the contract is docs/admin.md).
async fn trace(node: &Node, target: String) -> Result<TraceResult, String> {
    use crate::net::overlay::HopAnswer;
    let overlay = node
        .overlay()
        .ok_or_else(|| "this node serves no overlay".to_owned())?;
    let (key, kind) = if target.starts_with("sip:") || target.starts_with("sips:") {
        (
            Key(crate::identity::aor_key(&target)),
            Some(RecordKind::SipRegistration),
        )
    } else {
        let bytes: [u8; 32] = hex::decode(&target)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{target:?}: neither a SIP AOR nor a key of 64 hex digits"))?;
        (Key(bytes), None)
    };
    let (found, hops) = overlay.trace(node.dialer(), key, kind).await;
    let standings: std::collections::HashMap<_, _> = node
        .core()
        .report()
        .into_iter()
        .map(|p| (p.id, PeerStanding::from(p.standing)))
        .collect();
    let hops: Vec<TraceHopEntry> = hops
        .into_iter()
        .map(|h| {
            let (answer, contacts, records, error) = match h.answer {
                HopAnswer::Contacts { contacts } => ("contacts", contacts, 0, None),
                HopAnswer::Value { records, contacts } => ("value", contacts, records, None),
                HopAnswer::Failed(f) => ("failed", 0, 0, Some(f.as_str().to_owned())),
                HopAnswer::Unanswered => ("unanswered", 0, 0, None),
            };
            TraceHopEntry {
                node_id: h.to.id,
                addr: h.to.addr.to_string(),
                via: h.via.map(|v| v.to_string()),
                path: h.path,
                rtt_ms: (h.rtt.as_secs_f64() * 1e6).round() / 1e3,
                answer: answer.to_owned(),
                contacts,
                records,
                error,
                standing: standings
                    .get(&h.to.id)
                    .copied()
                    .unwrap_or(PeerStanding::Neutral),
            }
        })
        .collect();
    let o = &found.outcome;
    let dense = if o.dense.is_some() {
        ", after repeating it beyond an implausibly dense cluster of ids around the key"
    } else {
        ""
    };
    let ended = match kind {
        Some(_) if !found.records.is_empty() => format!(
            "{} node(s) answered with a verified record under the key{dense}",
            o.holders.len()
        ),
        Some(_) => format!(
            "no node asked holds a record under the key: the {} closest that answered were asked{dense}",
            o.closest.len()
        ),
        None => format!(
            "the {} closest nodes known answered or failed; none closer was left to ask{dense}",
            o.closest.len()
        ),
    };
    Ok(TraceResult {
        target,
        key: hex::encode(key.0),
        lookup: if kind.is_some() {
            "registration"
        } else {
            "closest"
        }
        .to_owned(),
        requests: o.requests,
        records: found.records.len(),
        closest: found.closest.iter().map(|c| c.id.to_string()).collect(),
        ended,
        hops,
    })
}

/// The answer to `media-test`: the AOR's registration read, its first
/// live entry with a rendezvous handle tested.
async fn media_test(
    node: &Node,
    overlay: &crate::net::overlay::OverlayService,
    aor: &str,
    hops: usize,
    seconds: u64,
) -> Result<MediaTestResult, String> {
    use crate::relay::handle::RendezvousHandle;
    if !(2..=crate::limits::RELAY_MAX_HOPS).contains(&hops) {
        return Err(format!(
            "hops {hops}: a circuit has 2 to {} relays (the rendezvous included)",
            crate::limits::RELAY_MAX_HOPS
        ));
    }
    if !(1..=super::api::MEDIA_TEST_MAX_SECONDS).contains(&seconds) {
        return Err(format!(
            "seconds {seconds}: from 1 to {}",
            super::api::MEDIA_TEST_MAX_SECONDS
        ));
    }
    let calls = node
        .anonymous()
        .ok_or_else(|| "this node has no SIP overlay to test media in".to_owned())?;
    let uri = crate::sip::uri::SipUri::parse(aor).map_err(|e| format!("{aor:?}: {e}"))?;
    let aor = crate::sip::registrar::aor_of(&uri)
        .ok_or_else(|| format!("{aor:?}: an AOR has a user part"))?;
    let key = Key(crate::identity::aor_key(&aor));
    let record = overlay
        .newest(node.dialer(), key, RecordKind::SipRegistration)
        .await
        .ok_or_else(|| format!("{aor}: no registration in the overlay"))?;
    let registration = record
        .registration()
        .filter(|r| r.aor() == aor)
        .ok_or_else(|| format!("{aor}: no registration in the overlay"))?;
    let now = u64::try_from(crate::unix_now()).unwrap_or(0);
    let handle = registration
        .live_entries(now)
        .find_map(|e| {
            e.contacts
                .iter()
                .find_map(|c| RendezvousHandle::from_contact(c, e.node_id).ok())
        })
        .ok_or_else(|| {
            format!(
                "{aor}: no live entry publishes a rendezvous handle (its node does not run \
                 --anonymous-calls, or its rendezvous is not up yet)"
            )
        })?;
    calls.media_test(handle, hops, seconds).await
}

/// The answer to `circuits`.
async fn circuits(
    node: &Node,
    overlay: &crate::net::overlay::OverlayService,
    directory: bool,
) -> CircuitsResult {
    use std::sync::atomic::Ordering::Relaxed;
    let circuits = node.circuits();
    let stats = circuits.stats();
    let directory = if directory {
        let now = u64::try_from(crate::unix_now()).unwrap_or(0);
        let relays = crate::net::relays::find_relays(overlay, node.dialer(), now).await;
        Some(
            relays
                .iter()
                .map(|r| DirectoryRelay {
                    node_id: *r.node_id(),
                    addresses: r.offer().addresses.clone(),
                    capacity: r.offer().capacity,
                    onion_key_expires: r.offer().onion_key.expires,
                    turn: r.offer().turn,
                })
                .collect(),
        )
    } else {
        None
    };
    CircuitsResult {
        relay: circuits.is_relay(),
        relayed: circuits
            .relay_view()
            .into_iter()
            .map(|v| RelayedCircuit {
                prev: v.prev,
                next: v.next,
                rendezvous: v.rendezvous.map(|spliced| {
                    if spliced.is_some() {
                        "spliced"
                    } else {
                        "waiting"
                    }
                    .to_owned()
                }),
            })
            .collect(),
        own: circuits.own_circuits(),
        cells_relayed: stats.cells_relayed.load(Relaxed),
        refused: stats.refused.load(Relaxed),
        unsent: stats.unsent.load(Relaxed),
        echoes: stats.echoes.load(Relaxed),
        directory,
    }
}
