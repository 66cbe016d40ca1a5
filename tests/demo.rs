//! `p2psip demo` as a newcomer runs it: real node processes, SIPp phones,
//! a call with audio, every hop printed, nothing left behind.

mod common;

use common::cli::p2psip;

#[test]
fn the_demo_places_a_call_prints_its_hops_and_cleans_up() {
    let out = p2psip().args(["demo", "--nodes", "3"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit_once("(in "))
        .and_then(|(_, d)| d.strip_suffix(')'))
        .expect("the first line names the demo's directory")
        .to_owned();
    for expected in [
        "node A ",
        "started a new overlay",
        "joined demo.p2psip with ",
        "bob's phone -> node B         REGISTER",
        "node B -> bob's phone    SIP/2.0 200 OK",
        "1 record(s) found",
        "bob's registration names node B",
        "node A -> alice's phone  SIP/2.0 407 Proxy Authentication Required",
        "node B -> bob's phone    INVITE",
        "(alice, signed by her key and verified by node B)",
        "neither phone saw the other's address",
        "removed",
        "node A authorized 1 call(s)",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}:\n{stdout}");
    }
    // Bob's phone learns nothing of alice's phone: not in the INVITE's
    // Vias (they stayed at node A), not in the media's source.
    assert!(!stdout.contains("(alice's phone)"), "{stdout}");
    // The audio crossed both nodes both ways (loopback loses nothing but
    // a node may drop the first packets while its link opens).
    let media = stdout
        .lines()
        .find(|l| l.contains("alice's phone sent 100 RTP packets"))
        .expect("the media line");
    let reached: Vec<u32> = media
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        reached.get(1) >= Some(&80) && reached.get(2) >= Some(&70),
        "{media}"
    );
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

#[test]
fn without_sipp_the_demo_says_what_to_install() {
    let out = p2psip()
        .arg("demo")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt install sip-tester"), "{err}");
}
