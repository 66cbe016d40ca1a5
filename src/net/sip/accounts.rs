//! The SIP accounts a node serves: one TOML file per auth user in
//! `NODE/sip-users/`, written by `p2psip sip add-user`, read by the
//! running node (again whenever the directory changes, so that a user
//! added while it runs is served without a restart).
//!
//! A file holds the digest secrets `H(A1)` (SHA-256 and MD5), never the
//! password, and is 0600 like a key; it names the user's identity
//! directory, whose key the node loads to sign the user's registrations
//! (the trust choice SECURITY.md describes).

use crate::identity::load_secret_key;
use crate::identity::sealing::{load_encryption_key, EncryptionSecretKey};
use crate::identity::{pem_certificates, SecretKey};
use crate::limits::{MAX_PEM_FILE_LEN, SIP_MAX_ACCOUNTS};
use crate::sip::digest::{Algorithm, DigestSecret};
use crate::sip::registrar::{Account, DEFAULT_ALGORITHMS};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The directory of account files inside a node directory.
pub const SIP_USERS_DIR: &str = "sip-users";

/// The name of a user's key file in its identity directory.
const IDENTITY_KEY: &str = "identity.key";

/// The name of a user's encryption key file in its identity directory.
pub const ENCRYPTION_KEY: &str = "encryption.key";

/// Longest auth user name, in bytes.
pub const MAX_AUTH_USER_LEN: usize = 64;

/// One account file (the contract of `NODE/sip-users/<auth_user>.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    /// The address-of-record the user's phones register.
    pub aor: String,
    /// The digest username the phones authenticate with.
    pub auth_user: String,
    /// The digest realm: the overlay's name.
    pub realm: String,
    /// The user's identity directory (its `identity.key` signs the
    /// user's registrations).
    pub user_dir: PathBuf,
    /// The user's CA-issued certificate naming the AOR, in an enrolled
    /// overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_cert: Option<PathBuf>,
    /// `SHA-256(auth_user ":" realm ":" password)`, hex, when `digest`
    /// allows SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
    /// `MD5(auth_user ":" realm ":" password)`, hex, when `digest`
    /// allows MD5 (only then is it stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_md5: Option<String>,
    /// The digest algorithms the phones may use, in the order the node
    /// offers them: `["SHA-256", "MD5"]` when absent.
    #[serde(default = "default_digest")]
    pub digest: Vec<String>,
}

fn default_digest() -> Vec<String> {
    DEFAULT_ALGORITHMS
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect()
}

/// The algorithms a `digest` list names: not empty, each once, each
/// SHA-256 or MD5.
pub fn parse_digest(names: &[String]) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for name in names {
        let alg = Algorithm::parse(name.trim())
            .ok_or_else(|| format!("digest algorithm {name:?}: use SHA-256 or MD5"))?;
        if out.contains(&alg) {
            return Err(format!("digest algorithm {name:?} named twice"));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err("no digest algorithm: name SHA-256, MD5 or both".into());
    }
    Ok(out)
}

/// A user the running node serves: the registrar's account, the key
/// that signs its registrations, its certificate in an enrolled overlay.
pub struct ServedUser {
    /// What the registrar checks phones against.
    pub account: Account,
    /// The user's key.
    pub key: SecretKey,
    /// The user's certificate (DER), in an enrolled overlay.
    pub user_cert: Option<Vec<u8>>,
    /// The user's encryption key (`USER_DIR/encryption.key`), which opens
    /// its address book and settings; `None` when the user has none.
    pub encryption: Option<EncryptionSecretKey>,
}

/// Whether `name` may be an auth user (it names a file): 1 to
/// [`MAX_AUTH_USER_LEN`] bytes of letters, digits, `-`, `_` and `.`, not
/// starting with `.`.
pub fn check_auth_user(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_AUTH_USER_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "auth user {:?}: use 1 to {MAX_AUTH_USER_LEN} letters, digits, '-', '_' or '.', \
             not starting with '.'",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// The directory of account files of the node in `node_dir`.
pub fn users_dir(node_dir: &Path) -> PathBuf {
    node_dir.join(SIP_USERS_DIR)
}

/// Where the account of `auth_user` is kept.
pub fn account_path(node_dir: &Path, auth_user: &str) -> PathBuf {
    users_dir(node_dir).join(format!("{auth_user}.toml"))
}

/// Writes `account` 0600 (its directory 0700), atomically; with
/// `overwrite` false an existing account is an error.
pub fn write_account(
    node_dir: &Path,
    account: &AccountFile,
    overwrite: bool,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    check_auth_user(&account.auth_user)?;
    let dir = users_dir(node_dir);
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: cannot create directory: {e}", dir.display()))?;
    }
    let path = account_path(node_dir, &account.auth_user);
    let text = toml::to_string(account).map_err(|e| format!("cannot encode the account: {e}"))?;
    let text = format!(
        "# A p2psip SIP account, written by `p2psip sip add-user`. It holds digest\n\
         # secrets (H(A1)), not the password; keep it private (0600).\n{text}"
    );
    crate::fsutil::write_atomically(&path, text.as_bytes(), 0o600, overwrite).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{}: the account {:?} exists; pass --force to replace it",
                path.display(),
                account.auth_user
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    Ok(path)
}

/// Reads one account file (at most [`MAX_PEM_FILE_LEN`] bytes, owner-only).
pub fn read_account(path: &Path) -> Result<AccountFile, String> {
    use std::os::unix::fs::PermissionsExt;
    let show = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{show}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{show}: not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{show}: readable by others (mode {:o}); it holds digest secrets: chmod 600 it",
            meta.permissions().mode() & 0o7777
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE_LEN + 1).read_to_string(&mut text))
        .map_err(|e| format!("{show}: {e}"))?;
    if text.len() as u64 > MAX_PEM_FILE_LEN {
        return Err(format!("{show}: larger than {MAX_PEM_FILE_LEN} bytes"));
    }
    let account: AccountFile = toml::from_str(&text).map_err(|e| format!("{show}: {e}"))?;
    check_auth_user(&account.auth_user).map_err(|e| format!("{show}: {e}"))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem != account.auth_user {
        return Err(format!(
            "{show}: holds the account {:?}; the file must be named after it",
            account.auth_user
        ));
    }
    let algorithms = parse_digest(&account.digest).map_err(|e| format!("{show}: {e}"))?;
    let hex_of = |s: &Option<String>, len: usize| {
        s.as_ref()
            .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for alg in algorithms {
        let (ok, len) = match alg {
            Algorithm::Sha256 => (hex_of(&account.ha1_sha256, 64), 64),
            Algorithm::Md5 => (hex_of(&account.ha1_md5, 32), 32),
        };
        if !ok {
            return Err(format!(
                "{show}: digest {} is allowed but its secret is missing or not {len} hex digits",
                alg.as_str()
            ));
        }
    }
    Ok(account)
}

/// The account files in the node directory, sorted by auth user, and
/// what was wrong with the ones skipped.
pub fn list_accounts(node_dir: &Path) -> (Vec<AccountFile>, Vec<String>) {
    let dir = users_dir(node_dir);
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), problems),
        Err(e) => return (Vec::new(), vec![format!("{}: {e}", dir.display())]),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.len() > SIP_MAX_ACCOUNTS {
        problems.push(format!(
            "{}: {} accounts; only the first {SIP_MAX_ACCOUNTS} are served",
            dir.display(),
            paths.len()
        ));
        paths.truncate(SIP_MAX_ACCOUNTS);
    }
    let mut accounts = Vec::new();
    for path in paths {
        match read_account(&path) {
            Ok(a) => accounts.push(a),
            Err(e) => problems.push(e),
        }
    }
    (accounts, problems)
}

/// Loads the user key (and certificate) an account names, and checks
/// it: the account's realm must be `realm`.
pub fn serve(account: AccountFile, realm: &str) -> Result<ServedUser, String> {
    let who = format!("SIP account {:?}", account.auth_user);
    if account.realm != realm {
        return Err(format!(
            "{who} is for the overlay {:?}, this node's is {realm:?}; add it again with the \
             node's --overlay",
            account.realm
        ));
    }
    let key = load_secret_key(&account.user_dir.join(IDENTITY_KEY))
        .map_err(|e| format!("{who}: the user's key: {e}"))?;
    let user_cert = match &account.user_cert {
        None => None,
        Some(path) => {
            let text = read_limited(path).map_err(|e| format!("{who}: {e}"))?;
            let mut certs =
                pem_certificates(&text).map_err(|e| format!("{who}: {}: {e}", path.display()))?;
            if certs.len() != 1 {
                return Err(format!(
                    "{who}: {} holds {} certificates; expected one",
                    path.display(),
                    certs.len()
                ));
            }
            Some(certs.remove(0))
        }
    };
    let secret = DigestSecret::from_ha1(
        &account.auth_user,
        &account.realm,
        // A secret the account does not allow is never used (the
        // registrar refuses that algorithm): empty.
        account.ha1_sha256.unwrap_or_default().to_ascii_lowercase(),
        account.ha1_md5.unwrap_or_default().to_ascii_lowercase(),
    );
    // A user made before encryption keys has none: served without its
    // address book and settings. One that is there must be sound.
    let encryption_path = account.user_dir.join(ENCRYPTION_KEY);
    let encryption = if encryption_path.exists() {
        Some(
            load_encryption_key(&encryption_path)
                .map_err(|e| format!("{who}: the user's encryption key: {e}"))?,
        )
    } else {
        None
    };
    Ok(ServedUser {
        account: Account {
            algorithms: parse_digest(&account.digest).map_err(|e| format!("{who}: {e}"))?,
            aor: account.aor,
            secret,
        },
        key,
        user_cert,
        encryption,
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE_LEN + 1).read_to_end(&mut buf))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_PEM_FILE_LEN {
        return Err(format!("{}: too large for a certificate", path.display()));
    }
    Ok(buf)
}

/// Notices changes to the accounts directory (by its modification time
/// and that of its files).
#[derive(Debug)]
pub struct AccountsWatch {
    dir: PathBuf,
    seen: Option<(SystemTime, usize)>,
}

impl AccountsWatch {
    /// Watches the accounts of the node in `node_dir`.
    pub fn new(node_dir: &Path) -> Self {
        Self {
            dir: users_dir(node_dir),
            seen: None,
        }
    }

    /// Whether the accounts changed since the last call that said so
    /// (the first call says so).
    pub fn changed(&mut self) -> bool {
        let now = self.stamp();
        if self.seen.is_some() && self.seen == now {
            return false;
        }
        self.seen = now.or(Some((SystemTime::UNIX_EPOCH, 0)));
        true
    }

    /// The newest modification time among the directory and its files,
    /// and how many files it holds.
    fn stamp(&self) -> Option<(SystemTime, usize)> {
        let mut newest = std::fs::metadata(&self.dir)
            .and_then(|m| m.modified())
            .ok()?;
        let mut count = 0;
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.filter_map(Result::ok).take(SIP_MAX_ACCOUNTS + 1) {
                count += 1;
                if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
                    newest = newest.max(t);
                }
            }
        }
        Some((newest, count))
    }
}
