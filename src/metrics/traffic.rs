//! What a node's overlay traffic did, counted as it happens: requests it
//! served and sent (by kind and outcome), inbound handshakes that failed
//! (by reason), connections refused (by limit), requests refused for
//! their rate. The I/O shell counts; a scrape reads (the metrics
//! listener of `crate::admin`).

use super::counters::CounterVec;
use crate::wire::Message;

/// Why an inbound handshake failed, as counted.
pub const HANDSHAKE_FAILURES: [&str; 8] = [
    "timeout",
    "tls",
    "transport",
    "closed_by_peer",
    "reset",
    "banned",
    "no_identity",
    "other",
];

/// Which connection limit refused a connection, as counted.
pub const REFUSAL_LIMITS: [&str; 4] = ["total", "per_ip", "per_net", "per_wide_net"];

/// The traffic counters of one node.
#[derive(Debug, Default)]
pub struct TrafficMetrics {
    /// Requests served: (kind, outcome).
    pub served: CounterVec<2>,
    /// Requests sent by this node: (kind, outcome).
    pub sent: CounterVec<2>,
    /// Inbound handshakes failed: (reason), one of [`HANDSHAKE_FAILURES`].
    pub handshake_failures: CounterVec<1>,
    /// Inbound connections refused before the handshake: (limit), one of
    /// [`REFUSAL_LIMITS`].
    pub refused: CounterVec<1>,
    /// Requests refused for their rate: (what): `request` (answered
    /// `RateLimited`), `disconnect` (the connection closed for it), `sip`
    /// (a `Sip` message over its budget).
    pub rate_limited: CounterVec<1>,
}

impl TrafficMetrics {
    /// Counts a request served with `reply`: its outcome is `answered`,
    /// or the error code's name when the reply is an `Error`.
    pub fn served(&self, kind: &'static str, reply: &Message) {
        self.served.inc([kind, outcome_of(reply)]);
    }
}

/// `answered`, or the error code's name for an `Error`.
pub fn outcome_of(reply: &Message) -> &'static str {
    match reply {
        Message::Error { code, .. } => code.as_str(),
        _ => "answered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ErrorCode;

    #[test]
    fn a_request_served_is_counted_by_kind_and_what_was_answered() {
        let m = TrafficMetrics::default();
        let ping = Message::Ping { nonce: 1 };
        m.served(
            ping.kind(),
            &Message::Pong {
                nonce: 1,
                observed: "127.0.0.1:1".parse().unwrap(),
            },
        );
        m.served("store", &Message::error(ErrorCode::RecordRefused, "no"));
        assert_eq!(m.served.get(["ping", "answered"]), 1);
        assert_eq!(m.served.get(["store", "record_refused"]), 1);
    }
}
