//! Issue 24's findings that cross the network, tried again from outside:
//! a real `p2psip node run --sip-listen` process with phones registered,
//! attacked with raw UDP from other loopback addresses, the way anyone on
//! the phones' network could. The phones are UDP sockets of this test
//! (they register and answer the digest challenge themselves), so a test
//! can say that a phone never rang. The rules these tests hold the node
//! to are shown on the sans-IO core in src/sip/proxy/tests/outside.rs.

mod common;

use common::cli::{json, run_ok, NodeProcess};
use sha2::Digest as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

const OVERLAY: &str = "lab.example";

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

/// A scratch directory with an overlay file, node and user identities.
struct Lab {
    root: tempfile::TempDir,
    overlay: String,
}

impl Lab {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("a scratch directory");
        let overlay = p(root.path(), "overlay.toml");
        std::fs::write(
            &overlay,
            format!("name = \"{OVERLAY}\"\nid_difficulty = 4\nk = 8\nreplication = 3\n"),
        )
        .expect("overlay file written");
        Self { root, overlay }
    }

    fn node_dir(&self, name: &str) -> String {
        let dir = p(self.root.path(), name);
        run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
        dir
    }

    /// An account `name` with `password` at `node_dir`, with the node's
    /// default digest algorithms.
    fn user(&self, node_dir: &str, name: &str, password: &str) -> Account {
        let dir = p(self.root.path(), name);
        run_ok(&["identity", "new", "--user", "--dir", &dir]);
        let pw = p(self.root.path(), &format!("{name}.pw"));
        std::fs::write(&pw, format!("{password}\n")).expect("password file written");
        let added = json(&run_ok(&[
            "sip",
            "add-user",
            "--dir",
            node_dir,
            "--user-dir",
            &dir,
            "--password-file",
            &pw,
            "--auth-user",
            name,
            "--overlay",
            &self.overlay,
            "--json",
        ]));
        let aor = added["aor"].as_str().expect("add-user prints the AOR");
        let user_part = aor
            .strip_prefix("sip:")
            .and_then(|a| a.strip_suffix(&format!("@{OVERLAY}")))
            .unwrap_or_else(|| panic!("an AOR of {OVERLAY}: {aor}"));
        Account {
            auth_user: name.to_owned(),
            user_part: user_part.to_owned(),
        }
    }

    fn start(&self, dir: &str) -> NodeProcess {
        NodeProcess::start(&[
            "--dir",
            dir,
            "--listen",
            "127.0.0.1:0",
            "--overlay",
            &self.overlay,
            "--sip-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
    }
}

/// A SIP account at the node.
#[derive(Clone)]
struct Account {
    auth_user: String,
    user_part: String,
}

impl Account {
    fn aor(&self) -> String {
        format!("sip:{}@{OVERLAY}", self.user_part)
    }
}

/// A fresh token for branches, tags and Call-IDs.
fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The status code of a response; `None` for a request.
fn code(message: &str) -> Option<u16> {
    message.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The header lines of `message` (the start line and body left out).
fn header_lines(message: &str) -> impl Iterator<Item = &str> {
    message.split("\r\n").skip(1).take_while(|l| !l.is_empty())
}

/// Every value of header `name` (full name, any case), in order.
fn headers<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    header_lines(message)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// The first value of header `name`.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    headers(message, name).into_iter().next()
}

/// Header `name` of `message`, which must be there.
fn must<'a>(message: &'a str, name: &str) -> &'a str {
    header(message, name).unwrap_or_else(|| panic!("no {name} header in:\n{message}"))
}

/// The value of `;tag=` in a From or To value.
fn tag_of(value: &str) -> Option<&str> {
    let rest = &value[value.find(";tag=")? + 5..];
    Some(rest.split([';', '>', ' ']).next().unwrap_or(rest))
}

/// The URI inside `<...>` of a name-addr.
fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value),
    }
}

/// The body of a message.
fn body(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Where the SDP of `message` says to send media: its `c=` address and
/// first `m=audio` port.
fn media_address(message: &str) -> SocketAddr {
    let sdp = body(message);
    let ip: IpAddr = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or_else(|| panic!("no c= address in:\n{message}"));
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio port in:\n{message}"));
    SocketAddr::new(ip, port)
}

/// An SDP offer or answer naming 127.0.0.1:`port` for PCMU.
fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// A SIP request: the start line, `headers` (one a line), and `body`
/// (SDP, when not empty).
fn request(method: &str, uri: &str, headers: &[String], body: &str) -> String {
    let mut text = format!("{method} {uri} SIP/2.0\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/sdp\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

/// A response to `req` (its Vias, Record-Routes, From, Call-ID and CSeq
/// copied; its To tagged with `to_tag` if it has none), with `extra`
/// headers and `body`.
fn response(
    req: &str,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[String],
    body: &str,
) -> String {
    let mut text = format!("SIP/2.0 {code} {reason}\r\n");
    for via in headers(req, "Via") {
        text.push_str(&format!("Via: {via}\r\n"));
    }
    for rr in headers(req, "Record-Route") {
        text.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    let to = must(req, "To");
    let to = match tag_of(to) {
        Some(_) => to.to_owned(),
        None => format!("{to};tag={to_tag}"),
    };
    text.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        must(req, "From"),
        must(req, "Call-ID"),
        must(req, "CSeq")
    ));
    for h in extra {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/sdp\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

/// `H(data)` under the digest algorithm `algorithm`, lowercase hex.
fn hash(algorithm: &str, data: &str) -> String {
    if algorithm.eq_ignore_ascii_case("MD5") {
        hex::encode(md5::Md5::digest(data.as_bytes()))
    } else {
        assert!(
            algorithm.eq_ignore_ascii_case("SHA-256"),
            "a challenge with algorithm {algorithm}"
        );
        hex::encode(sha2::Sha256::digest(data.as_bytes()))
    }
}

/// Parameter `name` of a digest challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    challenge.split(',').find_map(|part| {
        let part = part.trim().trim_start_matches("Digest ").trim();
        let (k, v) = part.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The credentials (RFC 7616, `qop=auth`) answering the first challenge
/// in header `header_name` of `challenge`, for `method` to `uri`.
fn credentials(
    challenge: &str,
    header_name: &str,
    account: &Account,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    let offer = must(challenge, header_name);
    let param = |n: &str| {
        challenge_param(offer, n).unwrap_or_else(|| panic!("no {n} in challenge {offer}"))
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let algorithm = challenge_param(offer, "algorithm").unwrap_or_else(|| "MD5".into());
    let cnonce = token();
    let nc = "00000001";
    let ha1 = hash(
        &algorithm,
        &format!("{}:{realm}:{password}", account.auth_user),
    );
    let ha2 = hash(&algorithm, &format!("{method}:{uri}"));
    let digest = hash(
        &algorithm,
        &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
    );
    format!(
        "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{digest}\", algorithm={algorithm}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
        account.auth_user
    )
}

/// Every datagram `socket` receives until `window` has passed (bounded:
/// at most 1,000), with its source.
fn collect(socket: &UdpSocket, window: Duration) -> Vec<(String, SocketAddr)> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < 1000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).expect("read timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
            Err(_) => break,
        }
    }
    got
}

/// The first datagram at `socket` within `wait` that `wanted` accepts
/// (others are skipped: a 100 Trying, a retransmission).
fn expect(
    socket: &UdpSocket,
    wait: Duration,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> (String, SocketAddr) {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero() && skipped.len() < 100,
            "no {what} within {wait:?}; got instead: {skipped:#?}"
        );
        socket.set_read_timeout(Some(left)).expect("read timeout");
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if wanted(&text) {
            return (text, from);
        }
        skipped.push(text);
    }
}

/// A final response (not 1xx) to a request with CSeq method `method`.
fn final_to(method: &'static str) -> impl Fn(&str) -> bool {
    move |m: &str| {
        code(m).is_some_and(|c| c >= 200)
            && header(m, "CSeq").is_some_and(|c| c.ends_with(&format!(" {method}")))
    }
}

/// A request of `method`.
fn is_request(method: &'static str) -> impl Fn(&str) -> bool {
    move |m: &str| m.starts_with(&format!("{method} "))
}

/// A phone: a UDP socket of this test speaking for `account`.
struct Phone {
    socket: UdpSocket,
    node: SocketAddr,
    account: Account,
}

impl Phone {
    fn at(ip: &str, node: SocketAddr, account: &Account) -> Self {
        let socket = UdpSocket::bind((ip, 0)).expect("a phone's socket on loopback");
        Self {
            socket,
            node,
            account: account.clone(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    fn send(&self, text: &str) {
        self.socket
            .send_to(text.as_bytes(), self.node)
            .expect("send to the node");
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/UDP {};rport;branch=z9hG4bK{}",
            self.addr(),
            token()
        )
    }

    /// REGISTERs its contact with `password`, answering the 401 with a
    /// digest: the status codes of the answers, in order (`[401, 200]`
    /// when all is well).
    fn register(&self, password: &str) -> Vec<u16> {
        let (call_id, tag) = (token(), token());
        let uri = format!("sip:{}", self.node);
        let aor = self.account.aor();
        let make = |cseq: u32, auth: Option<String>| {
            let mut h = vec![
                self.via(),
                "Max-Forwards: 70".to_owned(),
                format!("From: <{aor}>;tag={tag}"),
                format!("To: <{aor}>"),
                format!("Call-ID: {call_id}"),
                format!("CSeq: {cseq} REGISTER"),
                format!(
                    "Contact: <sip:{}@{};transport=udp>",
                    self.account.user_part,
                    self.addr()
                ),
                "Expires: 600".to_owned(),
            ];
            h.extend(auth.map(|a| format!("Authorization: {a}")));
            request("REGISTER", &uri, &h, "")
        };
        self.send(&make(1, None));
        let wait = Duration::from_secs(5);
        let (first, _) = expect(
            &self.socket,
            wait,
            "answer to REGISTER",
            final_to("REGISTER"),
        );
        let mut codes = vec![code(&first).expect("a status code")];
        if codes[0] == 401 {
            let auth = credentials(
                &first,
                "WWW-Authenticate",
                &self.account,
                password,
                "REGISTER",
                &uri,
            );
            self.send(&make(2, Some(auth)));
            let (second, _) = expect(
                &self.socket,
                wait,
                "answer to REGISTER",
                final_to("REGISTER"),
            );
            codes.push(code(&second).expect("a status code"));
        }
        codes
    }
}

/// A node with two accounts, alice and bob, and bob's phone (a socket
/// of this test on 127.0.0.1) registered.
struct Site {
    _lab: Lab,
    node: NodeProcess,
    sip: SocketAddr,
    metrics: SocketAddr,
    alice: Account,
    bob: Account,
    bob_phone: Phone,
}

fn site() -> Site {
    let lab = Lab::new();
    let dir = lab.node_dir("n");
    let alice = lab.user(&dir, "alice", "alice-secret");
    let bob = lab.user(&dir, "bob", "bob-secret");
    let mut node = lab.start(&dir);
    // "p2psip node ID serving metrics on ADDR", after the SIP line.
    let line = node.next_line();
    let metrics: SocketAddr = line
        .strip_prefix("p2psip node ")
        .filter(|l| l.contains(" serving metrics on "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("not the metrics line: {line:?}"));
    let sip: SocketAddr = node
        .sip
        .as_deref()
        .expect("the node serves SIP")
        .parse()
        .expect("a SIP address");
    let bob_phone = Phone::at("127.0.0.1", sip, &bob);
    let codes = bob_phone.register("bob-secret");
    assert_eq!(codes, [401, 200], "bob's phone could not register");
    Site {
        _lab: lab,
        node,
        sip,
        metrics,
        alice,
        bob,
        bob_phone,
    }
}

/// Open file descriptors of process `pid`: the fewest of five looks
/// 20 ms apart, so that a file the node opens for a moment (it rereads
/// its account files once a second) does not count.
fn open_fds(pid: u32) -> usize {
    (0..5)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("the node's /proc/PID/fd is readable")
                .count()
        })
        .min()
        .expect("five looks")
}

/// The value of the sample `name` (with its labels, as written) in the
/// node's metrics at `metrics`.
fn metric(metrics: SocketAddr, name: &str) -> f64 {
    let mut conn = TcpStream::connect(metrics).expect("the metrics listener");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("ask for the metrics");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("the metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// An INVITE to bob's AOR from `from` (a stranger's socket) as `caller`
/// (a From URI), with `to_params` after bob's To, no credentials, and
/// `body` (an SDP offer, or nothing).
fn strangers_invite(
    from: &UdpSocket,
    caller: &str,
    bob: &Account,
    to_params: &str,
    body: &str,
) -> String {
    let me = from.local_addr().expect("local address");
    let bob_aor = bob.aor();
    request(
        "INVITE",
        &bob_aor,
        &[
            format!("Via: SIP/2.0/UDP {me};rport;branch=z9hG4bK{}", token()),
            "Max-Forwards: 70".to_owned(),
            format!("From: <{caller}>;tag={}", token()),
            format!("To: <{bob_aor}>{to_params}"),
            format!("Call-ID: {}", token()),
            "CSeq: 1 INVITE".to_owned(),
            format!("Contact: <sip:m@{me}>"),
        ],
        body,
    )
}

/// Finding 1: an INVITE with a To tag of its own choosing is no dialog;
/// without credentials it reaches no phone.
#[test]
fn a_forged_to_tag_invite_from_a_stranger_never_rings_the_phone() {
    let site = site();
    let pid = site.node.child.id();
    let fds = open_fds(pid);
    let mallory = UdpSocket::bind("127.0.0.66:0").expect("a stranger's socket");
    let invite = strangers_invite(
        &mallory,
        "sip:mallory@evil.example",
        &site.bob,
        ";tag=anything",
        &sdp(4000),
    );
    mallory
        .send_to(invite.as_bytes(), site.sip)
        .expect("send the forged INVITE");
    // Two seconds: a stateful answer would be retransmitted at 0.5 and
    // 1.5 s (Timer G), a forwarded INVITE would ring bob at once.
    let answers = collect(&mallory, Duration::from_secs(2));
    let rang = collect(&site.bob_phone.socket, Duration::from_millis(100));
    assert!(rang.is_empty(), "bob's phone got: {rang:#?}");
    assert_eq!(answers.len(), 1, "the stranger got: {answers:#?}");
    let (answer, source) = &answers[0];
    assert_eq!(*source, site.sip, "answered from the SIP listener");
    assert_eq!(code(answer), Some(481), "{answer}");
    assert_eq!(header(answer, "Call-ID"), header(&invite, "Call-ID"));
    // (2 of slack: see stray_sdp_answers_open_no_media_ports.)
    let after = open_fds(pid);
    assert!(
        after <= fds + 2,
        "the forged INVITE's SDP opened media ports: {fds} open files before, {after} after"
    );
}

/// Finding 2: responses carrying SDP that match no transaction of the
/// node open nothing.
#[test]
fn stray_sdp_answers_open_no_media_ports() {
    let site = site();
    let pid = site.node.child.id();
    let before = open_fds(pid);
    let mallory = UdpSocket::bind("127.0.0.67:0").expect("a stranger's socket");
    for i in 0..20 {
        let stray = format!(
            "SIP/2.0 183 Session Progress\r\n\
             Via: SIP/2.0/UDP {sip};branch=z9hG4bK-p2p-{branch}\r\n\
             From: <{alice}>;tag={from_tag}\r\nTo: <{bob}>;tag={to_tag}\r\n\
             Call-ID: stray-{i}-{call}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:m@127.0.0.67:5060>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            sip = site.sip,
            branch = token(),
            alice = site.alice.aor(),
            bob = site.bob.aor(),
            from_tag = token(),
            to_tag = token(),
            call = token(),
            len = sdp(4000 + i).len(),
            body = sdp(4000 + i),
        );
        mallory
            .send_to(stray.as_bytes(), site.sip)
            .expect("send a stray 183");
    }
    // Before the fix each stray 183 opened media sockets (the report:
    // 17 to 97 open files for ten; this test against that node: 17 to
    // 57 for twenty). The slack of 2 is for files the node may open for
    // its own reasons meanwhile (its store, a socket of the overlay or
    // of LAN discovery); open_fds already ignores those open for a
    // moment. Fewer files than before is no concern here.
    let answered = collect(&mallory, Duration::from_secs(1));
    let after = open_fds(pid);
    assert!(
        after <= before + 2,
        "20 stray 183s with SDP: {before} open files before, {after} after"
    );
    assert!(
        answered.is_empty(),
        "a response is never answered; the stranger got: {answered:#?}"
    );
    let rang = collect(&site.bob_phone.socket, Duration::from_millis(100));
    assert!(rang.is_empty(), "bob's phone got: {rang:#?}");
}

/// Finding 4: a real call between alice's and bob's phones (sockets of
/// this test, both at the node, with media anchored there); a stranger
/// who knows the call's Call-ID, tags and branch sends BYEs (as either
/// party) and a CANCEL: each gets one 481, neither phone hears of it,
/// the call's media ports stay open and carry media, and alice's own BYE
/// still ends the call (bob's 200 reaches her, the ports close).
#[test]
fn a_strangers_bye_and_cancel_change_nothing() {
    let site = site();
    let pid = site.node.child.id();
    let idle = open_fds(pid);
    let wait = Duration::from_secs(5);
    let (alice, bob) = (
        Phone::at("127.0.0.1", site.sip, &site.alice),
        &site.bob_phone,
    );
    let media =
        |what: &str| UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{what}: {e}"));
    let (alice_media, bob_media) = (media("alice's media"), media("bob's media"));
    let port = |s: &UdpSocket| s.local_addr().expect("local address").port();

    // alice calls bob: INVITE, 407, ACK, INVITE with credentials.
    let (call_id, alice_tag, bob_tag) = (token(), token(), token());
    let (alice_aor, bob_aor) = (site.alice.aor(), site.bob.aor());
    let invite = |cseq: u32, auth: Option<String>| {
        let mut h = vec![
            alice.via(),
            "Max-Forwards: 70".to_owned(),
            format!("From: <{alice_aor}>;tag={alice_tag}"),
            format!("To: <{bob_aor}>"),
            format!("Call-ID: {call_id}"),
            format!("CSeq: {cseq} INVITE"),
            format!("Contact: <sip:alice@{}>", alice.addr()),
        ];
        h.extend(auth.map(|a| format!("Proxy-Authorization: {a}")));
        request("INVITE", &bob_aor, &h, &sdp(port(&alice_media)))
    };
    let first = invite(1, None);
    alice.send(&first);
    let (challenge, _) = expect(&alice.socket, wait, "407", final_to("INVITE"));
    assert_eq!(code(&challenge), Some(407), "{challenge}");
    alice.send(&request(
        "ACK",
        &bob_aor,
        &[
            format!("Via: {}", must(&first, "Via")),
            "Max-Forwards: 70".to_owned(),
            format!("From: {}", must(&first, "From")),
            format!("To: {}", must(&challenge, "To")),
            format!("Call-ID: {call_id}"),
            "CSeq: 1 ACK".to_owned(),
        ],
        "",
    ));
    let auth = credentials(
        &challenge,
        "Proxy-Authenticate",
        &site.alice,
        "alice-secret",
        "INVITE",
        &bob_aor,
    );
    let second = invite(2, Some(auth));
    alice.send(&second);

    // Bob's phone rings and answers 200 with its own SDP.
    let (at_bob, node_addr) = expect(&bob.socket, wait, "INVITE at bob", is_request("INVITE"));
    assert_eq!(header(&at_bob, "Call-ID"), Some(call_id.as_str()));
    let to_bob_media = media_address(&at_bob);
    let ok = response(
        &at_bob,
        200,
        "OK",
        &bob_tag,
        &[format!("Contact: <sip:bob@{}>", bob.addr())],
        &sdp(port(&bob_media)),
    );
    bob.socket
        .send_to(ok.as_bytes(), node_addr)
        .expect("bob's 200");

    // alice gets the 200 and ACKs along its Record-Route.
    let (answer, _) = expect(&alice.socket, wait, "200 to the INVITE", final_to("INVITE"));
    assert_eq!(code(&answer), Some(200), "{answer}");
    assert_eq!(tag_of(must(&answer, "To")), Some(bob_tag.as_str()));
    let remote_target = uri_of(must(&answer, "Contact")).to_owned();
    let routes: Vec<String> = headers(&answer, "Record-Route")
        .iter()
        .rev()
        .map(|r| format!("Route: {r}"))
        .collect();
    let in_dialog = |method: &str, cseq: u32| {
        let mut h = vec![
            alice.via(),
            "Max-Forwards: 70".to_owned(),
            format!("From: <{alice_aor}>;tag={alice_tag}"),
            format!("To: <{bob_aor}>;tag={bob_tag}"),
            format!("Call-ID: {call_id}"),
            format!("CSeq: {cseq} {method}"),
        ];
        h.extend(routes.iter().cloned());
        request(method, &remote_target, &h, "")
    };
    alice.send(&in_dialog("ACK", 2));
    expect(&bob.socket, wait, "ACK at bob", is_request("ACK"));
    let in_call = open_fds(pid);
    eprintln!("open files: {idle} idle, {in_call} in the call");
    assert!(
        in_call > idle,
        "the call's media is anchored at the node: {idle} open files idle, {in_call} in the call"
    );

    // The stranger, who saw the INVITE go by: BYE as bob, BYE as alice,
    // CANCEL of the INVITE's branch.
    let mallory = UdpSocket::bind("127.0.0.66:0").expect("a stranger's socket");
    let me = mallory.local_addr().expect("local address");
    let stranger_bye = |from: (&str, &str), to: (&str, &str)| {
        request(
            "BYE",
            &format!("sip:{}", site.sip),
            &[
                format!("Via: SIP/2.0/UDP {me};rport;branch=z9hG4bK{}", token()),
                "Max-Forwards: 70".to_owned(),
                format!("From: <{}>;tag={}", from.0, from.1),
                format!("To: <{}>;tag={}", to.0, to.1),
                format!("Call-ID: {call_id}"),
                "CSeq: 100 BYE".to_owned(),
            ],
            "",
        )
    };
    let cancel = request(
        "CANCEL",
        &bob_aor,
        &[
            format!(
                "Via: SIP/2.0/UDP {me};branch={}",
                must(&second, "Via")
                    .split(";branch=")
                    .nth(1)
                    .expect("the INVITE's branch")
            ),
            "Max-Forwards: 70".to_owned(),
            format!("From: {}", must(&second, "From")),
            format!("To: <{bob_aor}>"),
            format!("Call-ID: {call_id}"),
            "CSeq: 2 CANCEL".to_owned(),
        ],
        "",
    );
    for forged in [
        stranger_bye((&bob_aor, &bob_tag), (&alice_aor, &alice_tag)),
        stranger_bye((&alice_aor, &alice_tag), (&bob_aor, &bob_tag)),
        cancel,
    ] {
        mallory
            .send_to(forged.as_bytes(), site.sip)
            .expect("send a forged request");
    }
    let answers = collect(&mallory, Duration::from_secs(2));
    let codes: Vec<(Option<u16>, Option<&str>)> = answers
        .iter()
        .map(|(a, _)| (code(a), header(a, "CSeq")))
        .collect();
    assert_eq!(
        codes,
        [
            (Some(481), Some("100 BYE")),
            (Some(481), Some("100 BYE")),
            (Some(481), Some("2 CANCEL"))
        ],
        "the stranger got: {answers:#?}"
    );
    let heard = |phone: &UdpSocket| collect(phone, Duration::from_millis(100));
    let (at_alice, at_bob) = (heard(&alice.socket), heard(&bob.socket));
    assert!(at_alice.is_empty(), "alice's phone got: {at_alice:#?}");
    assert!(at_bob.is_empty(), "bob's phone got: {at_bob:#?}");
    // No slack here: the node opening a file meanwhile would not hide a
    // closed leg (two files), but a closed leg is all this looks for.
    let still = open_fds(pid);
    assert!(
        still >= in_call,
        "the stranger closed the call's media ports: {in_call} open files in the call, {still} after"
    );

    // The call goes on: bob's media reaches alice through the node.
    for seq in 0..5u16 {
        let mut rtp = vec![0x80, 0x00];
        rtp.extend_from_slice(&seq.to_be_bytes());
        rtp.extend_from_slice(&[0; 8]);
        rtp.extend_from_slice(&[0xd5; 160]);
        bob_media.send_to(&rtp, to_bob_media).expect("bob's RTP");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rtp = collect(&alice_media, Duration::from_secs(1));
    assert!(
        rtp.len() >= 4,
        "{} of 5 RTP packets from bob reached alice after the stranger's BYEs",
        rtp.len()
    );

    // alice hangs up: bob gets the BYE, his 200 reaches alice.
    alice.send(&in_dialog("BYE", 3));
    let (bye, node_addr) = expect(&bob.socket, wait, "BYE at bob", is_request("BYE"));
    bob.socket
        .send_to(
            response(&bye, 200, "OK", &bob_tag, &[], "").as_bytes(),
            node_addr,
        )
        .expect("bob's 200 to the BYE");
    let (done, _) = expect(&alice.socket, wait, "200 to the BYE", final_to("BYE"));
    assert_eq!(code(&done), Some(200), "{done}");
    std::thread::sleep(Duration::from_millis(300));
    // Every leg closed (a leg is two files: RTP and RTCP), with a slack
    // of one for a file the node may have opened meanwhile.
    let after = open_fds(pid);
    assert!(
        after <= idle + 1,
        "the BYE did not close the call's media: {idle} open files idle, {in_call} in the call, {after} after"
    );
}

/// Finding 5: an unauthenticated INVITE is refused statelessly: one
/// answer, never retransmitted, at most three times its size. Both
/// kinds of refusal: 403 (a From this node does not serve) and the 407
/// challenge (a From it serves, no credentials).
#[test]
fn an_unauthenticated_invite_draws_one_answer_at_most_three_times_its_size() {
    let site = site();
    let strangers = [
        (
            UdpSocket::bind("127.0.0.68:0").expect("a stranger's socket"),
            "sip:mallory@evil.example".to_owned(),
            403,
        ),
        (
            UdpSocket::bind("127.0.0.69:0").expect("a stranger's socket"),
            site.alice.aor(),
            407,
        ),
    ];
    let mut sent = Vec::new();
    for (socket, caller, _) in &strangers {
        let invite = strangers_invite(socket, caller, &site.bob, "", "");
        socket
            .send_to(invite.as_bytes(), site.sip)
            .expect("send the INVITE");
        sent.push(invite.len());
    }
    // Six seconds: Timer G would have retransmitted a stateful refusal at
    // 0.5, 1.5 and 3.5 s (and the report saw 11 answers in 31.5 s).
    let first = collect(&strangers[0].0, Duration::from_secs(6));
    let second = collect(&strangers[1].0, Duration::from_millis(100));
    for ((answers, (_, caller, expected)), size) in [first, second].iter().zip(&strangers).zip(sent)
    {
        let codes: Vec<Option<u16>> = answers.iter().map(|(a, _)| code(a)).collect();
        assert_eq!(
            codes,
            [Some(*expected)],
            "an INVITE from {caller} drew: {answers:#?}"
        );
        let drawn: usize = answers.iter().map(|(a, _)| a.len()).sum();
        eprintln!("an INVITE of {size} bytes from {caller} drew {drawn} bytes");
        assert!(
            drawn <= 3 * size,
            "an INVITE of {size} bytes from {caller} drew {drawn} bytes: {answers:#?}"
        );
    }
    let rang = collect(&site.bob_phone.socket, Duration::from_millis(100));
    assert!(rang.is_empty(), "bob's phone got: {rang:#?}");
}

/// Finding 5: a flood of unauthenticated INVITEs from several addresses
/// leaves no state behind: phones still register and call (no 503).
#[test]
fn spoofed_invites_do_not_lock_phones_out() {
    let site = site();
    let server_transactions = || metric(site.metrics, "p2psip_sip_transactions{layer=\"server\"}");
    // Bob's REGISTER left one lingering (32 s over UDP).
    let before = server_transactions();
    let flooders: Vec<UdpSocket> = (80..84)
        .map(|i| UdpSocket::bind(format!("127.0.0.{i}:0")).expect("a flooder's socket"))
        .collect();
    // Each flooder counts what it gets back, until a second passes
    // without an answer (bounded: 12 s).
    let readers: Vec<std::thread::JoinHandle<Vec<Option<u16>>>> = flooders
        .iter()
        .map(|s| {
            let s = s.try_clone().expect("a second handle on the socket");
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut codes = Vec::new();
                let mut buf = vec![0u8; 65536];
                s.set_read_timeout(Some(Duration::from_secs(1)))
                    .expect("read timeout");
                while started.elapsed() < Duration::from_secs(12) {
                    let Ok(n) = s.recv(&mut buf) else { break };
                    codes.push(code(&String::from_utf8_lossy(&buf[..n])));
                }
                codes
            })
        })
        .collect();
    // Prepared first, so that the flood goes as fast as this test sends.
    let callers = ["sip:mallory@evil.example".to_owned(), site.alice.aor()];
    let flood: Vec<(usize, String)> = (0..2_000)
        .map(|i| {
            let socket = i % flooders.len();
            let invite = strangers_invite(&flooders[socket], &callers[i % 2], &site.bob, "", "");
            (socket, invite)
        })
        .collect();
    let started = Instant::now();
    let mut sent = 0;
    // Fifty at a time, 5 ms apart (some 10,000 a second): unpaced, the
    // node's socket buffer would drop most of them before the node saw
    // them.
    for batch in flood.chunks(50) {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        for (socket, invite) in batch {
            // A full socket buffer may refuse one; the flood goes on.
            if flooders[*socket]
                .send_to(invite.as_bytes(), site.sip)
                .is_ok()
            {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    assert!(
        sent >= 1_900,
        "only {sent} of 2,000 INVITEs sent in {took:?}"
    );
    let codes: Vec<Option<u16>> = readers
        .into_iter()
        .flat_map(|r| r.join().expect("a flooder's reader"))
        .collect();
    let count = |c: u16| codes.iter().filter(|x| **x == Some(c)).count();
    eprintln!(
        "{sent} INVITEs sent in {took:?}: {} answers, {} × 403, {} × 407",
        codes.len(),
        count(403),
        count(407)
    );
    assert!(
        codes.iter().all(|c| matches!(c, Some(403 | 407))),
        "the flood drew other answers than 403 and 407: {} × 503, {:?}",
        count(503),
        codes
            .iter()
            .filter(|c| !matches!(c, Some(403 | 407)))
            .take(10)
            .collect::<Vec<_>>()
    );
    // Paced, the flood reaches the node (on a calm machine it answers
    // every INVITE); half is the bound for a busy one.
    assert!(
        codes.len() >= sent / 2,
        "the flood did not reach the node: {sent} INVITEs drew {} answers",
        codes.len()
    );
    assert!(
        codes.len() <= sent,
        "{sent} INVITEs drew {} answers",
        codes.len()
    );
    let after = server_transactions();
    assert!(
        after <= before,
        "the flood left server transactions behind: {before} before, {after} after"
    );
    let rang = collect(&site.bob_phone.socket, Duration::from_millis(100));
    assert!(
        rang.is_empty(),
        "the flood reached bob's phone: {:#?}",
        &rang[..rang.len().min(3)]
    );

    // Bob's phone registers again.
    assert_eq!(
        site.bob_phone.register("bob-secret"),
        [401, 200],
        "bob's phone could not register again after the flood"
    );
    // A fresh address asks the node: answered.
    let fresh = UdpSocket::bind("127.0.0.85:0").expect("a fresh socket");
    let me = fresh.local_addr().expect("local address");
    let options = request(
        "OPTIONS",
        &format!("sip:{OVERLAY}"),
        &[
            format!("Via: SIP/2.0/UDP {me};rport;branch=z9hG4bK{}", token()),
            "Max-Forwards: 70".to_owned(),
            format!("From: <sip:probe@{OVERLAY}>;tag={}", token()),
            format!("To: <sip:{OVERLAY}>"),
            format!("Call-ID: {}", token()),
            "CSeq: 1 OPTIONS".to_owned(),
        ],
        "",
    );
    fresh
        .send_to(options.as_bytes(), site.sip)
        .expect("send OPTIONS");
    let (answer, _) = expect(
        &fresh,
        Duration::from_secs(5),
        "answer to OPTIONS",
        final_to("OPTIONS"),
    );
    assert_eq!(code(&answer), Some(200), "{answer}");
    // And alice's phone calls bob: the INVITE opens a transaction, so
    // a full table would answer 503 here.
    let alice = Phone::at("127.0.0.1", site.sip, &site.alice);
    let (alice_aor, bob_aor) = (site.alice.aor(), site.bob.aor());
    let (call_id, tag) = (token(), token());
    let invite = |cseq: u32, auth: Option<String>| {
        let mut h = vec![
            alice.via(),
            "Max-Forwards: 70".to_owned(),
            format!("From: <{alice_aor}>;tag={tag}"),
            format!("To: <{bob_aor}>"),
            format!("Call-ID: {call_id}"),
            format!("CSeq: {cseq} INVITE"),
            format!("Contact: <sip:alice@{}>", alice.addr()),
        ];
        h.extend(auth.map(|a| format!("Proxy-Authorization: {a}")));
        request("INVITE", &bob_aor, &h, "")
    };
    alice.send(&invite(1, None));
    let wait = Duration::from_secs(5);
    let (challenge, _) = expect(&alice.socket, wait, "407", final_to("INVITE"));
    assert_eq!(code(&challenge), Some(407), "{challenge}");
    let auth = credentials(
        &challenge,
        "Proxy-Authenticate",
        &site.alice,
        "alice-secret",
        "INVITE",
        &bob_aor,
    );
    alice.send(&invite(2, Some(auth)));
    let (at_bob, node_addr) = expect(
        &site.bob_phone.socket,
        wait,
        "alice's INVITE at bob's phone",
        is_request("INVITE"),
    );
    assert_eq!(header(&at_bob, "Call-ID"), Some(call_id.as_str()));
    // Bob is busy; alice hears it.
    let busy = response(&at_bob, 486, "Busy Here", &token(), &[], "");
    site.bob_phone
        .socket
        .send_to(busy.as_bytes(), node_addr)
        .expect("bob's 486");
    let (answer, _) = expect(&alice.socket, wait, "486 at alice", final_to("INVITE"));
    assert_eq!(code(&answer), Some(486), "{answer}");
}

/// Finding 6: wrong passwords lock out the account that used them from
/// that address, not the other accounts behind the same address, nor
/// that account from elsewhere.
#[test]
fn wrong_passwords_from_one_address_lock_out_only_that_account() {
    let site = site();
    let alice_here = Phone::at("127.0.0.90", site.sip, &site.alice);
    let mut attempts = Vec::new();
    for _ in 0..6 {
        attempts.push(alice_here.register("not-alice-secret"));
    }
    // Five failures are allowed (SIP_AUTH_FAILURE_BURST): the sixth
    // attempt finds alice locked out from here.
    let expected: Vec<Vec<u16>> = (0..6)
        .map(|i| if i < 5 { vec![401, 401] } else { vec![403] })
        .collect();
    assert_eq!(attempts, expected, "six REGISTERs with a wrong password");
    assert_eq!(
        alice_here.register("alice-secret"),
        [403],
        "alice with the right password, from the locked-out address, for now"
    );
    // Bob's account, from the same address (one NAT): registers.
    let bob_here = Phone::at("127.0.0.90", site.sip, &site.bob);
    assert_eq!(
        bob_here.register("bob-secret"),
        [401, 200],
        "another account behind the same address was locked out"
    );
    // Alice's account from another address: registers.
    let alice_elsewhere = Phone::at("127.0.0.91", site.sip, &site.alice);
    assert_eq!(
        alice_elsewhere.register("alice-secret"),
        [401, 200],
        "alice's account was locked out everywhere"
    );
}
