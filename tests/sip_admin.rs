//! The operator's view of the phones at a node, from outside: real
//! `node run` processes with `--sip-listen`, SIPp (Debian's
//! `sip-tester`; `contrib/test-deps.sh` installs it) registering over
//! UDP and TCP, and `p2psip sip users` / `p2psip sip unbind` as an
//! operator runs them.

mod common;

use common::cli::{json, run_err, run_ok, NodeProcess};
use serde_json::Value;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const OVERLAY: &str = "lab.example";

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

/// Polls `check` (bounded: at most `tries` times, 100 ms apart).
fn eventually(tries: u32, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A free local UDP port (for SIPp's own socket).
fn free_port() -> u16 {
    UdpSocket::bind(("127.0.0.1", 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Registers `aor_user` at `sip` with SIPp (tests/sipp/register.xml)
/// over `transport` ("u1" or "t1") from 127.0.0.1:`port`.
fn register(sip: &str, transport: &str, port: u16, auth: (&str, &str), aor_user: &str) {
    let cwd = tempfile::tempdir().expect("tempdir");
    let scenario = format!("{}/tests/sipp/register.xml", env!("CARGO_MANIFEST_DIR"));
    let port = port.to_string();
    let out = Command::new("sipp")
        .current_dir(cwd.path())
        .args([
            "-sf",
            &scenario,
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ])
        .args(["-m", "1", "-timeout", "20s", "-nostdin", "-trace_err"])
        .args(["-au", auth.0, "-ap", auth.1])
        .args(["-key", "domain", OVERLAY, "-key", "aor_user", aor_user])
        .args(["-key", "expires", "600"])
        .arg(sip)
        .output()
        .expect("sipp runs (Debian: apt install sip-tester; contrib/test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "SIPp could not register over {transport}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The phones `sip users --json` lists for the only account of `dir`,
/// checking the fields of each.
fn bindings(dir: &str) -> Vec<Value> {
    let users = json(&run_ok(&["sip", "users", "--dir", dir, "--json"]));
    let users = users.as_array().expect("a list of users");
    assert_eq!(users.len(), 1, "{users:?}");
    let user = &users[0];
    let mut fields: Vec<&str> = user
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["aor", "auth_user", "bindings", "registered_contacts"],
        "additive: the old fields stay"
    );
    let phones = user["bindings"].as_array().expect("bindings").clone();
    let contacts: Vec<&Value> = phones.iter().map(|b| &b["contact"]).collect();
    let registered: Vec<&Value> = user["registered_contacts"]
        .as_array()
        .expect("registered_contacts")
        .iter()
        .collect();
    assert_eq!(contacts, registered, "one binding per registered contact");
    for phone in &phones {
        let mut fields: Vec<&str> = phone
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["contact", "expires_in", "source", "transport"]);
    }
    phones
}

/// The node ids the overlay lists for `aor`, looked up through `dir`'s
/// node (none when the lookup finds nothing).
fn lookup_nodes(dir: &str, aor: &str) -> Vec<String> {
    let out = common::cli::p2psip()
        .args(["lookup", "--dir", dir, aor, "--json"])
        .output()
        .expect("p2psip runs");
    if !out.status.success() {
        return Vec::new();
    }
    json(&String::from_utf8_lossy(&out.stdout))["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["node_id"].as_str().expect("node_id").to_owned())
        .collect()
}

#[test]
fn sip_users_shows_where_phones_registered_and_sip_unbind_removes_them() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = |name: &str| p(root.path(), name);
    let overlay = dir("overlay.toml");
    std::fs::write(
        &overlay,
        format!("name = \"{OVERLAY}\"\nid_difficulty = 4\nk = 8\nreplication = 3\n"),
    )
    .expect("overlay file");
    let (a_dir, b_dir, bob_dir) = (dir("a"), dir("b"), dir("bob"));
    for node in [&a_dir, &b_dir] {
        run_ok(&["identity", "new", "--dir", node, "--difficulty", "4"]);
    }
    run_ok(&["identity", "new", "--user", "--dir", &bob_dir]);
    let pw = dir("bob.pw");
    std::fs::write(&pw, "bob-secret\n").expect("password file");
    let added = json(&run_ok(&[
        "sip",
        "add-user",
        "--dir",
        &b_dir,
        "--user-dir",
        &bob_dir,
        "--password-file",
        &pw,
        "--auth-user",
        "bob",
        "--overlay",
        &overlay,
        // SIPp reads only the first challenge and knows only MD5.
        "--digest",
        "MD5,SHA-256",
        "--json",
    ]));
    let aor = added["aor"].as_str().expect("aor").to_owned();
    let aor_user = aor
        .strip_prefix("sip:")
        .and_then(|a| a.strip_suffix(&format!("@{OVERLAY}")))
        .expect("a self-certifying AOR")
        .to_owned();

    // Without a running node: the account, no phone.
    let offline = bindings(&b_dir);
    assert!(offline.is_empty());
    // Without a running node, there is nothing to unbind from.
    let err = run_err(&["sip", "unbind", &aor, "--dir", &b_dir]);
    assert!(err.contains("no node is running"), "{err}");

    let a = NodeProcess::start(&[
        "--dir",
        &a_dir,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", a.id, a.addr);
    let log_path = dir("b.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let b = NodeProcess::start_with_log(
        &[
            "--dir",
            &b_dir,
            "--listen",
            "127.0.0.1:0",
            "--overlay",
            &overlay,
            "--bootstrap",
            &boot,
            "--sip-listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
        ],
        Stdio::from(log),
    );
    let sip = b.sip.clone().expect("node B serves SIP");

    // Two phones of bob: one over UDP, one over TCP.
    let (udp_port, tcp_port) = (free_port(), free_port());
    register(&sip, "u1", udp_port, ("bob", "bob-secret"), &aor_user);
    register(&sip, "t1", tcp_port, ("bob", "bob-secret"), &aor_user);

    let phones = bindings(&b_dir);
    assert_eq!(phones.len(), 2, "{phones:?}");
    let udp = phones
        .iter()
        .find(|b| b["transport"] == "udp")
        .expect("the UDP phone");
    let tcp = phones
        .iter()
        .find(|b| b["transport"] == "tcp")
        .expect("the TCP phone");
    assert_eq!(
        udp["contact"],
        format!("sip:{aor_user}@127.0.0.1:{udp_port};transport=UDP")
    );
    assert_eq!(udp["source"], format!("127.0.0.1:{udp_port}"));
    // Over TCP, SIPp's Contact names its port; the source is its
    // connection's (another port, the kernel's choice).
    assert_eq!(
        tcp["contact"],
        format!("sip:{aor_user}@127.0.0.1:{tcp_port};transport=TCP")
    );
    let tcp_source = tcp["source"].as_str().expect("source");
    assert!(tcp_source.starts_with("127.0.0.1:"), "{tcp_source}");
    for phone in [udp, tcp] {
        // Registered for 600 s a moment ago.
        let left = phone["expires_in"].as_u64().expect("expires_in");
        assert!((560..=600).contains(&left), "{phone}");
    }
    // The text for people says the same.
    let text = run_ok(&["sip", "users", "--dir", &b_dir]);
    assert!(text.contains("2 phone(s)"), "{text}");
    assert!(
        text.contains(&format!("from 127.0.0.1:{udp_port} over udp, expires in ")),
        "{text}"
    );
    // The overlay lists node B for bob.
    assert!(
        eventually(100, || lookup_nodes(&a_dir, &aor) == vec![b.id.clone()]),
        "the overlay does not list node B for bob"
    );

    // The UDP phone goes; the TCP phone stays, and so does B's entry.
    let udp_contact = udp["contact"].as_str().expect("contact").to_owned();
    let tcp_contact = tcp["contact"].as_str().expect("contact").to_owned();
    let removed = json(&run_ok(&[
        "sip",
        "unbind",
        &aor,
        "--dir",
        &b_dir,
        "--contact",
        &udp_contact,
        "--json",
    ]));
    assert_eq!(removed["aor"], aor.as_str());
    assert_eq!(removed["removed"], 1);
    assert_eq!(removed["remaining"], 1);
    let gone = removed["bindings"].as_array().expect("bindings");
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["contact"], udp_contact.as_str());
    assert_eq!(gone[0]["source"], format!("127.0.0.1:{udp_port}"));
    assert_eq!(gone[0]["transport"], "udp");
    let phones = bindings(&b_dir);
    assert_eq!(phones.len(), 1, "{phones:?}");
    assert_eq!(phones[0]["contact"], tcp_contact.as_str());

    // The same phone again: an error that names the AOR and the contact.
    let err = run_err(&[
        "sip",
        "unbind",
        &aor,
        "--dir",
        &b_dir,
        "--contact",
        &udp_contact,
    ]);
    assert!(err.contains(&aor), "{err}");
    assert!(err.contains(&udp_contact), "{err}");
    assert_eq!(
        bindings(&b_dir).len(),
        1,
        "a refused unbind changes nothing"
    );

    // Every phone of the AOR, for people: "removed: 1" and the phone.
    let text = run_ok(&["sip", "unbind", &aor, "--dir", &b_dir]);
    assert_eq!(text.lines().next(), Some("removed: 1"), "{text}");
    assert!(text.contains(&tcp_contact), "{text}");
    assert!(bindings(&b_dir).is_empty());
    let users = json(&run_ok(&["sip", "users", "--dir", &b_dir, "--json"]));
    assert_eq!(users[0]["registered_contacts"], serde_json::json!([]));

    // The overlay no longer lists node B for bob: withdrawn as when the
    // last binding lapses.
    assert!(
        eventually(100, || lookup_nodes(&a_dir, &aor).is_empty()),
        "node B is still listed for bob after his phones were unbound"
    );

    // A second unbind: nothing bound, an error naming the AOR.
    let err = run_err(&["sip", "unbind", &aor, "--dir", &b_dir]);
    assert!(err.contains(&aor), "{err}");
    assert!(err.contains("no phone is bound"), "{err}");
    // Not an AOR at all: named as such.
    let err = run_err(&["sip", "unbind", "not-a-uri", "--dir", &b_dir]);
    assert!(err.contains("not-a-uri"), "{err}");

    // The node logged each removal at info level, with AOR and contact.
    drop(b);
    let log = std::fs::read_to_string(&log_path).expect("node B's log");
    let removals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("removed by the operator"))
        .collect();
    assert_eq!(removals.len(), 2, "{log}");
    for (line, contact) in removals.iter().zip([&udp_contact, &tcp_contact]) {
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains(&aor), "{line}");
        assert!(line.contains(contact.as_str()), "{line}");
    }
}

#[test]
fn sip_unbind_needs_an_aor_and_a_node_with_a_sip_listener() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = p(root.path(), "node");
    let overlay = p(root.path(), "overlay.toml");
    std::fs::write(
        &overlay,
        format!("name = \"{OVERLAY}\"\nid_difficulty = 4\n"),
    )
    .expect("overlay file");
    run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
    // The AOR is required.
    let out = common::cli::p2psip()
        .args(["sip", "unbind", "--dir", &dir])
        .output()
        .expect("p2psip runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("<AOR>"));
    // A node without --sip-listen serves no phones: said so.
    let _node = NodeProcess::start(&[
        "--dir",
        &dir,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let err = run_err(&["sip", "unbind", "sip:bob@lab.example", "--dir", &dir]);
    assert!(err.contains("--sip-listen"), "{err}");
}

/// baresip (Debian `baresip-core` 1.0) with no sound card, registering
/// `aor` at `node_sip`; its output goes to `DIR/out`.
struct Baresip {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Baresip {
    fn start(node_sip: &str, aor: &str, user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        std::fs::write(
            dir.path().join("config"),
            format!(
                "sip_listen 127.0.0.1:{port}\n\
                 net_interface 127.0.0.1\n\
                 dns_server 127.0.0.1:53\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module_tmp account.so\n\
                 module_app menu.so\n"
            ),
        )
        .expect("baresip config");
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "<{aor}>;auth_user={user};auth_pass={password};\
                 outbound=\"sip:{node_sip}\";regint=600;audio_codecs=pcmu\n"
            ),
        )
        .expect("baresip accounts");
        let out = std::fs::File::create(dir.path().join("out")).expect("baresip output");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("output file"))
            .stderr(out)
            .spawn()
            .expect(
                "baresip runs (Debian: apt install baresip-core; contrib/test-deps.sh installs it)",
            );
        Self { child, dir }
    }

    /// What it printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("out")).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What docs/sip.md's phone recipe says of baresip: version 1.0 (libre
/// 1.1) registers only when the challenge offers MD5 alone; offered
/// SHA-256 beside MD5, in either order, it gives up.
#[test]
fn baresip_registers_only_with_an_md5_only_account() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = |name: &str| p(root.path(), name);
    let overlay = dir("overlay.toml");
    std::fs::write(
        &overlay,
        format!("name = \"{OVERLAY}\"\nid_difficulty = 4\nk = 8\nreplication = 3\n"),
    )
    .expect("overlay file");
    let (a_dir, b_dir) = (dir("a"), dir("b"));
    for node in [&a_dir, &b_dir] {
        run_ok(&["identity", "new", "--dir", node, "--difficulty", "4"]);
    }
    let pw = dir("pw");
    std::fs::write(&pw, "phone-secret\n").expect("password file");
    // One account per --digest setting: (auth user, --digest, AOR).
    let accounts: Vec<(&str, &str, String)> = [
        ("md5only", "MD5"),
        ("default", "SHA-256,MD5"),
        ("md5first", "MD5,SHA-256"),
    ]
    .into_iter()
    .map(|(user, digest)| {
        let user_dir = dir(user);
        run_ok(&["identity", "new", "--user", "--dir", &user_dir]);
        let added = json(&run_ok(&[
            "sip",
            "add-user",
            "--dir",
            &b_dir,
            "--user-dir",
            &user_dir,
            "--password-file",
            &pw,
            "--auth-user",
            user,
            "--overlay",
            &overlay,
            "--digest",
            digest,
            "--json",
        ]));
        (user, digest, added["aor"].as_str().expect("aor").to_owned())
    })
    .collect();
    let a = NodeProcess::start(&[
        "--dir",
        &a_dir,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", a.id, a.addr);
    let b = NodeProcess::start(&[
        "--dir",
        &b_dir,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &overlay,
        "--bootstrap",
        &boot,
        "--sip-listen",
        "127.0.0.1:0",
    ]);
    let sip = b.sip.clone().expect("node B serves SIP");
    let phones: Vec<Baresip> = accounts
        .iter()
        .map(|(user, _, aor)| Baresip::start(&sip, aor, user, "phone-secret"))
        .collect();
    let bound = |user: &str| {
        let users = json(&run_ok(&["sip", "users", "--dir", &b_dir, "--json"]));
        users
            .as_array()
            .expect("a list of users")
            .iter()
            .find(|u| u["auth_user"] == user)
            .map_or(0, |u| u["bindings"].as_array().map_or(0, Vec::len))
    };
    // The MD5-only account registers; the others' phones give up (libre
    // reports ENOSYS for the challenge it cannot answer).
    let gave_up = |phone: &Baresip| {
        phone
            .output()
            .contains("Register: Function not implemented")
    };
    assert!(
        eventually(150, || bound("md5only") == 1
            && phones.iter().skip(1).all(gave_up)),
        "md5only bound: {}; baresip said:\n{}",
        bound("md5only"),
        phones
            .iter()
            .map(Baresip::output)
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    for (user, digest, _) in accounts.iter().skip(1) {
        assert_eq!(bound(user), 0, "baresip registered with --digest {digest}");
    }
}
