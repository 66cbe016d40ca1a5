//! The overlay as an operator runs it: `node run` processes sharing an
//! overlay file, driven through their admin sockets by `register`,
//! `lookup`, `put`, `get`, `status` and `routes`.

mod common;

use common::cli::{json, run_err, run_ok, NodeProcess};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

/// An overlay file for `nodes` processes on one host: low difficulty so
/// identities are quick, and distinct 127.N.0.1 addresses per node keep
/// the default prefix limits meaningful.
fn write_overlay(dir: &Path) -> String {
    let path = p(dir, "overlay.toml");
    std::fs::write(
        &path,
        "name = \"lab.example\"\nid_difficulty = 4\nk = 8\nreplication = 4\n",
    )
    .expect("overlay file");
    path
}

fn new_node_dir(root: &Path, name: &str) -> String {
    let dir = p(root, name);
    run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
    dir
}

fn user_id(dir: &str) -> String {
    let shown = json(&run_ok(&["identity", "show", "--dir", dir, "--json"]));
    shown["id"].as_str().expect("id").to_owned()
}

/// Polls `check` (bounded: at most `tries` times, 200 ms apart).
fn eventually(tries: u32, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Asserts that a JSON object has exactly the fields docs/admin.md lists.
fn assert_fields(value: &serde_json::Value, documented: &[&str]) {
    let mut got: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = documented.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{value}");
}

fn status(dir: &str) -> serde_json::Value {
    json(&run_ok(&["status", "--dir", dir, "--json"]))
}

#[test]
fn operator_registers_looks_up_puts_and_gets_through_the_admin_socket() {
    let root = tempfile::tempdir().unwrap();
    let overlay = write_overlay(root.path());
    let (a, b, c) = (
        new_node_dir(root.path(), "a"),
        new_node_dir(root.path(), "b"),
        new_node_dir(root.path(), "c"),
    );
    let alice = p(root.path(), "alice");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &alice,
        "--user",
        "--difficulty",
        "0",
    ]);
    let alice_id = user_id(&alice);

    // Before any node runs, every admin command says so and how to fix it.
    let err = run_err(&["status", "--dir", &a]);
    assert!(
        err.contains("no node is running in") && err.contains("node run"),
        "{err}"
    );

    let na = NodeProcess::start(&[
        "--dir",
        &a,
        "--listen",
        "127.41.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", na.id, na.addr);
    let nb = NodeProcess::start(&[
        "--dir",
        &b,
        "--listen",
        "127.42.0.1:0",
        "--overlay",
        &overlay,
        "--bootstrap",
        &boot,
    ]);
    let nc = NodeProcess::start(&[
        "--dir",
        &c,
        "--listen",
        "127.43.0.1:0",
        "--overlay",
        &overlay,
        "--bootstrap",
        &boot,
    ]);

    // The admin socket is owner-only.
    let sock = Path::new(&a).join("admin.sock");
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A second node in the same directory is refused, naming why.
    let out = common::cli::p2psip()
        .args([
            "node",
            "run",
            "--dir",
            &a,
            "--listen",
            "127.41.0.2:0",
            "--overlay",
            &overlay,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a node is already running in this directory"),
        "{err}"
    );

    let s = status(&a);
    assert_eq!(s["id"], na.id.as_str());
    assert_eq!(s["listen"], na.addr.as_str());
    assert_eq!(s["overlay"], "lab.example");
    assert_eq!(s["mode"], "self-certifying");
    for field in ["peers", "table_size", "records"] {
        assert!(s[field].is_u64(), "{field} in {s}");
    }
    assert_fields(
        &s,
        &[
            "id",
            "listen",
            "overlay",
            "mode",
            "id_difficulty",
            "peers",
            "table_size",
            "records",
            "uptime_secs",
            "ready",
            "joined_at",
        ],
    );
    assert!(
        eventually(50, || status(&a)["table_size"].as_u64() == Some(2)
            && status(&c)["table_size"].as_u64() == Some(2)),
        "all three nodes know each other: {} / {}",
        status(&a),
        status(&c)
    );
    // c joined through a: it dialed a (outbound) and b reached it; every
    // node counts each peer it holds a connection with, either way.
    assert!(
        eventually(50, || status(&c)["peers"].as_u64() >= Some(1)),
        "{}",
        status(&c)
    );
    let routes = json(&run_ok(&["routes", "--dir", &c, "--json"]));
    let ids: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&na.id.as_str()) && ids.contains(&nb.id.as_str()),
        "{routes}"
    );
    assert_fields(&routes, &["overlay", "table_size", "routes"]);
    assert_fields(&routes["routes"][0], &["bucket", "node_id", "addr"]);
    assert!(run_ok(&["routes", "--dir", &c]).contains(&na.id));

    // Register alice's self-certifying AOR at node b; look it up from a and c.
    let aor = format!("sip:{alice_id}@lab.example");
    let reg = json(&run_ok(&[
        "register",
        &aor,
        "--user-dir",
        &alice,
        "--dir",
        &b,
        "--expires",
        "600",
        "--contact",
        "sip:alice@127.42.0.1:5060",
        "--json",
    ]));
    assert_fields(
        &reg,
        &["aor", "node_id", "expires", "seq", "devices", "acks"],
    );
    assert_eq!(reg["aor"], aor.as_str());
    assert_eq!(reg["node_id"], nb.id.as_str());
    assert_eq!(reg["acks"], 3, "stored on all three nodes: {reg}");
    for dir in [&a, &c] {
        let found = json(&run_ok(&["lookup", &aor, "--dir", dir, "--json"]));
        assert_fields(&found, &["aor", "owner", "seq", "entries"]);
        assert_fields(&found["entries"][0], &["node_id", "contacts", "expires"]);
        assert_eq!(found["aor"], aor.as_str());
        let entries = found["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{found}");
        assert_eq!(entries[0]["node_id"], nb.id.as_str());
        assert_eq!(entries[0]["contacts"][0], "sip:alice@127.42.0.1:5060");
        let expires = entries[0]["expires"].as_u64().unwrap();
        let now = p2psip::unix_now() as u64;
        assert!((now + 500..=now + 600).contains(&expires), "{expires}");
    }
    // A second device of alice registers too: both are listed.
    let reg_c = json(&run_ok(&[
        "register",
        &aor,
        "--user-dir",
        &alice,
        "--dir",
        &c,
        "--json",
    ]));
    assert!(reg_c["seq"].as_u64() > reg["seq"].as_u64());
    let found = json(&run_ok(&["lookup", &aor, "--dir", &a, "--json"]));
    let mut nodes: Vec<&str> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node_id"].as_str().unwrap())
        .collect();
    nodes.sort_unstable();
    let mut expected = vec![nb.id.as_str(), nc.id.as_str()];
    expected.sort_unstable();
    assert_eq!(nodes, expected, "{found}");
    assert!(run_ok(&["lookup", &aor, "--dir", &a]).contains(&nc.id));

    // Only the owner can write an AOR: alice cannot register bob's.
    let bob = p(root.path(), "bob");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &bob,
        "--user",
        "--difficulty",
        "0",
    ]);
    let bob_aor = format!("sip:{}@lab.example", user_id(&bob));
    let err = run_err(&["register", &bob_aor, "--user-dir", &alice, "--dir", &b]);
    assert!(err.contains("owns only the AOR"), "{err}");
    let err = run_err(&["lookup", &bob_aor, "--dir", &a]);
    assert!(err.contains("no registration"), "{err}");

    // Owner-only values: put at one node, get from another; a newer put wins.
    let put = json(&run_ok(&[
        "put",
        "greeting",
        "hello, world",
        "--user-dir",
        &alice,
        "--dir",
        &a,
        "--json",
    ]));
    assert_fields(&put, &["owner", "name", "seq", "expires", "acks"]);
    assert_eq!(put["acks"], 3);
    assert_eq!(
        run_ok(&["get", "greeting", "--owner", &alice_id, "--dir", &c]).trim(),
        "hello, world"
    );
    run_ok(&[
        "put",
        "greeting",
        "second",
        "--user-dir",
        &alice,
        "--dir",
        &c,
    ]);
    let got = json(&run_ok(&[
        "get", "greeting", "--owner", &alice_id, "--dir", &b, "--json",
    ]));
    assert_fields(
        &got,
        &["owner", "name", "value", "value_hex", "seq", "expires"],
    );
    assert_eq!(got["value"], "second");
    assert_eq!(got["owner"], alice_id.as_str());
    let err = run_err(&["get", "greeting", "--owner", &user_id(&bob), "--dir", &b]);
    assert!(err.contains("no value"), "{err}");
    let err = run_err(&["get", "greeting", "--owner", "nothex", "--dir", &b]);
    assert!(err.contains("owner"), "{err}");
    assert_eq!(status(&b)["records"], 2, "one registration and one value");

    drop((na, nb, nc));
}

#[test]
fn readiness_is_printed_reported_and_awaited() {
    let root = tempfile::tempdir().unwrap();
    let overlay = write_overlay(root.path());
    let (a, b, c) = (
        new_node_dir(root.path(), "a"),
        new_node_dir(root.path(), "b"),
        new_node_dir(root.path(), "c"),
    );
    // Nothing runs yet: --wait-ready gives up after its timeout and says
    // what it last heard.
    let err = run_err(&["status", "--dir", &a, "--wait-ready", "--timeout", "1"]);
    assert!(
        err.contains("is not ready after 1 s") && err.contains("no node is running in"),
        "{err}"
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The first node has nobody to join: it starts a new overlay.
    let mut na = NodeProcess::start(&[
        "--dir",
        &a,
        "--listen",
        "127.43.0.1:0",
        "--overlay",
        &overlay,
    ]);
    assert_eq!(
        na.next_line(),
        format!("p2psip node {} started a new overlay", na.id)
    );
    let s = json(&run_ok(&["status", "--dir", &a, "--wait-ready", "--json"]));
    assert_eq!(s["ready"], true, "{s}");
    let joined_at = s["joined_at"].as_u64().expect("joined_at once ready");
    assert!(joined_at >= before && joined_at <= before + 60, "{s}");
    // The second joins through it and says with how many contacts.
    let mut nb = NodeProcess::start(&[
        "--dir",
        &b,
        "--listen",
        "127.44.0.1:0",
        "--overlay",
        &overlay,
        "--bootstrap",
        &format!("{}@{}", na.id, na.addr),
    ]);
    let line = nb.next_line();
    let prefix = format!("p2psip node {} joined lab.example with ", nb.id);
    let contacts: u32 = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" contacts"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a readiness line: {line:?}"));
    assert!(contacts >= 1, "{line}");
    let human = run_ok(&["status", "--dir", &b, "--wait-ready", "--timeout", "5"]);
    assert!(human.contains("ready            yes"), "{human}");
    // A node whose bootstrap node is not there is not ready, and
    // --wait-ready says why when it gives up.
    let nobody = std::net::UdpSocket::bind("127.45.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _nc = NodeProcess::start(&[
        "--dir",
        &c,
        "--listen",
        "127.45.0.1:0",
        "--overlay",
        &overlay,
        "--bootstrap",
        &format!("{}@{nobody}", na.id),
    ]);
    let s = status(&c);
    assert_eq!(
        (s["ready"].clone(), s["joined_at"].clone()),
        (false.into(), serde_json::Value::Null),
        "{s}"
    );
    let err = run_err(&["status", "--dir", &c, "--wait-ready", "--timeout", "1"]);
    assert!(
        err.contains("is not ready after 1 s") && err.contains("not ready: its join"),
        "{err}"
    );
}

#[test]
fn the_log_has_no_colour_codes_off_a_terminal_and_is_json_on_request() {
    let root = tempfile::tempdir().unwrap();
    let overlay = write_overlay(root.path());
    let a = new_node_dir(root.path(), "a");
    for format in ["text", "json"] {
        let path = root.path().join(format!("{format}.log"));
        let file = std::fs::File::create(&path).unwrap();
        let mut node = NodeProcess::start_with_log(
            &[
                "--dir",
                &a,
                "--listen",
                "127.46.0.1:0",
                "--overlay",
                &overlay,
                "--log-format",
                format,
            ],
            file.into(),
        );
        node.next_line(); // ready: it has logged its start
        node.terminate();
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(!log.contains('\x1b'), "colour codes in a file: {log:?}");
        assert!(log.contains("node listening"), "{log}");
        if format == "json" {
            for line in log.lines() {
                let entry = json(line);
                for field in ["timestamp", "level", "target", "fields"] {
                    assert!(entry.get(field).is_some(), "no {field}: {line}");
                }
            }
            assert!(log
                .lines()
                .any(|l| json(l)["fields"]["message"] == "node listening"));
        }
    }
    // A format it does not know: refused before anything starts.
    let out = common::cli::p2psip()
        .args(["node", "run", "--dir", &a, "--listen", "127.46.0.1:0"])
        .args(["--log-format", "xml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--log-format") && err.contains("'xml'"),
        "{err}"
    );
}

/// The keys of a `node run --config` file (docs/operations.md).
const CONFIG_KEYS: [&str; 26] = [
    "dir",
    "listen",
    "difficulty",
    "overlay",
    "ca",
    "cert",
    "max_connections",
    "max_connections_per_ip",
    "max_connections_per_net",
    "max_connections_per_wide_net",
    "max_streams",
    "data",
    "bootstrap",
    "idle_timeout",
    "ban_secs",
    "sip_listen",
    "relay",
    "turn_listen",
    "turn_allowed_peers",
    "turn_denied_peers",
    "anonymous_calls",
    "circuit_hops",
    "metrics_listen",
    "discover",
    "log_format",
    "log_level",
];

#[test]
fn config_check_prints_the_effective_settings_and_names_what_is_wrong() {
    // contrib/node.toml lists every key, each at its default.
    let contrib = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/node.toml");
    let text = std::fs::read_to_string(contrib).unwrap();
    for key in CONFIG_KEYS {
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "contrib/node.toml does not list {key}"
        );
    }
    let settings = json(&run_ok(&["config", "check", contrib, "--json"]));
    assert_fields(&settings, &CONFIG_KEYS);
    assert_eq!(settings["max_connections"], 1024);
    assert_eq!(settings["max_streams"], 16);
    assert_eq!(settings["idle_timeout"], 30);
    assert_eq!(settings["ban_secs"], 600);
    assert_eq!(settings["log_format"], "text");
    assert_eq!(settings["discover"], "off");
    assert_eq!(settings["sip_listen"], serde_json::Value::Null);
    // The text form is a configuration file itself, giving the same.
    let root = tempfile::tempdir().unwrap();
    let again = root.path().join("again.toml");
    std::fs::write(&again, run_ok(&["config", "check", contrib])).unwrap();
    assert_eq!(
        json(&run_ok(&[
            "config",
            "check",
            again.to_str().unwrap(),
            "--json"
        ])),
        settings
    );

    // Relative paths are the file's; what is wrong is named.
    let check = |name: &str, body: &str| {
        let path = root.path().join(name);
        std::fs::write(
            &path,
            format!("dir = \"node\"\nlisten = \"127.0.0.1:4433\"\n{body}"),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good = check("good.toml", "overlay = \"overlay.toml\"\nbootstrap = []\n");
    let s = json(&run_ok(&["config", "check", &good, "--json"]));
    assert_eq!(s["dir"], root.path().join("node").to_str().unwrap());
    assert_eq!(
        s["overlay"],
        root.path().join("overlay.toml").to_str().unwrap()
    );
    for (body, named) in [
        (
            "max_conections = 3\n",
            "line 3: unknown field `max_conections`",
        ),
        (
            "idle_timeout = 0\n",
            "(idle_timeout): 0 is out of range (1 to 3600)",
        ),
        ("ban_secs = 100000\n", "(ban_secs): 100000 is out of range"),
        (
            "max_connections_per_ip = 0\n",
            "(max_connections_per_ip): 0 is out of range",
        ),
        (
            "difficulty = 99\n",
            "(difficulty): difficulty 99 is above the maximum",
        ),
        (
            "bootstrap = [\"nobody\"]\n",
            "(bootstrap): \"nobody\": expected NODE_ID@ADDR",
        ),
        ("sip_listen = 5060\n", "line 3: invalid type"),
        ("log_format = \"xml\"\n", "line 3: unknown variant `xml`"),
        ("discover = \"dns\"\n", "line 3: unknown variant `dns`"),
        (
            "log_level = \"p2psip=loudest\"\n",
            "(log_level): \"p2psip=loudest\": error parsing level filter",
        ),
    ] {
        let err = run_err(&["config", "check", &check("bad.toml", body)]);
        assert!(err.contains(named), "{body}: {err}");
    }
    let bare = root.path().join("bare.toml");
    std::fs::write(&bare, "log_format = \"json\"\n").unwrap();
    let err = run_err(&["config", "check", bare.to_str().unwrap()]);
    assert!(
        err.contains("no node directory") && err.contains("`dir`"),
        "{err}"
    );
}

#[test]
fn node_run_reads_its_config_file_and_flags_win() {
    let root = tempfile::tempdir().unwrap();
    write_overlay(root.path());
    new_node_dir(root.path(), "a");
    let config = root.path().join("node.toml");
    std::fs::write(
        &config,
        "dir = \"a\"\nlisten = \"127.47.0.1:0\"\noverlay = \"overlay.toml\"\n\
         sip_listen = \"127.47.0.1:0\"\n",
    )
    .unwrap();
    // The file gives the directory, the overlay and SIP; the flag's
    // address wins over the file's.
    let mut node = NodeProcess::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.48.0.1:0",
    ]);
    assert!(node.addr.starts_with("127.48.0.1:"), "{}", node.addr);
    let sip_line = node.next_line();
    assert!(
        sip_line.contains("serving SIP on 127.47.0.1:"),
        "{sip_line}"
    );
    assert!(node.next_line().ends_with("started a new overlay"));
    let s = status(&p(root.path(), "a"));
    assert_eq!(s["overlay"], "lab.example", "{s}");
}

#[test]
fn sighup_and_reload_apply_the_log_level_and_limits_and_name_what_needs_a_restart() {
    let root = tempfile::tempdir().unwrap();
    write_overlay(root.path());
    let dir = new_node_dir(root.path(), "a");
    let (c1, c2) = (
        new_node_dir(root.path(), "c1"),
        new_node_dir(root.path(), "c2"),
    );
    let config = root.path().join("node.toml");
    let write = |listen: &str, rest: &str| {
        std::fs::write(
            &config,
            format!("dir = \"a\"\nlisten = \"{listen}\"\noverlay = \"overlay.toml\"\n{rest}"),
        )
        .unwrap()
    };
    write(
        "127.49.0.1:0",
        "log_level = \"warn\"\nmetrics_listen = \"127.49.0.1:0\"\n",
    );
    let log_path = root.path().join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = NodeProcess::start_with_log(
        &["--config", config.to_str().unwrap()],
        std::process::Stdio::from(log),
    );
    let metrics = node.next_line().rsplit(' ').next().unwrap().to_owned();
    assert!(node.next_line().ends_with("started a new overlay"));
    let logged = || std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !logged().contains("INFO"),
        "warn and above only: {}",
        logged()
    );
    let ping = |client: &str, count: &str| {
        common::cli::p2psip()
            .args(["ping", &node.addr, "--dir", client, "--difficulty", "4"])
            .args(["--count", count, "--interval-ms", "400"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // SIGHUP: the new log level and a cap of one connection, at once.
    write(
        "127.49.0.1:0",
        "log_level = \"info\"\nmax_connections = 1\nmetrics_listen = \"127.49.0.1:0\"\n",
    );
    let pid = node.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    assert!(
        eventually(50, || logged().contains("configuration reloaded")),
        "{}",
        logged()
    );
    let line = logged();
    let line = line
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        line.contains("INFO")
            && line.contains(r#"applied=["max_connections", "log_level"]"#)
            && line.contains("restart_needed=[]"),
        "{line}"
    );
    // One client holds the only connection; a second is refused.
    let mut holder = ping(&c1, "5");
    // (Its stdout stays open to the end: a closed pipe would fail it.)
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.starts_with("pong from"), "{first}");
    let refused = ping(&c2, "1").wait_with_output().unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("refused"),
        "a second connection got in: {why}"
    );
    let (_, _, exposition) = http(&metrics, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(
        sample(
            &exposition,
            "p2psip_connections_refused_total{limit=\"total\"}"
        ),
        Some(1.0),
        "{exposition}"
    );
    assert!(
        holder.wait().unwrap().success(),
        "the first kept its connection"
    );

    // `p2psip reload`: the cap lifted; a new address waits for a restart.
    write(
        "127.49.0.2:0",
        "log_level = \"info\"\nmetrics_listen = \"127.49.0.1:0\"\n",
    );
    let r = json(&run_ok(&["reload", "--dir", &dir, "--json"]));
    assert_fields(&r, &["config", "applied", "restart_needed"]);
    assert_eq!(r["applied"], serde_json::json!(["max_connections"]), "{r}");
    assert_eq!(r["restart_needed"], serde_json::json!(["listen"]), "{r}");
    assert_eq!(r["config"], config.to_str().unwrap());
    let mut holder = ping(&c1, "3");
    std::thread::sleep(Duration::from_millis(300));
    let second = ping(&c2, "1").wait_with_output().unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(holder.wait().unwrap().success());
    assert!(run_ok(&["reload", "--dir", &dir]).contains("restart needed   listen"));

    // A file that does not check changes nothing, and says why.
    write("127.49.0.1:0", "max_streams = 0\n");
    let err = run_err(&["reload", "--dir", &dir]);
    assert!(
        err.contains("reload refused, nothing changed")
            && err.contains("(max_streams): 0 is out of range"),
        "{err}"
    );
    assert_eq!(status(&dir)["ready"], true);
    assert!(node.terminate().success());
}

/// Sends `request` to `addr` over plain TCP; returns the response's
/// status line, headers and body.
fn http(addr: &str, request: &[u8]) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// The value of the sample `series` (name and labels as written).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_are_scraped_validated_by_promtool_and_move() {
    let root = tempfile::tempdir().unwrap();
    let overlay = write_overlay(root.path());
    let (a, b) = (
        new_node_dir(root.path(), "a"),
        new_node_dir(root.path(), "b"),
    );
    let mut na = NodeProcess::start(&[
        "--dir",
        &a,
        "--listen",
        "127.49.0.1:0",
        "--overlay",
        &overlay,
        "--metrics-listen",
        "127.49.0.1:0",
    ]);
    let line = na.next_line();
    let metrics = line
        .strip_prefix(&format!("p2psip node {} serving metrics on ", na.id))
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let _nb = NodeProcess::start(&[
        "--dir",
        &b,
        "--listen",
        "127.50.0.1:0",
        "--overlay",
        &overlay,
        "--bootstrap",
        &format!("{}@{}", na.id, na.addr),
    ]);
    run_ok(&["status", "--dir", &b, "--wait-ready", "--timeout", "30"]);
    let scrape = || {
        let (status, headers, body) = http(
            &metrics,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(status, "HTTP/1.1 200 OK", "{headers}");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            "{headers}"
        );
        body
    };
    // Prometheus's own linter accepts the exposition.
    let first = scrape();
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian: apt install prometheus; .ci/run installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(first.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{first}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(sample(&first, "p2psip_ready"), Some(1.0), "{first}");
    assert!(
        eventually(50, || sample(&scrape(), "p2psip_routing_table_contacts")
            >= Some(1.0)),
        "node B never reached A's table"
    );
    // Counters move as the node works: a lookup of a value nobody stored.
    let missing = "p2psip_lookups_total{outcome=\"value_missing\"}";
    let before = sample(&scrape(), missing).expect("the lookup counter");
    let _ = common::cli::p2psip()
        .args(["lookup", "--dir", &a, "sip:nobody@lab.example"])
        .output()
        .unwrap();
    let after = scrape();
    assert_eq!(sample(&after, missing), Some(before + 1.0), "{after}");
    assert!(
        sample(
            &after,
            "p2psip_lookup_duration_seconds_count{outcome=\"value_missing\"}"
        ) == Some(before + 1.0)
    );
    // Traffic: B's join was served; the connection is counted.
    let now = scrape();
    assert!(
        sample(
            &now,
            "p2psip_requests_served_total{kind=\"find_node\",outcome=\"answered\"}"
        ) >= Some(1.0),
        "{now}"
    );
    assert!(sample(&now, "p2psip_connections{direction=\"inbound\"}") >= Some(1.0));
    for reason in ["tls", "timeout", "banned"] {
        let series = format!("p2psip_handshake_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&now, &series), Some(0.0), "{series}");
    }
    // A client whose id fails the overlay's puzzle: refused by TLS, counted.
    let weak = (0..64)
        .map(|i| {
            let dir = p(root.path(), &format!("weak{i}"));
            run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "0"]);
            dir
        })
        .find(|dir| {
            let shown = json(&run_ok(&["identity", "show", "--dir", dir, "--json"]));
            shown["difficulty"].as_u64() < Some(4)
        })
        .expect("one of 64 identities fails a 4-bit puzzle");
    let out = common::cli::p2psip()
        .args(["ping", &na.addr, "--dir", &weak, "--difficulty", "4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let tls = "p2psip_handshake_failures_total{reason=\"tls\"}";
    assert!(
        eventually(25, || sample(&scrape(), tls) == Some(1.0)),
        "{}",
        scrape()
    );
    // A durable write: a value stored at A, its commit timed.
    let user = p(root.path(), "user");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &user,
        "--user",
        "--difficulty",
        "0",
    ]);
    run_ok(&["put", "note", "hi", "--user-dir", &user, "--dir", &a]);
    let after = scrape();
    assert!(
        sample(&after, "p2psip_durable_write_duration_seconds_count") >= Some(1.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "p2psip_requests_sent_total{kind=\"store\",outcome=\"answered\"}"
        ) >= Some(1.0),
        "A stored the value at B too: {after}"
    );

    // What is not a scrape is answered, and the listener serves on.
    let (status, _, _) = http(&metrics, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(&metrics, b"BREW /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, _, body) = http(&metrics, b"\x00\x01 garbage\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{body}");
    let (status, _, body) = http(&metrics, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
    assert!(sample(&scrape(), "p2psip_uptime_seconds").is_some());
}

#[test]
fn a_trace_over_ten_nodes_names_every_hop_its_lookup_used() {
    const NODES: usize = 10;
    let root = tempfile::tempdir().unwrap();
    let overlay = p(root.path(), "overlay.toml");
    // k = 4 of 10 nodes, 3 replicas: a lookup must cross the overlay.
    std::fs::write(
        &overlay,
        "name = \"ten\"\nid_difficulty = 4\nk = 4\nreplication = 3\n",
    )
    .unwrap();
    let dirs: Vec<String> = (0..NODES)
        .map(|i| new_node_dir(root.path(), &format!("n{i}")))
        .collect();
    let first = NodeProcess::start(&[
        "--dir",
        &dirs[0],
        "--listen",
        "127.90.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", first.id, first.addr);
    let mut nodes = vec![first];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let listen = format!("127.{}.0.1:0", 90 + i);
        nodes.push(NodeProcess::start(&[
            "--dir",
            dir,
            "--listen",
            &listen,
            "--overlay",
            &overlay,
            "--bootstrap",
            &boot,
        ]));
    }
    for dir in &dirs {
        run_ok(&["status", "--dir", dir, "--wait-ready", "--timeout", "30"]);
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    // A registration made at the last node, traced from the first.
    let alice = p(root.path(), "alice");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &alice,
        "--user",
        "--difficulty",
        "0",
    ]);
    let aor = format!("sip:{}@ten", user_id(&alice));
    let last = &dirs[NODES - 1];
    assert!(eventually(50, || common::cli::p2psip()
        .args(["register", &aor, "--user-dir", &alice, "--dir", last])
        .output()
        .unwrap()
        .status
        .success()));
    let t = json(&run_ok(&["trace", &aor, "--dir", &dirs[0], "--json"]));
    assert_fields(
        &t,
        &[
            "target", "key", "lookup", "hops", "requests", "records", "closest", "ended",
        ],
    );
    assert_eq!(t["lookup"], "registration");
    let hops = t["hops"].as_array().unwrap();
    // Every request the lookup sent is a hop, each to a node of the
    // overlay other than the tracing one, each named by this node's table
    // or by a node asked before it.
    assert_eq!(hops.len() as u64, t["requests"].as_u64().unwrap(), "{t}");
    assert!(!hops.is_empty());
    let mut asked: Vec<String> = Vec::new();
    for h in hops {
        assert_fields(
            h,
            &[
                "node_id", "addr", "via", "path", "rtt_ms", "answer", "contacts", "records",
                "error", "standing",
            ],
        );
        let id = h["node_id"].as_str().unwrap().to_owned();
        assert!(ids.contains(&id) && id != ids[0], "{h}");
        if let Some(via) = h["via"].as_str() {
            assert!(
                asked.iter().any(|a| a == via),
                "named by a node not asked before: {h}"
            );
        }
        assert!(h["rtt_ms"].as_f64().unwrap() >= 0.0);
        assert!(
            ["contacts", "value", "failed", "unanswered"].contains(&h["answer"].as_str().unwrap())
        );
        asked.push(id);
    }
    assert!(t["records"].as_u64().unwrap() >= 1, "{t}");
    assert!(hops.iter().any(|h| h["answer"] == "value"), "{t}");
    assert!(
        t["ended"].as_str().unwrap().contains("verified record"),
        "{t}"
    );
    // The text form for people names the hops too.
    let text = run_ok(&["trace", &aor, "--dir", &dirs[0]]);
    assert!(text.starts_with("registration lookup of "), "{text}");
    assert!(text.contains("ended: "), "{text}");
    // A key: the closest nodes; nonsense: named.
    let key = "ab".repeat(32);
    let t = json(&run_ok(&["trace", &key, "--dir", &dirs[3], "--json"]));
    assert_eq!(
        (t["lookup"].as_str(), t["key"].as_str()),
        (Some("closest"), Some(key.as_str()))
    );
    assert!(!t["closest"].as_array().unwrap().is_empty(), "{t}");
    let err = run_err(&["trace", "nonsense", "--dir", &dirs[0]]);
    assert!(err.contains("neither a SIP AOR nor a key"), "{err}");
}

#[test]
fn a_bad_overlay_file_is_refused_with_its_line_and_field() {
    let root = tempfile::tempdir().unwrap();
    let node = new_node_dir(root.path(), "n");
    let file = p(root.path(), "bad.toml");
    std::fs::write(&file, "name = \"lab\"\nreplicaton = 3\n").unwrap();
    let err = run_err(&[
        "node",
        "run",
        "--dir",
        &node,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &file,
    ]);
    assert!(
        err.contains("bad.toml") && err.contains("line 2") && err.contains("replicaton"),
        "{err}"
    );
    std::fs::write(&file, "k = 4\nreplication = 5\n").unwrap();
    let err = run_err(&[
        "node",
        "run",
        "--dir",
        &node,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &file,
    ]);
    assert!(
        err.contains("replication = 5: must be between 1 and 4"),
        "{err}"
    );
    // The overlay file's difficulty is enforced on the node's own id...
    std::fs::write(&file, "id_difficulty = 30\n").unwrap();
    let err = run_err(&[
        "node",
        "run",
        "--dir",
        &node,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &file,
    ]);
    assert!(err.contains("the overlay requires 30"), "{err}");
    // ...and --difficulty overrides it.
    let n = NodeProcess::start(&[
        "--dir",
        &node,
        "--listen",
        "127.0.0.1:0",
        "--overlay",
        &file,
        "--difficulty",
        "4",
    ]);
    assert_eq!(status(&node)["id_difficulty"], 4);
    drop(n);
    // A node killed with -9 leaves a stale socket; the next start replaces it.
    assert!(Path::new(&node).join("admin.sock").exists());
    let n = NodeProcess::start(&[
        "--dir",
        &node,
        "--listen",
        "127.0.0.1:0",
        "--difficulty",
        "4",
    ]);
    assert_eq!(status(&node)["overlay"], "p2psip");
    drop(n);
}

/// The issue's real-overlay test, as processes: 20 `node run` processes;
/// register an AOR on one and look it up from every other; kill -9 a
/// third of them and look it up again; restart a killed holder from its
/// data directory: it still serves the record it acknowledged.
#[test]
fn twenty_node_processes_survive_kill_9_of_a_third() {
    const NODES: usize = 20;
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let overlay = p(root.path(), "overlay.toml");
    // Six replicas of 20: most lookups must cross the overlay to a holder.
    std::fs::write(
        &overlay,
        "name = \"twenty\"\nid_difficulty = 4\nreplication = 6\n",
    )
    .unwrap();
    let dirs: Vec<String> = (0..NODES)
        .map(|i| new_node_dir(root.path(), &format!("n{i}")))
        .collect();
    let alice = p(root.path(), "alice");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &alice,
        "--user",
        "--difficulty",
        "0",
    ]);
    let aor = format!("sip:{}@twenty", user_id(&alice));

    let first = NodeProcess::start(&[
        "--dir",
        &dirs[0],
        "--listen",
        "127.60.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", first.id, first.addr);
    let mut nodes = vec![Some(first)];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let listen = format!("127.{}.0.1:0", 60 + i);
        nodes.push(Some(NodeProcess::start(&[
            "--dir",
            dir,
            "--listen",
            &listen,
            "--overlay",
            &overlay,
            "--bootstrap",
            &boot,
        ])));
    }
    assert!(
        eventually(100, || dirs
            .iter()
            .all(|d| status(d)["table_size"].as_u64() >= Some(3))),
        "every node joined"
    );
    let reg = json(&run_ok(&[
        "register",
        &aor,
        "--user-dir",
        &alice,
        "--dir",
        &dirs[5],
        "--json",
    ]));
    let registered_at = reg["node_id"].as_str().unwrap().to_owned();
    assert_eq!(reg["acks"], 6, "{reg}");
    let lookup_from = |dir: &str| {
        let found = json(&run_ok(&["lookup", &aor, "--dir", dir, "--json"]));
        found["entries"][0]["node_id"].as_str().map(str::to_owned)
    };
    for dir in &dirs {
        assert_eq!(
            lookup_from(dir).as_deref(),
            Some(registered_at.as_str()),
            "from {dir}"
        );
    }

    // Which nodes hold the record: the restart below must be of a holder.
    let holders: Vec<usize> = (0..NODES)
        .filter(|i| status(&dirs[*i])["records"].as_u64() == Some(1))
        .collect();
    assert_eq!(holders.len(), 6, "{holders:?}");
    // kill -9 a third (7 of 20): half of the holders and four others.
    let mut victims: Vec<usize> = holders.iter().copied().take(3).collect();
    victims.extend((0..NODES).filter(|i| !holders.contains(i)).take(4));
    assert_eq!(victims.len(), 7);
    let mut killed = Vec::new();
    for v in &victims {
        let node = nodes[*v].take().expect("running");
        killed.push((*v, node.addr.clone()));
        drop(node); // SIGKILL
    }
    let survivors: Vec<usize> = (0..NODES).filter(|i| nodes[*i].is_some()).collect();
    assert_eq!(survivors.len(), NODES - 7);
    let mut over_the_network = 0;
    for i in &survivors {
        if status(&dirs[*i])["records"] == 0 {
            over_the_network += 1;
        }
        assert_eq!(
            lookup_from(&dirs[*i]).as_deref(),
            Some(registered_at.as_str()),
            "from n{i}"
        );
    }
    assert!(
        over_the_network >= 5,
        "{over_the_network} survivors held no copy"
    );

    // Restart one killed holder from its data directory at its old
    // address, with no bootstrap: what it acknowledged is still there.
    let (v, addr) = killed[0].clone();
    let restarted =
        NodeProcess::start(&["--dir", &dirs[v], "--listen", &addr, "--overlay", &overlay]);
    assert_eq!(
        status(&dirs[v])["records"],
        1,
        "acknowledged record survived kill -9"
    );
    assert_eq!(
        lookup_from(&dirs[v]).as_deref(),
        Some(registered_at.as_str())
    );
    drop(restarted);
    eprintln!("20-process test took {:?}", started.elapsed());
}

#[test]
fn in_an_enrolled_overlay_the_ca_issued_certificate_decides_who_owns_an_aor() {
    let root = tempfile::tempdir().unwrap();
    let ca = p(root.path(), "ca");
    run_ok(&["ca", "init", "--dir", &ca, "--name", "Lab CA"]);
    let anchor = p(Path::new(&ca), "ca.pem");
    let overlay = p(root.path(), "overlay.toml");
    std::fs::write(&overlay, "name = \"example.org\"\nid_difficulty = 4\n").unwrap();
    let (a, b) = (
        new_node_dir(root.path(), "a"),
        new_node_dir(root.path(), "b"),
    );
    for dir in [&a, &b] {
        let out = p(Path::new(dir), "enrolled.pem");
        run_ok(&["ca", "issue", "--ca", &ca, "--node-dir", dir, "--out", &out]);
    }
    let (alice, mallory) = (p(root.path(), "alice"), p(root.path(), "mallory"));
    for (dir, aor) in [
        (&alice, "sip:alice@example.org"),
        (&mallory, "sip:mallory@example.org"),
    ] {
        run_ok(&[
            "identity",
            "new",
            "--dir",
            dir,
            "--user",
            "--difficulty",
            "0",
        ]);
        let out = p(Path::new(dir), "enrolled.pem");
        run_ok(&[
            "ca",
            "issue",
            "--ca",
            &ca,
            "--user-dir",
            dir,
            "--name",
            aor,
            "--out",
            &out,
        ]);
    }
    let na = NodeProcess::start(&[
        "--dir",
        &a,
        "--listen",
        "127.51.0.1:0",
        "--overlay",
        &overlay,
        "--ca",
        &anchor,
    ]);
    let boot = format!("{}@{}", na.id, na.addr);
    let nb = NodeProcess::start(&[
        "--dir",
        &b,
        "--listen",
        "127.52.0.1:0",
        "--overlay",
        &overlay,
        "--ca",
        &anchor,
        "--bootstrap",
        &boot,
    ]);
    assert_eq!(status(&a)["mode"], "enrolled");
    assert!(
        eventually(50, || status(&a)["table_size"] == 1),
        "{}",
        status(&a)
    );

    let reg = json(&run_ok(&[
        "register",
        "sip:alice@example.org",
        "--user-dir",
        &alice,
        "--dir",
        &b,
        "--json",
    ]));
    assert_eq!(reg["acks"], 2, "{reg}");
    let found = json(&run_ok(&[
        "lookup",
        "sip:alice@example.org",
        "--dir",
        &a,
        "--json",
    ]));
    assert_eq!(found["entries"][0]["node_id"], nb.id.as_str());
    assert_eq!(found["owner"], user_id(&alice).as_str());

    // Mallory's certificate names another AOR: her record is refused, by
    // her own node before it is sent anywhere.
    let err = run_err(&[
        "register",
        "sip:alice@example.org",
        "--user-dir",
        &mallory,
        "--dir",
        &a,
    ]);
    assert!(err.contains("registered by another user"), "{err}");
    // Without an existing registration to notice, the record itself fails.
    let err = run_err(&[
        "register",
        "sip:bob@example.org",
        "--user-dir",
        &mallory,
        "--dir",
        &a,
    ]);
    assert!(err.contains("record refused"), "{err}");
    // A user with no certificate is told how to get one.
    let eve = p(root.path(), "eve");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &eve,
        "--user",
        "--difficulty",
        "0",
    ]);
    let err = run_err(&[
        "register",
        "sip:eve@example.org",
        "--user-dir",
        &eve,
        "--dir",
        &a,
    ]);
    assert!(err.contains("ca issue"), "{err}");
    drop((na, nb));
}

#[test]
fn a_node_that_stops_hands_its_records_over_and_is_forgotten() {
    let root = tempfile::tempdir().unwrap();
    // One replica: the record is on one node only, so only a hand-over
    // can keep it in the overlay when that node stops.
    let overlay = p(root.path(), "overlay.toml");
    std::fs::write(
        &overlay,
        "name = \"leave\"\nid_difficulty = 4\nreplication = 1\n",
    )
    .unwrap();
    let dirs: Vec<String> = (0..4)
        .map(|i| new_node_dir(root.path(), &format!("n{i}")))
        .collect();
    let alice = p(root.path(), "alice");
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &alice,
        "--user",
        "--difficulty",
        "0",
    ]);
    let first = NodeProcess::start(&[
        "--dir",
        &dirs[0],
        "--listen",
        "127.100.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", first.id, first.addr);
    let mut nodes = vec![Some(first)];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let listen = format!("127.{}.0.1:0", 100 + i);
        nodes.push(Some(NodeProcess::start(&[
            "--dir",
            dir,
            "--listen",
            &listen,
            "--overlay",
            &overlay,
            "--bootstrap",
            &boot,
        ])));
    }
    assert!(
        eventually(50, || dirs.iter().all(|d| status(d)["table_size"] == 3)),
        "everyone knows everyone"
    );
    run_ok(&[
        "put",
        "note",
        "kept",
        "--user-dir",
        &alice,
        "--dir",
        &dirs[0],
    ]);
    let holders: Vec<usize> = (0..4)
        .filter(|i| status(&dirs[*i])["records"] == 1)
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    let holder = holders[0];
    let leaver_id = nodes[holder].as_ref().unwrap().id.clone();

    // SIGTERM: a graceful stop.
    let status_code = nodes[holder].take().unwrap().terminate();
    assert!(status_code.success());
    let survivors: Vec<usize> = (0..4).filter(|i| *i != holder).collect();
    let now_held: usize = survivors
        .iter()
        .filter(|i| status(&dirs[**i])["records"] == 1)
        .count();
    assert_eq!(now_held, 1, "the record moved to exactly one other node");
    let owner = user_id(&alice);
    for i in &survivors {
        assert_eq!(
            run_ok(&["get", "note", "--owner", &owner, "--dir", &dirs[*i]]).trim(),
            "kept"
        );
        // The close reaches every peer within moments (bounded wait).
        let forgot = eventually(25, || {
            !run_ok(&["routes", "--dir", &dirs[*i], "--json"]).contains(&leaver_id)
        });
        assert!(forgot, "n{i} forgot the node that left");
    }
}
