//! `p2psip demo`: one command that shows the overlay carry a call. It
//! starts real `p2psip node run` processes on loopback (this binary), two
//! users with SIP accounts, and two SIPp phones (Debian `sip-tester`);
//! bob's phone registers at node B, alice's phone at node A calls bob,
//! streams two seconds of audio that bob's side echoes, and hangs up.
//! It prints what happened hop by hop (the SIP messages each phone sent
//! and received, the overlay lookup that found bob's node, the messages
//! and media the nodes carried between them), then stops the nodes and
//! removes everything it made (unless `--keep`).

use super::{CliError, CliResult};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo overlay's name (the users' SIP domain).
const DOMAIN: &str = "demo.p2psip";
/// The phones' scenarios, as the tests use them (tests/sipp).
const REGISTER: &str = include_str!("../../tests/sipp/register.xml");
const CALL: &str = include_str!("../../tests/sipp/call_media.xml");
const ANSWER: &str = include_str!("../../tests/sipp/answer_media.xml");
/// How long any one step may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// `p2psip demo`'s flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Nodes in the demo overlay (2 to 8); alice's phone uses the first,
    /// bob's the second.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=8))]
    nodes: u8,
    /// Keep the demo's directory (identities, accounts, node logs,
    /// SIPp traces) instead of removing it; its path is printed.
    #[arg(long)]
    keep: bool,
}

/// The demo's directory; removed on drop unless kept.
struct Workdir {
    path: PathBuf,
    keep: bool,
}

impl Workdir {
    fn create(keep: bool) -> Result<Self, CliError> {
        let path = std::env::temp_dir().join(format!(
            "p2psip-demo-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| CliError(format!("{}: cannot create: {e}", path.display())))?;
        Ok(Self { path, keep })
    }

    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A node process of the demo; stopped (SIGTERM, then killed) on drop.
struct DemoNode {
    name: char,
    dir: PathBuf,
    id: String,
    addr: String,
    sip: Option<String>,
    metrics: String,
    child: Child,
}

impl DemoNode {
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// One metric's value from its exposition (0 if absent).
    fn metric(&self, series: &str) -> f64 {
        scrape(&self.metrics)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        self.stop();
    }
}

fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("\n[{n}] {text}");
}

fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// Runs this binary with `args`; its stdout, or an error naming the
/// command and what it said.
fn run_self(args: &[&str]) -> Result<String, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError(format!("cannot find the p2psip binary: {e}")))?;
    let out = Command::new(exe)
        .args(args)
        .output()
        .map_err(|e| CliError(format!("p2psip {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(CliError(format!(
            "p2psip {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_json(args: &[&str]) -> Result<Value, CliError> {
    let out = run_self(args)?;
    serde_json::from_str(out.trim())
        .map_err(|e| CliError(format!("p2psip {}: not JSON ({e})", args.join(" "))))
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Starts node `name` in `dir`; reads its address, SIP, metrics and
/// readiness lines.
fn start_node(
    work: &Workdir,
    name: char,
    overlay: &Path,
    bootstrap: Option<&DemoNode>,
    sip: bool,
) -> Result<DemoNode, CliError> {
    let dir = work.join(&format!("node-{name}"));
    let exe = std::env::current_exe()
        .map_err(|e| CliError(format!("cannot find the p2psip binary: {e}")))?;
    let log = std::fs::File::create(work.join(&format!("node-{name}.log")))
        .map_err(|e| CliError(format!("cannot create the node's log: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "node",
        "run",
        "--dir",
        text(&dir),
        "--listen",
        "127.0.0.1:0",
    ])
    .args([
        "--overlay",
        text(overlay),
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .env("RUST_LOG", "info");
    if sip {
        cmd.args(["--sip-listen", "127.0.0.1:0"]);
    }
    let boot;
    if let Some(b) = bootstrap {
        boot = format!("{}@{}", b.id, b.addr);
        cmd.args(["--bootstrap", &boot]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| CliError(format!("cannot start node {name}: {e}")))?;
    let stdout = child.stdout.take();
    let mut node = DemoNode {
        name,
        dir,
        id: String::new(),
        addr: String::new(),
        sip: None,
        metrics: String::new(),
        child,
    };
    let mut lines =
        BufReader::new(stdout.ok_or_else(|| CliError(format!("node {name}: no standard output")))?)
            .lines();
    // listening, [SIP], metrics, readiness: "p2psip node <id> ..."
    loop {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                return Err(CliError(format!(
                    "node {name} stopped while starting; see its log {}",
                    work.join(&format!("node-{name}.log")).display()
                )))
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let last = words.last().copied().unwrap_or_default().to_owned();
        if let Some(id) = words.get(2) {
            node.id = (*id).to_owned();
        }
        if line.contains(" listening on ") {
            node.addr = last;
        } else if line.contains(" serving SIP on ") {
            node.sip = Some(last);
        } else if line.contains(" serving metrics on ") {
            node.metrics = last;
        } else {
            println!(
                "    node {name} {}  QUIC {}  {}",
                short(&node.id),
                node.addr,
                words.get(3..).map(|w| w.join(" ")).unwrap_or_default()
            );
            return Ok(node);
        }
    }
}

/// A user with an account at the node in `node_dir` (called `node`):
/// (auth name, AOR user part, password).
fn add_user(
    work: &Workdir,
    (node, node_dir): (char, &Path),
    overlay: &Path,
    name: &str,
) -> Result<(String, String, String), CliError> {
    let dir = work.join(name);
    run_self(&["identity", "new", "--user", "--dir", text(&dir)])?;
    let password = format!("{name}-{:016x}", rand::random::<u64>());
    let pw = work.join(&format!("{name}.password"));
    std::fs::write(&pw, format!("{password}\n"))
        .map_err(|e| CliError(format!("{}: {e}", pw.display())))?;
    let added = run_json(&[
        "sip",
        "add-user",
        "--dir",
        text(node_dir),
        "--user-dir",
        text(&dir),
        "--password-file",
        text(&pw),
        "--auth-user",
        name,
        "--overlay",
        text(overlay),
        // SIPp answers MD5 challenges only.
        "--digest",
        "MD5,SHA-256",
        "--json",
    ])?;
    let aor = added["aor"].as_str().unwrap_or_default().to_owned();
    let user = aor
        .strip_prefix("sip:")
        .and_then(|a| a.strip_suffix(&format!("@{DOMAIN}")))
        .ok_or_else(|| CliError(format!("unexpected AOR {aor:?}")))?
        .to_owned();
    println!("    {name}: {aor}, served at node {node}");
    Ok((name.to_owned(), user, password))
}

/// A free UDP port on loopback.
fn free_port() -> Result<u16, CliError> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError(format!("no free port on loopback: {e}")))
}

/// A SIPp phone run: `scenario` (text) from `port`, to `node` (none for
/// a phone that only answers), with `keys`; its message trace is kept.
struct Phone<'a> {
    work: &'a Workdir,
    name: &'a str,
    port: u16,
}

impl<'a> Phone<'a> {
    /// `name`'s phone, on a free loopback port.
    fn new(work: &'a Workdir, name: &'a str) -> Result<Self, CliError> {
        Ok(Self {
            work,
            name,
            port: free_port()?,
        })
    }

    fn sipp(
        &self,
        label: &str,
        scenario: &str,
        node: Option<&str>,
        auth: (&str, &str),
        keys: &[(&str, &str)],
    ) -> Result<Child, CliError> {
        let dir = self.work.join(&format!("sipp-{}-{label}", self.name));
        std::fs::create_dir_all(&dir).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
        let file = dir.join("scenario.xml");
        std::fs::write(&file, scenario)
            .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&dir)
            .args(["-sf", text(&file), "-t", "u1", "-i", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-m", "1", "-nostdin"])
            .args(["-timeout", "30s", "-trace_err", "-trace_msg"])
            .args([
                "-message_file",
                "messages.log",
                "-au",
                auth.0,
                "-ap",
                auth.1,
            ]);
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        if let Some(callee) = keys.iter().find(|(k, _)| *k == "callee") {
            cmd.args(["-auth_uri", &format!("{}@{DOMAIN}", callee.1)]);
        }
        cmd.args(node)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError(format!("cannot run SIPp: {e}")))
    }

    /// Waits for a SIPp run; its messages (direction, first line, the
    /// headers worth showing).
    fn finish(&self, label: &str, mut child: Child) -> Result<Vec<SipLine>, CliError> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError(format!(
                    "{}'s phone ({label}) did not finish",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let dir = self.work.join(&format!("sipp-{}-{label}", self.name));
        let mut log = String::new();
        if let Ok(f) = std::fs::File::open(dir.join("messages.log")) {
            let _ = f.take(4 << 20).read_to_string(&mut log);
        }
        if !status.success() {
            return Err(CliError(format!(
                "{}'s phone ({label}) failed; its trace is in {} (run with --keep)",
                self.name,
                dir.display()
            )));
        }
        Ok(sip_lines(&log))
    }
}

/// One SIP message a phone sent or received.
struct SipLine {
    sent: bool,
    first: String,
    shown: Vec<String>,
}

/// The messages of a SIPp `-trace_msg` log, in order.
fn sip_lines(log: &str) -> Vec<SipLine> {
    let mut out = Vec::new();
    for block in log.split("----------------------------------------------- ") {
        let mut lines = block.lines().skip(1).filter(|l| !l.trim().is_empty());
        let Some(what) = lines.next() else { continue };
        let sent = what.contains("sent");
        let Some(first) = lines.next() else { continue };
        let shown = lines
            .filter(|l| {
                [
                    "Record-Route:",
                    "P-Asserted-Identity:",
                    "Via:",
                    "Proxy-Authenticate:",
                    "WWW-Authenticate:",
                ]
                .iter()
                .any(|h| l.starts_with(h))
            })
            .map(|l| l.chars().take(110).collect())
            .collect();
        out.push(SipLine {
            sent,
            first: first.trim().chars().take(100).collect(),
            shown,
        });
    }
    out
}

/// Prints a phone's messages; for the methods in `headers_of` received,
/// the headers that show the path, each address named (`names`).
fn print_flow(
    phone: &str,
    node: &str,
    lines: &[SipLine],
    headers_of: &[&str],
    names: &[(String, String)],
) {
    for l in lines {
        let (from, to) = if l.sent { (phone, node) } else { (node, phone) };
        println!("    {from:>14} -> {to:<14} {}", l.first);
        let method = l.first.split_whitespace().next().unwrap_or_default();
        if headers_of.contains(&method) && !l.sent {
            for h in &l.shown {
                let named: Vec<&str> = names
                    .iter()
                    .filter(|(addr, _)| h.contains(addr.as_str()))
                    .map(|(_, name)| name.as_str())
                    .collect();
                let header = h.split_once(';').map_or(h.as_str(), |(head, _)| head);
                let note = if named.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", named.join(", "))
                };
                println!("    {:>33}{header}{note}", "");
            }
        }
    }
}

/// `GET /metrics` from `addr` (empty on any failure).
fn scrape(addr: &str) -> String {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return String::new();
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut body = String::new();
    let _ = s.take(1 << 20).read_to_string(&mut body);
    body
}

/// Echoes the RTP it receives (bob's side) or counts it (alice's), for
/// at most `secs`; the packets seen and the addresses they came from.
fn media(
    socket: UdpSocket,
    echo: bool,
    secs: u64,
) -> std::thread::JoinHandle<(u32, Vec<SocketAddr>)> {
    std::thread::spawn(move || {
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 2048];
        let (mut seen, mut sources) = (0, Vec::new());
        while Instant::now() < deadline {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                seen += 1;
                if !sources.contains(&from) && sources.len() < 8 {
                    sources.push(from);
                }
                if echo {
                    let _ = socket.send_to(buf.get(..n).unwrap_or_default(), from);
                }
            }
        }
        (seen, sources)
    })
}

/// `p2psip demo`.
pub fn demo(a: DemoArgs) -> CliResult {
    if Command::new("sipp").arg("-v").output().is_err() {
        return Err(CliError(
            "p2psip demo drives SIPp phones: install SIPp (Debian/Ubuntu: apt install sip-tester) \
             and run it again"
                .into(),
        ));
    }
    let work = Workdir::create(a.keep)?;
    println!(
        "p2psip demo: {} nodes on loopback, two users, two SIPp phones (in {})",
        a.nodes,
        work.path.display()
    );
    let mut n = 0;
    let overlay = work.join("overlay.toml");
    std::fs::write(
        &overlay,
        format!("name = \"{DOMAIN}\"\nid_difficulty = 8\nreplication = 3\n"),
    )
    .map_err(|e| CliError(format!("{}: {e}", overlay.display())))?;

    step(&mut n, "Identities: a node id for each node, a user id each for alice and bob; SIP accounts for alice at node A, bob at node B");
    let names: Vec<char> = (0..a.nodes).map(|i| char::from(b'A' + i)).collect();
    for name in &names {
        let dir = work.join(&format!("node-{name}"));
        run_self(&["identity", "new", "--dir", text(&dir), "--difficulty", "8"])?;
    }
    let (dir_a, dir_b) = (work.join("node-A"), work.join("node-B"));
    let alice = add_user(&work, ('A', &dir_a), &overlay, "alice")?;
    let bob = add_user(&work, ('B', &dir_b), &overlay, "bob")?;

    step(&mut n, "Nodes start: each proves its id over mutually authenticated QUIC; the first starts the overlay, the others join through it");
    let mut nodes: Vec<DemoNode> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node = start_node(&work, *name, &overlay, nodes.first(), i < 2)?;
        nodes.push(node);
    }
    let (node_a, node_b) = match (nodes.first(), nodes.get(1)) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(CliError("the demo needs two nodes".into())),
    };
    let sip_a = node_a.sip.clone().unwrap_or_default();
    let sip_b = node_b.sip.clone().unwrap_or_default();
    let alice_aor = format!("sip:{}@{DOMAIN}", alice.1);
    let bob_aor = format!("sip:{}@{DOMAIN}", bob.1);

    step(&mut n, &format!("bob's phone registers at node B (SIP {sip_b}); node B publishes bob's AOR in the overlay"));
    let bob_phone = Phone::new(&work, "bob")?;
    let reg = bob_phone.sipp(
        "register",
        REGISTER,
        Some(&sip_b),
        (&bob.0, &bob.2),
        &[("domain", DOMAIN), ("aor_user", &bob.1), ("expires", "600")],
    )?;
    print_flow(
        "bob's phone",
        "node B",
        &bob_phone.finish("register", reg)?,
        &[],
        &[],
    );

    step(
        &mut n,
        "Node A looks bob up in the overlay, hop by hop (as `p2psip trace` shows it)",
    );
    let deadline = Instant::now() + STEP_TIMEOUT;
    let trace = loop {
        let t = run_json(&["trace", &bob_aor, "--dir", text(&node_a.dir), "--json"])?;
        if t["records"].as_u64() > Some(0) || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let name_of = |id: &str| {
        nodes
            .iter()
            .find(|nd| nd.id == id)
            .map_or_else(|| short(id).to_owned(), |nd| format!("node {}", nd.name))
    };
    for (i, hop) in trace["hops"].as_array().into_iter().flatten().enumerate() {
        let id = hop["node_id"].as_str().unwrap_or_default();
        let via = hop["via"].as_str().map_or("own table".to_owned(), name_of);
        println!(
            "    {}. asked {} at {} (named by {via}, path {}): {} in {:.1} ms",
            i + 1,
            name_of(id),
            hop["addr"].as_str().unwrap_or("?"),
            hop["path"],
            hop["answer"].as_str().unwrap_or("?"),
            hop["rtt_ms"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "    ended: {}; {} record(s) found",
        trace["ended"].as_str().unwrap_or("?"),
        trace["records"]
    );
    let found = run_json(&["lookup", &bob_aor, "--dir", text(&node_a.dir), "--json"])?;
    let at = found["entries"][0]["node_id"].as_str().unwrap_or_default();
    println!("    bob's registration names {} (signed by bob's key, verified by node A); not his phone's address", name_of(at));

    step(&mut n, &format!("alice's phone (at node A, SIP {sip_a}) calls bob: node A challenges, looks bob up, carries the call to node B over QUIC; both nodes anchor the media"));
    let (alice_media, bob_media) = (
        UdpSocket::bind("127.0.0.1:0").map_err(|e| CliError(format!("media socket: {e}")))?,
        UdpSocket::bind("127.0.0.1:0").map_err(|e| CliError(format!("media socket: {e}")))?,
    );
    let port_of = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
    let (alice_port, bob_port) = (port_of(&alice_media), port_of(&bob_media));
    let heard_by_bob = media(bob_media, true, 15);
    let heard_by_alice = media(alice_media, false, 15);
    let answer = bob_phone.sipp(
        "answer",
        &ANSWER.replace("@MEDIA_PORT@", &bob_port.to_string()),
        None,
        ("-", "-"),
        &[],
    )?;
    std::thread::sleep(Duration::from_millis(300));
    // Two seconds of PCMU: 100 packets of 160 bytes.
    let audio = work.join("audio.ulaw");
    let samples: Vec<u8> = (0..16_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&audio, samples).map_err(|e| CliError(format!("{}: {e}", audio.display())))?;
    let alice_phone = Phone::new(&work, "alice")?;
    let call = alice_phone.sipp(
        "call",
        &CALL
            .replace("@MEDIA_PORT@", &alice_port.to_string())
            .replace("@AUDIO@", text(&audio)),
        Some(&sip_a),
        (&alice.0, &alice.2),
        &[
            ("domain", DOMAIN),
            ("aor_user", &alice.1),
            ("callee", &bob.1),
        ],
    )?;
    let alice_lines = alice_phone.finish("call", call)?;
    let bob_lines = bob_phone.finish("answer", answer)?;
    let names = [
        (sip_a.clone(), "node A".to_owned()),
        (sip_b.clone(), "node B".to_owned()),
        (
            format!("127.0.0.1:{}", alice_phone.port),
            "alice's phone".to_owned(),
        ),
        (format!("p2p-node={}", node_a.id), "node A's id".to_owned()),
        (format!("p2p-node={}", node_b.id), "node B's id".to_owned()),
        (
            alice.1.clone(),
            "alice, signed by her key and verified by node B".to_owned(),
        ),
    ];
    println!("    at alice's end:");
    print_flow("alice's phone", "node A", &alice_lines, &[], &names);
    println!("    at bob's end (the INVITE as node B delivered it):");
    print_flow("bob's phone", "node B", &bob_lines, &["INVITE"], &names);
    let ((to_bob, bob_saw), (to_alice, alice_saw)) = (
        heard_by_bob.join().unwrap_or_default(),
        heard_by_alice.join().unwrap_or_default(),
    );
    println!("    between the nodes (their metrics), over QUIC:");
    let sip_sent = "p2psip_requests_sent_total{kind=\"sip\",outcome=\"answered\"}";
    for (from, to, node) in [("node A", "node B", node_a), ("node B", "node A", node_b)] {
        println!(
            "    {from:>14} -> {to:<14} {} SIP message(s); relayed {} media packet(s) from its phone, {} from {to}",
            node.metric(sip_sent),
            node.metric("p2psip_media_packets_total{from=\"phone\"}"),
            node.metric("p2psip_media_packets_total{from=\"node\"}"),
        );
    }
    let show = |saw: &[SocketAddr]| {
        saw.iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "    media: alice's phone sent 100 RTP packets; {to_bob} reached bob (from {}), {to_alice} of his echoes reached alice (from {})",
        show(&bob_saw),
        show(&alice_saw)
    );
    let other_phone = |saw: &[SocketAddr], port: u16| saw.iter().any(|a| a.port() == port);
    if other_phone(&bob_saw, alice_port) || other_phone(&alice_saw, bob_port) {
        println!("    WARNING: a phone saw the other phone's media address");
    } else {
        println!("    neither phone saw the other's address: the media came from the nodes");
    }

    step(&mut n, "Cleaning up");
    let callers = nodes
        .first()
        .map(|nd| nd.metric("p2psip_sip_calls_authorized_total"));
    for node in nodes.iter_mut() {
        node.stop();
    }
    if a.keep {
        println!(
            "    nodes stopped; everything is kept in {}",
            work.path.display()
        );
    } else {
        println!("    nodes stopped; {} removed", work.path.display());
    }
    println!(
        "\ndone: alice ({alice_aor}) called bob ({bob_aor}) through the overlay; node A authorized {} call(s)",
        callers.unwrap_or(0.0)
    );
    Ok(())
}
