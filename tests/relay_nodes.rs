//! Relays as an operator runs them: `node run --relay` processes publish
//! signed descriptors in the overlay's relay directory, every node reads
//! it (`p2psip circuits --directory`), and a relay that stops withdraws
//! its descriptor.

mod common;

use common::cli::{json, run_ok, NodeProcess};
use std::path::Path;
use std::time::Duration;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

/// The relays `circuits --directory` lists at `dir`, by node id.
fn directory(dir: &str) -> Vec<(String, Vec<String>)> {
    let r = json(&run_ok(&[
        "circuits",
        "--dir",
        dir,
        "--directory",
        "--json",
    ]));
    let mut out: Vec<(String, Vec<String>)> = r["directory"]
        .as_array()
        .expect("a directory list")
        .iter()
        .map(|d| {
            let addrs = d["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            (d["node_id"].as_str().unwrap().to_owned(), addrs)
        })
        .collect();
    out.sort();
    out
}

/// Polls `check` (at most `tries` times, 250 ms apart).
fn eventually(tries: u32, mut check: impl FnMut() -> bool) -> bool {
    (0..tries).any(|_| {
        let ok = check();
        if !ok {
            std::thread::sleep(Duration::from_millis(250));
        }
        ok
    })
}

#[test]
fn relays_publish_their_descriptors_every_node_reads_them_and_a_stopping_relay_withdraws() {
    let root = tempfile::tempdir().unwrap();
    let overlay = p(root.path(), "overlay.toml");
    std::fs::write(&overlay, "name = \"relays\"\nid_difficulty = 4\nk = 8\nreplication = 4\n").unwrap();
    let dirs: Vec<String> = (0..4)
        .map(|i| {
            let dir = p(root.path(), &format!("n{i}"));
            run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
            dir
        })
        .collect();
    // Node 0 does not relay; 1..=3 do, each on its own /16.
    let first = NodeProcess::start(&[
        "--dir",
        &dirs[0],
        "--listen",
        "127.110.0.1:0",
        "--overlay",
        &overlay,
    ]);
    let boot = format!("{}@{}", first.id, first.addr);
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let listen = format!("127.{}.0.1:0", 110 + i);
        relays.push(NodeProcess::start(&[
            "--dir",
            dir,
            "--listen",
            &listen,
            "--overlay",
            &overlay,
            "--bootstrap",
            &boot,
            "--relay",
        ]));
    }
    for dir in &dirs {
        run_ok(&["status", "--dir", dir, "--wait-ready", "--timeout", "30"]);
    }
    let mut want: Vec<(String, Vec<String>)> = relays
        .iter()
        .map(|r| (r.id.clone(), vec![r.addr.clone()]))
        .collect();
    want.sort();
    // Every node, the plain one too, finds all three relays at the
    // addresses they listen on.
    for dir in &dirs {
        assert!(
            eventually(40, || directory(dir) == want),
            "{dir}: {:?}",
            directory(dir)
        );
    }
    // A relay says so; the plain node does not relay.
    let r = json(&run_ok(&["circuits", "--dir", &dirs[1], "--json"]));
    assert_eq!(r["relay"], true);
    assert_eq!(r["directory"], serde_json::Value::Null);
    let plain = json(&run_ok(&["circuits", "--dir", &dirs[0], "--json"]));
    assert_eq!(plain["relay"], false);
    assert_eq!(plain["relayed"].as_array().unwrap().len(), 0);
    // A relay that stops withdraws its descriptor: the others no longer
    // list it.
    let gone = relays.remove(0);
    let gone_id = gone.id.clone();
    assert!(gone.terminate().success());
    want.retain(|(id, _)| *id != gone_id);
    assert!(
        eventually(40, || directory(&dirs[0]) == want),
        "{:?}",
        directory(&dirs[0])
    );
}
