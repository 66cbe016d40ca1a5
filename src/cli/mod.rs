//! The `p2psip` command line. The commands, flags and JSON fields here are
//! a contract that scripts rely on: change them only compatibly.

mod admin;
mod ca;
mod config;
mod demo;
mod files;
mod identity;
mod node;
mod reload;
mod sim;
mod sip;
mod turn;
mod userdata;
mod voicemail;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A failed command: one line, printed as `p2psip: error: ...`.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// The result of a command.
pub type CliResult = Result<(), CliError>;

/// p2psip: a hardened peer-to-peer SIP overlay node.
#[derive(Debug, Parser)]
#[command(name = "p2psip", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, show, verify and bind identities.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Run an overlay CA for closed (enrolled) overlays.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Ping a node over mutually authenticated QUIC.
    Ping(node::PingArgs),
    /// Simulate an overlay of many nodes (deterministic from --seed).
    Sim(sim::SimArgs),
    /// Register a SIP address-of-record at the running node (signed with --user-dir).
    Register(admin::RegisterArgs),
    /// Look up the registration of a SIP address-of-record in the overlay.
    Lookup(admin::LookupArgs),
    /// Run a lookup and show every request it made: whom, via whom, on
    /// which path, how fast, what came back, and why it ended.
    Trace(admin::TraceArgs),
    /// Store an owner-only value in the overlay (signed with --user-dir).
    Put(admin::PutArgs),
    /// Fetch an owner-only value from the overlay.
    Get(admin::GetArgs),
    /// Show the running node's identity, overlay and counters.
    Status(admin::StatusArgs),
    /// Show the running node's routing table.
    Routes(admin::RoutesArgs),
    /// Show the running node's circuits: those it relays (each relay
    /// knows only its neighbours on a circuit) and its own.
    Circuits(admin::CircuitsArgs),
    /// Send RTP-sized packets (160-byte payload, 50 a second) through
    /// circuits to the node where an AOR is registered, which echoes
    /// them; print sent, received, loss, latency p50/p99, jitter, hops.
    MediaTest(admin::MediaTestArgs),
    /// Show what the running node thinks of its peers: score, standing, evidence, bans.
    Reputation(admin::ReputationArgs),
    /// Make the running node read its configuration again (as SIGHUP):
    /// log level and limits change at once; what needs a restart is named.
    Reload(admin::ReloadArgs),
    /// Manage the SIP accounts a node serves to phones.
    #[command(subcommand)]
    Sip(SipCommand),
    /// Manage the TURN users a relay node serves (`node run --relay --turn-listen`).
    #[command(subcommand)]
    Turn(TurnCommand),
    /// Keep the user's address book in the overlay, sealed to the user:
    /// the names its phones dial.
    #[command(subcommand)]
    Contacts(userdata::ContactsCommand),
    /// Keep the user's settings in the overlay, sealed to the user: the
    /// node that serves its phones applies them.
    #[command(subcommand)]
    Settings(userdata::SettingsCommand),
    /// List, fetch and delete the user's voice mail, kept in the overlay
    /// sealed to the user.
    #[command(subcommand)]
    Voicemail(voicemail::VoicemailCommand),
    /// Check a `node run --config` file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// See a call cross the overlay: a few nodes on loopback, two users,
    /// two SIPp phones, every hop printed; cleans up after itself.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a node's configuration file; print the settings it gives.
    Check(config::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum SipCommand {
    /// Serve a user's phones at a node: store the digest secret of their password (0600).
    AddUser(sip::AddUserArgs),
    /// List the SIP accounts of a node and the phones registered (if it
    /// runs): contact, source address, transport, seconds left.
    Users(sip::UsersArgs),
    /// Remove a phone's binding (--contact) or every binding of an AOR
    /// at the running node, which withdraws the AOR from the overlay when
    /// no phone of it is left.
    Unbind(sip::UnbindArgs),
}

#[derive(Debug, Subcommand)]
enum TurnCommand {
    /// Serve a TURN user at a relay node: store MD5(username:realm:password) (0600).
    AddUser(turn::AddUserArgs),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create an identity: DIR/identity.key (0600) and DIR/identity.pem;
    /// for a user also DIR/encryption.key (0600).
    New(identity::NewArgs),
    /// Give an existing user identity its X25519 encryption key
    /// (DIR/encryption.key, 0600), which its private data is sealed to.
    AddEncryptionKey(identity::AddEncryptionKeyArgs),
    /// Show the identity in DIR.
    Show(identity::ShowArgs),
    /// Verify a certificate against the identity rules; print its id.
    Verify(identity::VerifyArgs),
    /// Sign a binding: the user in --user-dir vouches for the node in --node-dir.
    Bind(identity::BindArgs),
    /// Verify a binding file; print the user and node ids.
    VerifyBinding(identity::VerifyBindingArgs),
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create an overlay CA: DIR/ca.key (0600) and DIR/ca.pem (the trust anchor).
    Init(ca::InitArgs),
    /// Issue a node or user certificate from the subject's public certificate.
    Issue(ca::IssueArgs),
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Run a node until SIGINT or SIGTERM.
    Run(Box<node::RunArgs>),
}

/// `--json`, shared by the commands whose output machines read.
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct JsonFlag {
    /// Print JSON on stdout instead of text (one object; for `sim attack`,
    /// an array of one object per configuration).
    #[arg(long)]
    json: bool,
}

/// `--difficulty N`.
pub(crate) fn parse_difficulty(s: &str) -> Result<u8, String> {
    let d: u8 = s.parse().map_err(|_| {
        format!(
            "{s:?} is not a number of bits (0..={})",
            crate::limits::MAX_ID_DIFFICULTY
        )
    })?;
    if d > crate::limits::MAX_ID_DIFFICULTY {
        return Err(format!(
            "difficulty {d} is above the maximum of {} bits",
            crate::limits::MAX_ID_DIFFICULTY
        ));
    }
    Ok(d)
}

/// `--ca ANCHOR.pem`, repeatable.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct AnchorArgs {
    /// Trust anchor (overlay CA certificate, PEM); repeatable. With it,
    /// only certificates issued by an anchor are accepted (enrolled mode).
    #[arg(long = "ca", value_name = "ANCHOR.pem")]
    pub(crate) anchors: Vec<PathBuf>,
}

/// Text from a peer or a file made safe for a terminal: one line, with
/// control characters (escape sequences among them) shown escaped.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Runs the command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Identity(c) => match c {
            IdentityCommand::New(a) => identity::new(a),
            IdentityCommand::AddEncryptionKey(a) => identity::add_encryption_key(a),
            IdentityCommand::Show(a) => identity::show(a),
            IdentityCommand::Verify(a) => identity::verify(a),
            IdentityCommand::Bind(a) => identity::bind(a),
            IdentityCommand::VerifyBinding(a) => identity::verify_binding(a),
        },
        Command::Ca(c) => match c {
            CaCommand::Init(a) => ca::init(a),
            CaCommand::Issue(a) => ca::issue(a),
        },
        Command::Node(NodeCommand::Run(a)) => node::run(*a),
        Command::Ping(a) => node::ping(a),
        Command::Sim(a) => sim::sim(a),
        Command::Register(a) => admin::register(a),
        Command::Lookup(a) => admin::lookup(a),
        Command::Trace(a) => admin::trace(a),
        Command::Put(a) => admin::put(a),
        Command::Contacts(c) => userdata::contacts(c),
        Command::Settings(c) => userdata::settings(c),
        Command::Voicemail(c) => voicemail::voicemail(c),
        Command::Get(a) => admin::get(a),
        Command::Status(a) => admin::status(a),
        Command::Routes(a) => admin::routes(a),
        Command::Circuits(a) => admin::circuits(a),
        Command::MediaTest(a) => admin::media_test(a),
        Command::Reputation(a) => admin::reputation(a),
        Command::Reload(a) => admin::reload(a),
        Command::Sip(SipCommand::AddUser(a)) => sip::add_user(a),
        Command::Sip(SipCommand::Users(a)) => sip::users(a),
        Command::Sip(SipCommand::Unbind(a)) => sip::unbind(a),
        Command::Turn(TurnCommand::AddUser(a)) => turn::add_user(a),
        Command::Config(ConfigCommand::Check(a)) => config::check(a),
        Command::Demo(a) => demo::demo(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(CliError(reason)) => {
            eprintln!("p2psip: error: {}", printable(&reason));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn peer_text_cannot_drive_the_terminal() {
        let hostile = "bad\u{1b}[2J\nsecond line\u{7}";
        let shown = printable(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown:?}");
        assert_eq!(printable("plain é"), "plain é");
    }
}
