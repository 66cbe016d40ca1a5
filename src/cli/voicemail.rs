//! `p2psip voicemail ...`: the user's voice mail, kept in the overlay
//! sealed to the user (see [`crate::userdata::voicemail`]).
//!
//! Everything is opened here, in the user's process: the running node in
//! `--dir` only carries records (admin `get_records`, `get_record`,
//! `publish`) and sees ciphertext.

use super::files::read_small_file;
use super::userdata::{load_user, now, print_json, publish, UserKeys, Where};
use super::{printable, CliError, CliResult, JsonFlag};
use crate::admin::{
    self, AdminError, GetRecordResult, GetRecordsResult, LookupResult, Request, StatusResult,
};
use crate::identity::NodeId;
use crate::limits::MAX_MAILBOX_STATE_IDS;
use crate::overlay::record::{chunk_key, mailbox_key, MailboxItem, Record, RecordKind};
use crate::overlay::record::{
    self_certifying_aor, MailboxValue, RecordPolicy, Registration, VerifiedRecord,
};
use crate::userdata::voicemail::{
    open_audio, open_envelope, short_id, write_wav, Envelope, Mailbox, PCMA,
};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum VoicemailCommand {
    /// List the messages in the mailbox, newest first.
    List(VoicemailListArgs),
    /// Write a message as a WAV file (8 kHz mono 16-bit PCM) and mark it
    /// heard.
    Fetch(VoicemailFetchArgs),
    /// Delete a message.
    Delete(VoicemailDeleteArgs),
}

#[derive(Debug, Args)]
pub struct VoicemailListArgs {
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct VoicemailFetchArgs {
    /// The message's id as `voicemail list` prints it (or a longer prefix
    /// of its full id; at least 8 hex digits).
    #[arg(value_name = "ID")]
    id: String,
    /// The WAV file to write (replaced if it exists; mode 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct VoicemailDeleteArgs {
    /// The message's id as `voicemail list` prints it.
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

/// One message as `voicemail list --json` prints it (docs/sip.md).
#[derive(Debug, Serialize)]
struct MessageOut {
    id: String,
    from: String,
    verified: bool,
    time: u64,
    duration_s: f64,
    codec: &'static str,
    heard: bool,
}

fn codec_name(codec: u8) -> &'static str {
    if codec == PCMA {
        "PCMA"
    } else {
        "PCMU"
    }
}

/// Verifies records the node answered with; a bad one is an error (the
/// node is the user's own).
fn verified(found: Vec<GetRecordResult>, now: u64) -> Result<Vec<VerifiedRecord>, CliError> {
    // Mailbox records' rules do not depend on the overlay's name.
    let policy = RecordPolicy::self_certifying("");
    found
        .into_iter()
        .map(|f| {
            Record::decode(&f.record)
                .and_then(|r| r.verify(&policy, now))
                .map_err(|e| CliError(format!("the node answered with a bad record: {e}")))
        })
        .collect()
}

/// The nodes the user trusts to deposit: the node in `--dir` and every
/// node the user's registration binds (the user signed those bindings).
fn trusted_nodes(keys: &UserKeys, at: &Where) -> Result<Vec<NodeId>, CliError> {
    let status: StatusResult =
        admin::request(&at.dir, &Request::Status {}).map_err(|e| CliError(e.to_string()))?;
    let mut nodes = vec![status.id];
    let aor = self_certifying_aor(&keys.identity.public().user_id(), &status.overlay);
    if let Ok(found) = admin::request::<LookupResult>(&at.dir, &Request::Lookup { aor }) {
        let registration = Record::decode(&found.record)
            .ok()
            .and_then(|r| Registration::decode(&r.value).ok());
        if let Some(registration) = registration {
            nodes.extend(registration.entries().iter().map(|e| e.node_id));
        }
    }
    Ok(nodes)
}

/// Where the user keeps the mailbox state it last wrote (deleted and
/// heard ids): a read that misses the newest state in the overlay must
/// not undo them.
fn state_file(keys: &UserKeys) -> PathBuf {
    keys.dir().join("voicemail.state")
}

/// The state last written from this user directory.
fn local_state(keys: &UserKeys) -> (BTreeSet<[u8; 32]>, BTreeSet<[u8; 32]>) {
    let parse = |v: &serde_json::Value| -> BTreeSet<[u8; 32]> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .filter_map(|s| hex::decode(s).ok())
            .filter_map(|b| <[u8; 32]>::try_from(b).ok())
            .take(MAX_MAILBOX_STATE_IDS)
            .collect()
    };
    let text = read_small_file(&state_file(keys)).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    (parse(&json["deleted"]), parse(&json["heard"]))
}

fn read_mailbox(keys: &UserKeys, at: &Where) -> Result<Mailbox, CliError> {
    let me = keys.identity.public().user_id();
    let trusted = trusted_nodes(keys, at)?;
    let found: GetRecordsResult = admin::request(
        &at.dir,
        &Request::GetRecords {
            key: hex::encode(mailbox_key(&me).0),
            kind: RecordKind::Mailbox.to_u64(),
        },
    )
    .map_err(|e| CliError(e.to_string()))?;
    let now = now();
    let mut mailbox = Mailbox::read(&me, &verified(found.records, now)?, now, &trusted);
    let (deleted, heard) = local_state(keys);
    mailbox.remember(&deleted, &heard);
    Ok(mailbox)
}

fn message_out(
    mailbox: &Mailbox,
    depositor: &[u8; 32],
    item: &MailboxItem,
    envelope: &Envelope,
) -> MessageOut {
    MessageOut {
        id: short_id(&item.id),
        from: envelope.from.clone(),
        // Anyone may deposit and claim anything: only a node the user
        // trusts is believed about who called.
        verified: envelope.verified && mailbox.is_trusted(depositor),
        time: envelope.time,
        duration_s: (envelope.duration_ms as f64 / 100.0).round() / 10.0,
        codec: codec_name(envelope.codec),
        heard: mailbox.heard.contains(&item.id),
    }
}

fn open(keys: &UserKeys, item: &MailboxItem) -> Result<Envelope, CliError> {
    open_envelope(&keys.encryption, item).map_err(|e| {
        CliError(format!(
            "message {} cannot be opened with this user's key: {e}",
            short_id(&item.id)
        ))
    })
}

/// Publishes the owner's state after `deleted` or `heard`.
fn write_state(
    keys: &UserKeys,
    at: &Where,
    mailbox: &Mailbox,
    deleted: Option<[u8; 32]>,
    heard: &[[u8; 32]],
) -> CliResult {
    let record = mailbox
        .next_state(
            &keys.identity,
            deleted,
            heard,
            now(),
            crate::unix_now_micros(),
        )
        .map_err(|e| CliError(e.to_string()))?;
    publish(&at.dir, &record)?;
    if let Ok(MailboxValue::State { deleted, heard, .. }) = MailboxValue::decode(&record.value) {
        let hexes = |ids: &BTreeSet<[u8; 32]>| ids.iter().map(hex::encode).collect::<Vec<_>>();
        let text = serde_json::json!({ "deleted": hexes(&deleted), "heard": hexes(&heard) });
        let file = state_file(keys);
        crate::fsutil::write_atomically(&file, text.to_string().as_bytes(), 0o600, true)
            .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
    }
    Ok(())
}

pub fn voicemail(command: VoicemailCommand) -> CliResult {
    match command {
        VoicemailCommand::List(a) => {
            let keys = load_user(&a.at.user_dir)?;
            let mailbox = read_mailbox(&keys, &a.at)?;
            let mut out = Vec::new();
            let mut unreadable = 0;
            for (depositor, item) in &mailbox.items {
                match open(&keys, item) {
                    Ok(envelope) => out.push(message_out(&mailbox, depositor, item, &envelope)),
                    Err(e) => {
                        unreadable += 1;
                        eprintln!("{}", e.0);
                    }
                }
            }
            if a.json.json {
                return print_json(&serde_json::json!({
                    "messages": out,
                    "unreadable": unreadable,
                }));
            }
            if out.is_empty() {
                println!("no messages");
            }
            for m in &out {
                println!(
                    "{}  {}  {:>5.1} s  {}{}{}",
                    m.id,
                    time_text(m.time),
                    m.duration_s,
                    printable(&m.from),
                    if m.verified { "" } else { " (unverified)" },
                    if m.heard { "" } else { "  [new]" },
                );
            }
            if unreadable > 0 {
                println!("{unreadable} messages could not be opened with this user's key");
            }
            Ok(())
        }
        VoicemailCommand::Fetch(a) => {
            let keys = load_user(&a.at.user_dir)?;
            let mailbox = read_mailbox(&keys, &a.at)?;
            let item = mailbox.find(&a.id).map_err(CliError)?;
            let depositor = mailbox
                .items
                .iter()
                .find(|(_, i)| i.id == item.id)
                .map(|(d, _)| *d)
                .unwrap_or_default();
            let envelope = open(&keys, item)?;
            let mut chunks = Vec::with_capacity(usize::from(item.chunks));
            for index in 0..item.chunks {
                let request = Request::GetRecord {
                    key: hex::encode(chunk_key(&item.id, index).0),
                    kind: RecordKind::MailboxChunk.to_u64(),
                };
                let chunk = match admin::request::<GetRecordResult>(&a.at.dir, &request) {
                    Ok(found) => Record::decode(&found.record).ok(),
                    Err(AdminError::Refused(e)) if e.starts_with("no record") => None,
                    Err(e) => return Err(CliError(e.to_string())),
                };
                chunks.push(chunk);
            }
            let policy = RecordPolicy::self_certifying("");
            let audio = open_audio(&keys.encryption, item, &chunks, &policy, now())
                .map_err(|e| CliError(format!("message {}: {e}", short_id(&item.id))))?;
            let samples = if envelope.codec == PCMA {
                crate::sip::g711::decode_alaw(&audio)
            } else {
                crate::sip::g711::decode_ulaw(&audio)
            };
            let mut wav = Vec::with_capacity(44 + samples.len() * 2);
            write_wav(&mut wav, &samples)
                .map_err(|e| CliError(format!("cannot write the WAV: {e}")))?;
            crate::fsutil::write_atomically(&a.out, &wav, 0o600, true)
                .map_err(|e| CliError(format!("{}: {e}", a.out.display())))?;
            let out = message_out(&mailbox, &depositor, item, &envelope);
            if !out.heard {
                write_state(&keys, &a.at, &mailbox, None, &[item.id])?;
            }
            if a.json.json {
                return print_json(&serde_json::json!({
                    "message": out,
                    "file": a.out.display().to_string(),
                    "samples": samples.len(),
                }));
            }
            println!(
                "wrote {} ({:.1} s from {})",
                a.out.display(),
                samples.len() as f64 / 8000.0,
                printable(&out.from)
            );
            Ok(())
        }
        VoicemailCommand::Delete(a) => {
            let keys = load_user(&a.at.user_dir)?;
            let mailbox = read_mailbox(&keys, &a.at)?;
            let item = mailbox.find(&a.id).map_err(CliError)?;
            let id = item.id;
            write_state(&keys, &a.at, &mailbox, Some(id), &[])?;
            if a.json.json {
                return print_json(&serde_json::json!({ "deleted": short_id(&id) }));
            }
            println!("deleted {}", short_id(&id));
            Ok(())
        }
    }
}

/// `time` (unix seconds) as RFC 3339 UTC.
fn time_text(time: u64) -> String {
    let time = i64::try_from(time).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(time)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| time.to_string())
}
