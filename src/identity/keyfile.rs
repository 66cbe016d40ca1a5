//! Secret key files: PKCS#8 PEM, created owner-only (0600) and atomically,
//! refused when anyone but the owner can read them (as ssh does).

use super::SecretKey;
use crate::limits::MAX_PEM_FILE_LEN;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Errors of reading or writing a key file. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Group or others may read or write the key file.
    #[error(
        "{path}: key file is accessible by group or others (mode {mode:o}); \
         run `chmod 600 {path}` and check who may have copied it"
    )]
    TooPermissive {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file exists already; identities are never overwritten.
    #[error("{0}: already exists; refusing to overwrite an identity (move it away first)")]
    AlreadyExists(PathBuf),
    /// The file is not a regular file (a directory, a device, a FIFO).
    #[error("{0}: not a regular file")]
    NotAFile(PathBuf),
    /// The file is larger than any key file.
    #[error("{0}: too large to be a key file")]
    TooLarge(PathBuf),
    /// The file is not a PKCS#8 PEM private key of the expected kind
    /// (Ed25519 for an identity, X25519 for an encryption key).
    #[error("{path}: not a PKCS#8 PEM private key of the expected kind ({reason})")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// Encoding the key failed.
    #[error("could not encode the key: {0}")]
    Encode(String),
    /// An I/O error on the file.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `key` to `path` as PKCS#8 PEM, mode 0600, without ever exposing
/// it to other users and without overwriting an existing file.
///
/// The key goes to a temporary file created 0600 in the same directory,
/// synced, then hard-linked into place (which fails if `path` exists): a
/// crash leaves either no key file or a complete one.
pub fn write_secret_key(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    if path.exists() {
        return Err(KeyFileError::AlreadyExists(path.to_path_buf()));
    }
    let pem = key
        .dalek()
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyFileError::Encode(e.to_string()))?;
    crate::fsutil::write_atomically(path, pem.as_bytes(), 0o600, false).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists(path.to_path_buf())
        } else {
            io_err(path)(e)
        }
    })
}

/// The text of the secret key file `path`, refusing a file that is not
/// a regular file, that group or others can access, or that is larger
/// than any key file. Shared by every kind of key file.
pub(crate) fn read_key_file(path: &Path) -> Result<zeroize::Zeroizing<String>, KeyFileError> {
    // Checked before opening too: opening a FIFO would block.
    if !std::fs::metadata(path).map_err(io_err(path))?.is_file() {
        return Err(KeyFileError::NotAFile(path.to_path_buf()));
    }
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    // Again on what was opened: the path may have changed in between.
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooPermissive {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_PEM_FILE_LEN {
        return Err(KeyFileError::TooLarge(path.to_path_buf()));
    }
    // Sized up front so that no reallocation leaves a copy behind.
    let mut text = zeroize::Zeroizing::new(String::with_capacity(meta.len() as usize + 1));
    Read::by_ref(&mut f)
        .take(MAX_PEM_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(|e| KeyFileError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(text)
}

/// Loads a PKCS#8 PEM Ed25519 key from `path`, refusing a file that group
/// or others can access.
pub fn load_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let text = read_key_file(path)?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text.trim()).map_err(|e| {
        KeyFileError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Ok(SecretKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_key_is_0600_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let key = SecretKey::from_seed(&[3u8; 32]);
        write_secret_key(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_secret_key(&path).unwrap();
        assert_eq!(loaded.public(), key.public());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn existing_key_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        write_secret_key(&path, &SecretKey::from_seed(&[1u8; 32])).unwrap();
        let err = write_secret_key(&path, &SecretKey::from_seed(&[2u8; 32])).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists(_)), "{err}");
        let kept = load_secret_key(&path).unwrap();
        assert_eq!(kept.public(), SecretKey::from_seed(&[1u8; 32]).public());
    }

    #[test]
    fn readable_by_others_is_refused_with_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        write_secret_key(&path, &SecretKey::from_seed(&[1u8; 32])).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_secret_key(&path).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, KeyFileError::TooPermissive { .. }), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("chmod 600"), "{text}");
        }
    }

    #[test]
    fn garbage_and_directories_are_refused_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(
            &path,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_secret_key(&path),
            Err(KeyFileError::Malformed { .. })
        ));
        // tempdir is 0700, so the regular-file check is what refuses it.
        assert!(matches!(
            load_secret_key(dir.path()),
            Err(KeyFileError::NotAFile(_))
        ));
    }
}
