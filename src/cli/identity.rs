//! `p2psip identity ...`

use super::files::{
    ensure_private_dir, generate_key, load_anchors, load_identity, load_identity_of_kind,
    print_json, read_certificate, read_small_file, write_public_file, IDENTITY_CERT, IDENTITY_KEY,
};
use super::{parse_difficulty, AnchorArgs, CliError, CliResult, JsonFlag};
use crate::binding::Binding;
use crate::identity::sealing::{write_encryption_key, EncryptionSecretKey};
use crate::identity::{
    build_self_signed, write_secret_key, GenerateProgress, IdKind, VerifyPolicy,
};
use crate::limits::{DEFAULT_ID_DIFFICULTY, MAX_BINDING_DAYS};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Validity of the self-signed certificate in an identity directory. It
/// is the identity's public half on disk (what `ca issue` and `identity
/// bind` read); the node builds a fresh TLS certificate at every start.
const IDENTITY_CERT_DAYS: i64 = 3650;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to create the identity in (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Create a user identity instead of a node identity.
    #[arg(long)]
    user: bool,
    /// Leading zero bits required of SHA-256(id) (admission puzzle).
    /// Default: 20 for nodes (the public-overlay default), 0 for users.
    #[arg(long, value_name = "N", value_parser = parse_difficulty)]
    difficulty: Option<u8>,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn new(a: NewArgs) -> CliResult {
    let kind = if a.user { IdKind::User } else { IdKind::Node };
    let difficulty = a.difficulty.unwrap_or(match kind {
        IdKind::Node => DEFAULT_ID_DIFFICULTY,
        IdKind::User => 0,
    });
    let key_path = a.dir.join(IDENTITY_KEY);
    let cert_path = a.dir.join(IDENTITY_CERT);
    for p in [&key_path, &cert_path] {
        if p.exists() {
            return Err(CliError(format!(
                "{}: already exists; refusing to overwrite an identity",
                p.display()
            )));
        }
    }
    ensure_private_dir(&a.dir)?;
    let key = generate_key(kind, difficulty);
    let now = crate::unix_now();
    let (_, pem) = build_self_signed(&key, kind, now - 3600, now + IDENTITY_CERT_DAYS * 86_400)?;
    write_secret_key(&key_path, &key)?;
    write_public_file(&cert_path, pem.as_bytes(), false)?;
    let encryption = match kind {
        IdKind::User => Some(make_encryption_key(&a.dir)?),
        IdKind::Node => None,
    };
    let id = hex::encode(kind.derive(&key.public()));
    if a.json.json {
        let mut out = json!({
            "id": id,
            "kind": kind.as_str(),
            "public_key": hex::encode(key.public().as_bytes()),
            "difficulty": kind.puzzle_bits(&key.public()),
            "key_file": key_path.display().to_string(),
            "certificate": cert_path.display().to_string(),
        });
        if let (Some((path, public)), Some(map)) = (&encryption, out.as_object_mut()) {
            map.insert(
                "encryption_key_file".into(),
                json!(path.display().to_string()),
            );
            map.insert("encryption_public_key".into(), json!(public));
        }
        print_json(&out);
    } else {
        println!("{id}");
    }
    Ok(())
}

/// Writes a fresh encryption key to `dir/encryption.key` (0600); returns
/// its path and its public key in hex.
fn make_encryption_key(dir: &std::path::Path) -> Result<(PathBuf, String), CliError> {
    let path = dir.join(super::userdata::ENCRYPTION_KEY);
    let key = EncryptionSecretKey::generate();
    write_encryption_key(&path, &key)?;
    Ok((path, hex::encode(key.public().as_bytes())))
}

#[derive(Debug, Args)]
pub struct AddEncryptionKeyArgs {
    /// The user's identity directory.
    #[arg(long, value_name = "DIR")]
    user_dir: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn add_encryption_key(a: AddEncryptionKeyArgs) -> CliResult {
    // Only a user identity has one.
    load_identity_of_kind(&a.user_dir, IdKind::User)?;
    let (path, public) = make_encryption_key(&a.user_dir)?;
    if a.json.json {
        print_json(&json!({
            "encryption_key_file": path.display().to_string(),
            "encryption_public_key": public,
        }));
    } else {
        println!("{public}");
    }
    Ok(())
}

/// The one line `identity new` (and every command that makes a node
/// key) shows on a terminal while it searches for an id: candidates
/// tried, the rate, the time spent and the expected time left, which is
/// an expectation (every candidate has the same chance, whatever was
/// tried before, so it does not count down). At most 80 columns for
/// difficulties up to 32.
pub(crate) fn progress_line(p: &GenerateProgress) -> String {
    let left = match p.expected_remaining() {
        Some(left) => format!("~{}", short_duration(left)),
        None => "unknown".to_owned(),
    };
    format!(
        "{} tried, {:.0}/s, {}; expected time left {left} (1 in 2^{} per try)",
        p.attempts,
        p.rate(),
        short_duration(p.elapsed),
        p.difficulty,
    )
}

/// A duration in whole seconds, minutes or hours, whichever reads best.
fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64().round();
    if secs < 100.0 {
        format!("{secs} s")
    } else if secs < 6000.0 {
        format!("{} min", (secs / 60.0).round())
    } else {
        format!("{} h", (secs / 3600.0).round())
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The identity directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn show(a: ShowArgs) -> CliResult {
    let id = load_identity(&a.dir)?;
    let c = &id.cert;
    let (idhex, pk) = (hex::encode(c.id), hex::encode(c.public_key.as_bytes()));
    if a.json.json {
        print_json(&json!({
            "id": idhex,
            "kind": c.kind.as_str(),
            "public_key": pk,
            "difficulty": c.puzzle_bits,
        }));
    } else {
        println!("id:          {idhex}");
        println!("kind:        {}", c.kind);
        println!("public key:  {pk}");
        println!("difficulty:  {} leading zero bits", c.puzzle_bits);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate (PEM) to verify.
    #[arg(value_name = "CERT.pem")]
    cert: PathBuf,
    /// Fail unless the certificate's id is this one (64 hex digits).
    #[arg(long, value_name = "HEX")]
    expect_id: Option<String>,
    /// Leading zero bits required of SHA-256(id). Default: 20 for node
    /// certificates, 0 for user certificates. 0 accepts any valid Ed25519
    /// self-signed certificate, whichever tool made it.
    #[arg(long, value_name = "N", value_parser = parse_difficulty)]
    difficulty: Option<u8>,
    #[command(flatten)]
    anchors: AnchorArgs,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn verify(a: VerifyArgs) -> CliResult {
    let outcome = verify_inner(&a);
    match (&outcome, a.json.json) {
        (Ok(v), true) => print_json(v),
        (Ok(v), false) => println!("{}", v["id"].as_str().unwrap_or_default()),
        (Err(e), true) => print_json(&json!({ "valid": false, "error": e.0 })),
        (Err(_), false) => {}
    }
    outcome.map(|_| ())
}

fn verify_inner(a: &VerifyArgs) -> Result<serde_json::Value, CliError> {
    let der = read_certificate(&a.cert)?;
    let mut policy = if a.anchors.anchors.is_empty() {
        VerifyPolicy::self_certifying(0)
    } else {
        VerifyPolicy::enrolled(load_anchors(&a.anchors.anchors)?, 0)
    };
    policy.difficulty = a.difficulty.unwrap_or(0);
    let v = policy.verify(&der, crate::unix_now())?;
    let required = a.difficulty.unwrap_or(match v.kind {
        IdKind::Node => DEFAULT_ID_DIFFICULTY,
        IdKind::User => 0,
    });
    if v.puzzle_bits < u32::from(required) {
        return Err(CliError(format!(
            "id fails the admission puzzle: {} leading zero bits, {required} required \
             (use --difficulty to set the overlay's value)",
            v.puzzle_bits
        )));
    }
    let id = hex::encode(v.id);
    if let Some(expected) = &a.expect_id {
        if !expected.eq_ignore_ascii_case(&id) {
            return Err(CliError(format!("id {id} is not the expected {expected}")));
        }
    }
    Ok(json!({
        "valid": true,
        "id": id,
        "kind": v.kind.as_str(),
        "public_key": hex::encode(v.public_key.as_bytes()),
        "difficulty": v.puzzle_bits,
        "enrolled": v.enrolled,
        "sip_names": v.sip_names,
        "not_after": v.not_after,
    }))
}

#[derive(Debug, Args)]
pub struct BindArgs {
    /// The user identity directory (its secret key signs).
    #[arg(long, value_name = "U")]
    user_dir: PathBuf,
    /// The node identity directory (only its public certificate is read).
    #[arg(long, value_name = "N")]
    node_dir: PathBuf,
    /// Days the binding is valid.
    #[arg(long, value_name = "D", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BINDING_DAYS)))]
    days: u32,
    /// Where to write the binding (PEM).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn bind(a: BindArgs) -> CliResult {
    let user = load_identity_of_kind(&a.user_dir, IdKind::User)?;
    let node_cert_path = a.node_dir.join(IDENTITY_CERT);
    let node = VerifyPolicy::self_certifying(0)
        .verify(&read_certificate(&node_cert_path)?, crate::unix_now())
        .map_err(|e| CliError(format!("{}: {e}", node_cert_path.display())))?;
    let node_id = node
        .node_id()
        .ok_or_else(|| CliError(format!("{}: not a node identity", node_cert_path.display())))?;
    let now = u64::try_from(crate::unix_now()).unwrap_or(0);
    let expires = now + u64::from(a.days) * 86_400;
    let binding = Binding::sign(&user.key, node_id, now, expires);
    write_public_file(&a.out, binding.to_pem().as_bytes(), true)?;
    let user_id = user.key.public().user_id();
    if a.json.json {
        print_json(&json!({
            "user_id": user_id.to_string(),
            "node_id": node_id.to_string(),
            "not_before": now,
            "expires": expires,
            "file": a.out.display().to_string(),
        }));
    } else {
        println!("user {user_id} vouches for node {node_id} until {expires} (unix time)");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct VerifyBindingArgs {
    /// The binding file (PEM).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn verify_binding(a: VerifyBindingArgs) -> CliResult {
    let text = read_small_file(&a.file)?;
    let outcome = Binding::from_pem(&text)
        .and_then(|b| b.verify(u64::try_from(crate::unix_now()).unwrap_or(0)))
        .map_err(|e| CliError(format!("{}: {e}", a.file.display())));
    match (&outcome, a.json.json) {
        (Ok(v), true) => print_json(&json!({
            "valid": true,
            "user_id": v.user_id.to_string(),
            "node_id": v.node_id.to_string(),
            "expires": v.expires,
        })),
        (Ok(v), false) => println!(
            "valid: user {} vouches for node {} until {} (unix time)",
            v.user_id, v.node_id, v.expires
        ),
        (Err(e), true) => print_json(&json!({ "valid": false, "error": e.0 })),
        (Err(_), false) => {}
    }
    outcome.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_progress_line_says_what_was_tried_and_what_is_expected() {
        let p = GenerateProgress {
            attempts: 2_500_000,
            expected: 1 << 20,
            difficulty: 20,
            elapsed: Duration::from_millis(25_400),
        };
        assert_eq!(
            progress_line(&p),
            "2500000 tried, 98425/s, 25 s; expected time left ~11 s (1 in 2^20 per try)"
        );
        let early = GenerateProgress {
            attempts: 0,
            elapsed: Duration::ZERO,
            ..p
        };
        assert!(progress_line(&early).contains("expected time left unknown"));
        // Fits a terminal line at the largest counts a search reaches.
        let long = GenerateProgress {
            attempts: 9_999_999_999,
            expected: 1 << 32,
            difficulty: 32,
            elapsed: Duration::from_secs(99_999),
        };
        assert_eq!(
            progress_line(&long),
            "9999999999 tried, 100001/s, 28 h; expected time left ~12 h (1 in 2^32 per try)"
        );
        assert!(progress_line(&long).len() <= 80);
    }
}
