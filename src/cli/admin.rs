//! The commands that drive a running node through its admin socket:
//! `register`, `lookup`, `put`, `get`, `status`, `routes` and
//! `reputation`.
//!
//! Writes are signed here, with the user's key from `--user-dir`; the node
//! only ever sees the signed record.

use super::files::{load_identity_of_kind, print_json, read_certificate, ENROLLED_CERT};
use super::{printable, CliError, CliResult, JsonFlag};
use crate::admin::{self, AdminError};
use crate::binding::Binding;
use crate::identity::{IdKind, NodeId, SecretKey};
use crate::limits::{MAX_RECORD_LIFETIME, MAX_RECORD_VALUE_LEN};
use crate::overlay::record::{
    self_certifying_aor, OwnerValue, Record, Registration, RegistrationEntry,
};
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `--dir DIR`: the running node's directory.
#[derive(Debug, Args)]
pub struct NodeDir {
    /// The directory of the running node (where `node run --dir` points).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

fn call(dir: &Path, request: Value) -> Result<Value, CliError> {
    admin::request(dir, &request).map_err(|e| CliError(e.to_string()))
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, CliError> {
    v.get(name)
        .ok_or_else(|| CliError(format!("malformed answer from the node: no {name:?}")))
}

fn text_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, CliError> {
    field(v, name)?.as_str().ok_or_else(|| {
        CliError(format!(
            "malformed answer from the node: {name:?} is not text"
        ))
    })
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

/// A sequence number above `previous` that also grows with the clock, so
/// that a writer that could not see the previous record still supersedes
/// it (unless it was written within the same microsecond).
fn next_seq(previous: Option<u64>) -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    previous.map_or(micros, |p| p.saturating_add(1).max(micros))
}

fn now() -> u64 {
    crate::unix_now().max(0) as u64
}

fn publish(dir: &Path, record: &Record) -> Result<Value, CliError> {
    call(
        dir,
        json!({"op": "publish", "record": hex::encode(record.encode())}),
    )
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    dir: NodeDir,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn status(a: StatusArgs) -> CliResult {
    let s = call(&a.dir.dir, json!({"op": "status"}))?;
    if a.json.json {
        print_json(&s);
        return Ok(());
    }
    for (label, name) in [
        ("id", "id"),
        ("listen", "listen"),
        ("overlay", "overlay"),
        ("mode", "mode"),
        ("id difficulty", "id_difficulty"),
        ("peers connected", "peers"),
        ("routing table", "table_size"),
        ("records held", "records"),
        ("uptime (s)", "uptime_secs"),
    ] {
        let value = match field(&s, name)? {
            Value::String(t) => printable(t),
            other => other.to_string(),
        };
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
    let r = call(&a.dir.dir, json!({"op": "reputation"}))?;
    if a.json.json {
        print_json(&r);
        return Ok(());
    }
    let peers = field(&r, "peers")?
        .as_array()
        .ok_or_else(|| CliError("malformed answer from the node: peers".into()))?;
    println!(
        "{:<64}  {:>7}  {:<8}  {:>6}  {:>6}  {:>6}  {:>5}  {:>5}  {:>5}  BANNED UNTIL",
        "NODE ID", "SCORE", "STANDING", "ANSWER", "VERIFY", "NOANSW", "LIES", "VIOL", "RATE"
    );
    for p in peers {
        let count = |name: &str| field(p, name).map(|v| v.to_string());
        let banned_until = match field(p, "banned_until")? {
            Value::Null => "-".to_owned(),
            v => v.to_string(),
        };
        println!(
            "{:<64}  {:>7}  {:<8}  {:>6}  {:>6}  {:>6}  {:>5}  {:>5}  {:>5}  {}",
            printable(text_field(p, "node_id")?),
            count("score")?,
            printable(text_field(p, "standing")?),
            count("answered")?,
            count("verified")?,
            count("unresponsive")?,
            count("misbehaviour")?,
            count("violations")?,
            count("rate_violations")?,
            banned_until
        );
    }
    println!("{} peers", peers.len());
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
    let r = call(&a.dir.dir, json!({"op": "routes"}))?;
    if a.json.json {
        print_json(&r);
        return Ok(());
    }
    let routes = field(&r, "routes")?
        .as_array()
        .ok_or_else(|| CliError("malformed answer from the node: routes".into()))?;
    println!("{:>6}  {:<64}  ADDRESS", "BUCKET", "NODE ID");
    for route in routes {
        println!(
            "{:>6}  {:<64}  {}",
            field(route, "bucket")?,
            printable(text_field(route, "node_id")?),
            printable(text_field(route, "addr")?)
        );
    }
    println!("{} contacts", routes.len());
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

/// The registration found under `aor`, for merging: its sequence number
/// and the other devices' live entries this user vouched for.
fn previous_registration(
    dir: &Path,
    aor: &str,
    user: &SecretKey,
    this_node: &NodeId,
) -> Result<(Option<u64>, Vec<RegistrationEntry>), CliError> {
    let found = match admin::request(dir, &json!({"op": "lookup", "aor": aor})) {
        Ok(found) => found,
        // Nothing registered yet (or nothing reachable): start afresh;
        // the clock-based sequence number still supersedes what exists.
        Err(AdminError::Refused(_)) => return Ok((None, Vec::new())),
        Err(e) => return Err(CliError(e.to_string())),
    };
    let bytes = hex::decode(text_field(&found, "record")?)
        .map_err(|_| CliError("malformed answer from the node: record".into()))?;
    let record =
        Record::decode(&bytes).map_err(|e| CliError(format!("the node sent a bad record: {e}")))?;
    if record.owner != *user.public().as_bytes() {
        return Err(CliError(format!(
            "{aor} is registered by another user ({}); only its owner can change it",
            printable(text_field(&found, "owner")?)
        )));
    }
    let previous = Registration::decode(&record.value)
        .map_err(|e| CliError(format!("the node sent a bad registration: {e}")))?;
    let now = now();
    let user_key = *user.public().as_bytes();
    let kept = previous
        .live_entries(now)
        .filter(|e| e.node_id != *this_node)
        .filter(|e| e.binding.user_key == user_key && e.binding.verify(now).is_ok())
        .cloned()
        .collect();
    Ok((Some(record.seq), kept))
}

pub fn register(a: RegisterArgs) -> CliResult {
    let dir = &a.dir.dir;
    let status = call(dir, json!({"op": "status"}))?;
    let node_id: NodeId = text_field(&status, "id")?
        .parse()
        .map_err(|e| CliError(format!("malformed answer from the node: id: {e}")))?;
    let overlay = text_field(&status, "overlay")?.to_owned();
    let enrolled = text_field(&status, "mode")? == "enrolled";
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
    let (previous_seq, others) = previous_registration(dir, &a.aor, &user, &node_id)?;
    let now = now();
    let expires = now.saturating_add(a.expires);
    let mut registration =
        Registration::new(&a.aor, user_cert).map_err(|e| CliError(format!("{}: {e}", a.aor)))?;
    for entry in others {
        registration
            .upsert(entry)
            .map_err(|e| CliError(format!("{}: {e}", a.aor)))?;
    }
    let binding = Binding::sign(&user, node_id, now, expires);
    registration
        .upsert(RegistrationEntry::new(binding, a.contact.clone(), expires))
        .map_err(|e| CliError(format!("{}: {e}", a.aor)))?;
    let record_expires = registration
        .entries()
        .iter()
        .map(|e| e.expires)
        .max()
        .unwrap_or(expires);
    let record = registration
        .sign(&user, next_seq(previous_seq), record_expires)
        .map_err(|e| CliError(format!("{}: {e}", a.aor)))?;
    let published = publish(dir, &record)?;
    let acks = field(&published, "acks")?.clone();
    if a.json.json {
        print_json(&json!({
            "aor": a.aor,
            "node_id": node_id.to_string(),
            "expires": expires,
            "seq": record.seq,
            "devices": registration.entries().len(),
            "acks": acks,
        }));
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
    let found = call(&a.dir.dir, json!({"op": "lookup", "aor": a.aor}))?;
    let entries = field(&found, "entries")?
        .as_array()
        .ok_or_else(|| CliError("malformed answer from the node: entries".into()))?;
    if a.json.json {
        print_json(&json!({
            "aor": a.aor,
            "owner": field(&found, "owner")?,
            "seq": field(&found, "seq")?,
            "entries": entries,
        }));
        return Ok(());
    }
    println!(
        "{} (owner {})",
        printable(&a.aor),
        printable(text_field(&found, "owner")?)
    );
    if entries.is_empty() {
        println!("  no live registration");
    }
    for e in entries {
        let contacts: Vec<String> = field(e, "contacts")?
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).map(printable).collect())
            .unwrap_or_default();
        println!(
            "  node {}  expires {}  {}",
            printable(text_field(e, "node_id")?),
            field(e, "expires")?,
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
    let previous_seq = match admin::request(
        dir,
        &json!({"op": "get", "owner": owner.to_string(), "name": a.name}),
    ) {
        Ok(found) => field(&found, "seq")?.as_u64(),
        Err(AdminError::Refused(_)) => None,
        Err(e) => return Err(CliError(e.to_string())),
    };
    let expires = now().saturating_add(a.expires);
    let record = value.sign(&user, next_seq(previous_seq), expires);
    let published = publish(dir, &record)?;
    let acks = field(&published, "acks")?.clone();
    if a.json.json {
        print_json(&json!({
            "owner": owner.to_string(),
            "name": a.name,
            "seq": record.seq,
            "expires": expires,
            "acks": acks,
        }));
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
    let found = call(
        &a.dir.dir,
        json!({"op": "get", "owner": a.owner, "name": a.name}),
    )?;
    if a.json.json {
        print_json(&json!({
            "owner": field(&found, "owner")?,
            "name": field(&found, "name")?,
            "value": field(&found, "value")?,
            "value_hex": field(&found, "value_hex")?,
            "seq": field(&found, "seq")?,
            "expires": field(&found, "expires")?,
        }));
    } else {
        println!("{}", printable(text_field(&found, "value")?));
    }
    Ok(())
}
