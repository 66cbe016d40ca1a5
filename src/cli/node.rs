//! `p2psip node run` and `p2psip ping`.

use super::files::{
    kept_client_key, load_anchors, load_identity_of_kind, print_json, read_certificate,
    read_small_file, ENROLLED_CERT,
};
use super::reload::{log_filter, LogHandle, Reload};
use super::{parse_difficulty, printable, AnchorArgs, CliError, CliResult, JsonFlag};
use crate::admin::{AdminServer, MetricsServer, OverlayMode};
use crate::identity::{IdKind, NodeId, SecretKey, VerifyPolicy};
use crate::limits::DEFAULT_ID_DIFFICULTY;
use crate::net::anonymous::AnonymousCalls;
use crate::net::discovery::LanDiscovery;
use crate::net::overlay::Joined;
use crate::net::relays::{publish_descriptor, withdraw_descriptor};
use crate::net::sip::SipListener;
use crate::net::turn::TurnListener;
use crate::net::{Client, LocalIdentity, Node, NodeConfig};
use crate::overlay::config::OverlayParams;
use crate::overlay::lan::LISTEN_BEFORE_STARTING_MS;
use crate::overlay::routing::Contact;
use crate::relay::keys::OnionKeys;
use crate::turn::peers::PeerFilter;
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// How often a running node rebuilds its self-signed certificate. Well
/// inside its validity, so that peers never see an expired one.
const CERT_ROTATION: Duration = Duration::from_secs(24 * 3600);

/// `node run`'s flags. Each may also come from the `--config` file
/// (super::config, where every value is checked and the defaults live);
/// a flag given wins.
#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// A configuration file (TOML) with any of these options, a key per
    /// flag (`--max-connections` → `max_connections`); flags override it.
    /// `p2psip config check FILE` shows what it sets.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The node's identity directory (identity.key, identity.pem).
    #[arg(long, value_name = "DIR")]
    pub(super) dir: Option<PathBuf>,
    /// UDP address to listen on, e.g. 127.0.0.1:4433 or [::1]:4433.
    #[arg(long, value_name = "ADDR")]
    pub(super) listen: Option<SocketAddr>,
    /// Leading zero bits required of every peer's SHA-256(NodeId)
    /// [default: the overlay file's id_difficulty, else 20].
    #[arg(long, value_name = "N", value_parser = parse_difficulty)]
    pub(super) difficulty: Option<u8>,
    /// The overlay's parameters (TOML: name, k, alpha, disjoint_paths,
    /// id_difficulty, replication, max_per_prefix_per_bucket,
    /// max_per_prefix_per_table), shared by every node of the overlay.
    /// Without it the defaults, overlay name "p2psip".
    #[arg(long, value_name = "FILE")]
    pub(super) overlay: Option<PathBuf>,
    #[command(flatten)]
    pub(super) anchors: AnchorArgs,
    /// The node's CA-issued certificate in enrolled mode (default DIR/enrolled.pem).
    #[arg(long, value_name = "FILE")]
    pub(super) cert: Option<PathBuf>,
    /// Maximum simultaneous inbound connections [default: 1024].
    #[arg(long, value_name = "N")]
    pub(super) max_connections: Option<usize>,
    /// Maximum simultaneous inbound connections per IPv4 address / IPv6 /64
    /// [default: 8].
    #[arg(long, value_name = "N")]
    pub(super) max_connections_per_ip: Option<usize>,
    /// Maximum simultaneous inbound connections per IPv4 /24 / IPv6 /48
    /// [default: 32].
    #[arg(long, value_name = "N")]
    pub(super) max_connections_per_net: Option<usize>,
    /// Maximum simultaneous inbound connections per IPv4 /16 / IPv6 /32
    /// [default: 128].
    #[arg(long, value_name = "N")]
    pub(super) max_connections_per_wide_net: Option<usize>,
    /// Maximum concurrent requests (streams) per connection [default: 16].
    #[arg(long, value_name = "N")]
    pub(super) max_streams: Option<u32>,
    /// Directory for the node's records on disk (default DIR/data).
    #[arg(long, value_name = "DIR")]
    pub(super) data: Option<PathBuf>,
    /// A node of the overlay to join through, as NODE_ID@ADDR (repeatable).
    /// Without it the node starts a new overlay.
    #[arg(long, value_name = "ID@ADDR", value_parser = parse_bootstrap)]
    pub(super) bootstrap: Vec<Contact>,
    /// Idle timeout of a connection, in seconds (1 to 3600) [default: 30].
    #[arg(long, value_name = "SECS")]
    pub(super) idle_timeout: Option<u64>,
    /// Length of a first ban of a misbehaving peer, in seconds (1 to
    /// 86400); each further ban within 7 days doubles it, up to 24 hours
    /// [default: 600].
    #[arg(long, value_name = "SECS")]
    pub(super) ban_secs: Option<u64>,
    /// Serve SIP phones on this address, UDP and TCP (e.g. 127.0.0.1:5060):
    /// the node is their registrar and outbound proxy, for the accounts
    /// `p2psip sip add-user` wrote. Without it the node serves no SIP.
    #[arg(long, value_name = "ADDR")]
    pub(super) sip_listen: Option<SocketAddr>,
    /// Make this node a relay: it serves what relays serve (today TURN,
    /// with --turn-listen) [default: off].
    #[arg(long)]
    pub(super) relay: bool,
    /// Serve TURN (RFC 8656, UDP) to ICE clients on this address, e.g.
    /// 127.0.0.1:3478 (needs --relay; a specific IP: relayed sockets are
    /// opened on it). Users: `p2psip turn add-user`. Without it, no TURN.
    #[arg(long, value_name = "ADDR")]
    pub(super) turn_listen: Option<SocketAddr>,
    /// Peers the TURN relay may reach although its filter refuses them
    /// (its own host's addresses, loopback, private, link-local,
    /// multicast...), as IP ranges, e.g. 10.0.0.0/8,fd00::/8 (repeatable;
    /// needs --turn-listen). Wins over --turn-denied-peers, as coturn's
    /// allowed-peer-ip (docs/turn.md, "Which peers").
    #[arg(long, value_name = "CIDR[,CIDR…]", value_delimiter = ',')]
    pub(super) turn_allowed_peers: Vec<String>,
    /// Peers the TURN relay must not reach besides those its filter
    /// refuses, as IP ranges, e.g. 203.0.113.0/24 (repeatable; needs
    /// --turn-listen), as coturn's denied-peer-ip.
    #[arg(long, value_name = "CIDR[,CIDR…]", value_delimiter = ',')]
    pub(super) turn_denied_peers: Vec<String>,
    /// Place and take calls through anonymizing circuits (needs
    /// --sip-listen): the node keeps a circuit to a rendezvous relay and
    /// publishes its handle, not its address, in its users'
    /// registrations; calls go through circuits to callees' rendezvous,
    /// never straight to their nodes (docs/sip.md) [default: off].
    #[arg(long)]
    pub(super) anonymous_calls: bool,
    /// Relays per circuit of an anonymous call, the rendezvous included,
    /// 2 to 6 [default: 3].
    #[arg(long, value_name = "N")]
    pub(super) circuit_hops: Option<usize>,
    /// Serve metrics in Prometheus's text format on this TCP address
    /// (`GET /metrics`, e.g. 127.0.0.1:9464). Without it, none.
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics_listen: Option<SocketAddr>,
    /// How to find the overlay's other nodes besides --bootstrap: `lan`
    /// announces this node on its link with mDNS/DNS-SD and joins through
    /// the nodes of the same overlay it hears there (no server, no DNS);
    /// `off` [default: off].
    #[arg(long, value_name = "HOW", value_enum)]
    pub(super) discover: Option<Discover>,
    /// How the log (on stderr) is written: `text` for people (coloured
    /// only on a terminal) or `json`, one object a line, for log shippers.
    /// `RUST_LOG` picks what is logged [default: text].
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub(super) log_format: Option<LogFormat>,
    /// What is logged: a level (`error`, `warn`, `info`, `debug`,
    /// `trace`) or `RUST_LOG`-style directives (`info,p2psip::net=debug`).
    /// Changed by a reload (SIGHUP, `p2psip reload`) [default: RUST_LOG,
    /// else info].
    #[arg(long, value_name = "FILTER")]
    pub(super) log_level: Option<String>,
}

impl RunArgs {
    /// No flags, only a configuration file (`config check`).
    pub(super) fn from_config(file: PathBuf) -> Self {
        Self {
            config: Some(file),
            ..Self::default()
        }
    }
}

/// Parses `--bootstrap NODE_ID@ADDR`.
pub(super) fn parse_bootstrap(s: &str) -> Result<Contact, String> {
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected NODE_ID@ADDR (64 hex digits, '@', ip:port)"))?;
    let id: NodeId = id.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("{s:?}: bad address {addr:?}: {e}"))?;
    Ok(Contact { id, addr })
}

/// The identity and policy a node or client uses, from the flags.
fn local_side(
    key: &SecretKey,
    dir: Option<&Path>,
    anchors: &AnchorArgs,
    cert: Option<&Path>,
    difficulty: u8,
) -> Result<(LocalIdentity, VerifyPolicy), CliError> {
    if anchors.anchors.is_empty() {
        let identity = LocalIdentity::self_signed(key, crate::unix_now())?;
        return Ok((identity, VerifyPolicy::self_certifying(difficulty)));
    }
    let policy = VerifyPolicy::enrolled(load_anchors(&anchors.anchors)?, difficulty);
    let cert_path = match (cert, dir) {
        (Some(c), _) => c.to_path_buf(),
        (None, Some(d)) => d.join(ENROLLED_CERT),
        (None, None) => {
            return Err(CliError(
                "enrolled mode (--ca) needs --dir with an enrolled certificate".into(),
            ))
        }
    };
    if !cert_path.exists() {
        return Err(CliError(format!(
            "{}: missing; in enrolled mode (--ca) the node presents a certificate issued by the \
             overlay CA: `p2psip ca issue --ca CA_DIR --node-dir DIR --out {}`",
            cert_path.display(),
            cert_path.display()
        )));
    }
    let der = read_certificate(&cert_path)?;
    // Refuse to start with a certificate the overlay's peers would refuse.
    policy
        .verify_node(&der, crate::unix_now())
        .map_err(|e| CliError(format!("{}: {e}", cert_path.display())))?;
    let identity = LocalIdentity::with_certificate(key, der.clone())
        .map_err(|e| CliError(format!("{}: {e}", cert_path.display())))?;
    // An issued certificate is not rotated by the node: say when it runs out.
    if let Ok(v) = policy.verify(&der, crate::unix_now()) {
        let left = v.not_after - crate::unix_now();
        if left < 7 * 86_400 {
            warn!(
                cert = %cert_path.display(),
                days_left = left / 86_400,
                "the enrolled certificate expires soon; ask the overlay CA for a new one"
            );
        }
    }
    Ok((identity, policy))
}

/// How a node finds its overlay's nodes besides `--bootstrap`
/// (`node run --discover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discover {
    /// Only `--bootstrap` and the saved routing table.
    Off,
    /// mDNS/DNS-SD on the node's link (docs/operations.md, "LAN discovery").
    Lan,
}

impl Discover {
    /// As the flag and the configuration file write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Discover::Off => "off",
            Discover::Lan => "lan",
        }
    }
}

/// The format of the node's log (`node run --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people; ANSI colours only when stderr is a terminal
    /// (and `NO_COLOR` is not set), never into a file or a journal.
    Text,
    /// One JSON object a line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

impl LogFormat {
    /// As the flag and the configuration file write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Logs to stderr as `filter` says, in `format`; returns the handle that
/// changes the filter later (a reload), unless a logger was set already.
fn init_logging(filter: EnvFilter, format: LogFormat) -> Option<LogHandle> {
    use std::io::IsTerminal;
    use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, Layer};
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let output = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .ok()
        .map(|()| handle)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start the async runtime: {e}")))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}

/// The overlay parameters from `--overlay FILE` (or the defaults), with
/// `--difficulty` overriding the file's id_difficulty.
fn overlay_params(file: Option<&Path>, difficulty: Option<u8>) -> Result<OverlayParams, CliError> {
    let mut params = match file {
        None => OverlayParams::default(),
        Some(path) => {
            let bytes = read_small_file(path)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| CliError(format!("{}: not UTF-8 text", path.display())))?;
            OverlayParams::from_toml(text)
                .map_err(|e| CliError(format!("{}: {e}", path.display())))?
        }
    };
    if let Some(d) = difficulty {
        params.id_difficulty = d;
    }
    Ok(params)
}

/// How often a relay publishes its descriptor again (and checks its
/// onion keys' rotation): well within the descriptor's lifetime.
const RELAY_REPUBLISH: Duration = Duration::from_secs(3600);

/// A relay's upkeep: once the node is part of its overlay, publish its
/// descriptor, and again every [`RELAY_REPUBLISH`] (rotating the onion
/// keys when due). A node listening on no specific address has no
/// address to publish: it relays for nodes that know it, unlisted.
async fn relay_upkeep(
    node: &Node,
    owner: &crate::identity::SecretKey,
    node_cert: Option<Vec<u8>>,
    addr: std::net::SocketAddr,
    turn: Option<std::net::SocketAddr>,
) {
    let Some(overlay) = node.overlay() else {
        return std::future::pending::<()>().await;
    };
    if addr.ip().is_unspecified() {
        warn!(%addr, "--relay: --listen names no specific address, so no relay descriptor is published");
        return std::future::pending::<()>().await;
    }
    overlay.ready().await;
    loop {
        let now = u64::try_from(crate::unix_now()).unwrap_or(0);
        node.circuits().rotate_onion_keys(now);
        if let Some(offer) = node.circuits().relay_offer(now, vec![addr], turn) {
            let seq = crate::unix_now_micros();
            match publish_descriptor(
                overlay,
                node.dialer(),
                owner,
                node_cert.clone(),
                offer,
                seq,
                now,
            )
            .await
            {
                Ok(acks) => info!(?acks, "relay descriptor published"),
                Err(e) => warn!(error = %e, "relay descriptor not published"),
            }
        }
        tokio::time::sleep(RELAY_REPUBLISH).await;
    }
}

/// At shutdown: a relay withdraws its descriptor (bounded in time).
async fn withdraw_relay(
    node: &Node,
    owner: &crate::identity::SecretKey,
    node_cert: Option<Vec<u8>>,
    addr: std::net::SocketAddr,
) {
    let Some(overlay) = node.overlay() else {
        return;
    };
    if addr.ip().is_unspecified() || overlay.readiness().is_none() {
        return;
    }
    let now = u64::try_from(crate::unix_now()).unwrap_or(0);
    let seq = crate::unix_now_micros();
    let withdrawal = withdraw_descriptor(overlay, node.dialer(), owner, node_cert, seq, now);
    match tokio::time::timeout(Duration::from_secs(5), withdrawal).await {
        Ok(Ok(acks)) => info!(?acks, "relay descriptor withdrawn"),
        Ok(Err(e)) => warn!(error = %e, "relay descriptor not withdrawn"),
        Err(_) => warn!("relay descriptor withdrawal timed out"),
    }
}

pub fn run(args: RunArgs) -> CliResult {
    let a = super::config::resolve(&args)?;
    let log = init_logging(log_filter(a.log_level.as_deref(), "info"), a.log_format);
    let id = load_identity_of_kind(&a.dir, IdKind::Node)?;
    let node_id = id.key.public().node_id();
    let overlay = overlay_params(a.overlay.as_deref(), a.difficulty)?;
    let difficulty = overlay.id_difficulty;
    if node_id.puzzle_bits() < u32::from(difficulty) {
        return Err(CliError(format!(
            "this node's id has {} leading zero bits but the overlay requires {difficulty}; peers \
             would refuse it. Create an identity with `p2psip identity new --difficulty {difficulty}`",
            node_id.puzzle_bits(),
        )));
    }
    let limits = a.limits;
    let anchors = AnchorArgs {
        anchors: a.ca.clone(),
    };
    let self_certifying = anchors.anchors.is_empty();
    let (identity, policy) = local_side(
        &id.key,
        Some(&a.dir),
        &anchors,
        a.cert.as_deref(),
        difficulty,
    )?;
    let overlay_name = overlay.name.clone();
    let config = NodeConfig {
        identity,
        policy,
        limits,
        overlay: Some(overlay),
        data_dir: Some(a.data.clone().unwrap_or_else(|| a.dir.join("data"))),
    };
    let bootstrap = a.bootstrap.clone();
    runtime()?.block_on(async move {
        // The admin socket first: it also tells whether a node already
        // runs in this directory, before the data store is opened.
        let admin = AdminServer::bind(&a.dir)?;
        let node =
            Node::bind(config.clone(), a.listen)?.with_reputation_policy(a.reputation_policy());
        let addr = node.local_addr()?;
        let node = std::sync::Arc::new(node);
        // Shared by the certificate rotation and the reload.
        let config = std::sync::Arc::new(std::sync::Mutex::new(config));
        let reload = std::sync::Arc::new(Reload::new(
            args.clone(),
            a.clone(),
            node.clone(),
            config.clone(),
            log,
        ));
        let admin = admin.with_reload({
            let reload = reload.clone();
            std::sync::Arc::new(move || reload.run())
        });
        let mode = if self_certifying {
            OverlayMode::SelfCertifying
        } else {
            OverlayMode::Enrolled
        };
        info!(id = %node_id, %addr, difficulty, overlay = %overlay_name, mode = mode.as_str(),
              admin = %admin.path().display(), "node listening");
        println!("p2psip node {node_id} listening on {addr}");
        let _ = std::io::stdout().flush();
        let discovery = match a.discover {
            Discover::Lan => Some(
                LanDiscovery::start(node_id, &overlay_name, difficulty, addr)
                    .map_err(|e| CliError(format!("--discover lan: {e}")))?,
            ),
            Discover::Off => None,
        };
        // Every overlay node can test media through circuits
        // (`p2psip media-test`); with --anonymous-calls its SIP calls go
        // through them too.
        let mut anonymous_inbound = None;
        if let Some(overlay) = node.overlay() {
            let (calls, inbound) = AnonymousCalls::new(
                node.circuits().clone(),
                overlay.clone(),
                node.dialer().clone(),
                addr,
                a.circuit_hops,
                a.dir.clone(),
            );
            node.set_anonymous(calls);
            if a.anonymous_calls {
                anonymous_inbound = Some(inbound);
            }
        }
        let sip = match (a.sip_listen, node.overlay().cloned()) {
            (Some(listen), Some(overlay)) => {
                let mut sip = SipListener::bind(
                    listen,
                    &a.dir,
                    &overlay_name,
                    node_id,
                    overlay.clone(),
                    node.dialer().clone(),
                )
                .await
                .map_err(|e| CliError(format!("--sip-listen {listen}: {e}")))?;
                if let Some(inbound) = anonymous_inbound.take() {
                    if let Some(calls) = node.anonymous() {
                        tokio::spawn(calls.clone().run_rendezvous());
                        sip.enable_anonymous(calls.clone(), inbound);
                        info!(
                            hops = a.circuit_hops,
                            "anonymous calls: through circuits only"
                        );
                    }
                }
                let depositor =
                    SecretKey::from_seed(&zeroize::Zeroizing::new(id.key.dalek().to_bytes()));
                match sip.enable_voicemail(depositor).await {
                    Ok(at) => info!(agent = %at, "voice mail answering"),
                    Err(e) => warn!(error = %e, "voice mail not available"),
                }
                info!(sip = %sip.local_addr(), "SIP listening (UDP and TCP)");
                println!("p2psip node {node_id} serving SIP on {}", sip.local_addr());
                let _ = std::io::stdout().flush();
                Some(sip)
            }
            _ => None,
        };
        if a.relay {
            let now = u64::try_from(crate::unix_now()).unwrap_or(0);
            node.circuits()
                .enable_relay(OnionKeys::new(now, rand::rngs::OsRng));
        }
        let turn = match a.turn_listen {
            Some(listen) => {
                let peers =
                    PeerFilter::new(a.turn_allowed_peers.clone(), a.turn_denied_peers.clone())
                        .map_err(|e| CliError(format!("TURN peer ranges: {e}")))?;
                let turn = TurnListener::bind(listen, &a.dir, &overlay_name, peers)
                    .await
                    .map_err(|e| CliError(format!("--turn-listen {listen}: {e}")))?;
                info!(turn = %turn.local_addr(), realm = %overlay_name, "TURN listening (UDP)");
                println!(
                    "p2psip node {node_id} serving TURN on {}",
                    turn.local_addr()
                );
                let _ = std::io::stdout().flush();
                Some(turn)
            }
            None => None,
        };
        let turn_addr = turn.as_ref().map(TurnListener::local_addr);
        let node_cert = (!self_certifying).then(|| {
            let config = config.lock().unwrap_or_else(|p| p.into_inner());
            config.identity.certificate_der().to_vec()
        });
        let relay_task = async {
            if !a.relay {
                return std::future::pending::<()>().await;
            }
            relay_upkeep(&node, &id.key, node_cert.clone(), addr, turn_addr).await
        };
        let turn_task = async move {
            match turn {
                Some(turn) => turn.run().await,
                None => std::future::pending::<()>().await,
            }
        };
        let metrics_task = match a.metrics_listen {
            Some(listen) => {
                let metrics = MetricsServer::bind(listen)
                    .await
                    .map_err(|e| CliError(format!("--metrics-listen {listen}: {e}")))?;
                let at = metrics.local_addr()?;
                info!(metrics = %at, "metrics listening");
                println!("p2psip node {node_id} serving metrics on {at}");
                let _ = std::io::stdout().flush();
                Some(metrics.serve(node.clone(), mode, sip.as_ref().map(SipListener::handle)))
            }
            None => None,
        };
        let metrics_task = async move {
            match metrics_task {
                Some(task) => task.await,
                None => std::future::pending::<()>().await,
            }
        };
        let admin_task = admin.serve(node.clone(), mode, sip.as_ref().map(SipListener::handle));
        let sip_task = async move {
            match sip {
                Some(sip) => sip.run().await,
                None => std::future::pending::<()>().await,
            }
        };
        if let Some(overlay) = node.overlay().cloned() {
            let dialer = node.dialer().clone();
            if bootstrap.is_empty() && !overlay.has_saved_contacts() {
                if discovery.is_some() {
                    // Nodes started together on a LAN form one overlay:
                    // listen first; a join through a node heard makes
                    // this node ready, else it starts a new overlay.
                    let wait = Duration::from_millis(LISTEN_BEFORE_STARTING_MS);
                    info!(
                        ?wait,
                        "no --bootstrap and no saved routing table: listening on the LAN"
                    );
                    let overlay = overlay.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        if overlay.readiness().is_none() {
                            info!("nobody heard on the LAN: starting a new overlay");
                            overlay.start_new_overlay();
                        }
                    });
                } else {
                    info!("no --bootstrap and no saved routing table: starting a new overlay");
                    overlay.start_new_overlay();
                }
            }
            // The readiness line (docs/operations.md), once, after the
            // address lines: scripts wait for it instead of racing the join.
            let ready_overlay = overlay.clone();
            let name = overlay_name.clone();
            tokio::spawn(async move {
                let line = match ready_overlay.ready().await.how {
                    Joined::StartedNew => format!("p2psip node {node_id} started a new overlay"),
                    Joined::Through { contacts } => {
                        info!(table_size = contacts, "joined the overlay");
                        format!("p2psip node {node_id} joined {name} with {contacts} contacts")
                    }
                };
                // Nobody may be reading any more: never a reason to stop.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            });
            if !bootstrap.is_empty() {
                tokio::spawn(async move {
                    let size = overlay.join(&dialer, &bootstrap).await;
                    if size == 0 {
                        warn!("the join through --bootstrap reached nobody; not ready yet");
                    }
                });
            }
        }
        let rotation = async {
            if !self_certifying {
                return std::future::pending::<()>().await;
            }
            loop {
                tokio::time::sleep(CERT_ROTATION).await;
                match LocalIdentity::self_signed(&id.key, crate::unix_now()) {
                    Ok(fresh) => {
                        let mut config = config.lock().unwrap_or_else(|p| p.into_inner());
                        config.identity = fresh;
                        match node.reconfigure(&config) {
                            Ok(()) => info!("rotated the self-signed certificate"),
                            Err(e) => warn!(error = %e, "certificate rotation failed"),
                        }
                    }
                    Err(e) => warn!(error = %e, "certificate rotation failed"),
                }
            }
        };
        let discovery_task = async {
            if let (Some(d), Some(overlay)) = (&discovery, node.overlay().cloned()) {
                d.run(overlay, node.dialer().clone()).await;
            }
            std::future::pending::<()>().await
        };
        let hangups = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::hangup()) {
                Ok(mut hup) => {
                    while hup.recv().await.is_some() {
                        info!("SIGHUP received: reloading the configuration");
                        // Run and logged by the reload itself.
                        let _ = reload.run();
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGHUP; reload with `p2psip reload`")
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            // A relay withdraws its descriptor between the signal and
            // the node's closing, while it can still reach the overlay.
            _ = node.run(async {
                shutdown_signal().await;
                if a.relay {
                    withdraw_relay(&node, &id.key, node_cert.clone(), addr).await;
                }
            }) => {}
            _ = hangups => {}
            _ = discovery_task => {}
            _ = rotation => {}
            _ = admin_task => {}
            _ = sip_task => {}
            _ = turn_task => {}
            _ = relay_task => {}
            _ = metrics_task => {}
        }
        if let Some(d) = &discovery {
            d.stop().await;
        }
        info!("stopped");
        Ok::<(), CliError>(())
    })
}

#[derive(Debug, Args)]
pub struct PingArgs {
    /// The node's address, e.g. 127.0.0.1:4433.
    #[arg(value_name = "ADDR")]
    addr: String,
    /// Refuse the node unless its authenticated id is this one (64 hex).
    #[arg(long, value_name = "HEX")]
    expect_id: Option<NodeId>,
    /// Identity directory to connect as. Without it, ping connects with
    /// the client key it keeps in $XDG_STATE_HOME/p2psip/ping-client.key
    /// (else ~/.local/state/p2psip/; 0600), created the first time and
    /// replaced only by one meeting a higher --difficulty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leading zero bits required of the node's id (and of a throwaway identity).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ID_DIFFICULTY, value_parser = parse_difficulty)]
    difficulty: u8,
    /// Number of pings.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    count: u32,
    /// Pause between pings, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    interval_ms: u64,
    #[command(flatten)]
    anchors: AnchorArgs,
    /// This side's CA-issued certificate in enrolled mode (default DIR/enrolled.pem).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn ping(a: PingArgs) -> CliResult {
    init_logging(log_filter(None, "warn"), LogFormat::Text);
    let addr = a
        .addr
        .to_socket_addrs()
        .map_err(|e| CliError(format!("{}: {e}", a.addr)))?
        .next()
        .ok_or_else(|| CliError(format!("{}: no address", a.addr)))?;
    let key = match &a.dir {
        Some(dir) => load_identity_of_kind(dir, IdKind::Node)?.key,
        None => kept_client_key(a.difficulty)?.0,
    };
    let (identity, policy) = local_side(
        &key,
        a.dir.as_deref(),
        &a.anchors,
        a.cert.as_deref(),
        a.difficulty,
    )?;
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    runtime()?.block_on(async {
        let client = Client::bind(bind, identity, policy)?;
        let result = ping_loop(&client, addr, &a).await;
        client.close().await;
        result
    })
}

async fn ping_loop(client: &Client, addr: SocketAddr, a: &PingArgs) -> CliResult {
    let conn = match client.connect(addr, a.expect_id).await {
        Ok(conn) => conn,
        Err(e) => {
            if a.json.json {
                print_json(&json!({
                    "peer_id": null,
                    "addr": addr.to_string(),
                    "sent": 0,
                    "received": 0,
                    "rtt_ms": [],
                    "rtt_ms_min": null,
                    "rtt_ms_avg": null,
                    "rtt_ms_max": null,
                    "observed_addr": null,
                    "error": e.to_string(),
                }));
            }
            return Err(CliError(format!("cannot connect to {addr}: {e}")));
        }
    };
    let peer = conn.peer_id();
    let mut rtts = Vec::new();
    let mut observed = None;
    let mut error = None;
    for i in 0..a.count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
        match conn.ping().await {
            Ok(reply) => {
                let ms = reply.rtt.as_secs_f64() * 1000.0;
                observed = Some(reply.observed);
                if !a.json.json {
                    println!("pong from {peer} at {addr}: seq={i} time={ms:.3} ms");
                }
                rtts.push(ms);
            }
            Err(e) => {
                if !a.json.json {
                    println!(
                        "no pong from {addr}: seq={i}: {}",
                        printable(&e.to_string())
                    );
                }
                error = Some(e.to_string());
                // A refused or closed connection will not answer again.
                if conn.connection().close_reason().is_some() {
                    break;
                }
            }
        }
    }
    conn.close();
    let received = rtts.len();
    let (min, max, avg) = if received > 0 {
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        (
            Some(min),
            Some(max),
            Some(rtts.iter().sum::<f64>() / received as f64),
        )
    } else {
        (None, None, None)
    };
    if a.json.json {
        print_json(&json!({
            "peer_id": peer.to_string(),
            "addr": addr.to_string(),
            "sent": a.count,
            "received": received,
            "rtt_ms": rtts,
            "rtt_ms_min": min,
            "rtt_ms_avg": avg,
            "rtt_ms_max": max,
            "observed_addr": observed.map(|o| o.to_string()),
            "error": error,
        }));
    } else if let (Some(min), Some(avg), Some(max)) = (min, avg, max) {
        println!(
            "{} sent, {received} received; rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms",
            a.count
        );
    }
    match error {
        None => Ok(()),
        Some(e) if received == 0 => Err(CliError(format!("no pong from {addr}: {e}"))),
        Some(e) => Err(CliError(format!(
            "{} of {} pings failed; last error: {e}",
            a.count as usize - received,
            a.count
        ))),
    }
}
