//! `p2psip ca ...`: an overlay CA for closed (enrolled) overlays.
//!
//! Issuing reads only the subject's public certificate, whose
//! self-signature proves the subject holds the key, never its secret key:
//! an enrolment service can run it on requests.

use super::files::{
    ensure_private_dir, generate_key, print_json, read_certificate, write_public_file, CA_CERT,
    CA_KEY, IDENTITY_CERT,
};
use super::{CliError, CliResult, JsonFlag};
use crate::identity::{
    build_ca_certificate, issue_certificate, load_secret_key, write_secret_key, IdKind,
    VerifyPolicy,
};
use clap::{ArgGroup, Args};
use serde_json::json;
use std::path::PathBuf;

/// Longest accepted SIP URI in a user certificate.
const MAX_SIP_URI_LEN: usize = 256;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory for the CA (created 0700): ca.key (0600) and ca.pem.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The CA's name (its certificate's common name).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Days the CA certificate is valid.
    #[arg(long, value_name = "D", default_value_t = 3650,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn init(a: InitArgs) -> CliResult {
    if a.name.trim().is_empty() || a.name.len() > 64 {
        return Err(CliError("--name must be 1 to 64 bytes".into()));
    }
    let key_path = a.dir.join(CA_KEY);
    let cert_path = a.dir.join(CA_CERT);
    for p in [&key_path, &cert_path] {
        if p.exists() {
            return Err(CliError(format!(
                "{}: already exists; refusing to overwrite a CA",
                p.display()
            )));
        }
    }
    ensure_private_dir(&a.dir)?;
    let key = generate_key(IdKind::Node, 0);
    let now = crate::unix_now();
    let (_, pem) =
        build_ca_certificate(&key, &a.name, now - 3600, now + i64::from(a.days) * 86_400)?;
    write_secret_key(&key_path, &key)?;
    write_public_file(&cert_path, pem.as_bytes(), false)?;
    if a.json.json {
        print_json(&json!({
            "name": a.name,
            "certificate": cert_path.display().to_string(),
            "public_key": hex::encode(key.public().as_bytes()),
        }));
    } else {
        println!("{}", cert_path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").required(true).args(["node_dir", "user_dir"])))]
pub struct IssueArgs {
    /// The CA directory (ca.key, ca.pem).
    #[arg(long = "ca", value_name = "DIR")]
    ca_dir: PathBuf,
    /// Issue a node certificate for the identity in D (reads D/identity.pem only).
    #[arg(long, value_name = "D")]
    node_dir: Option<PathBuf>,
    /// Issue a user certificate for the identity in D (reads D/identity.pem only).
    #[arg(long, value_name = "D", requires = "name")]
    user_dir: Option<PathBuf>,
    /// The SIP address-of-record the user certificate binds, e.g. sip:alice@example.org.
    #[arg(long, value_name = "SIP-URI")]
    name: Option<String>,
    /// Days the certificate is valid.
    #[arg(long, value_name = "D", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "CERT.pem")]
    out: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

fn check_sip_uri(uri: &str) -> Result<(), CliError> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .ok_or_else(|| CliError(format!("{uri:?} is not a SIP URI (sip:user@domain)")))?;
    let ok = uri.len() <= MAX_SIP_URI_LEN
        && uri.is_ascii()
        && !uri
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        && rest
            .split_once('@')
            .is_some_and(|(u, d)| !u.is_empty() && !d.is_empty());
    if ok {
        Ok(())
    } else {
        Err(CliError(format!(
            "{uri:?} is not a SIP URI of the form sip:user@domain (ASCII, at most {MAX_SIP_URI_LEN} bytes)"
        )))
    }
}

pub fn issue(a: IssueArgs) -> CliResult {
    let (kind, subject_dir) = match (&a.node_dir, &a.user_dir) {
        (Some(d), None) => (IdKind::Node, d),
        (None, Some(d)) => (IdKind::User, d),
        _ => {
            return Err(CliError(
                "give exactly one of --node-dir and --user-dir".into(),
            ))
        }
    };
    if kind == IdKind::Node && a.name.is_some() {
        return Err(CliError(
            "--name goes with --user-dir; node certificates carry no SIP name".into(),
        ));
    }
    if let Some(name) = &a.name {
        check_sip_uri(name)?;
    }
    let ca_key = load_secret_key(&a.ca_dir.join(CA_KEY))?;
    let ca_der = read_certificate(&a.ca_dir.join(CA_CERT))?;
    let subject_path = subject_dir.join(IDENTITY_CERT);
    let now = crate::unix_now();
    // The subject's self-signature is its proof of possession of the key.
    let subject = VerifyPolicy::self_certifying(0)
        .verify(&read_certificate(&subject_path)?, now)
        .map_err(|e| CliError(format!("{}: {e}", subject_path.display())))?;
    if subject.kind != kind {
        return Err(CliError(format!(
            "{}: holds a {} identity, not a {kind} identity",
            subject_path.display(),
            subject.kind
        )));
    }
    let (_, pem) = issue_certificate(
        &ca_key,
        &ca_der,
        &subject.public_key,
        kind,
        a.name.as_deref(),
        now - 3600,
        now + i64::from(a.days) * 86_400,
    )?;
    write_public_file(&a.out, pem.as_bytes(), true)?;
    let id = hex::encode(subject.id);
    if a.json.json {
        print_json(&json!({
            "id": id,
            "kind": kind.as_str(),
            "sip_name": a.name,
            "certificate": a.out.display().to_string(),
        }));
    } else {
        println!("{id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_sip_uri;

    #[test]
    fn sip_uris() {
        assert!(check_sip_uri("sip:alice@example.org").is_ok());
        assert!(check_sip_uri("sips:bob@example.org").is_ok());
        for bad in [
            "alice@example.org",
            "sip:@x",
            "sip:alice@",
            "sip:a b@x",
            "sip:é@x",
            "sip:x",
        ] {
            assert!(check_sip_uri(bad).is_err(), "{bad}");
        }
    }
}
