//! The TURN listener of a relay node (`node run --relay --turn-listen
//! ADDR`): tokio UDP sockets around the sans-IO [`crate::turn::server`].
//!
//! One socket listens for clients; each allocation gets one more UDP
//! socket, bound on the listening IP at a port the system picks, and a
//! task reading it. Every datagram goes into the server under one lock,
//! and what the server answers is done at once: datagrams sent without
//! waiting (`try_send_to`: a full socket buffer drops the datagram, as
//! UDP may), relayed sockets opened and closed (an even port and the
//! next one together, for EVEN-PORT's R bit). A one-second tick feeds
//! the time (expiry) and reloads the users file when it changed; every
//! [`LOCAL_ADDRESSES_REFRESH`] the host's interface addresses are read
//! again and handed to the server, whose peer filter refuses them
//! (`crate::turn::peers`). Nothing here decides policy.
//!
//! The users are in `NODE/turn-users.toml` (0600), written by `p2psip
//! turn add-user`: the realm, and each username's long-term key
//! MD5(username:realm:password) in hex, never a password. A missing file
//! means no users: every Allocate is refused 401.

use crate::turn::credentials::{check_username, LongTermKey, NonceSecret, Users};
use crate::turn::peers::PeerFilter;
use crate::turn::server::{Action, RelayId, Server, ServerConfig, Via};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

/// The users file in a node directory.
pub const TURN_USERS_FILE: &str = "turn-users.toml";
/// Largest users file read, in bytes (4096 users of about 80 bytes).
const MAX_USERS_FILE_LEN: u64 = 512 * 1024;
/// Largest datagram received (the UDP maximum).
const MAX_DATAGRAM: usize = 65_536;
/// How often the time is fed to the server and the users file checked.
const TICK: Duration = Duration::from_secs(1);
/// How often the host's interface addresses are read again for the peer
/// filter (an address added since is reachable as a peer until then,
/// unless a built-in range covers it).
pub const LOCAL_ADDRESSES_REFRESH: Duration = Duration::from_secs(30);

/// The users file (the contract of `NODE/turn-users.toml`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    /// The realm the keys were made for (the overlay's name).
    realm: String,
    /// Username → hex of MD5(username ":" realm ":" password).
    users: BTreeMap<String, String>,
}

impl Drop for UsersFile {
    fn drop(&mut self) {
        for key in self.users.values_mut() {
            zeroize::Zeroize::zeroize(key);
        }
    }
}

/// Where the users file of the node in `node_dir` is.
pub fn users_path(node_dir: &Path) -> PathBuf {
    node_dir.join(TURN_USERS_FILE)
}

/// Reads the users file (owner-only, at most [`MAX_USERS_FILE_LEN`]
/// bytes); `None` when there is none.
fn read_users_file(path: &Path) -> Result<Option<UsersFile>, String> {
    use std::os::unix::fs::PermissionsExt;
    let show = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{show}: {e}")),
    };
    if !meta.is_file() {
        return Err(format!("{show}: not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{show}: readable by others (mode {:o}); it holds TURN keys: chmod 600 it",
            meta.permissions().mode() & 0o7777
        ));
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_USERS_FILE_LEN + 1).read_to_string(&mut text))
        .map_err(|e| format!("{show}: {e}"))?;
    if text.len() as u64 > MAX_USERS_FILE_LEN {
        return Err(format!("{show}: larger than {MAX_USERS_FILE_LEN} bytes"));
    }
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{show}: {e}"))
}

/// The users of the node in `node_dir` for `realm`: none when there is
/// no users file; an error naming the file when it is unreadable, not
/// owner-only, malformed or made for another realm.
pub fn load_users(node_dir: &Path, realm: &str) -> Result<Users, String> {
    let path = users_path(node_dir);
    let show = path.display();
    let Some(file) = read_users_file(&path)? else {
        return Ok(Users::new());
    };
    if file.realm != realm {
        return Err(format!(
            "{show}: its keys are for realm {:?}, but this node's overlay is {realm:?}; add the \
             users again with `p2psip turn add-user`",
            file.realm
        ));
    }
    let mut users = Users::new();
    for (name, key) in &file.users {
        let key = LongTermKey::from_hex(key).map_err(|e| format!("{show}: user {name:?}: {e}"))?;
        users
            .insert(name, key)
            .map_err(|e| format!("{show}: {e}"))?;
    }
    Ok(users)
}

/// Adds `username` with `key` (made for `realm`) to the users file of
/// the node in `node_dir`, written atomically, 0600. An existing user is
/// replaced only with `overwrite`. Returns the file's path.
pub fn add_user(
    node_dir: &Path,
    realm: &str,
    username: &str,
    key: &LongTermKey,
    overwrite: bool,
) -> Result<PathBuf, String> {
    check_username(username)?;
    let path = users_path(node_dir);
    let show = path.display();
    let mut file = read_users_file(&path)?.unwrap_or_else(|| UsersFile {
        realm: realm.to_owned(),
        users: BTreeMap::new(),
    });
    if file.realm != realm {
        return Err(format!(
            "{show}: holds keys for realm {:?}, not {realm:?} (the overlay's name is the realm); \
             give the same --overlay as `node run`",
            file.realm
        ));
    }
    if file.users.contains_key(username) && !overwrite {
        return Err(format!(
            "{show}: the TURN user {username:?} exists; pass --force to replace it"
        ));
    }
    if !file.users.contains_key(username) && file.users.len() >= crate::turn::credentials::MAX_USERS
    {
        return Err(format!("{show}: already {} users", file.users.len()));
    }
    file.users
        .insert(username.to_owned(), key.to_hex().to_string());
    let body = zeroize::Zeroizing::new(
        toml::to_string(&file).map_err(|e| format!("cannot encode the users file: {e}"))?,
    );
    let text = zeroize::Zeroizing::new(format!(
        "# The TURN users of a p2psip relay node, written by `p2psip turn add-user`.\n\
         # Each key is MD5(username:realm:password): as good as the password for\n\
         # this realm. Keep it private (0600).\n{}",
        &*body
    ));
    crate::fsutil::write_atomically(&path, text.as_bytes(), 0o600, true)
        .map_err(|e| format!("{show}: {e}"))?;
    Ok(path)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one call into the server: consistent after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running TURN listener (see the module docs).
pub struct TurnListener {
    inner: Arc<Inner>,
}

struct Inner {
    socket: UdpSocket,
    local: SocketAddr,
    node_dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    server: Server,
    relays: HashMap<RelayId, Relay>,
    /// The latest time fed to the server (it never goes back).
    now: u64,
    /// The users file's modification time when last read.
    users_mtime: Option<SystemTime>,
    /// Datagrams a full socket buffer dropped.
    unsent: u64,
    /// The host's addresses last handed to the server.
    local_addresses: Vec<IpAddr>,
}

struct Relay {
    socket: Arc<UdpSocket>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The addresses of this host's interfaces (up or down), sorted.
pub fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()?
        .iter()
        .map(if_addrs::Interface::ip)
        .collect();
    ips.sort_unstable();
    ips.dedup();
    Ok(ips)
}

impl TurnListener {
    /// Binds `listen` (a specific IP: relayed sockets are opened on it
    /// and told to clients) for `realm`, serving the users of
    /// `node_dir`, reaching the peers `peers` allows (the host's own
    /// addresses are added here and kept up to date).
    pub async fn bind(
        listen: SocketAddr,
        node_dir: &Path,
        realm: &str,
        peers: PeerFilter,
    ) -> std::io::Result<Self> {
        if listen.ip().is_unspecified() {
            return Err(std::io::Error::other(
                "give a specific IP address: relayed addresses are opened on it and told to clients",
            ));
        }
        let users = load_users(node_dir, realm).map_err(std::io::Error::other)?;
        let socket = UdpSocket::bind(listen).await?;
        let local = socket.local_addr()?;
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let mut config = ServerConfig::new(realm, local, NonceSecret::new(secret));
        zeroize::Zeroize::zeroize(&mut secret);
        config.peers = peers;
        // Without the interface list the filter would let a client reach
        // this host's public addresses: refuse to start instead.
        let local_addresses = local_addresses().map_err(|e| {
            std::io::Error::other(format!(
                "cannot list this host's addresses (the peer filter refuses them): {e}"
            ))
        })?;
        let mut server = Server::new(config);
        server.set_local_addresses(local_addresses.iter().copied());
        info!(users = users.len(), %realm, "TURN users loaded");
        info!(
            allowed = %join(server.peer_filter().allowed()),
            denied = %join(server.peer_filter().denied()),
            host_addresses = local_addresses.len(),
            "TURN peer filter"
        );
        server.set_users(users);
        Ok(TurnListener {
            inner: Arc::new(Inner {
                socket,
                local,
                node_dir: node_dir.to_path_buf(),
                state: Mutex::new(State {
                    server,
                    relays: HashMap::new(),
                    now: now(),
                    users_mtime: mtime(&users_path(node_dir)),
                    unsent: 0,
                    local_addresses,
                }),
            }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Serves until dropped (its relayed sockets close with it).
    pub async fn run(self) {
        let ticker = {
            let inner = Arc::downgrade(&self.inner);
            async move {
                let mut tick = tokio::time::interval(TICK);
                let mut interfaces = tokio::time::interval(LOCAL_ADDRESSES_REFRESH);
                // The first tick is at once; the list was read at bind.
                interfaces.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let Some(inner) = inner.upgrade() else { return };
                            inner.tick();
                        }
                        _ = interfaces.tick() => {
                            let Some(inner) = inner.upgrade() else { return };
                            inner.refresh_local_addresses();
                        }
                    }
                }
            }
        };
        let receive = async {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                match self.inner.socket.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        let data = buf.get(..n).unwrap_or_default();
                        self.inner
                            .with_server(|s, now| s.handle_client(now, from, data));
                    }
                    // An ICMP error for an earlier send; nothing to do.
                    Err(e) if is_transient(&e) => {}
                    Err(e) => {
                        warn!(error = %e, "TURN listener: receive failed; stopping");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = ticker => {}
            _ = receive => {}
        }
        lock(&self.inner.state).relays.clear();
    }
}

/// Ranges as `a, b`, or `none`.
fn join(ranges: &[crate::turn::peers::Cidr]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | Interrupted | WouldBlock
    )
}

fn now() -> u64 {
    u64::try_from(crate::unix_now()).unwrap_or(0)
}

impl Inner {
    /// Runs `f` on the server with the current time, then does what it asked.
    fn with_server(self: &Arc<Self>, f: impl FnOnce(&mut Server, u64)) {
        let mut state = lock(&self.state);
        let t = now().max(state.now);
        state.now = t;
        f(&mut state.server, t);
        self.apply(&mut state);
    }

    /// Reads the host's addresses again and hands them to the server
    /// when they changed (a failed read keeps the last list).
    fn refresh_local_addresses(&self) {
        match local_addresses() {
            Ok(addrs) => {
                let mut state = lock(&self.state);
                if addrs != state.local_addresses {
                    info!(
                        before = state.local_addresses.len(),
                        now = addrs.len(),
                        "TURN: this host's addresses changed; the peer filter follows"
                    );
                    state.server.set_local_addresses(addrs.iter().copied());
                    state.local_addresses = addrs;
                }
            }
            Err(e) => {
                warn!(error = %e, "TURN: cannot list this host's addresses; keeping the last list")
            }
        }
    }

    fn tick(self: &Arc<Self>) {
        let path = users_path(&self.node_dir);
        let changed = {
            let state = lock(&self.state);
            mtime(&path) != state.users_mtime
        };
        if changed {
            // Read outside the lock; a bad file keeps the users as they were.
            let realm = lock(&self.state).server.realm().to_owned();
            let seen = mtime(&path);
            match load_users(&self.node_dir, &realm) {
                Ok(users) => {
                    info!(users = users.len(), "TURN users reloaded");
                    let mut state = lock(&self.state);
                    state.server.set_users(users);
                    state.users_mtime = seen;
                }
                Err(e) => {
                    warn!(error = %e, "TURN users file not reloaded");
                    lock(&self.state).users_mtime = seen;
                }
            }
        }
        self.with_server(|s, now| s.handle_timeout(now));
    }

    /// Serves `socket` as relay `id`: a task reads it into the server.
    fn add_relay(self: &Arc<Self>, state: &mut State, id: RelayId, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let task = tokio::spawn(relay_task(Arc::downgrade(self), id, socket.clone()));
        state.relays.insert(id, Relay { socket, task });
    }

    /// Does the server's actions, in order (it may add more: an opened
    /// relay answers its Allocate).
    fn apply(self: &Arc<Self>, state: &mut State) {
        while let Some(action) = state.server.poll_action() {
            match action {
                Action::Transmit { via, to, data } => {
                    let socket = match via {
                        Via::Listener => Some(&self.socket),
                        Via::Relay(id) => state.relays.get(&id).map(|r| &*r.socket),
                    };
                    let sent = socket.map(|s| s.try_send_to(&data, to));
                    if !matches!(sent, Some(Ok(_))) {
                        state.unsent += 1;
                        debug!(%to, ?sent, "TURN datagram not sent");
                    }
                }
                Action::OpenRelay {
                    id,
                    ip,
                    even_port,
                    reserve,
                } => {
                    let opened = match reserve {
                        None => open_relay(ip, even_port).map(|s| (s, None)),
                        Some(_) => open_relay_pair(ip).map(|(s, next)| (s, Some(next))),
                    };
                    let opened = opened.and_then(|(socket, next)| {
                        let addr = socket.local_addr()?;
                        Ok((socket, addr, next))
                    });
                    match opened {
                        Ok((socket, addr, next)) => {
                            self.add_relay(state, id, socket);
                            if let (Some(reserve), Some(next)) = (reserve, next) {
                                self.add_relay(state, reserve, next);
                            }
                            debug!(relay = id, %addr, reserved = reserve.is_some(), "TURN allocation opened");
                            let t = state.now;
                            state.server.relay_opened(t, id, addr);
                        }
                        Err(e) => {
                            warn!(error = %e, %ip, "cannot open a TURN relay socket");
                            state.server.relay_failed(id);
                        }
                    }
                }
                Action::CloseRelay { id } => {
                    debug!(relay = id, "TURN allocation closed");
                    state.relays.remove(&id);
                }
            }
        }
    }
}

/// Attempts at an even port for EVEN-PORT (each a fresh ephemeral port:
/// about one in two is even; for a pair, the next port must be free too).
const EVEN_PORT_ATTEMPTS: usize = 32;

/// A relayed socket on `ip` at a port the system picks (an even one
/// when `even`).
fn open_relay(ip: std::net::IpAddr, even: bool) -> std::io::Result<UdpSocket> {
    for _ in 0..EVEN_PORT_ATTEMPTS {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        if even && socket.local_addr()?.port() % 2 != 0 {
            continue;
        }
        socket.set_nonblocking(true)?;
        return UdpSocket::from_std(socket);
    }
    Err(std::io::Error::other("no even port found"))
}

/// Two relayed sockets on `ip`: an even port the system picks and the
/// next one (EVEN-PORT's R bit: the second is reserved).
fn open_relay_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..EVEN_PORT_ATTEMPTS {
        let first = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let port = first.local_addr()?.port();
        let Some(next) = port.checked_add(1).filter(|_| port % 2 == 0) else {
            continue;
        };
        let Ok(second) = std::net::UdpSocket::bind(SocketAddr::new(ip, next)) else {
            continue;
        };
        first.set_nonblocking(true)?;
        second.set_nonblocking(true)?;
        return Ok((UdpSocket::from_std(first)?, UdpSocket::from_std(second)?));
    }
    Err(std::io::Error::other(
        "no free pair of an even port and the next found",
    ))
}

/// Reads relay `id`'s socket until the relay is closed (its task aborted)
/// or the listener is gone.
async fn relay_task(inner: Weak<Inner>, id: RelayId, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let Some(inner) = inner.upgrade() else { return };
                let data = buf.get(..n).unwrap_or_default();
                inner.with_server(|s, now| s.handle_peer(now, id, from, data));
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                warn!(error = %e, relay = id, "TURN relay socket: receive failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trip_permissions_and_realm() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load_users(dir.path(), "p2psip").unwrap().is_empty(),
            "no file: no users"
        );
        let key = LongTermKey::derive("alice", "p2psip", b"pw");
        let path = add_user(dir.path(), "p2psip", "alice", &key, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pw"), "no password stored");
        let users = load_users(dir.path(), "p2psip").unwrap();
        assert_eq!(users.get("alice"), Some(&key));
        let e = add_user(dir.path(), "p2psip", "alice", &key, false).unwrap_err();
        assert!(e.contains("--force"), "{e}");
        add_user(dir.path(), "p2psip", "alice", &key, true).unwrap();
        let e = add_user(dir.path(), "other", "bob", &key, false).unwrap_err();
        assert!(e.contains("realm"), "{e}");
        let e = load_users(dir.path(), "other").unwrap_err();
        assert!(e.contains("realm"), "{e}");
        let e = add_user(dir.path(), "p2psip", "bad name", &key, false).unwrap_err();
        assert!(e.contains("TURN username"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_users(dir.path(), "p2psip").unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
