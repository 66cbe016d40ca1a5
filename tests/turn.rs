//! TURN at a relay node, with independent clients: a real `p2psip node
//! run --relay --turn-listen 127.0.0.1:0` process, a user added with
//! `p2psip turn add-user`, and coturn's `turnutils_uclient` (against
//! its `turnutils_peer` echo peer) and aioice's TURN client
//! (tests/turn/aioice_client.py, with its own echo peer) speaking to it.
//!
//! Without coturn's tools or Python's aioice a test says so and skips,
//! unless `P2PSIP_REQUIRE_TURN_TOOLS` is set (as `.ci/run` does), when it
//! fails instead. `contrib/test-deps.sh` installs both.

mod common;

use common::cli::{run_err, run_ok, NodeProcess};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str =
    "run contrib/test-deps.sh (apt: coturn; pip: -r tests/turn/requirements.txt)";

/// Whether `tool` can run; else skip (or fail when required).
fn tool_or_skip(tool: &str, works: bool) -> bool {
    if works {
        return true;
    }
    if std::env::var_os("P2PSIP_REQUIRE_TURN_TOOLS").is_some() {
        panic!("P2PSIP_REQUIRE_TURN_TOOLS is set but {tool} is missing; {INSTALL_HINT}");
    }
    eprintln!("SKIPPED: {tool} is missing; {INSTALL_HINT}");
    false
}

fn have_coturn() -> bool {
    let found = |name: &str| {
        Command::new(name)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    tool_or_skip(
        "coturn (turnutils_uclient, turnutils_peer)",
        found("turnutils_uclient") && found("turnutils_peer"),
    )
}

/// The Python with aioice: the virtualenv of contrib/test-deps.sh when
/// the system Python refused packages, else `python3`.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

fn have_aioice() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import aioice"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    tool_or_skip("Python's aioice", ok)
}

/// A relay node serving TURN, with user `alice` (password `pass-alice`)
/// added through the CLI before it starts.
struct Relay {
    _root: tempfile::TempDir,
    _node: NodeProcess,
    turn: String,
}

/// The peer filter refuses loopback peers; the tests' peers are on
/// loopback, so the relay is told to allow them (as an operator would
/// allow a private network).
const ALLOW_LOOPBACK: &[&str] = &["--turn-allowed-peers", "127.0.0.0/8"];

impl Relay {
    fn start(with_user: bool) -> Self {
        Self::start_with(with_user, ALLOW_LOOPBACK)
    }

    /// A relay with `extra` flags for `node run`.
    fn start_with(with_user: bool, extra: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("node");
        let d = dir.to_str().unwrap();
        run_ok(&["identity", "new", "--dir", d, "--difficulty", "0"]);
        if with_user {
            let pw = root.path().join("pw");
            std::fs::write(&pw, "pass-alice\n").unwrap();
            run_ok(&[
                "turn",
                "add-user",
                "--dir",
                d,
                "--username",
                "alice",
                "--password-file",
                pw.to_str().unwrap(),
            ]);
        }
        let mut args = vec![
            "--dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--difficulty",
            "0",
            "--relay",
            "--turn-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut node = NodeProcess::start(&args);
        // "p2psip node <id> serving TURN on <addr>"
        let line = node.next_line();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.get(3..6),
            Some(&["serving", "TURN", "on"][..]),
            "{line}"
        );
        let turn = words[6].to_owned();
        Relay {
            _root: root,
            _node: node,
            turn,
        }
    }

    fn port(&self) -> &str {
        self.turn.rsplit(':').next().unwrap()
    }
}

/// A free UDP port on loopback (free a moment ago).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// coturn's echo peer on 127.0.0.1; killed on drop.
struct Peer {
    child: Child,
    port: u16,
}

impl Peer {
    fn start() -> Self {
        let port = free_udp_port();
        let child = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer starts");
        // It binds at once; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        Peer { child, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command, killing it after `limit`; its output.
fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// `turnutils_uclient` against the relay: `extra` flags, `clients`
/// clients of `messages` messages each; its stdout and stderr together.
fn uclient(
    relay: &Relay,
    peer: &Peer,
    password: &str,
    clients: u32,
    extra: &[&str],
) -> (Output, String) {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(extra).args([
        "-u",
        "alice",
        "-w",
        password,
        "-e",
        "127.0.0.1",
        "-r",
        &peer.port.to_string(),
        "-m",
        &clients.to_string(),
        "-p",
        relay.port(),
        "127.0.0.1",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(20));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The final "tot_send_msgs=N, tot_recv_msgs=M" of uclient's output.
fn totals(text: &str) -> (u64, u64) {
    let line = text
        .lines()
        .rfind(|l| l.contains("start_mclient: tot_send_msgs="))
        .unwrap_or_else(|| panic!("no totals in uclient's output:\n{text}"));
    let number = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number("tot_send_msgs="), number("tot_recv_msgs="))
}

#[test]
fn uclient_allocates_and_relays_over_channels() {
    if !have_coturn() {
        return;
    }
    let relay = Relay::start(true);
    let peer = Peer::start();
    // ChannelBind, then ChannelData both ways; -c: no RTCP allocation
    // (uclient_allocates_an_rtp_rtcp_pair_without_c has that).
    let (out, text) = uclient(
        &relay,
        &peer,
        "pass-alice",
        2,
        &["-c", "-n", "10", "-z", "5"],
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("error"), "{text}");
    assert_eq!(totals(&text), (20, 20), "{text}");
    assert!(text.contains("Total lost packets 0 "), "{text}");
}

#[test]
fn uclient_relays_with_send_and_data_indications() {
    if !have_coturn() {
        return;
    }
    let relay = Relay::start(true);
    let peer = Peer::start();
    // -s: CreatePermission, then Send indications out, Data indications back.
    let (out, text) = uclient(
        &relay,
        &peer,
        "pass-alice",
        1,
        &["-s", "-c", "-n", "10", "-z", "5"],
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("error"), "{text}");
    assert_eq!(totals(&text), (10, 10), "{text}");
    assert!(text.contains("Total lost packets 0 "), "{text}");
}

/// uclient's default mode (no -c): an RTP/RTCP pair. Its first Allocate
/// carries EVEN-PORT with the R bit and gets an even port and a
/// RESERVATION-TOKEN; the next Allocate carries the token and gets the
/// reserved port, the next one; then both relay to the echo peer
/// (RTP to its port, RTCP to the port after).
#[test]
fn uclient_allocates_an_rtp_rtcp_pair_without_c() {
    if !have_coturn() {
        return;
    }
    let relay = Relay::start(true);
    let peer = Peer::start();
    // -v prints each relayed address and each token ("rtv").
    let (out, text) = uclient(
        &relay,
        &peer,
        "pass-alice",
        1,
        &["-v", "-n", "10", "-z", "5"],
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("error"), "{text}");
    // One pair of 10 messages each way, every one echoed.
    assert_eq!(totals(&text), (20, 20), "{text}");
    assert!(text.contains("Total lost packets 0 "), "{text}");
    let relayed: Vec<u16> = text
        .lines()
        .filter_map(|l| l.split("Received relay addr: ").nth(1))
        .map(|a| a.trim().rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let tokens: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split("rtv=").nth(1))
        .map(|t| t.trim().parse().unwrap())
        .collect();
    // The reserving Allocate: an even port and a token; the claiming
    // one: the next port, no token.
    assert!(relayed.len() >= 2 && tokens.len() >= 2, "{text}");
    assert_eq!(relayed[0] % 2, 0, "{text}");
    assert_ne!(tokens[0], 0, "{text}");
    assert_eq!(relayed[1], relayed[0] + 1, "{text}");
    assert_eq!(tokens[1], 0, "{text}");
}

/// Without --turn-allowed-peers, a relay on loopback does not reach a
/// loopback peer: uclient's ChannelBind and CreatePermission get 403 and
/// nothing is relayed.
#[test]
fn a_loopback_peer_is_refused_403_without_the_allowance() {
    if !have_coturn() {
        return;
    }
    let relay = Relay::start_with(true, &[]);
    let peer = Peer::start();
    let (out, text) = uclient(&relay, &peer, "pass-alice", 1, &["-c", "-n", "3"]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("channel bind: error 403 (Forbidden"),
        "{text}"
    );
    assert!(!text.contains("tot_send_msgs=3"), "{text}");
    let (out, text) = uclient(&relay, &peer, "pass-alice", 1, &["-s", "-c", "-n", "3"]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("create permission error 403 (Forbidden"),
        "{text}"
    );
}

#[test]
fn uclient_with_a_wrong_password_gets_no_allocation() {
    if !have_coturn() {
        return;
    }
    let relay = Relay::start(true);
    let peer = Peer::start();
    // -v: uclient would print "Received relay addr" had it allocated.
    let (out, text) = uclient(&relay, &peer, "wrong", 1, &["-v", "-c", "-n", "3"]);
    assert!(text.contains("allocate response received"), "{text}");
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("Cannot complete Allocation"), "{text}");
    assert!(!text.contains("Received relay addr"), "{text}");
}

#[test]
fn uclient_beyond_the_per_user_quota_gets_486() {
    if !have_coturn() {
        return;
    }
    let relay = Relay::start(true);
    let peer = Peer::start();
    // Ten clients of one user, eight allocations allowed.
    let (_, text) = uclient(&relay, &peer, "pass-alice", 10, &["-c", "-n", "1"]);
    assert!(
        text.contains("error 486 (Allocation Quota Reached)"),
        "{text}"
    );
}

/// Runs tests/turn/aioice_client.py against the relay.
fn aioice(relay: &Relay, password: &str, extra: &[&str]) -> (bool, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/turn/aioice_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args([
        "--server",
        &relay.turn,
        "--username",
        "alice",
        "--password",
        password,
    ]);
    cmd.args(extra);
    let out = run_bounded(cmd, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "aioice client printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), result)
}

#[test]
fn aioice_allocates_and_its_echoes_come_back_through_the_relay() {
    if !have_aioice() {
        return;
    }
    let relay = Relay::start(true);
    let (ok, result) = aioice(&relay, "pass-alice", &["--count", "10"]);
    assert!(ok, "{result}");
    assert_eq!(result["echoed"], 10, "{result}");
    assert_eq!(result["all_match"], true, "{result}");
    // The peer heard the relayed address, on the relay's IP.
    let relayed = result["relayed"].as_str().unwrap();
    assert!(relayed.starts_with("127.0.0.1:"), "{result}");
    assert_ne!(relayed, relay.turn, "{result}");
    assert_eq!(result["peer_saw"], serde_json::json!([relayed]), "{result}");
}

#[test]
fn aioice_is_refused_401_with_a_wrong_password_or_without_users() {
    if !have_aioice() {
        return;
    }
    let relay = Relay::start(true);
    let (ok, result) = aioice(&relay, "pass-alicf", &["--expect-error", "401"]);
    assert!(ok, "{result}");
    assert_eq!(result["error_code"], 401, "{result}");
    // No users file: every Allocate is refused.
    let bare = Relay::start(false);
    let (ok, result) = aioice(&bare, "pass-alice", &["--expect-error", "401"]);
    assert!(ok, "{result}");
    drop(relay);
}

#[test]
fn turn_cli_refusals_and_the_users_file() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let d = dir.to_str().unwrap();
    run_ok(&["identity", "new", "--dir", d, "--difficulty", "0"]);
    let pw = root.path().join("pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    let p = pw.to_str().unwrap();
    let err = run_err(&[
        "turn",
        "add-user",
        "--dir",
        d,
        "--username",
        "a b",
        "--password-file",
        p,
    ]);
    assert!(err.contains("TURN username"), "{err}");
    let out = run_ok(&[
        "turn",
        "add-user",
        "--dir",
        d,
        "--username",
        "bob",
        "--password-file",
        p,
    ]);
    assert!(out.contains("realm p2psip"), "{out}");
    let file = dir.join("turn-users.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    // MD5("bob:p2psip:hunter2"), computed independently.
    assert!(
        text.contains("bob = \"") && text.contains(&md5_hex("bob:p2psip:hunter2")),
        "{text}"
    );
    let err = run_err(&[
        "turn",
        "add-user",
        "--dir",
        d,
        "--username",
        "bob",
        "--password-file",
        p,
    ]);
    assert!(err.contains("--force"), "{err}");
    // --turn-listen needs --relay, and a specific IP.
    let err = run_err(&[
        "node",
        "run",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--turn-listen",
        "127.0.0.1:0",
    ]);
    assert!(err.contains("--relay"), "{err}");
    let err = run_err(&[
        "node",
        "run",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--relay",
        "--turn-listen",
        "0.0.0.0:3478",
    ]);
    assert!(err.contains("specific IP"), "{err}");
}

#[test]
fn config_keys_relay_and_turn_listen() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("node.toml");
    let base = "dir = \"node\"\nlisten = \"127.0.0.1:4433\"\n";
    std::fs::write(&config, format!("{base}turn_listen = \"127.0.0.1:3478\"\n")).unwrap();
    let c = config.to_str().unwrap();
    let err = run_err(&["config", "check", c]);
    assert!(
        err.contains("(turn_listen)") && err.contains("relay"),
        "{err}"
    );
    std::fs::write(
        &config,
        format!("{base}relay = true\nturn_listen = \"127.0.0.1:3478\"\n"),
    )
    .unwrap();
    let settings = common::cli::json(&run_ok(&["config", "check", c, "--json"]));
    assert_eq!(settings["relay"], true);
    assert_eq!(settings["turn_listen"], "127.0.0.1:3478");
    std::fs::write(&config, base).unwrap();
    let settings = common::cli::json(&run_ok(&["config", "check", c, "--json"]));
    assert_eq!(settings["relay"], false);
    assert_eq!(settings["turn_listen"], serde_json::Value::Null);
}

#[test]
fn turn_peer_ranges_flags_and_config_keys() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let d = dir.to_str().unwrap();
    run_ok(&["identity", "new", "--dir", d, "--difficulty", "0"]);
    let run = |extra: &[&str]| {
        let mut args = vec!["node", "run", "--dir", d, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        run_err(&args)
    };
    // A bad range is a startup error naming the value.
    let turn = ["--relay", "--turn-listen", "127.0.0.1:0"];
    for (bad, says) in [
        ("10.0.0/8", "not an IP address"),
        ("10.1.2.3/8", "write 10.0.0.0/8"),
        ("10.0.0.0/40", "longer than an IPv4 address"),
    ] {
        let mut args = turn.to_vec();
        args.extend([
            "--turn-allowed-peers",
            "127.0.0.0/8",
            "--turn-allowed-peers",
            bad,
        ]);
        let err = run(&args);
        assert!(err.contains(bad) && err.contains(says), "{err}");
        let mut args = turn.to_vec();
        let list = format!("203.0.113.0/24,{bad}");
        args.extend(["--turn-denied-peers", &list]);
        let err = run(&args);
        assert!(err.contains(bad) && err.contains(says), "{err}");
    }
    // Without TURN, no peer ranges.
    let err = run(&["--turn-allowed-peers", "127.0.0.0/8"]);
    assert!(err.contains("--turn-listen"), "{err}");

    let config = root.path().join("node.toml");
    let c = config.to_str().unwrap();
    let base = "dir = \"node\"\nlisten = \"127.0.0.1:4433\"\nrelay = true\n\
                turn_listen = \"127.0.0.1:3478\"\n";
    std::fs::write(
        &config,
        format!(
            "{base}turn_allowed_peers = [\"127.0.0.0/8\", \"fd00::/8\"]\n\
             turn_denied_peers = [\"203.0.113.0/24\"]\n"
        ),
    )
    .unwrap();
    let settings = common::cli::json(&run_ok(&["config", "check", c, "--json"]));
    assert_eq!(
        settings["turn_allowed_peers"],
        serde_json::json!(["127.0.0.0/8", "fd00::/8"])
    );
    assert_eq!(
        settings["turn_denied_peers"],
        serde_json::json!(["203.0.113.0/24"])
    );
    std::fs::write(
        &config,
        format!("{base}turn_denied_peers = [\"203.0.113.0/24\", \"192.168.1.1/16\"]\n"),
    )
    .unwrap();
    let err = run_err(&["config", "check", c]);
    assert!(
        err.contains("(turn_denied_peers)") && err.contains("\"192.168.1.1/16\""),
        "{err}"
    );
    std::fs::write(
        &config,
        "dir = \"node\"\nlisten = \"127.0.0.1:4433\"\nturn_allowed_peers = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let err = run_err(&["config", "check", c]);
    assert!(
        err.contains("(turn_allowed_peers)") && err.contains("turn_listen"),
        "{err}"
    );
}

/// MD5 by an independent implementation: `md5sum`.
fn md5_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}
