//! `p2psip contacts ...` and `p2psip settings ...`: the user's address
//! book and settings, kept in the overlay as private records (sealed to
//! the user, see [`crate::userdata`]).
//!
//! Everything is sealed and opened here, in the user's process: the
//! running node in `--dir` only carries records to and from the overlay
//! (admin `get_record` and `publish`) and sees ciphertext.

use super::files::{load_identity_of_kind, read_small_file};
use super::{printable, CliError, CliResult, JsonFlag};
use crate::admin::{self, AdminError, GetRecordResult, PublishResult, Request};
use crate::identity::sealing::{load_encryption_key, EncryptionSecretKey};
use crate::identity::{IdKind, SecretKey};
use crate::overlay::record::{PrivateSlot, Profile, Record, RecordKind};
use crate::userdata::{
    open_slot, seal_slot, vcard, AddressBook, Settings, CONTACTS_SLOT, SETTINGS_SLOT, SETTING_KEYS,
};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::net::sip::accounts::ENCRYPTION_KEY;

/// Where the user and the node are.
#[derive(Debug, Args)]
pub(super) struct Where {
    /// The user's identity directory (identity.key and encryption.key).
    #[arg(long, value_name = "DIR")]
    pub(super) user_dir: PathBuf,
    /// The directory of the running node the records go through.
    #[arg(long, value_name = "DIR")]
    pub(super) dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Give NAME to AOR in the address book.
    Add(ContactsAddArgs),
    /// List the address book.
    List(ContactsListArgs),
    /// Remove NAME from the address book.
    Remove(ContactsRemoveArgs),
    /// Add the contacts of a vCard file (cards with a sip: IMPP, TEL or
    /// URL; the name is the NICKNAME, else the FN).
    Import(ContactsImportArgs),
    /// Print the address book as vCard 4.0 or as baresip's contacts file.
    Export(ContactsExportArgs),
}

#[derive(Debug, Args)]
pub struct ContactsAddArgs {
    /// The name (1 to 64 letters, digits, '.', '-', '_'; case-insensitive).
    #[arg(value_name = "NAME")]
    name: String,
    /// The address-of-record it names.
    #[arg(value_name = "AOR")]
    aor: String,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ContactsListArgs {
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ContactsRemoveArgs {
    /// The name.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ContactsImportArgs {
    /// The vCard file (RFC 6350; vCard 3.0 is read too).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

/// The formats `contacts export` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// vCard 4.0 (RFC 6350).
    Vcard,
    /// baresip's `contacts` file: `"name" <aor>` a line.
    Baresip,
}

#[derive(Debug, Args)]
pub struct ContactsExportArgs {
    /// The format.
    #[arg(long, value_enum, default_value = "vcard")]
    format: ExportFormat,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Set KEY to VALUE (an empty VALUE clears it).
    Set(SettingsSetArgs),
    /// Print one setting, or every setting that is set.
    Get(SettingsGetArgs),
}

#[derive(Debug, Args)]
pub struct SettingsSetArgs {
    /// The setting: display_name, do_not_disturb, forward_always,
    /// forward_busy, forward_no_answer, voicemail, voicemail_after, blocked.
    #[arg(value_name = "KEY")]
    key: String,
    /// Its value: on/off, seconds, an AOR or contact name, or for
    /// `blocked` a comma-separated list of AORs and names.
    #[arg(value_name = "VALUE")]
    value: String,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct SettingsGetArgs {
    /// The setting [default: every one that is set].
    #[arg(value_name = "KEY")]
    key: Option<String>,
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    json: JsonFlag,
}

/// The user's keys, and its directory.
pub(super) struct UserKeys {
    pub(super) identity: SecretKey,
    pub(super) encryption: EncryptionSecretKey,
    dir: PathBuf,
}

impl UserKeys {
    /// The user's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

pub(super) fn load_user(user_dir: &Path) -> Result<UserKeys, CliError> {
    let identity = load_identity_of_kind(user_dir, IdKind::User)?.key;
    let path = user_dir.join(ENCRYPTION_KEY);
    if !path.exists() {
        return Err(CliError(format!(
            "{}: no encryption key; make one with `p2psip identity add-encryption-key --user-dir {}`",
            path.display(),
            user_dir.display()
        )));
    }
    let encryption = load_encryption_key(&path).map_err(|e| CliError(e.to_string()))?;
    Ok(UserKeys {
        identity,
        encryption,
        dir: user_dir.to_path_buf(),
    })
}

/// The file in the user's directory that remembers the sequence number
/// of the slot's record last written from there.
fn written_seq_file(keys: &UserKeys, slot_id: &str) -> PathBuf {
    keys.dir.join(format!("{slot_id}.seq"))
}

/// The sequence number last written from this user directory, if any.
fn written_seq(keys: &UserKeys, slot_id: &str) -> Option<u64> {
    std::fs::read_to_string(written_seq_file(keys, slot_id))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The plaintext of a slot and its record's sequence number; `None` when
/// the overlay holds no record of the slot yet.
///
/// A lookup that fails, or that only meets holders of an old copy, must
/// not pass for "no book yet": the next write would replace the book
/// with an empty or old one everywhere. So the sequence number written
/// last from this user directory is kept (`USER_DIR/<slot>.seq`), and a
/// read that finds nothing, or something older, is refused.
fn read_slot(
    dir: &Path,
    keys: &UserKeys,
    slot: &PrivateSlot,
    slot_id: &str,
    name: &'static str,
) -> Result<Option<(Vec<u8>, u64)>, CliError> {
    let request = Request::GetRecord {
        key: hex::encode(slot.key().0),
        kind: RecordKind::Private.to_u64(),
    };
    let written = written_seq(keys, slot_id);
    let retry = |what: String| {
        CliError(format!(
            "{what}, but one with seq {} was written from {}: nothing changed (a lookup may have \
             failed; try again, or remove {} to start anew)",
            written.unwrap_or_default(),
            keys.dir.display(),
            written_seq_file(keys, slot_id).display()
        ))
    };
    let found: GetRecordResult = match admin::request(dir, &request) {
        Ok(found) => found,
        Err(AdminError::Refused(e)) if e.starts_with("no record") => {
            if written.is_some() {
                return Err(retry(format!("the overlay returned no {name}")));
            }
            return Ok(None);
        }
        Err(e) => return Err(CliError(e.to_string())),
    };
    let record = Record::decode(&found.record)
        .map_err(|e| CliError(format!("the node answered with a bad record: {e}")))?;
    let plaintext = open_slot(slot, name, &keys.encryption, &record, now())
        .map_err(|e| CliError(e.to_string()))?;
    if written.is_some_and(|w| record.seq < w) {
        return Err(retry(format!(
            "the overlay returned an older {name} (seq {})",
            record.seq
        )));
    }
    Ok(Some((plaintext, record.seq)))
}

fn write_slot(
    dir: &Path,
    keys: &UserKeys,
    slot: &PrivateSlot,
    slot_id: &str,
    plaintext: &[u8],
    previous: Option<u64>,
) -> Result<PublishResult, CliError> {
    let record = seal_slot(
        slot,
        &keys.encryption.public(),
        plaintext,
        previous,
        now(),
        crate::unix_now_micros(),
    )
    .map_err(|e| CliError(e.to_string()))?;
    let published = publish(dir, &record)?;
    let file = written_seq_file(keys, slot_id);
    crate::fsutil::write_atomically(&file, record.seq.to_string().as_bytes(), 0o600, true)
        .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
    Ok(published)
}

pub(super) fn publish(dir: &Path, record: &Record) -> Result<PublishResult, CliError> {
    admin::request(
        dir,
        &Request::Publish {
            record: hex::encode(record.encode()),
        },
    )
    .map_err(|e| CliError(format!("could not store the record: {e}")))
}

pub(super) fn now() -> u64 {
    u64::try_from(crate::unix_now()).unwrap_or(0)
}

/// The address book, its slot and its record's sequence number.
/// A slot's data as it is in the overlay (or `T::default()` when there
/// is none yet), with the user's keys, the slot and its record's `seq`.
fn load_slot<T: Default>(
    at: &Where,
    slot_id: &'static str,
    name: &'static str,
    decode: fn(&[u8]) -> Result<T, crate::wire::WireError>,
) -> Result<(UserKeys, PrivateSlot, T, Option<u64>), CliError> {
    let keys = load_user(&at.user_dir)?;
    let slot = PrivateSlot::new(&keys.identity, slot_id).map_err(|e| CliError(e.to_string()))?;
    let (data, seq) = match read_slot(&at.dir, &keys, &slot, slot_id, name)? {
        Some((plaintext, seq)) => (
            decode(&plaintext).map_err(|e| {
                CliError(format!(
                    "the {name} in the overlay cannot be read ({e}); it is left as it is"
                ))
            })?,
            Some(seq),
        ),
        None => (T::default(), None),
    };
    Ok((keys, slot, data, seq))
}

fn load_book(at: &Where) -> Result<(UserKeys, PrivateSlot, AddressBook, Option<u64>), CliError> {
    load_slot(at, CONTACTS_SLOT, "address book", AddressBook::decode)
}

#[derive(Serialize)]
struct ContactOut<'a> {
    name: &'a str,
    aor: &'a str,
}

#[derive(Serialize)]
struct ContactsOut<'a> {
    contacts: Vec<ContactOut<'a>>,
}

fn contacts_out(book: &AddressBook) -> ContactsOut<'_> {
    ContactsOut {
        contacts: book
            .contacts()
            .iter()
            .map(|c| ContactOut {
                name: &c.name,
                aor: &c.aor,
            })
            .collect(),
    }
}

pub(super) fn print_json(value: &impl Serialize) -> CliResult {
    let text = admin::json_text(value)
        .map_err(|e| CliError(format!("cannot print the answer as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub fn contacts(command: ContactsCommand) -> CliResult {
    match command {
        ContactsCommand::Add(a) => {
            let (keys, slot, mut book, seq) = load_book(&a.at)?;
            book.add(&a.name, &a.aor)
                .map_err(|e| CliError(e.to_string()))?;
            write_slot(&a.at.dir, &keys, &slot, CONTACTS_SLOT, &book.encode(), seq)?;
            let aor = book.resolve(&a.name).unwrap_or_default();
            if a.json.json {
                print_json(&ContactOut { name: &a.name, aor })
            } else {
                println!("{} → {aor}", a.name);
                Ok(())
            }
        }
        ContactsCommand::List(a) => {
            let (_, _, book, _) = load_book(&a.at)?;
            if a.json.json {
                return print_json(&contacts_out(&book));
            }
            for c in book.contacts() {
                println!("{}\t{}", c.name, c.aor);
            }
            Ok(())
        }
        ContactsCommand::Remove(a) => {
            let (keys, slot, mut book, seq) = load_book(&a.at)?;
            let removed = book.remove(&a.name).map_err(|e| CliError(e.to_string()))?;
            write_slot(&a.at.dir, &keys, &slot, CONTACTS_SLOT, &book.encode(), seq)?;
            if a.json.json {
                print_json(&ContactOut {
                    name: &removed.name,
                    aor: &removed.aor,
                })
            } else {
                println!("removed {} ({})", removed.name, removed.aor);
                Ok(())
            }
        }
        ContactsCommand::Import(a) => {
            let bytes = read_small_file(&a.file)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| CliError(format!("{}: not UTF-8 text: {e}", a.file.display())))?;
            let found = vcard::parse(text).map_err(|errors| {
                CliError(format!(
                    "{}: nothing imported:\n  {}",
                    a.file.display(),
                    errors.join("\n  ")
                ))
            })?;
            let (keys, slot, mut book, seq) = load_book(&a.at)?;
            let mut problems = Vec::new();
            let mut added = 0;
            for (name, aor) in &found.contacts {
                match book.add(name, aor) {
                    Ok(()) => added += 1,
                    Err(e) => problems.push(e.to_string()),
                }
            }
            if !problems.is_empty() {
                return Err(CliError(format!(
                    "{}: nothing imported:\n  {}",
                    a.file.display(),
                    problems.join("\n  ")
                )));
            }
            write_slot(&a.at.dir, &keys, &slot, CONTACTS_SLOT, &book.encode(), seq)?;
            if a.json.json {
                print_json(&serde_json::json!({
                    "imported": added,
                    "skipped": found.skipped,
                    "contacts": book.len(),
                }))
            } else {
                println!(
                    "imported {added} contacts ({} cards without a SIP address skipped); the book holds {}",
                    found.skipped,
                    book.len()
                );
                Ok(())
            }
        }
        ContactsCommand::Export(a) => {
            let (_, _, book, _) = load_book(&a.at)?;
            match a.format {
                ExportFormat::Vcard => print!("{}", vcard::export(&book)),
                ExportFormat::Baresip => print!("{}", vcard::export_baresip(&book)),
            }
            Ok(())
        }
    }
}

fn load_settings(at: &Where) -> Result<(UserKeys, PrivateSlot, Settings, Option<u64>), CliError> {
    load_slot(at, SETTINGS_SLOT, "settings", Settings::decode)
}

pub fn settings(command: SettingsCommand) -> CliResult {
    match command {
        SettingsCommand::Set(a) => {
            let (keys, slot, mut settings, seq) = load_settings(&a.at)?;
            settings
                .set(&a.key, &a.value)
                .map_err(|e| CliError(e.to_string()))?;
            write_slot(
                &a.at.dir,
                &keys,
                &slot,
                SETTINGS_SLOT,
                &settings.encode(),
                seq,
            )?;
            if a.key == "display_name" {
                // The name others see goes in the public profile too.
                publish_profile(&a.at.dir, &keys, settings.display_name().unwrap_or(""))?;
            }
            let value = settings.get(&a.key);
            if a.json.json {
                let mut out = BTreeMap::new();
                out.insert(a.key.as_str(), value);
                print_json(&out)
            } else {
                println!("{} = {}", a.key, value.unwrap_or("(not set)"));
                Ok(())
            }
        }
        SettingsCommand::Get(a) => {
            let (_, _, settings, _) = load_settings(&a.at)?;
            let keys: Vec<&str> = match &a.key {
                Some(key) => {
                    if !SETTING_KEYS.contains(&key.as_str()) {
                        return Err(CliError(
                            crate::userdata::SettingsError::UnknownKey(key.clone()).to_string(),
                        ));
                    }
                    vec![key.as_str()]
                }
                None => settings.iter().map(|(k, _)| k).collect(),
            };
            if a.json.json {
                let out: BTreeMap<&str, Option<&str>> =
                    keys.iter().map(|k| (*k, settings.get(k))).collect();
                return print_json(&out);
            }
            for k in keys {
                println!(
                    "{k} = {}",
                    printable(settings.get(k).unwrap_or("(not set)"))
                );
            }
            Ok(())
        }
    }
}

/// Publishes the user's profile: its encryption key and `display_name`.
fn publish_profile(dir: &Path, keys: &UserKeys, display_name: &str) -> CliResult {
    let profile = Profile::new(keys.encryption.public(), display_name)
        .map_err(|e| CliError(e.to_string()))?;
    let record = profile.sign(
        &keys.identity,
        crate::unix_now_micros(),
        now().saturating_add(crate::limits::MAX_RECORD_LIFETIME.as_secs()),
    );
    publish(dir, &record).map(|_| ())
}
