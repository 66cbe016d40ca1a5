//! The on-disk layout the CLI reads and writes, and the helpers shared by
//! its commands.
//!
//! ```text
//! identity dir:  identity.key  (0600, PKCS#8 PEM)  identity.pem (self-signed)
//!                enrolled.pem  (optional: certificate issued by an overlay CA)
//! CA dir:        ca.key        (0600, PKCS#8 PEM)  ca.pem       (trust anchor)
//! state dir:     ping-client.key (0600: `ping` without --dir; dir 0700,
//!                $XDG_STATE_HOME/p2psip or ~/.local/state/p2psip)
//! ```

use super::CliError;
use crate::identity::{
    generate, load_secret_key, pem_certificates, write_secret_key, IdKind, SecretKey, TrustAnchors,
    VerifiedCertificate, VerifyPolicy,
};
use crate::limits::MAX_PEM_FILE_LEN;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Secret key of an identity directory.
pub const IDENTITY_KEY: &str = "identity.key";
/// Self-signed certificate of an identity directory.
pub const IDENTITY_CERT: &str = "identity.pem";
/// CA-issued certificate of an identity directory (enrolled overlays).
pub const ENROLLED_CERT: &str = "enrolled.pem";
/// Secret key of a CA directory.
pub const CA_KEY: &str = "ca.key";
/// Certificate (trust anchor) of a CA directory.
pub const CA_CERT: &str = "ca.pem";

/// Creates `dir` (and parents) owner-only if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError(format!("{}: cannot create directory: {e}", dir.display())))
}

/// Reads a file of at most [`MAX_PEM_FILE_LEN`] bytes.
pub fn read_small_file(path: &Path) -> Result<Vec<u8>, CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    // Opening a FIFO or device would block or read without end.
    if !meta.is_file() {
        return Err(CliError(format!("{}: not a regular file", path.display())));
    }
    let f = std::fs::File::open(path).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_PEM_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_PEM_FILE_LEN {
        return Err(CliError(format!(
            "{}: larger than {MAX_PEM_FILE_LEN} bytes; not a certificate file",
            path.display()
        )));
    }
    Ok(buf)
}

/// Reads the single certificate of a PEM file, as DER.
pub fn read_certificate(path: &Path) -> Result<Vec<u8>, CliError> {
    let text = read_small_file(path)?;
    let mut certs =
        pem_certificates(&text).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    if certs.len() != 1 {
        return Err(CliError(format!(
            "{}: holds {} certificates; expected exactly one",
            path.display(),
            certs.len()
        )));
    }
    Ok(certs.remove(0))
}

/// Writes a public file (certificate, binding) atomically: a temporary file
/// beside it, then a rename. With `overwrite` false an existing file is
/// an error.
pub fn write_public_file(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), CliError> {
    if !overwrite && path.exists() {
        return Err(CliError(format!(
            "{}: already exists; refusing to overwrite",
            path.display()
        )));
    }
    crate::fsutil::write_atomically(path, contents, 0o644, overwrite)
        .map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// An identity directory's key and what its certificate says.
pub struct Identity {
    /// The secret key.
    pub key: SecretKey,
    /// The verified self-signed certificate.
    pub cert: VerifiedCertificate,
}

/// Loads `dir/identity.key` and `dir/identity.pem` and checks they match.
pub fn load_identity(dir: &Path) -> Result<Identity, CliError> {
    let key_path = dir.join(IDENTITY_KEY);
    if !key_path.exists() {
        return Err(CliError(format!(
            "{}: no identity here; create one with `p2psip identity new --dir {}`",
            key_path.display(),
            dir.display()
        )));
    }
    let key = load_secret_key(&key_path)?;
    let cert_path = dir.join(IDENTITY_CERT);
    let der = read_certificate(&cert_path)?;
    let cert = VerifyPolicy::self_certifying(0)
        .verify(&der, crate::unix_now())
        .map_err(|e| CliError(format!("{}: {e}", cert_path.display())))?;
    if cert.public_key != key.public() {
        return Err(CliError(format!(
            "{} is not the certificate of {}",
            cert_path.display(),
            key_path.display()
        )));
    }
    Ok(Identity { key, cert })
}

/// Loads `dir` and requires it to hold a `kind` identity.
pub fn load_identity_of_kind(dir: &Path, kind: IdKind) -> Result<Identity, CliError> {
    let id = load_identity(dir)?;
    if id.cert.kind != kind {
        return Err(CliError(format!(
            "{}: holds a {} identity, a {kind} identity is needed here",
            dir.display(),
            id.cert.kind
        )));
    }
    Ok(id)
}

/// Loads trust anchors from PEM files.
pub fn load_anchors(paths: &[PathBuf]) -> Result<TrustAnchors, CliError> {
    let mut anchors = TrustAnchors::default();
    for path in paths {
        let text = read_small_file(path)?;
        anchors
            .add_pem(&text)
            .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    }
    Ok(anchors)
}

/// Generates a `kind` key meeting `difficulty` on every core. On a
/// terminal (stderr) it shows its progress on one line, updated every
/// half second and cleared at the end
/// ([`super::identity::progress_line`]); elsewhere it prints nothing.
pub fn generate_key(kind: IdKind, difficulty: u8) -> SecretKey {
    let show = std::io::stderr().is_terminal();
    let mut width = 0;
    let key = generate(kind, difficulty, 0, Duration::from_millis(500), &mut |p| {
        if !show {
            return;
        }
        let line = super::identity::progress_line(&p);
        width = width.max(line.len());
        eprint!("\r{line:width$}");
    });
    if width > 0 {
        eprint!("\r{:width$}\r", "");
    }
    key
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// The file of the client identity `ping` keeps when run without `--dir`,
/// in [`state_dir`].
pub const PING_CLIENT_KEY: &str = "ping-client.key";

/// The user's p2psip state directory (XDG Base Directory):
/// `$XDG_STATE_HOME/p2psip`, else `$HOME/.local/state/p2psip`; `None`
/// when neither is set to an absolute path.
pub fn state_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".local").join("state")))
        .map(|d| d.join("p2psip"))
}

/// The node key `ping` connects with when no `--dir` is given: the one
/// kept in [`state_dir`] ([`PING_CLIENT_KEY`], 0600, its directory 0700),
/// created once, and replaced only by one meeting a higher `difficulty`
/// than it does; a throwaway key when there is no state directory.
/// Returns the key and the file it is kept in.
pub fn kept_client_key(difficulty: u8) -> Result<(SecretKey, Option<PathBuf>), CliError> {
    let Some(dir) = state_dir() else {
        return Ok((generate_key(IdKind::Node, difficulty), None));
    };
    let path = dir.join(PING_CLIENT_KEY);
    if path.exists() {
        // A key others can read is refused (load_secret_key says so),
        // never silently replaced.
        let key = load_secret_key(&path)?;
        if key.public().node_id().puzzle_bits() >= u32::from(difficulty) {
            return Ok((key, Some(path)));
        }
        std::fs::remove_file(&path).map_err(|e| {
            CliError(format!(
                "{}: cannot replace it with a key meeting difficulty {difficulty}: {e}",
                path.display()
            ))
        })?;
    }
    ensure_private_dir(&dir)?;
    let key = generate_key(IdKind::Node, difficulty);
    write_secret_key(&path, &key)?;
    Ok((key, Some(path)))
}
