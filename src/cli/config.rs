//! `node run --config FILE` and `p2psip config check FILE`: every option
//! of `node run` in a TOML file, flags overriding it (docs/operations.md,
//! "Configuration file"; `contrib/node.toml` lists them all).
//!
//! A key is its flag's name without the dashes, `-` as `_`
//! (`--max-connections` → `max_connections`); repeatable flags are
//! arrays. Relative paths in the file are relative to the file's
//! directory. Unknown keys and values out of range are refused, naming
//! the key. One function, [`resolve`], turns flags and file into the
//! settings the node runs with, and checks every value, whichever side
//! it came from.

use super::files::read_small_file;
use super::node::{parse_bootstrap, Discover, LogFormat, RunArgs};
use super::{parse_difficulty, CliError, CliResult, JsonFlag};
use crate::limits::{MAX_IDLE_TIMEOUT, REPUTATION_BAN_BASE, REPUTATION_BAN_MAX};
use crate::net::Limits;
use crate::overlay::routing::Contact;
use crate::turn::peers::{Cidr, PeerFilter};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The configuration file as written: every key optional, none unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    difficulty: Option<u64>,
    overlay: Option<PathBuf>,
    ca: Option<Vec<PathBuf>>,
    cert: Option<PathBuf>,
    max_connections: Option<u64>,
    max_connections_per_ip: Option<u64>,
    max_connections_per_net: Option<u64>,
    max_connections_per_wide_net: Option<u64>,
    max_streams: Option<u64>,
    data: Option<PathBuf>,
    bootstrap: Option<Vec<String>>,
    idle_timeout: Option<u64>,
    ban_secs: Option<u64>,
    sip_listen: Option<SocketAddr>,
    relay: Option<bool>,
    turn_listen: Option<SocketAddr>,
    turn_allowed_peers: Option<Vec<String>>,
    turn_denied_peers: Option<Vec<String>>,
    anonymous_calls: Option<bool>,
    circuit_hops: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    discover: Option<Discover>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// What `node run` runs with: flags, else the file, else the defaults.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `--dir`.
    pub dir: PathBuf,
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--difficulty` (else the overlay file's).
    pub difficulty: Option<u8>,
    /// `--overlay`.
    pub overlay: Option<PathBuf>,
    /// `--ca`, the trust anchors.
    pub ca: Vec<PathBuf>,
    /// `--cert`.
    pub cert: Option<PathBuf>,
    /// The connection limits (`--max-*`, `--idle-timeout`).
    pub limits: Limits,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--bootstrap`.
    pub bootstrap: Vec<Contact>,
    /// `--ban-secs`.
    pub ban_secs: u64,
    /// `--sip-listen`.
    pub sip_listen: Option<SocketAddr>,
    /// `--relay`: this node is a relay (TURN with `turn_listen`; other
    /// relay services may read it too).
    pub relay: bool,
    /// `--turn-listen` (only with `relay`).
    pub turn_listen: Option<SocketAddr>,
    /// `--turn-allowed-peers` (only with `turn_listen`).
    pub turn_allowed_peers: Vec<Cidr>,
    /// `--turn-denied-peers` (only with `turn_listen`).
    pub turn_denied_peers: Vec<Cidr>,
    /// `--anonymous-calls` (only with `sip_listen`).
    pub anonymous_calls: bool,
    /// `--circuit-hops`: relays per circuit, the rendezvous included.
    pub circuit_hops: usize,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--discover`.
    pub discover: Discover,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--log-level` (`None`: `RUST_LOG`, else `info`).
    pub log_level: Option<String>,
}

/// Reads and parses a configuration file.
fn read(path: &Path) -> Result<NodeFile, CliError> {
    let bytes = read_small_file(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CliError(format!("{}: not UTF-8 text", path.display())))?;
    toml::from_str(text).map_err(|e| {
        CliError(format!(
            "{}: {}",
            path.display(),
            crate::overlay::config::toml_error(text, &e)
        ))
    })
}

/// A number within `min..=max`, or an error naming the setting.
fn within(key: &str, value: u64, min: u64, max: u64) -> Result<u64, CliError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(CliError(format!(
            "{key}: {value} is out of range ({min} to {max})"
        )))
    }
}

/// The setting `key`: the flag's value, else the file's, else `default`.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// The settings `node run` runs with, from its flags and the file
/// `--config` names (if any): every value checked here, the file's keys
/// named in errors as the file writes them.
pub fn resolve(a: &RunArgs) -> Result<RunSettings, CliError> {
    let (file, base) = match &a.config {
        Some(path) => (
            read(path)?,
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None => (NodeFile::default(), PathBuf::new()),
    };
    // Relative paths of the file are relative to it.
    let rel = |p: Option<PathBuf>| p.map(|p| base.join(p));
    let key = |k: &str| match &a.config {
        Some(path) => format!("{} ({k})", path.display()),
        None => format!("--{}", k.replace('_', "-")),
    };
    let dir = a.dir.clone().or(rel(file.dir)).ok_or_else(|| {
        CliError("no node directory: give --dir DIR (or `dir` in the --config file)".into())
    })?;
    let listen = a.listen.or(file.listen).ok_or_else(|| {
        CliError(
            "no address to listen on: give --listen ADDR (or `listen` in the --config file)".into(),
        )
    })?;
    let difficulty = match (a.difficulty, file.difficulty) {
        (Some(d), _) => Some(d),
        (None, Some(d)) => Some(
            parse_difficulty(&d.to_string())
                .map_err(|e| CliError(format!("{}: {e}", key("difficulty"))))?,
        ),
        (None, None) => None,
    };
    let bootstrap = if a.bootstrap.is_empty() {
        file.bootstrap
            .unwrap_or_default()
            .iter()
            .map(|b| parse_bootstrap(b).map_err(|e| CliError(format!("{}: {e}", key("bootstrap")))))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        a.bootstrap.clone()
    };
    let d = Limits::default();
    let size = |name: &str, flag: Option<usize>, file: Option<u64>, default: usize| {
        let v = pick(flag.map(|v| v as u64), file, default as u64);
        within(&key(name), v, 1, usize::MAX as u64).map(|v| v as usize)
    };
    let limits = Limits {
        max_connections: size(
            "max_connections",
            a.max_connections,
            file.max_connections,
            d.max_connections,
        )?,
        max_connections_per_ip: size(
            "max_connections_per_ip",
            a.max_connections_per_ip,
            file.max_connections_per_ip,
            d.max_connections_per_ip,
        )?,
        max_connections_per_net: size(
            "max_connections_per_net",
            a.max_connections_per_net,
            file.max_connections_per_net,
            d.max_connections_per_net,
        )?,
        max_connections_per_wide_net: size(
            "max_connections_per_wide_net",
            a.max_connections_per_wide_net,
            file.max_connections_per_wide_net,
            d.max_connections_per_wide_net,
        )?,
        max_streams_per_connection: within(
            &key("max_streams"),
            pick(
                a.max_streams.map(u64::from),
                file.max_streams,
                u64::from(d.max_streams_per_connection),
            ),
            1,
            u64::from(u32::MAX),
        )? as u32,
        idle_timeout: std::time::Duration::from_secs(within(
            &key("idle_timeout"),
            pick(a.idle_timeout, file.idle_timeout, d.idle_timeout.as_secs()),
            1,
            MAX_IDLE_TIMEOUT.as_secs(),
        )?),
    };
    let ban_secs = within(
        &key("ban_secs"),
        pick(a.ban_secs, file.ban_secs, REPUTATION_BAN_BASE.as_secs()),
        1,
        REPUTATION_BAN_MAX.as_secs(),
    )?;
    let log_level = a.log_level.clone().or(file.log_level);
    if let Some(level) = &log_level {
        tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| CliError(format!("{}: {level:?}: {e}", key("log_level"))))?;
    }
    let ca = if a.anchors.anchors.is_empty() {
        file.ca
            .unwrap_or_default()
            .into_iter()
            .map(|p| base.join(p))
            .collect()
    } else {
        a.anchors.anchors.clone()
    };
    // A flag can only turn it on; the file may say either.
    let relay = a.relay || file.relay.unwrap_or(false);
    let turn_listen = a.turn_listen.or(file.turn_listen);
    if let Some(turn) = turn_listen {
        if !relay {
            return Err(CliError(format!(
                "{}: TURN is served by relay nodes: give --relay too (or `relay = true` in the \
                 --config file)",
                key("turn_listen")
            )));
        }
        if turn.ip().is_unspecified() {
            return Err(CliError(format!(
                "{}: {turn}: give a specific IP address (relayed sockets are opened on it and \
                 told to clients), e.g. 127.0.0.1:3478",
                key("turn_listen")
            )));
        }
    }
    // The peer ranges: the flags' if any, else the file's; a bad one
    // named with where it came from.
    let ranges = |name: &str, flag: &[String], file: Option<Vec<String>>| {
        let (texts, whence) = if flag.is_empty() {
            (file.unwrap_or_default(), key(name))
        } else {
            (flag.to_vec(), format!("--{}", name.replace('_', "-")))
        };
        texts
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse::<Cidr>()
                    .map_err(|e| CliError(format!("{whence}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let turn_allowed_peers = ranges(
        "turn_allowed_peers",
        &a.turn_allowed_peers,
        file.turn_allowed_peers,
    )?;
    let turn_denied_peers = ranges(
        "turn_denied_peers",
        &a.turn_denied_peers,
        file.turn_denied_peers,
    )?;
    for (name, list) in [
        ("turn_allowed_peers", &turn_allowed_peers),
        ("turn_denied_peers", &turn_denied_peers),
    ] {
        if !list.is_empty() && turn_listen.is_none() {
            return Err(CliError(format!(
                "{}: peer ranges are for the TURN relay: give --turn-listen too (or \
                 `turn_listen` in the --config file)",
                key(name)
            )));
        }
    }
    PeerFilter::new(turn_allowed_peers.clone(), turn_denied_peers.clone())
        .map_err(|e| CliError(format!("TURN peer ranges: {e}")))?;
    let anonymous_calls = a.anonymous_calls || file.anonymous_calls.unwrap_or(false);
    if anonymous_calls && a.sip_listen.or(file.sip_listen).is_none() {
        return Err(CliError(format!(
            "{}: anonymous calls are SIP calls: give --sip-listen too (or `sip_listen` in the \
             --config file)",
            key("anonymous_calls")
        )));
    }
    let circuit_hops = a
        .circuit_hops
        .map(|h| h as u64)
        .or(file.circuit_hops)
        .unwrap_or(crate::limits::RELAY_DEFAULT_HOPS as u64);
    if !(2..=crate::limits::RELAY_MAX_HOPS as u64).contains(&circuit_hops) {
        return Err(CliError(format!(
            "{}: {circuit_hops}: a circuit has 2 to {} relays (the rendezvous included)",
            key("circuit_hops"),
            crate::limits::RELAY_MAX_HOPS
        )));
    }
    Ok(RunSettings {
        dir,
        listen,
        difficulty,
        overlay: a.overlay.clone().or(rel(file.overlay)),
        ca,
        cert: a.cert.clone().or(rel(file.cert)),
        limits,
        data: a.data.clone().or(rel(file.data)),
        bootstrap,
        ban_secs,
        sip_listen: a.sip_listen.or(file.sip_listen),
        relay,
        turn_listen,
        turn_allowed_peers,
        turn_denied_peers,
        anonymous_calls,
        circuit_hops: usize::try_from(circuit_hops).unwrap_or(crate::limits::RELAY_DEFAULT_HOPS),
        metrics_listen: a.metrics_listen.or(file.metrics_listen),
        discover: pick(a.discover, file.discover, Discover::Off),
        log_format: pick(a.log_format, file.log_format, LogFormat::Text),
        log_level,
    })
}

impl RunSettings {
    /// The reputation policy these settings give (`ban_secs`).
    pub fn reputation_policy(&self) -> crate::reputation::Policy {
        crate::reputation::Policy {
            ban_base: std::time::Duration::from_secs(self.ban_secs),
            ..crate::reputation::Policy::default()
        }
    }

    /// Every setting by its key, `None` where nothing is set, in the
    /// order of `contrib/node.toml`.
    pub(super) fn entries(&self) -> Vec<(&'static str, Option<toml::Value>)> {
        use toml::Value;
        let text = |s: String| Some(Value::String(s));
        let path = |p: &Path| text(p.display().to_string());
        let number = |n: u64| Some(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        let list =
            |items: Vec<Option<Value>>| Some(Value::Array(items.into_iter().flatten().collect()));
        let l = &self.limits;
        vec![
            ("dir", path(&self.dir)),
            ("listen", text(self.listen.to_string())),
            (
                "difficulty",
                self.difficulty.and_then(|d| number(u64::from(d))),
            ),
            ("overlay", self.overlay.as_deref().and_then(path)),
            ("ca", list(self.ca.iter().map(|p| path(p)).collect())),
            ("cert", self.cert.as_deref().and_then(path)),
            ("max_connections", number(l.max_connections as u64)),
            (
                "max_connections_per_ip",
                number(l.max_connections_per_ip as u64),
            ),
            (
                "max_connections_per_net",
                number(l.max_connections_per_net as u64),
            ),
            (
                "max_connections_per_wide_net",
                number(l.max_connections_per_wide_net as u64),
            ),
            (
                "max_streams",
                number(u64::from(l.max_streams_per_connection)),
            ),
            ("data", self.data.as_deref().and_then(path)),
            (
                "bootstrap",
                list(
                    self.bootstrap
                        .iter()
                        .map(|c| text(format!("{}@{}", c.id, c.addr)))
                        .collect(),
                ),
            ),
            ("idle_timeout", number(l.idle_timeout.as_secs())),
            ("ban_secs", number(self.ban_secs)),
            (
                "sip_listen",
                self.sip_listen.and_then(|a| text(a.to_string())),
            ),
            ("relay", Some(Value::Boolean(self.relay))),
            (
                "turn_listen",
                self.turn_listen.and_then(|a| text(a.to_string())),
            ),
            (
                "turn_allowed_peers",
                list(
                    self.turn_allowed_peers
                        .iter()
                        .map(|c| text(c.to_string()))
                        .collect(),
                ),
            ),
            (
                "turn_denied_peers",
                list(
                    self.turn_denied_peers
                        .iter()
                        .map(|c| text(c.to_string()))
                        .collect(),
                ),
            ),
            (
                "anonymous_calls",
                Some(Value::Boolean(self.anonymous_calls)),
            ),
            ("circuit_hops", number(self.circuit_hops as u64)),
            (
                "metrics_listen",
                self.metrics_listen.and_then(|a| text(a.to_string())),
            ),
            ("discover", text(self.discover.as_str().to_owned())),
            ("log_format", text(self.log_format.as_str().to_owned())),
            ("log_level", self.log_level.clone().and_then(text)),
        ]
    }
}

/// `p2psip config check FILE`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file (TOML) to check.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

/// Checks a configuration file as `node run --config FILE` would read
/// it (with no flags) and prints the effective settings: TOML, or one
/// JSON object with `--json`. The file's own `dir` and `listen` are
/// required here, since no flag can give them.
pub fn check(a: CheckArgs) -> CliResult {
    let args = RunArgs::from_config(a.file.clone());
    let entries = resolve(&args)?.entries();
    if a.json.json {
        let mut object = serde_json::Map::new();
        for (key, value) in entries {
            let value = match value {
                Some(v) => serde_json::to_value(v)
                    .map_err(|e| CliError(format!("cannot print {key}: {e}")))?,
                None => serde_json::Value::Null,
            };
            object.insert(key.to_owned(), value);
        }
        println!("{}", serde_json::Value::Object(object));
    } else {
        for (key, value) in entries {
            match value {
                Some(v) => println!("{key} = {v}"),
                None => println!("# {key} = (not set)"),
            }
        }
    }
    Ok(())
}
