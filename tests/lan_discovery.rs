//! LAN discovery (`node run --discover lan`) between real node processes,
//! each in a network namespace this test creates: a link of its own (a
//! bridge and veth pairs, private addresses that exist only inside), so
//! that mDNS multicast really crosses interfaces and nothing touches the
//! host's network. Needs CAP_NET_ADMIN (root); without it the test says
//! so and skips, unless `P2PSIP_REQUIRE_NETNS` is set (as `.ci/run` does),
//! when it fails instead.

mod common;

use common::cli::{json, run_ok, NodeProcess};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `ip ARGS`; the error names the command and what it said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A link of network namespaces: a hub namespace holding a bridge, and
/// one namespace per node, its `eth0` a veth pair's end whose other end
/// is on the bridge. Removed on drop (deleting a namespace deletes its
/// interfaces).
struct Link {
    hub: String,
    nodes: Vec<String>,
}

impl Link {
    /// `count` node namespaces, node `i` (from 1) at 10.213.0.`i`/24.
    fn new(count: usize) -> Result<Self, String> {
        let tag = std::process::id();
        let hub = format!("p2pl{tag}h");
        ip(&["netns", "add", &hub])?;
        let mut link = Link {
            hub: hub.clone(),
            nodes: Vec::new(),
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 1..=count {
            let ns = format!("p2pl{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            link.nodes.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.213.0.{i}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(link)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.hub]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// The link, or `None` when this test may skip (no privilege, and
/// `P2PSIP_REQUIRE_NETNS` unset).
fn link_or_skip(count: usize) -> Option<Link> {
    match Link::new(count) {
        Ok(link) => Some(link),
        Err(e) if std::env::var_os("P2PSIP_REQUIRE_NETNS").is_none() => {
            eprintln!(
                "SKIPPED: cannot create network namespaces (needs root or CAP_NET_ADMIN \
                 and iproute2): {e}"
            );
            None
        }
        Err(e) => panic!("P2PSIP_REQUIRE_NETNS is set but: {e}"),
    }
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

/// The ids in a node's routing table.
fn routes(dir: &str) -> Vec<String> {
    let routes = json(&run_ok(&["routes", "--dir", dir, "--json"]));
    routes["routes"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|e| e["node_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn node_dir(root: &Path, name: &str) -> String {
    let dir = root.join(name).to_str().unwrap().to_owned();
    run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
    dir
}

#[test]
fn three_nodes_with_no_bootstrap_form_one_overlay_on_a_lan() {
    let Some(link) = link_or_skip(4) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let write = |name: &str, overlay: &str| {
        let path = root.path().join(name);
        std::fs::write(
            &path,
            format!("name = \"{overlay}\"\nid_difficulty = 4\nk = 8\nreplication = 3\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let lan = write("lan.toml", "lan.test");
    let other = write("other.toml", "other.test");
    let dirs: Vec<String> = (1..=4)
        .map(|i| node_dir(root.path(), &format!("n{i}")))
        .collect();
    // Three nodes of one overlay and a fourth of another, on one link;
    // nobody is told of anybody.
    let mut nodes: Vec<NodeProcess> = (0..4)
        .map(|i| {
            let listen = format!("10.213.0.{}:4433", i + 1);
            let overlay = if i < 3 { &lan } else { &other };
            NodeProcess::start_in_netns(
                &link.nodes[i],
                &[
                    "--dir",
                    &dirs[i],
                    "--listen",
                    &listen,
                    "--overlay",
                    overlay,
                    "--discover",
                    "lan",
                ],
            )
        })
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let lines: Vec<String> = nodes.iter_mut().map(NodeProcess::next_line).collect();
    // Nodes started together wait for the LAN before starting an overlay
    // of their own: two of the three joined through what they heard
    // (which one the others found first is the LAN's timing), at most
    // one started the overlay.
    let joined = (0..3)
        .filter(|&i| lines[i].starts_with(&format!("p2psip node {} joined lan.test with ", ids[i])))
        .count();
    let started = (0..3)
        .filter(|&i| lines[i] == format!("p2psip node {} started a new overlay", ids[i]))
        .count();
    assert!(joined >= 2 && joined + started == 3, "{:?}", &lines[..3]);
    assert_eq!(
        lines[3],
        format!("p2psip node {} started a new overlay", ids[3]),
        "the node of another overlay joins nobody"
    );
    // One overlay: each of the three knows the two others, and only them.
    for (i, dir) in dirs.iter().enumerate().take(3) {
        let mut want: Vec<String> = ids[..3]
            .iter()
            .filter(|&id| id != &ids[i])
            .cloned()
            .collect();
        want.sort();
        assert!(
            eventually(100, || {
                let mut have = routes(dir);
                have.sort();
                have == want
            }),
            "node {i} knows {:?}, not {want:?}",
            routes(dir)
        );
    }
    assert!(routes(&dirs[3]).is_empty(), "{:?}", routes(&dirs[3]));
    let status = json(&run_ok(&["status", "--dir", &dirs[0], "--json"]));
    assert_eq!(status["ready"], true, "{status}");

    // A registration made at one node is found from the others.
    let alice = root.path().join("alice").to_str().unwrap().to_owned();
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &alice,
        "--user",
        "--difficulty",
        "0",
    ]);
    let shown = json(&run_ok(&["identity", "show", "--dir", &alice, "--json"]));
    let aor = format!("sip:{}@lan.test", shown["id"].as_str().unwrap());
    let reg = json(&run_ok(&[
        "register",
        &aor,
        "--user-dir",
        &alice,
        "--dir",
        &dirs[0],
        "--contact",
        "sip:alice@10.213.0.1:5060",
        "--json",
    ]));
    assert_eq!(reg["acks"], 3, "stored at all three nodes: {reg}");
    for dir in &dirs[1..3] {
        let found = json(&run_ok(&["lookup", &aor, "--dir", dir, "--json"]));
        assert_eq!(found["entries"][0]["node_id"], ids[0].as_str(), "{found}");
        assert_eq!(
            found["entries"][0]["contacts"][0], "sip:alice@10.213.0.1:5060",
            "{found}"
        );
    }

    // A node with discovery on stops cleanly on SIGTERM (within 5 s,
    // its mDNS goodbye sent).
    let second = nodes.remove(1);
    assert!(second.terminate().success());
    drop(nodes);
}
