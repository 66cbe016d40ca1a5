//! The commands that drive a running node through its admin socket:
//! `register`, `lookup`, `put`, `get`, `status`, `routes` and
//! `reputation`.
//!
//! Writes are signed here, with the user's key from `--user-dir`; the node
//! only ever sees the signed record.

use super::files::{load_identity_of_kind, read_certificate, ENROLLED_CERT};
use super::{printable, CliError, CliResult, JsonFlag};
use crate::admin::{
    self, AdminError, CircuitsResult, GetResult, LookupEntry, LookupResult, OverlayMode,
    PublishResult, ReloadResult, ReputationResult, Request, RoutesResult, StatusResult,
    TraceResult,
};
use crate::identity::{IdKind, NodeId, UserId};
use crate::limits::{MAX_RECORD_LIFETIME, MAX_RECORD_VALUE_LEN};
use crate::overlay::record::{
    next_registration, self_certifying_aor, DeviceChange, OwnerValue, Record,
};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `--dir DIR`: the running node's directory.
#[derive(Debug, Args)]
pub struct NodeDir {
    /// The directory of the running node (where `node run --dir` points).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// One exchange with the node; `R` is the result type of `request`'s
/// operation (the table in [`crate::admin`]).
fn call<R: DeserializeOwned>(dir: &Path, request: &Request) -> Result<R, CliError> {
    admin::request(dir, request).map_err(|e| CliError(e.to_string()))
}

/// Prints `value` as the one JSON object of `--json`, in the same text as
/// the admin socket's (keys sorted).
fn print_typed(value: &impl Serialize) -> CliResult {
    let text = admin::json_text(value)
        .map_err(|e| CliError(format!("cannot print the answer as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn lifetime(s: &str) -> Result<u64, String> {
    let secs: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    let max = MAX_RECORD_LIFETIME.as_secs();
    if !(60..=max).contains(&secs) {
        return Err(format!("{secs} s: must be between 60 and {max} (30 days)"));
    }
    Ok(secs)
}

fn now() -> u64 {
    crate::unix_now().max(0) as u64
}

fn publish(dir: &Path, record: &Record) -> Result<PublishResult, CliError> {
    call(
        dir,
        &Request::Publish {
            record: hex::encode(record.encode()),
        },
    )
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
    /// Wait until the node is part of its overlay (it started a new one,
    /// or its join ended with contacts), then print its status; retries
    /// while the node is still starting. Exits non-zero after --timeout.
    #[arg(long)]
    wait_ready: bool,
    /// With --wait-ready: how long to wait, in seconds.
    #[arg(long, value_name = "S", default_value_t = 60, requires = "wait_ready")]
    timeout: u64,
}

/// How often `status --wait-ready` asks the node.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Asks the node in `dir` for its status until it is ready or `timeout`
/// passes; a node not answering yet (still starting) is asked again.
fn wait_ready(dir: &Path, timeout: std::time::Duration) -> Result<StatusResult, CliError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let why = match call::<StatusResult>(dir, &Request::Status {}) {
            Ok(s) if s.ready => return Ok(s),
            Ok(s) => format!(
                "not ready: its join has not ended with contacts ({} in its routing table)",
                s.table_size
            ),
            Err(e) => e.0,
        };
        if std::time::Instant::now() >= deadline {
            return Err(CliError(format!(
                "the node in {} is not ready after {} s; last: {why}",
                dir.display(),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(READY_POLL);
    }
}

pub fn status(a: StatusArgs) -> CliResult {
    let s: StatusResult = if a.wait_ready {
        wait_ready(&a.dir.dir, std::time::Duration::from_secs(a.timeout))?
    } else {
        call(&a.dir.dir, &Request::Status {})?
    };
    if a.json.json {
        return print_typed(&s);
    }
    for (label, value) in [
        ("id", s.id.to_string()),
        ("listen", printable(&s.listen)),
        ("overlay", printable(&s.overlay)),
        ("mode", s.mode.to_string()),
        ("id difficulty", s.id_difficulty.to_string()),
        ("peers connected", s.peers.to_string()),
        ("routing table", s.table_size.to_string()),
        ("records held", s.records.to_string()),
        ("uptime (s)", s.uptime_secs.to_string()),
        ("ready", if s.ready { "yes" } else { "no" }.to_owned()),
        (
            "joined at",
            s.joined_at
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
        ),
    ] {
        println!("{label:<16} {value}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReputationArgs {
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn reputation(a: ReputationArgs) -> CliResult {
    let r: ReputationResult = call(&a.dir.dir, &Request::Reputation {})?;
    if a.json.json {
        return print_typed(&r);
    }
    println!(
        "{:<64}  {:>7}  {:<8}  {:>6}  {:>6}  {:>6}  {:>5}  {:>5}  {:>5}  BANNED UNTIL",
        "NODE ID", "SCORE", "STANDING", "ANSWER", "VERIFY", "NOANSW", "LIES", "VIOL", "RATE"
    );
    for p in &r.peers {
        let banned_until = p
            .banned_until
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        println!(
            "{:<64}  {:>7}  {:<8}  {:>6}  {:>6}  {:>6}  {:>5}  {:>5}  {:>5}  {}",
            p.node_id.to_string(),
            // As JSON writes it: 12.0 for a whole number.
            serde_json::Value::from(p.score).to_string(),
            p.standing.as_str(),
            p.answered,
            p.verified,
            p.unresponsive,
            p.misbehaviour,
            p.violations,
            p.rate_violations,
            banned_until
        );
    }
    println!("{} peers", r.peers.len());
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

/// `p2psip reload`: the node reads its configuration again.
pub fn reload(a: ReloadArgs) -> CliResult {
    let r: ReloadResult = call(&a.dir.dir, &Request::Reload {})?;
    if a.json.json {
        return print_typed(&r);
    }
    let list = |keys: &[String]| {
        if keys.is_empty() {
            "-".to_owned()
        } else {
            keys.join(", ")
        }
    };
    println!(
        "{:<16} {}",
        "config",
        r.config.as_deref().map_or("(flags only)".into(), printable)
    );
    println!("{:<16} {}", "applied", list(&r.applied));
    println!("{:<16} {}", "restart needed", list(&r.restart_needed));
    Ok(())
}

#[derive(Debug, Args)]
pub struct CircuitsArgs {
    #[command(flatten)]
    dir: NodeDir,
    /// Also list the relays the overlay's directory names (looks up
    /// every directory key).
    #[arg(long)]
    directory: bool,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn circuits(a: CircuitsArgs) -> CliResult {
    let r: CircuitsResult = call(
        &a.dir.dir,
        &Request::Circuits {
            directory: a.directory,
        },
    )?;
    if a.json.json {
        return print_typed(&r);
    }
    println!("{:<16} {}", "relay", if r.relay { "yes" } else { "no" });
    println!("{:<16} {}", "own circuits", r.own);
    println!(
        "{:<16} relayed {} refused {} unsent {} echoes {}",
        "cells", r.cells_relayed, r.refused, r.unsent, r.echoes
    );
    println!("{} circuits through this relay", r.relayed.len());
    for c in &r.relayed {
        let next = c.next.map_or("-".to_owned(), |n| n.fmt_short().to_string());
        let rv = c.rendezvous.as_deref().unwrap_or("");
        println!("  {} -> {} {rv}", c.prev.fmt_short(), next);
    }
    if let Some(dir) = &r.directory {
        println!("{} relays in the directory", dir.len());
        for d in dir {
            let addrs: Vec<String> = d.addresses.iter().map(ToString::to_string).collect();
            let turn = d.turn.map(|t| format!(" turn {t}")).unwrap_or_default();
            println!(
                "  {} {} capacity {}{turn}",
                d.node_id,
                addrs.join(","),
                d.capacity
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct MediaTestArgs {
    /// The AOR to test media with, e.g. sip:bob@p2psip (its node must run
    /// --anonymous-calls: its registration publishes a rendezvous).
    aor: String,
    #[command(flatten)]
    dir: NodeDir,
    /// Relays of this node's circuit, the callee's rendezvous included
    /// (2 to 6).
    #[arg(long, value_name = "N", default_value_t = crate::limits::RELAY_DEFAULT_HOPS)]
    hops: usize,
    /// How long to send, seconds (1 to 30).
    #[arg(long, value_name = "S", default_value_t = crate::admin::MEDIA_TEST_DEFAULT_SECONDS)]
    seconds: u64,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn media_test(a: MediaTestArgs) -> CliResult {
    let r: crate::admin::MediaTestResult = call(
        &a.dir.dir,
        &Request::MediaTest {
            aor: a.aor.clone(),
            hops: a.hops,
            seconds: a.seconds,
        },
    )?;
    if a.json.json {
        return print_typed(&r);
    }
    println!("{:<16} {}", "sent", r.sent);
    println!("{:<16} {}", "received", r.received);
    println!("{:<16} {:.4}", "loss", r.loss);
    println!("{:<16} {:.2}", "latency_ms_p50", r.latency_ms_p50);
    println!("{:<16} {:.2}", "latency_ms_p99", r.latency_ms_p99);
    println!("{:<16} {:.2}", "jitter_ms", r.jitter_ms);
    println!("{:<16} {}", "hops", r.hops);
    Ok(())
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn routes(a: RoutesArgs) -> CliResult {
    let r: RoutesResult = call(&a.dir.dir, &Request::Routes {})?;
    if a.json.json {
        return print_typed(&r);
    }
    println!("{:>6}  {:<64}  ADDRESS", "BUCKET", "NODE ID");
    for route in &r.routes {
        println!(
            "{:>6}  {:<64}  {}",
            route.bucket,
            route.node_id.to_string(),
            route.addr
        );
    }
    println!("{} contacts", r.routes.len());
    Ok(())
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The address-of-record to register, e.g. sip:alice@example.org (in a
    /// self-certifying overlay: sip:<USER_ID>@<overlay name>).
    #[arg(value_name = "SIP-AOR")]
    aor: String,
    /// The user's identity directory: the key that owns the AOR.
    #[arg(long, value_name = "DIR")]
    user_dir: PathBuf,
    /// The user's CA-issued certificate naming the AOR, in an enrolled
    /// overlay (default USER_DIR/enrolled.pem).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// How long the registration lasts, in seconds (60 to 2592000).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = lifetime)]
    expires: u64,
    /// A SIP contact URI where the user is reached at this node
    /// (repeatable, optional).
    #[arg(long, value_name = "URI")]
    contact: Vec<String>,
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

/// The registration record found under `aor`, if any (the newest the
/// node could find), for [`next_registration`] to merge.
fn previous_registration(dir: &Path, aor: &str) -> Result<Option<Record>, CliError> {
    let request = Request::Lookup {
        aor: aor.to_owned(),
    };
    let found: LookupResult = match admin::request(dir, &request) {
        Ok(found) => found,
        // Nothing registered yet (or nothing reachable): start afresh;
        // the clock-based sequence number still supersedes what exists.
        Err(AdminError::Refused(_)) => return Ok(None),
        Err(e) => return Err(CliError(e.to_string())),
    };
    Record::decode(&found.record)
        .map(Some)
        .map_err(|e| CliError(format!("the node sent a bad record: {e}")))
}

pub fn register(a: RegisterArgs) -> CliResult {
    let dir = &a.dir.dir;
    let status: StatusResult = call(dir, &Request::Status {})?;
    let node_id = status.id;
    let overlay = status.overlay;
    let enrolled = status.mode == OverlayMode::Enrolled;
    let user = load_identity_of_kind(&a.user_dir, IdKind::User)?.key;
    let user_cert = if enrolled {
        let path = a
            .cert
            .clone()
            .unwrap_or_else(|| a.user_dir.join(ENROLLED_CERT));
        if !path.exists() {
            return Err(CliError(format!(
                "{}: missing; in an enrolled overlay the user presents a certificate naming the \
                 AOR: `p2psip ca issue --ca CA_DIR --user-dir {} --name {} --out {}`",
                path.display(),
                a.user_dir.display(),
                a.aor,
                path.display()
            )));
        }
        Some(read_certificate(&path)?)
    } else {
        let own = self_certifying_aor(&user.public().user_id(), &overlay);
        if a.aor != own {
            return Err(CliError(format!(
                "in the self-certifying overlay {overlay:?} the user in {} owns only the AOR {own}",
                a.user_dir.display()
            )));
        }
        None
    };
    let previous = previous_registration(dir, &a.aor)?;
    let now = now();
    let expires = now.saturating_add(a.expires);
    let change = DeviceChange::Bind {
        contacts: a.contact.clone(),
        expires,
    };
    let (record, registration) = next_registration(
        previous.as_ref(),
        &a.aor,
        user_cert,
        &user,
        node_id,
        change,
        now,
        crate::unix_now_micros(),
    )
    .map_err(|e| CliError(format!("{}: {e}", printable(&a.aor))))?;
    let acks = publish(dir, &record)?.acks;
    if a.json.json {
        print_typed(&RegisterOutput {
            aor: &a.aor,
            node_id,
            expires,
            seq: record.seq,
            devices: registration.entries().len(),
            acks,
        })?;
    } else {
        println!(
            "registered {} at node {node_id} for {} s (stored on {acks} nodes)",
            printable(&a.aor),
            a.expires
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// A SIP AOR (its registration is looked up) or a key, 64 hex digits
    /// (the nodes closest to it are looked up).
    #[arg(value_name = "KEY|AOR")]
    target: String,
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

/// Ids shortened for the table (`--json` has them whole).
fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

pub fn trace(a: TraceArgs) -> CliResult {
    let t: TraceResult = call(
        &a.dir.dir,
        &Request::Trace {
            target: a.target.clone(),
        },
    )?;
    if a.json.json {
        return print_typed(&t);
    }
    println!(
        "{} lookup of {} (key {})",
        t.lookup,
        printable(&t.target),
        short(&t.key)
    );
    println!(
        "{:>3}  {:<16}  {:<21}  {:<16}  {:>4}  {:>8}  {:<22}  STANDING",
        "#", "NODE", "ADDRESS", "VIA", "PATH", "RTT ms", "ANSWER"
    );
    for (i, h) in t.hops.iter().enumerate() {
        let answer = match (h.answer.as_str(), &h.error) {
            ("failed", Some(e)) => format!("failed: {e}"),
            ("value", _) => format!("{} record(s), {} contacts", h.records, h.contacts),
            ("unanswered", _) => "(lookup ended first)".to_owned(),
            _ => format!("{} contacts", h.contacts),
        };
        println!(
            "{:>3}  {:<16}  {:<21}  {:<16}  {:>4}  {:>8.3}  {:<22}  {}",
            i + 1,
            short(&h.node_id.to_string()),
            printable(&h.addr),
            h.via.as_deref().map_or("(own table)".to_owned(), short),
            h.path.map_or("-".to_owned(), |p| p.to_string()),
            h.rtt_ms,
            answer,
            h.standing.as_str()
        );
    }
    println!(
        "{} requests, {} record(s); ended: {}",
        t.requests,
        t.records,
        printable(&t.ended)
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The address-of-record to look up.
    #[arg(value_name = "SIP-AOR")]
    aor: String,
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn lookup(a: LookupArgs) -> CliResult {
    let found: LookupResult = call(&a.dir.dir, &Request::Lookup { aor: a.aor.clone() })?;
    if a.json.json {
        return print_typed(&LookupOutput {
            aor: &a.aor,
            owner: found.owner,
            seq: found.seq,
            entries: &found.entries,
        });
    }
    println!("{} (owner {})", printable(&a.aor), found.owner);
    if found.entries.is_empty() {
        println!("  no live registration");
    }
    for e in &found.entries {
        let contacts: Vec<String> = e.contacts.iter().map(|c| printable(c)).collect();
        println!(
            "  node {}  expires {}  {}",
            e.node_id,
            e.expires,
            contacts.join(" ")
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The value's name (the owner's namespace; 1 to 64 bytes).
    #[arg(value_name = "KEY-NAME")]
    name: String,
    /// The value (text).
    #[arg(value_name = "VALUE")]
    value: String,
    /// The owner's identity directory: the key that signs the value.
    #[arg(long, value_name = "DIR")]
    user_dir: PathBuf,
    /// How long the value lasts, in seconds (60 to 2592000).
    #[arg(long, value_name = "SECS", default_value_t = MAX_RECORD_LIFETIME.as_secs(), value_parser = lifetime)]
    expires: u64,
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn put(a: PutArgs) -> CliResult {
    let dir = &a.dir.dir;
    let user = load_identity_of_kind(&a.user_dir, IdKind::User)?.key;
    let owner = user.public().user_id();
    if a.value.len() > MAX_RECORD_VALUE_LEN {
        return Err(CliError(format!(
            "the value is {} bytes; at most {MAX_RECORD_VALUE_LEN} fit in a record",
            a.value.len()
        )));
    }
    let value = OwnerValue::new(&a.name, a.value.clone().into_bytes())
        .map_err(|e| CliError(format!("{:?}: {e}", a.name)))?;
    let request = Request::Get {
        owner: owner.to_string(),
        name: a.name.clone(),
    };
    let previous_seq = match admin::request::<GetResult>(dir, &request) {
        Ok(found) => Some(found.seq),
        Err(AdminError::Refused(_)) => None,
        Err(e) => return Err(CliError(e.to_string())),
    };
    let expires = now().saturating_add(a.expires);
    // A sequence number above the previous one that also grows with the
    // clock, so that a writer that could not see the previous record
    // still supersedes it.
    let record = value.sign(
        &user,
        previous_seq.map_or(crate::unix_now_micros(), |p| {
            p.saturating_add(1).max(crate::unix_now_micros())
        }),
        expires,
    );
    let acks = publish(dir, &record)?.acks;
    if a.json.json {
        print_typed(&PutOutput {
            owner,
            name: &a.name,
            seq: record.seq,
            expires,
            acks,
        })?;
    } else {
        println!(
            "stored {:?} of {owner} (stored on {acks} nodes)",
            printable(&a.name)
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The value's name.
    #[arg(value_name = "KEY-NAME")]
    name: String,
    /// The owner's user id (64 hex digits).
    #[arg(long, value_name = "USER-ID")]
    owner: String,
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn get(a: GetArgs) -> CliResult {
    let found: GetResult = call(
        &a.dir.dir,
        &Request::Get {
            owner: a.owner,
            name: a.name,
        },
    )?;
    if a.json.json {
        print_typed(&GetOutput {
            owner: found.owner,
            name: &found.name,
            value: &found.value,
            value_hex: hex::encode(&found.value_hex),
            seq: found.seq,
            expires: found.expires,
        })?;
    } else {
        println!("{}", printable(&found.value));
    }
    Ok(())
}

// What the commands print with --json (docs/admin.md, "Commands"): the
// answers they are made from, with the fields a person asked for.

/// `register --json`.
#[derive(Serialize)]
struct RegisterOutput<'a> {
    aor: &'a str,
    #[serde(serialize_with = "as_text")]
    node_id: NodeId,
    expires: u64,
    seq: u64,
    devices: usize,
    acks: usize,
}

/// `lookup --json`: the answer without the record itself.
#[derive(Serialize)]
struct LookupOutput<'a> {
    aor: &'a str,
    #[serde(serialize_with = "as_text")]
    owner: UserId,
    seq: u64,
    entries: &'a [LookupEntry],
}

/// `put --json`.
#[derive(Serialize)]
struct PutOutput<'a> {
    #[serde(serialize_with = "as_text")]
    owner: UserId,
    name: &'a str,
    seq: u64,
    expires: u64,
    acks: usize,
}

/// `get --json`: the answer without the record itself.
#[derive(Serialize)]
struct GetOutput<'a> {
    #[serde(serialize_with = "as_text")]
    owner: UserId,
    name: &'a str,
    value: &'a str,
    value_hex: String,
    seq: u64,
    expires: u64,
}

fn as_text<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}
