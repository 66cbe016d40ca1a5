//! `node run --metrics-listen ADDR`: the node's metrics in Prometheus's
//! text format over plain HTTP/1.x (`GET /metrics`), off by default;
//! loopback in docs/operations.md, which lists the metrics. Each
//! connection carries one request (`Connection: close`); heads are
//! bounded ([`MAX_REQUEST_HEAD`]), read within [`HEAD_TIMEOUT`], and at
//! most [`MAX_METRICS_CONNECTIONS`] are served at once. The numbers are
//! the ones `status`, `reputation` and `sip_users` report, read at each
//! scrape, and the lookups' counters; nothing secret is among them.

use super::api::{OverlayMode, PeerStanding};
use super::server::{reputation, status};
use crate::metrics::{
    parse_request_head, CounterVec, Exposition, HeadError, HistogramSample, ScrapeRequest,
    CONTENT_TYPE, HANDSHAKE_FAILURES, LOOKUP_SECONDS_BUCKETS, MAX_REQUEST_HEAD, REFUSAL_LIMITS,
    SECONDS_BUCKETS,
};
use crate::net::sip::SipHandle;
use crate::net::Node;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Scrapes served at once; more are closed unanswered.
pub const MAX_METRICS_CONNECTIONS: usize = 8;

/// How long a scraper has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The metrics listener of a node.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Listens on `addr` (TCP).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes of `node` until dropped.
    pub async fn serve(self, node: Arc<Node>, mode: OverlayMode, sip: Option<SipHandle>) {
        let started = Instant::now();
        let slots = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue; // dropped: closed unanswered
            };
            let (node, sip) = (node.clone(), sip.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &node, mode, sip.as_ref(), started).await {
                    debug!(error = %e, "metrics connection ended");
                }
                drop(slot);
            });
        }
    }
}

/// Reads one request head (bounded in size and time) and answers it.
async fn serve_one(
    mut stream: TcpStream,
    node: &Node,
    mode: OverlayMode,
    sip: Option<&SipHandle>,
    started: Instant,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let parsed = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(Err(HeadError::Incomplete));
            }
            let room = MAX_REQUEST_HEAD.saturating_sub(head.len());
            head.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            match parse_request_head(&head) {
                Err(HeadError::Incomplete) => continue,
                other => return Ok::<_, std::io::Error>(other),
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (status_line, body, send_body) = match parsed {
        Ok(ScrapeRequest::Metrics) => ("200 OK", render(node, mode, sip, started), true),
        Ok(ScrapeRequest::MetricsHead) => ("200 OK", render(node, mode, sip, started), false),
        Ok(ScrapeRequest::NotFound) => ("404 Not Found", "only /metrics here\n".into(), true),
        Ok(ScrapeRequest::MethodNotAllowed) => (
            "405 Method Not Allowed",
            "GET or HEAD /metrics\n".into(),
            true,
        ),
        Err(HeadError::Incomplete) => return Ok(()),
        Err(HeadError::TooLong) => (
            "431 Request Header Fields Too Large",
            format!("{}\n", HeadError::TooLong),
            true,
        ),
        Err(e) => ("400 Bad Request", format!("{e}\n"), true),
    };
    let content_type = if status_line == "200 OK" {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if send_body {
        response.push_str(&body);
    }
    tokio::time::timeout(HEAD_TIMEOUT, stream.write_all(response.as_bytes()))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.shutdown().await
}

/// The exposition of `node` now (docs/operations.md, "Metrics").
fn render(node: &Node, mode: OverlayMode, sip: Option<&SipHandle>, started: Instant) -> String {
    let mut e = Exposition::new();
    let Ok(s) = status(node, mode, started) else {
        return e.finish();
    };
    let id = s.id.to_string();
    e.gauge(
        "p2psip_node_info",
        "The node: its id, overlay, mode and version (always 1).",
        &[(
            &[
                ("node_id", &id),
                ("overlay", &s.overlay),
                ("mode", mode.as_str()),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1.0,
        )],
    );
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    e.gauge(
        "p2psip_ready",
        "Whether the node is part of its overlay (1) or not yet (0).",
        &[(&[], flag(s.ready))],
    );
    e.gauge(
        "p2psip_uptime_seconds",
        "Seconds since the node started.",
        &[(&[], s.uptime_secs as f64)],
    );
    e.gauge(
        "p2psip_peers_connected",
        "Distinct authenticated peers with an open connection, either way.",
        &[(&[], s.peers as f64)],
    );
    e.gauge(
        "p2psip_routing_table_contacts",
        "Contacts in the routing table.",
        &[(&[], s.table_size as f64)],
    );
    e.gauge(
        "p2psip_records",
        "Records the node holds for the overlay.",
        &[(&[], s.records as f64)],
    );
    let peers = reputation(node).peers;
    let standings = [
        PeerStanding::Good,
        PeerStanding::Neutral,
        PeerStanding::Suspect,
        PeerStanding::Banned,
    ];
    let counts: Vec<(PeerStanding, f64)> = standings
        .iter()
        .map(|st| {
            (
                *st,
                peers.iter().filter(|p| p.standing == *st).count() as f64,
            )
        })
        .collect();
    let standing_samples: Vec<([(&str, &str); 1], f64)> = counts
        .iter()
        .map(|(st, n)| ([("standing", st.as_str())], *n))
        .collect();
    let standing_refs: Vec<(&[(&str, &str)], f64)> =
        standing_samples.iter().map(|(l, n)| (&l[..], *n)).collect();
    e.gauge(
        "p2psip_peers_tracked",
        "Peers the reputation table tracks, by standing.",
        &standing_refs,
    );
    if let Some(overlay) = node.overlay() {
        let (passed, failed) = overlay.listen_checks();
        e.counter(
            "p2psip_listen_checks_total",
            "Dial-backs to a peer's advertised address, by outcome.",
            &[
                (&[("outcome", "passed")], passed),
                (&[("outcome", "failed")], failed),
            ],
        );
        let lookups = overlay.lookup_metrics().snapshot();
        let samples: Vec<([(&str, &str); 1], &crate::metrics::LookupSnapshot)> = lookups
            .iter()
            .map(|l| ([("outcome", l.outcome)], l))
            .collect();
        let counts: Vec<(&[(&str, &str)], u64)> = samples
            .iter()
            .map(|(l, s)| (&l[..], s.duration.count))
            .collect();
        e.counter(
            "p2psip_lookups_total",
            "Lookups ended: for the closest nodes, or for a value found or not.",
            &counts,
        );
        let requests: Vec<(&[(&str, &str)], u64)> =
            samples.iter().map(|(l, s)| (&l[..], s.requests)).collect();
        e.counter(
            "p2psip_lookup_requests_total",
            "Requests the lookups sent.",
            &requests,
        );
        let histogram: Vec<HistogramSample<'_>> = samples
            .iter()
            .map(|(l, s)| {
                let d = &s.duration;
                (&l[..], d.cumulative.as_slice(), d.seconds, d.count)
            })
            .collect();
        e.histogram(
            "p2psip_lookup_duration_seconds",
            "How long lookups took.",
            &LOOKUP_SECONDS_BUCKETS,
            &histogram,
        );
    }
    traffic(&mut e, node);
    if let Some(sip) = sip {
        let snap = sip.snapshot();
        let st = snap.stats;
        e.counter(
            "p2psip_sip_registers_accepted_total",
            "REGISTERs accepted.",
            &[(&[], st.accepted)],
        );
        e.counter(
            "p2psip_sip_auth_failures_total",
            "Digest credentials refused (REGISTERs and calls).",
            &[(&[], st.auth_failures)],
        );
        e.counter(
            "p2psip_sip_locked_out_total",
            "Requests refused because their source failed too often.",
            &[(&[], st.locked_out)],
        );
        e.counter(
            "p2psip_sip_register_rate_limited_total",
            "REGISTERs dropped by the per-source rate limit.",
            &[(&[], st.rate_limited)],
        );
        e.counter(
            "p2psip_sip_calls_authorized_total",
            "Calls (requests outside a dialog) whose Proxy-Authorization was good.",
            &[(&[], st.calls_authorized)],
        );
        e.gauge(
            "p2psip_sip_registered_phones",
            "Phones bound at this node.",
            &[(
                &[],
                snap.bindings.values().map(Vec::len).sum::<usize>() as f64,
            )],
        );
        e.gauge(
            "p2psip_sip_transactions",
            "SIP transactions open, by layer.",
            &[
                (&[("layer", "server")], snap.transactions.0 as f64),
                (&[("layer", "client")], snap.transactions.1 as f64),
            ],
        );
        e.gauge(
            "p2psip_media_calls",
            "Calls whose media this node anchors now.",
            &[(&[], snap.media.sessions as f64)],
        );
        e.counter(
            "p2psip_media_packets_total",
            "Media packets relayed, by where they came from, and dropped.",
            &[
                (&[("from", "phone")], snap.media.from_phones),
                (&[("from", "node")], snap.media.from_nodes),
                (&[("from", "dropped")], snap.media.dropped),
            ],
        );
    }
    e.finish()
}

/// The traffic counters (requests, handshakes, refusals, rate limits,
/// connections, durable writes).
fn traffic(e: &mut Exposition, node: &Node) {
    let t = node.core().traffic();
    let two =
        |series: Vec<([&'static str; 2], u64)>| -> Vec<([(&'static str, &'static str); 2], u64)> {
            series
                .into_iter()
                .map(|([kind, outcome], n)| ([("kind", kind), ("outcome", outcome)], n))
                .collect()
        };
    for (name, help, series) in [
        (
            "p2psip_requests_served_total",
            "Requests this node answered, by kind and outcome (answered, or the error code).",
            two(t.served.snapshot()),
        ),
        (
            "p2psip_requests_sent_total",
            "Requests this node sent, by kind and outcome (answered, or why not).",
            two(t.sent.snapshot()),
        ),
    ] {
        let samples: Vec<(&[(&str, &str)], u64)> =
            series.iter().map(|(l, n)| (&l[..], *n)).collect();
        e.counter(name, help, &samples);
    }
    let one = |label: &'static str, values: &[&'static str], counts: &CounterVec<1>| {
        values
            .iter()
            .map(|v| ([(label, *v)], counts.get([*v])))
            .collect::<Vec<_>>()
    };
    for (name, help, series) in [
        (
            "p2psip_handshake_failures_total",
            "Inbound handshakes that failed, by reason.",
            one("reason", &HANDSHAKE_FAILURES, &t.handshake_failures),
        ),
        (
            "p2psip_connections_refused_total",
            "Inbound connections refused before the handshake, by the limit that refused them.",
            one("limit", &REFUSAL_LIMITS, &t.refused),
        ),
        (
            "p2psip_rate_limited_total",
            "Requests refused for their rate: answered RateLimited (request), connection closed (disconnect), SIP over budget (sip).",
            one("what", &["request", "disconnect", "sip"], &t.rate_limited),
        ),
    ] {
        let samples: Vec<(&[(&str, &str)], u64)> =
            series.iter().map(|(l, n)| (&l[..], *n)).collect();
        e.counter(name, help, &samples);
    }
    e.gauge(
        "p2psip_connections",
        "Open connections: accepted (inbound, handshakes included) and dialed (outbound).",
        &[
            (&[("direction", "inbound")], node.connections() as f64),
            (
                &[("direction", "outbound")],
                node.dialer().connected().len() as f64,
            ),
        ],
    );
    if let Some(latency) = node.overlay().and_then(|o| o.write_latency()) {
        e.histogram(
            "p2psip_durable_write_duration_seconds",
            "Record writes from queueing to their commit on disk.",
            &SECONDS_BUCKETS,
            &[(&[], &latency.cumulative, latency.seconds, latency.count)],
        );
    }
}
