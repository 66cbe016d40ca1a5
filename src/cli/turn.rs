//! `p2psip turn add-user`: the TURN users a relay node serves
//! (`NODE/turn-users.toml`, see [`crate::net::turn`]).

use super::files::load_identity_of_kind;
use super::sip::{overlay_name, read_password};
use super::{CliError, CliResult, JsonFlag};
use crate::identity::IdKind;
use crate::turn::credentials::{check_username, LongTermKey};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// The relay node's identity directory (the key goes to
    /// DIR/turn-users.toml, 0600).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The TURN username (1 to 64 ASCII letters, digits, '-', '_', '.',
    /// '@').
    #[arg(long, value_name = "NAME")]
    username: String,
    /// A file whose first line is the password (only
    /// MD5(username:realm:password) is stored).
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// The overlay's parameters (as for `node run`): its name is the
    /// TURN realm [default: overlay "p2psip"].
    #[arg(long, value_name = "FILE")]
    overlay: Option<PathBuf>,
    /// Replace an existing user of the same name.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: JsonFlag,
}

pub fn add_user(a: AddUserArgs) -> CliResult {
    check_username(&a.username).map_err(CliError)?;
    // The directory must be a node's.
    load_identity_of_kind(&a.dir, IdKind::Node)?;
    let realm = overlay_name(a.overlay.as_deref())?;
    let password = read_password(&a.password_file)?;
    let key = LongTermKey::derive(&a.username, &realm, &password);
    let file =
        crate::net::turn::add_user(&a.dir, &realm, &a.username, &key, a.force).map_err(CliError)?;
    if a.json.json {
        println!(
            "{}",
            json!({"username": a.username, "realm": realm, "file": file.display().to_string()})
        );
    } else {
        println!(
            "TURN user {} added for realm {realm} ({}); a running relay serves it within a second",
            a.username,
            file.display()
        );
    }
    Ok(())
}
