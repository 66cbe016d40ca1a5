//! `p2psip sip add-user` and `p2psip sip users`: the SIP accounts a node
//! serves (files in `NODE/sip-users/`, see [`crate::net::sip::accounts`]);
//! `p2psip sip unbind`: removes phones bound at a running node.

use super::files::{
    load_anchors, load_identity_of_kind, read_certificate, read_small_file, ENROLLED_CERT,
};
use super::{printable, AnchorArgs, CliError, CliResult, JsonFlag};
use crate::admin::{self, AdminError, Request, SipPhone, SipUnbindResult, SipUsersResult};
use crate::identity::{IdKind, VerifyPolicy};
use crate::net::sip::accounts::{
    check_auth_user, list_accounts, parse_digest, write_account, AccountFile,
};
use crate::overlay::config::OverlayParams;
use crate::overlay::record::self_certifying_aor;
use crate::sip::digest::{Algorithm, DigestSecret};
use crate::sip::registrar::aor_of;
use crate::sip::SipUri;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Longest password accepted, in bytes.
const MAX_PASSWORD_LEN: usize = 256;

#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// The node's identity directory (the account goes to DIR/sip-users/).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The user's identity directory: its key signs the user's
    /// registrations, so the node must be able to read it.
    #[arg(long, value_name = "DIR")]
    user_dir: PathBuf,
    /// A file whose first line is the phone's SIP password (only its
    /// digest is stored).
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// The digest username the phone authenticates with [default: the
    /// user part of the AOR].
    #[arg(long, value_name = "NAME")]
    auth_user: Option<String>,
    /// The overlay's parameters (as for `node run`): its name is the AOR's
    /// domain and the digest realm [default: overlay "p2psip"].
    #[arg(long, value_name = "FILE")]
    overlay: Option<PathBuf>,
    #[command(flatten)]
    anchors: AnchorArgs,
    /// In an enrolled overlay (--ca): the user's CA-issued certificate
    /// [default: USER_DIR/enrolled.pem].
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// In an enrolled overlay: which of the certificate's AORs [default:
    /// its only one].
    #[arg(long, value_name = "SIP-AOR")]
    aor: Option<String>,
    /// The digest algorithms the phones may use, in the order the node
    /// offers them: SHA-256,MD5 (the default), MD5,SHA-256 for phones
    /// that read only the first challenge (SIPp, many desk phones),
    /// SHA-256 alone to refuse MD5.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "SHA-256,MD5",
        value_delimiter = ','
    )]
    digest: Vec<String>,
    /// Replace an existing account of the same auth user.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: JsonFlag,
}

/// `sip add-user --json`.
#[derive(Serialize)]
struct AddUserOutput<'a> {
    aor: &'a str,
    auth_user: &'a str,
    realm: &'a str,
    file: String,
}

/// The overlay name from `--overlay FILE`, or the default.
pub(super) fn overlay_name(file: Option<&Path>) -> Result<String, CliError> {
    let Some(path) = file else {
        return Ok(OverlayParams::default().name);
    };
    let bytes = read_small_file(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CliError(format!("{}: not UTF-8 text", path.display())))?;
    OverlayParams::from_toml(text)
        .map(|p| p.name)
        .map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// Reads the password: the file's first line, 1 to [`MAX_PASSWORD_LEN`]
/// bytes.
pub(super) fn read_password(path: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let bytes = Zeroizing::new(read_small_file(path)?);
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = first.strip_suffix(b"\r").unwrap_or(first);
    if line.is_empty() {
        return Err(CliError(format!(
            "{}: empty; its first line is the password",
            path.display()
        )));
    }
    if line.len() > MAX_PASSWORD_LEN {
        return Err(CliError(format!(
            "{}: the password is longer than {MAX_PASSWORD_LEN} bytes",
            path.display()
        )));
    }
    Ok(Zeroizing::new(line.to_vec()))
}

pub fn add_user(a: AddUserArgs) -> CliResult {
    // The node directory must be a node's.
    load_identity_of_kind(&a.dir, IdKind::Node)?;
    let user = load_identity_of_kind(&a.user_dir, IdKind::User)?;
    let realm = overlay_name(a.overlay.as_deref())?;
    let (aor, user_cert) = if a.anchors.anchors.is_empty() {
        if a.cert.is_some() || a.aor.is_some() {
            return Err(CliError(
                "--cert and --aor are for enrolled overlays (--ca); in a self-certifying overlay \
                 the AOR is the user's own"
                    .into(),
            ));
        }
        let aor = self_certifying_aor(&user.key.public().user_id(), &realm);
        (aor, None)
    } else {
        let path = a
            .cert
            .clone()
            .unwrap_or_else(|| a.user_dir.join(ENROLLED_CERT));
        let der = read_certificate(&path)?;
        let policy = VerifyPolicy::enrolled(load_anchors(&a.anchors.anchors)?, 0);
        let verified = policy
            .verify(&der, crate::unix_now())
            .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        if verified.public_key != user.key.public() {
            return Err(CliError(format!(
                "{}: a certificate for another key than {}'s",
                path.display(),
                a.user_dir.display()
            )));
        }
        let aor = match (&a.aor, verified.sip_names.as_slice()) {
            (Some(aor), names) if names.contains(aor) => aor.clone(),
            (Some(aor), _) => {
                return Err(CliError(format!(
                    "{}: does not name {}",
                    path.display(),
                    printable(aor)
                )))
            }
            (None, [only]) => only.clone(),
            (None, []) => return Err(CliError(format!("{}: names no SIP AOR", path.display()))),
            (None, _) => {
                return Err(CliError(format!(
                    "{}: names several AORs ({}); choose one with --aor",
                    path.display(),
                    verified.sip_names.join(", ")
                )))
            }
        };
        let path = std::fs::canonicalize(&path)
            .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        (aor, Some(path))
    };
    // The registrar compares the normalised form.
    let aor = SipUri::parse(&aor)
        .ok()
        .and_then(|u| aor_of(&u))
        .ok_or_else(|| CliError(format!("{}: not a SIP AOR", printable(&aor))))?;
    let auth_user = match &a.auth_user {
        Some(name) => name.clone(),
        None => SipUri::parse(&aor)
            .ok()
            .and_then(|u| u.user)
            .unwrap_or_default(),
    };
    check_auth_user(&auth_user).map_err(CliError)?;
    let algorithms = parse_digest(&a.digest).map_err(|e| CliError(format!("--digest: {e}")))?;
    let digest: Vec<String> = algorithms
        .iter()
        .map(|alg| alg.as_str().to_owned())
        .collect();
    let password = read_password(&a.password_file)?;
    let secret = DigestSecret::from_password(&auth_user, &realm, &password);
    let user_dir = std::fs::canonicalize(&a.user_dir)
        .map_err(|e| CliError(format!("{}: {e}", a.user_dir.display())))?;
    let account = AccountFile {
        aor: aor.clone(),
        auth_user: auth_user.clone(),
        realm: realm.clone(),
        user_dir,
        user_cert,
        // Only the secrets of the allowed algorithms are kept.
        ha1_sha256: algorithms
            .contains(&Algorithm::Sha256)
            .then(|| secret.ha1(Algorithm::Sha256).to_owned()),
        ha1_md5: algorithms
            .contains(&Algorithm::Md5)
            .then(|| secret.ha1(Algorithm::Md5).to_owned()),
        digest,
    };
    let file = write_account(&a.dir, &account, a.force).map_err(CliError)?;
    if a.json.json {
        let text = admin::json_text(&AddUserOutput {
            aor: &aor,
            auth_user: &auth_user,
            realm: &realm,
            file: file.display().to_string(),
        })
        .map_err(|e| CliError(e.to_string()))?;
        println!("{text}");
    } else {
        println!(
            "SIP user {auth_user} added: AOR {aor}, realm {realm} ({}); a running node serves it \
             within a second",
            file.display()
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    /// The node's identity directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

/// One line of `sip users --json`.
#[derive(Serialize)]
struct UserOutput {
    aor: String,
    auth_user: String,
    registered_contacts: Vec<String>,
    /// The phones bound, with where and how they registered.
    bindings: Vec<SipPhone>,
}

pub fn users(a: UsersArgs) -> CliResult {
    let (accounts, problems) = list_accounts(&a.dir);
    for problem in &problems {
        eprintln!("p2psip: warning: {}", printable(problem));
    }
    // The phones bound, from the running node; none if it is not running.
    let bound = match admin::request::<SipUsersResult>(&a.dir, &Request::SipUsers {}) {
        Ok(result) => result.bindings,
        Err(AdminError::NotRunning { .. }) => Vec::new(),
        Err(e) => return Err(CliError(e.to_string())),
    };
    let users: Vec<UserOutput> = accounts
        .into_iter()
        .map(|account| {
            let binding = bound.iter().find(|b| b.aor == account.aor);
            UserOutput {
                registered_contacts: binding.map(|b| b.contacts.clone()).unwrap_or_default(),
                bindings: binding.map(|b| b.phones.clone()).unwrap_or_default(),
                aor: account.aor,
                auth_user: account.auth_user,
            }
        })
        .collect();
    if a.json.json {
        let text = admin::json_text(&users).map_err(|e| CliError(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    for u in &users {
        println!(
            "{}  {}  {} phone(s)",
            printable(&u.auth_user),
            printable(&u.aor),
            u.registered_contacts.len()
        );
        if u.bindings.is_empty() {
            // A node that does not report bindings: the contacts only.
            for c in &u.registered_contacts {
                println!("    {}", printable(c));
            }
        }
        for b in &u.bindings {
            println!("    {}", phone_line(b));
        }
    }
    println!("{} users", users.len());
    Ok(())
}

/// One phone for people: contact, source, transport, time left.
fn phone_line(b: &SipPhone) -> String {
    format!(
        "{}  from {} over {}, expires in {} s",
        printable(&b.contact),
        printable(&b.source),
        printable(&b.transport),
        b.expires_in
    )
}

#[derive(Debug, Args)]
pub struct UnbindArgs {
    /// The address-of-record whose phones to remove, e.g.
    /// sip:alice@p2psip (as `sip users` lists it).
    #[arg(value_name = "AOR")]
    aor: String,
    /// The node's identity directory (the node must be running).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Remove only the phone with this Contact URI (as `sip users` lists
    /// it) [default: every phone of the AOR].
    #[arg(long, value_name = "URI")]
    contact: Option<String>,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn unbind(a: UnbindArgs) -> CliResult {
    let request = Request::SipUnbind {
        aor: a.aor,
        contact: a.contact,
    };
    let result =
        admin::request::<SipUnbindResult>(&a.dir, &request).map_err(|e| CliError(e.to_string()))?;
    if a.json.json {
        let text = admin::json_text(&result).map_err(|e| CliError(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!("removed: {}", result.removed);
    for b in &result.bindings {
        println!("    {}", phone_line(b));
    }
    if result.remaining == 0 {
        println!(
            "{} has no phone left here; its entry is being withdrawn from the overlay",
            printable(&result.aor)
        );
    } else {
        println!(
            "{} still has {} phone(s) here",
            printable(&result.aor),
            result.remaining
        );
    }
    Ok(())
}
