//! Helpers shared by the black-box tests: real nodes on loopback.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cli;

use p2psip::identity::{IdKind, SecretKey, VerifyPolicy};
use p2psip::net::{Client, Limits, LocalIdentity, Node, NodeConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A node serving on loopback until dropped.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A deterministic key from a seed byte.
pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// A key whose node id has fewer than `bits` puzzle bits.
pub fn key_failing_puzzle(bits: u32) -> SecretKey {
    (0u8..=255)
        .map(key)
        .find(|k| k.public().node_id().puzzle_bits() < bits)
        .expect("half of all keys fail a 1-bit puzzle")
}

/// A key whose node id has at least `bits` puzzle bits.
pub fn key_meeting_puzzle(bits: u8) -> SecretKey {
    p2psip::identity::generate(
        IdKind::Node,
        bits,
        1,
        std::time::Duration::from_secs(600),
        &mut |_| {},
    )
}

pub fn now() -> i64 {
    p2psip::unix_now()
}

/// Starts a node with a fresh self-signed certificate for `key`.
pub fn start_node(key: &SecretKey, policy: VerifyPolicy, limits: Limits) -> RunningNode {
    let identity = LocalIdentity::self_signed(key, now()).expect("certificate");
    start_node_with(identity, policy, limits, "127.0.0.1:0".parse().unwrap())
}

pub fn start_node_with(
    identity: LocalIdentity,
    policy: VerifyPolicy,
    limits: Limits,
    listen: SocketAddr,
) -> RunningNode {
    start_configured(
        NodeConfig {
            identity,
            policy,
            limits,
            overlay: None,
            data_dir: None,
        },
        listen,
    )
}

pub fn start_configured(config: NodeConfig, listen: SocketAddr) -> RunningNode {
    start_built(Node::bind(config, listen).expect("bind node"))
}

/// Runs a node already bound (and configured with its builder methods).
pub fn start_built(node: Node) -> RunningNode {
    let node = Arc::new(node);
    let addr = node.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = node.clone();
    let task = tokio::spawn(async move {
        runner
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    RunningNode {
        node,
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Starts a node serving `overlay`.
pub fn start_overlay_node(
    identity: LocalIdentity,
    policy: VerifyPolicy,
    limits: Limits,
    listen: SocketAddr,
    overlay: p2psip::overlay::config::OverlayParams,
) -> RunningNode {
    start_configured(
        NodeConfig {
            identity,
            policy,
            limits,
            overlay: Some(overlay),
            data_dir: None,
        },
        listen,
    )
}

/// A client on `bind_ip` presenting a fresh self-signed certificate.
pub fn client(key: &SecretKey, policy: VerifyPolicy, bind_ip: &str) -> Client {
    let identity = LocalIdentity::self_signed(key, now()).expect("certificate");
    client_with(identity, policy, bind_ip)
}

pub fn client_with(identity: LocalIdentity, policy: VerifyPolicy, bind_ip: &str) -> Client {
    Client::bind(format!("{bind_ip}:0").parse().unwrap(), identity, policy).expect("bind client")
}

/// Waits (bounded) until `cond` holds, polling every 10 ms.
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_polls(what, 500, cond).await
}

/// Waits until `cond` holds, polling every 10 ms at most `polls` times.
pub async fn eventually_polls(what: &str, polls: u32, mut cond: impl FnMut() -> bool) {
    for _ in 0..polls {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
